"""The studies' shared run loop: what it runs, skips and resumes, and which runs start from the offline checkpoint."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pex_jax.tools import study_runs


def test_run_task_skips_finished_resumes_interrupted_and_passes_the_offline_checkpoint(tmp_path: Path, monkeypatch):
    calls = []
    monkeypatch.setattr(study_runs, "run_forwarding_sigterm",
                        lambda cmd, **kw: calls.append((cmd, kw["env"], kw["cwd"])))
    task = tmp_path / "umaze"
    (task / "offline").mkdir(parents=True)
    (task / "offline" / "summary.json").write_text(json.dumps({}))  # finished
    (task / "pex").mkdir()  # interrupted: resumes
    study_runs.run_task(task, "experiments/configs/antmaze.py:umaze-local", "0-2", ["pex", "sac", "pex_sac"],
                        ["--config.online_steps=10"])
    runs = {next(a.split("=", 1)[1] for a in cmd if a.startswith("--config.algo=")): cmd for cmd, _, _ in calls}
    assert list(runs) == ["pex", "sac", "pex_sac"]  # offline was done
    assert "--config.resume=auto" in runs["pex"] and "--config.resume=auto" not in runs["sac"]
    ckpt = f"--config.offline_checkpoint={task / 'offline'}"
    assert ckpt in runs["pex"] and ckpt in runs["pex_sac"] and ckpt not in runs["sac"]
    assert all("--config.seeds=0-2" in c and "--config.online_steps=10" in c for c in runs.values())
    assert all(env["WANDB_MODE"] for _, env, _ in calls)
    assert all((cwd / "experiments" / "configs" / "antmaze.py").exists() for _, _, cwd in calls)  # relative config


def test_a_failing_step_exits_with_its_code_and_no_traceback():
    def main() -> int:
        raise study_runs.subprocess.CalledProcessError(2, ["python", "-m", "pex_jax.datagen.locomotion"])

    with pytest.raises(SystemExit) as exit_info:
        study_runs.exit_with(main)
    assert exit_info.value.code == 2


def test_sigterm_to_a_study_reaches_its_training_run_and_the_study_exits_with_the_runs_code(tmp_path: Path):
    """The child stands in for `pex_jax.train`: on SIGTERM it writes its checkpoint marker and exits with code 3."""
    marker, ready = tmp_path / "checkpointed", tmp_path / "ready"
    child = (f"import signal, sys, time, pathlib\n"
             f"def stop(*_):\n    pathlib.Path({str(marker)!r}).write_text('x'); sys.exit(3)\n"
             f"signal.signal(signal.SIGTERM, stop)\npathlib.Path({str(ready)!r}).write_text('x')\ntime.sleep(60)\n")
    study = (f"import sys\nfrom pathlib import Path\nfrom pex_jax.tools import study_runs\n"
             f"study_runs.exit_with(lambda: study_runs.run_forwarding_sigterm([sys.executable, '-c', {child!r}], "
             f"cwd=Path('.'), env=None) or 0)\n")
    proc = subprocess.Popen([sys.executable, "-c", study])
    deadline = time.time() + 30
    while not ready.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert ready.exists(), "the child never started"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 3  # the run's exit code, not a SIGTERM death of the study
    assert marker.exists()


def test_antmaze_long_scale_runs_umaze_to_300k_from_100k_and_medium_play_at_1m_plus_1m(tmp_path: Path, monkeypatch):
    from experiments import study_antmaze

    tasks = {}
    monkeypatch.setattr(study_antmaze.subprocess, "run", lambda *a, **kw: None)  # no data generation
    monkeypatch.setattr(study_antmaze, "run_task", lambda task_dir, config, seeds, algos, flags:
                        tasks.__setitem__(task_dir.name, flags))
    study_antmaze.main(["--scale=paper", "--tasks=umaze,medium-play", f"--out={tmp_path}"])
    assert "--config.offline_steps=100000" in tasks["umaze"] and "--config.online_steps=300000" in tasks["umaze"]
    assert {"--config.offline_steps=1000000", "--config.online_steps=1000000"} <= set(tasks["medium-play"])
    study_antmaze.main(["--tasks=umaze", f"--out={tmp_path}"])  # the study's scale keeps its 50k online steps
    assert "--config.offline_steps=100000" in tasks["umaze"] and "--config.online_steps=50000" in tasks["umaze"]
