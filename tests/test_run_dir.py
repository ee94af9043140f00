"""One run directory, one writer, one configuration: resume checks, the lock, stopping on signals,
run statuses, and checkpoints that survive a kill at any instant."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import serialization

from pex_jax import checkpoint
from pex_jax.errors import CheckpointError, ConfigError, DivergenceError
from pex_jax.runner.common import RunClock
from pex_jax.runner.run_dir import (
    Preempted,
    RunDirLocked,
    StopRequest,
    check_resume,
    end_status,
    finished,
    lock_run_dir,
    stop_on_signals,
)
from pex_jax.tools.tracking import RunLogger
from tests.conftest import TINY_ID, tiny_config

ROOT = Path(__file__).resolve().parents[1]


class _DataLoaded(Exception):
    pass


@pytest.fixture
def no_data(monkeypatch):
    """Make any data load fail loudly: what a test expects to happen first must happen before it."""
    import pex_jax.train as train

    def load(*_args, **_kwargs):
        raise _DataLoaded

    monkeypatch.setattr(train, "load_transitions", load)


def _record(config) -> dict:
    return config.to_dict()


def _start_run_dir(config) -> Path:
    """A run directory as a first attempt leaves it: config.json written by RunLogger."""
    run_dir = Path(config.run_dir)
    RunLogger(run_dir, _record(config), [0], use_wandb=False).close()
    return run_dir


# --- Resume under the same settings ---


def test_resume_with_another_lr_stops_in_one_line_before_data_loads_and_keeps_config_json(tmp_path, no_data):
    from pex_jax.train import run

    run_dir = _start_run_dir(tiny_config(tmp_path))
    before = (run_dir / "config.json").read_bytes()
    with pytest.raises(ConfigError) as err:
        run(tiny_config(tmp_path, resume="auto", lr=1e-3))
    msg = str(err.value)
    assert "lr 0.0003 → 0.001" in msg and "--config.lr=0.0003" in msg and "--config.run_dir" in msg
    assert "\n" not in msg and "expectile" not in msg  # only what changed is listed
    assert (run_dir / "config.json").read_bytes() == before


def test_resume_with_other_seeds_is_refused(tmp_path):
    old = tiny_config(tmp_path, seeds="0-2")
    run_dir = Path(old.run_dir)
    RunLogger(run_dir, _record(old), [0, 1, 2], use_wandb=False).close()
    with pytest.raises(ConfigError, match=r"seeds \[0, 1, 2\] → \[3, 4, 5\].*--config\.seeds=0,1,2"):
        check_resume(run_dir, _record(tiny_config(tmp_path, seeds="3-5")))
    check_resume(run_dir, _record(tiny_config(tmp_path, seeds="0-2", resume="auto")))  # same seeds: fine


def test_allow_listed_fields_may_change_on_resume_and_result_fields_may_not(tmp_path):
    run_dir = _start_run_dir(tiny_config(tmp_path, algo="pex"))
    changed = tiny_config(tmp_path, algo="pex", resume="auto", progress=True, keep_checkpoints=5,
                          run_dir=str(tmp_path / "run") + "/")
    changed.wandb.project, changed.wandb.enabled, changed.wandb.tags = "elsewhere", True, ("a",)
    check_resume(run_dir, _record(changed))
    for field, value in (("checkpoint_every", 1000), ("log_every", 50), ("eval_parallel_envs", 3),
                         ("updates_per_call", 50), ("hidden_dims", (64, 64))):
        with pytest.raises(ConfigError, match=field):
            check_resume(run_dir, _record(tiny_config(tmp_path, algo="pex", **{field: value})))


def test_checkpoint_every_and_pipeline_lanes_may_change_only_for_an_offline_run(tmp_path):
    offline = _start_run_dir(tiny_config(tmp_path / "a", algo="offline", checkpoint_every=0, pipeline_lanes=2))
    check_resume(offline, _record(tiny_config(tmp_path / "a", algo="offline", checkpoint_every=500,
                                              pipeline_lanes=-1)))
    online = _start_run_dir(tiny_config(tmp_path / "b", algo="pex", checkpoint_every=0))
    with pytest.raises(ConfigError, match="checkpoint_every 0 → 500"):
        check_resume(online, _record(tiny_config(tmp_path / "b", algo="pex", checkpoint_every=500)))
    lanes = _start_run_dir(tiny_config(tmp_path / "c", algo="pex", pipeline_lanes=2))
    with pytest.raises(ConfigError, match="pipeline_lanes 2 → 1"):  # other float rounding online
        check_resume(lanes, _record(tiny_config(tmp_path / "c", algo="pex", pipeline_lanes=1)))


def test_data_files_are_compared_by_content_not_by_path(tmp_path):
    config = tiny_config(tmp_path)
    files = [{"path": "/old/umaze.hdf5", "size": 10, "sha256": "aa"}]
    run_dir = Path(config.run_dir)
    RunLogger(run_dir, _record(config) | {"data_files": files}, [0], use_wandb=False).close()
    check_resume(run_dir, _record(config) | {"data_files": [{**files[0], "path": "/new/umaze.hdf5"}]})
    with pytest.raises(ConfigError, match="data_files"):
        check_resume(run_dir, _record(config) | {"data_files": [{**files[0], "sha256": "bb"}]})


@pytest.mark.slow
def test_a_resume_on_other_data_under_the_same_id_is_refused(tmp_path, tiny_env, monkeypatch):
    """A local dataset generated again elsewhere keeps its id but not its content (docs/data.md)."""
    from pex_jax.datagen.pointmaze import generate_pointmaze
    from pex_jax.train import run

    config = tiny_config(tmp_path, algo="offline", offline_steps=100)
    run(config)
    recorded = json.loads((Path(config.run_dir) / "config.json").read_text())["data_sha256"]
    assert len(recorded) == 64
    run(tiny_config(tmp_path, algo="offline", offline_steps=100, resume="auto"))  # the same data: fine

    other = tmp_path / "regenerated"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(other))
    generate_pointmaze(maze="umaze", steps=3000, noise=0.5, seed=1, dataset_id=TINY_ID, ref_episodes=2,
                       progress=False)
    with pytest.raises(ConfigError, match=r"trained on other data under the same dataset id.*"
                                          + recorded[:12] + r".*resume where that dataset is"):
        run(tiny_config(tmp_path, algo="offline", offline_steps=100, resume="auto"))


def test_a_resumed_logger_keeps_the_original_config_json(tmp_path):
    config = tiny_config(tmp_path)
    run_dir = _start_run_dir(config)
    before = (run_dir / "config.json").read_bytes()
    RunLogger(run_dir, _record(tiny_config(tmp_path, resume="auto", progress=True)), [0], use_wandb=False,
              resume=True).close()
    assert (run_dir / "config.json").read_bytes() == before


def _fake_offline_checkpoint(path: Path, **meta) -> Path:
    path.mkdir(parents=True)
    (path / "meta.json").write_text(json.dumps({"seeds": [0], "dataset_id": TINY_ID, "hidden_dims": [32, 32],
                                                "obs_dim": 4, "action_dim": 2} | meta))
    (path / "state.msgpack").write_bytes(b"")
    return path


def test_offline_checkpoint_mismatch_is_caught_before_the_data_loads(tmp_path, no_data):
    from pex_jax.train import run

    ckpt = _fake_offline_checkpoint(tmp_path / "pre" / "offline_ckpt", dataset_id="pex/pointmaze/other-v0",
                                    hidden_dims=[64, 64])
    with pytest.raises(CheckpointError) as err:
        run(tiny_config(tmp_path, algo="pex", seeds="0-1", offline_checkpoint=str(tmp_path / "pre")))
    msg = str(err.value)
    assert "pex/pointmaze/other-v0" in msg and "[64, 64]" in msg and "[1]" in msg and str(ckpt) in msg
    assert "\n" not in msg
    assert not (tmp_path / "run").exists()  # nothing was started


def test_a_fitting_offline_checkpoint_passes_the_early_check(tmp_path, no_data):
    from pex_jax.train import run

    _fake_offline_checkpoint(tmp_path / "pre" / "offline_ckpt", seeds=[0, 1, 2])
    with pytest.raises(_DataLoaded):  # the check passed and the run went on to load its data
        run(tiny_config(tmp_path, algo="pex", seeds="1-2", offline_checkpoint=str(tmp_path / "pre")))


# --- One writer ---


def test_a_second_writer_is_refused_naming_the_holder_until_the_holder_dies(tmp_path):
    run_dir = tmp_path / "run"
    code = ("import sys, time; from pex_jax.runner.run_dir import lock_run_dir\n"
            "with lock_run_dir(sys.argv[1]):\n    print('locked', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirLocked) as err, lock_run_dir(run_dir):
            pass
        assert f"process {holder.pid}" in str(err.value) and "\n" not in str(err.value)
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, the kernel drops the lock with the process
        holder.wait()
    with lock_run_dir(run_dir):
        assert (run_dir / ".lock").read_text().strip() == str(os.getpid())


def test_the_cli_on_a_locked_run_dir_stops_with_one_line_naming_the_pid(tmp_path, tiny_minari_root):
    run_dir = tmp_path / "run"
    env = {**os.environ, "MINARI_DATASETS_PATH": str(tiny_minari_root), "WANDB_MODE": "disabled",
           "JAX_PLATFORMS": "cpu"}
    argv = [sys.executable, "-m", "pex_jax.train", "--config=experiments/configs/pointmaze.py:umaze",
            f"--config.dataset_id={TINY_ID}", "--config.download=False", f"--config.run_dir={run_dir}"]
    with lock_run_dir(run_dir):
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 1 and len(errors) == 1 and "Traceback" not in done.stderr
    assert f"in use by process {os.getpid()}" in errors[0] and str(run_dir) in errors[0]


def test_a_lock_on_a_new_directory_leaves_nothing_behind_if_nothing_was_written(tmp_path):
    with lock_run_dir(tmp_path / "a" / "b" / "run"):
        pass
    assert not (tmp_path / "a").exists()
    with lock_run_dir(tmp_path / "kept") as d:
        (d / "config.json").write_text("{}")
    assert (tmp_path / "kept" / "config.json").exists()


# --- Stopping on a signal ---


def test_a_signal_inside_a_polled_loop_only_sets_the_flag_and_outside_it_stops_at_once():
    previous = signal.getsignal(signal.SIGTERM)
    with stop_on_signals() as stop:
        with pytest.raises(Preempted), stop.polled():  # the loop never polled: it stops when it ends
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)  # the handler runs between bytecodes of the main thread
            assert stop.requested and stop.signum == signal.SIGTERM
            err = stop.preempted("offline", 300, None)
        assert "offline phase at step 300" in str(err) and "--config.resume=auto" in str(err)
    assert signal.getsignal(signal.SIGTERM) is previous

    with pytest.raises(Preempted) as e, stop_on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
    assert e.value.exit_code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is previous


def test_a_stop_still_pending_when_the_polled_block_ends_stops_the_run_there():
    stop = StopRequest()
    with pytest.raises(Preempted, match="SIGINT"), stop.polled():
        stop.request(signal.SIGINT)  # arrives after the loop's last poll
    assert stop.requested


# --- How a run ended ---


def test_an_unfinished_run_records_its_status_and_a_resume_clears_it(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    config = tiny_config(tmp_path)
    logger = RunLogger(tmp_path / "run", _record(config), [0, 1], use_wandb=False)
    status, detail = end_status(Preempted(signal.SIGTERM, "online", 4000, tmp_path / "online-000000004000"))
    logger.close(status=status, detail=detail)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "preempted" and summary["preempted"]["step"] == 4000
    assert summary["preempted"]["checkpoint"] == "online-000000004000"
    assert not finished(tmp_path / "run")

    logger = RunLogger(tmp_path / "run", _record(config), [0, 1], use_wandb=False, resume=True)
    assert not (tmp_path / "run" / "summary.json").exists()  # running again: neither preempted nor finished
    logger.summary({"final/normalized_score": np.array([1.0, 2.0])})
    logger.close(status="failed", detail={"error": "after the summary"})  # it had completed: stays finished
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "finished"
    assert finished(tmp_path / "run")


class _FakeWandbRun:
    def __init__(self):
        self.summary, self.calls = {}, []

    def mark_preempting(self):
        self.calls.append("mark_preempting")

    def finish(self, exit_code=None):
        self.calls.append(("finish", exit_code))


@pytest.mark.parametrize("status", ["preempted", "failed", "diverged", "finished"])
def test_wandb_never_records_an_unfinished_run_as_finished(tmp_path, status):
    logger = RunLogger(tmp_path / "run", _record(tiny_config(tmp_path)), [0], use_wandb=False)
    run = _FakeWandbRun()
    logger._runs = [run]  # stands in for the W&B run of seed 0
    logger.close(status=status, detail={})
    if status == "finished":
        assert run.calls == [("finish", None)] and "status" not in run.summary
    else:
        preempting = ["mark_preempting"] if status == "preempted" else []
        assert run.calls == [*preempting, ("finish", 1)] and run.summary["status"] == status


def test_divergence_is_recorded_with_seed_step_and_phase():
    from pex_jax.runner.common import check_finite

    metrics = {"finite": np.array([True, False]), "critic_loss": np.array([0.5, np.nan])}
    with pytest.raises(DivergenceError) as e:
        check_finite(metrics, [3, 7], "online", 4200)
    status, detail = end_status(e.value)
    assert status == "diverged" and detail["diverged"] == {"seed": 7, "step": 4200, "phase": "online"}
    assert end_status(ValueError("boom")) == ("failed", {"error": "ValueError: boom"})


# --- Checkpoints valid at every instant ---


def _state(value: float) -> dict:
    return {"w": np.full(3, value, np.float32)}


def _saved(path: Path) -> np.ndarray:
    return serialization.from_bytes(_state(0.0), (path / "state.msgpack").read_bytes())["w"]


class _Killed(BaseException):
    """The process dies: nothing after this point runs (not even an `except OSError`)."""


def test_offline_ckpt_stays_readable_when_a_replacement_dies_between_its_renames(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    checkpoint.save_offline(run_dir / checkpoint.OFFLINE_DIR, _state(1.0), {"seeds": [0]})
    real_rename = Path.rename

    def die_on_the_second_rename(self, target):
        if checkpoint.TMP_TAG in self.name:
            raise _Killed
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", die_on_the_second_rename)
    with pytest.raises(_Killed):
        checkpoint.save_offline(run_dir / checkpoint.OFFLINE_DIR, _state(2.0), {"seeds": [0]})
    monkeypatch.undo()
    assert not (run_dir / checkpoint.OFFLINE_DIR).exists()  # the instant between the renames
    found = checkpoint.resolve_offline_path(run_dir)  # readers use the renamed-away one meanwhile
    np.testing.assert_array_equal(_saved(found), 1.0)

    done = checkpoint.recover(run_dir)  # the next start puts it back and drops the half-finished one
    assert any(line.startswith("restored") for line in done)
    np.testing.assert_array_equal(_saved(run_dir / checkpoint.OFFLINE_DIR), 1.0)
    assert sorted(p.name for p in run_dir.iterdir()) == [checkpoint.OFFLINE_DIR]


def test_a_failed_replacement_puts_the_old_offline_ckpt_back_at_once(tmp_path, monkeypatch):
    target = tmp_path / checkpoint.OFFLINE_DIR
    checkpoint.save_offline(target, _state(1.0), {"seeds": [0]})
    real_rename = Path.rename

    def disk_error(self, dest):
        if checkpoint.TMP_TAG in self.name:
            raise OSError(5, "Input/output error")
        return real_rename(self, dest)

    monkeypatch.setattr(Path, "rename", disk_error)
    with pytest.raises(CheckpointError, match="Input/output error"):
        checkpoint.save_offline(target, _state(2.0), {"seeds": [0]})
    monkeypatch.undo()
    np.testing.assert_array_equal(_saved(target), 1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoint.OFFLINE_DIR]


def test_leftover_partial_checkpoint_dirs_are_removed_when_a_run_starts(tmp_path, no_data):
    from pex_jax.train import run

    run_dir = tmp_path / "run"
    ckpts = run_dir / checkpoint.RUN_DIR
    checkpoint.save_run_state(run_dir, "offline", 100, _state(1.0), {}, keep=2)
    (ckpts / ".offline-000000000200.tmp-4242").mkdir()  # killed while writing
    (run_dir / ".offline_ckpt.tmp-4242").mkdir()
    checkpoint.save_offline(run_dir / ".offline_ckpt.old-4242", _state(3.0), {"seeds": [0]})  # killed mid-replace
    with pytest.raises(_DataLoaded):
        run(tiny_config(tmp_path))
    assert sorted(p.name for p in ckpts.iterdir()) == ["offline-000000000100"]
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock", checkpoint.RUN_DIR, checkpoint.OFFLINE_DIR]
    np.testing.assert_array_equal(_saved(run_dir / checkpoint.OFFLINE_DIR), 3.0)


# --- End to end: SIGTERM during offline training, then resume ---


OFFLINE_ARGS = {"algo": "offline", "seeds": "0-1", "hidden_dims": (32, 32), "batch_size": 64, "offline_steps": 3000,
                "offline_eval_every": 1000, "updates_per_call": 50, "eval_episodes": 1, "eval_parallel_envs": 1,
                "eval_workers": 0, "checkpoint_every": 1, "download": False, "progress": False}


def _cli_flags(run_dir: Path) -> list[str]:
    flags = [f"--config.dataset_id={TINY_ID}", f"--config.run_dir={run_dir}"]
    for k, v in OFFLINE_ARGS.items():
        flags.append(f"--config.{k}={'(' + ', '.join(map(str, v)) + ')' if isinstance(v, tuple) else v}")
    return [sys.executable, "-m", "pex_jax.train", "--config=experiments/configs/pointmaze.py:umaze", *flags]


def _offline_evals(run_dir: Path) -> list[tuple]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["seed"], r["offline_step"], r["eval/normalized_score"]) for r in rows if "eval/normalized_score" in r]


def _leaves(path: Path) -> list[np.ndarray]:
    state = serialization.msgpack_restore((path / "state.msgpack").read_bytes())
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(state)]


def sigterm_at_first_checkpoint(argv: list[str], env: dict, run_dir: Path, phase: str) -> int:
    """Start the CLI, send SIGTERM once its first `phase` checkpoint exists, and check the stop: exit 128 +
    SIGTERM, one last `error:` line naming the phase and the resume, `summary.json` preempted, a checkpoint
    written at the stop step. Returns that step."""
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        ckpt = checkpoint.latest_run_state(run_dir)
        if ckpt is not None and ckpt.name.startswith(phase):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    stderr = proc.communicate(timeout=300)[1]
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: stopped by SIGTERM in the {phase} phase") and "--config.resume=auto" in last
    summary = json.loads((run_dir / "summary.json").read_text())
    step = summary["preempted"]["step"]
    assert summary["status"] == "preempted" and summary["preempted"]["phase"] == phase
    assert checkpoint.latest_run_state(run_dir).name == f"{phase}-{step:012d}"  # written at the stop
    return step


@pytest.mark.slow
def test_sigterm_during_offline_training_checkpoints_exits_preempted_and_resumes_to_the_same_result(
        tmp_path, tiny_env):
    from experiments.configs.pointmaze import get_config
    from pex_jax.train import run

    run_dir = tmp_path / "killed"
    env = {**os.environ, "MINARI_DATASETS_PATH": str(tiny_env), "WANDB_MODE": "disabled", "JAX_PLATFORMS": "cpu"}
    step = sigterm_at_first_checkpoint(_cli_flags(run_dir), env, run_dir, "offline")
    assert 1000 <= step < 3000
    assert not (run_dir / checkpoint.OFFLINE_DIR).exists()
    first = checkpoint.load_run_state(checkpoint.latest_run_state(run_dir))[1]  # the first process's clock
    assert first["compute_s"] > 0 and first["compute_counted_from"] is None

    done = subprocess.run([*_cli_flags(run_dir), "--config.resume=auto"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished"
    timing = summary["timing"]  # both processes: the first up to its stop checkpoint, then the resumed one
    assert timing["compute_counted_from"] is None
    assert timing["compute_s"] == pytest.approx(first["compute_s"] + timing["wall_s"], abs=0.02)

    reference = get_config("umaze")
    for k, v in {**OFFLINE_ARGS, "dataset_id": TINY_ID, "run_dir": str(tmp_path / "ref")}.items():
        reference[k] = v
    run(reference)
    assert _offline_evals(run_dir) == _offline_evals(tmp_path / "ref")  # each evaluation once, equal values
    for a, b in zip(_leaves(run_dir / checkpoint.OFFLINE_DIR), _leaves(tmp_path / "ref" / checkpoint.OFFLINE_DIR),
                    strict=True):
        np.testing.assert_array_equal(a, b)  # bit-equal networks


def test_the_run_clock_carries_on_from_a_checkpoint_and_counts_from_one_written_without_it():
    assert RunClock.resumed(None).record()["compute_counted_from"] is None  # a run from its start
    carried = RunClock.resumed({"phase": "online", "step": 20000, "compute_s": 3600.0, "compute_counted_from": None})
    assert 3600.0 <= carried.record()["compute_s"] < 3601.0 and carried.record()["compute_counted_from"] is None
    legacy = RunClock.resumed({"phase": "offline", "step": 90000})  # a checkpoint from before runs had a clock
    assert legacy.record()["compute_s"] < 1.0
    assert legacy.record()["compute_counted_from"] == {"phase": "offline", "step": 90000}
    meta = RunClock.resumed({"seeds": [0]}, {"phase": "online", "step": 0})  # an offline checkpoint's meta
    assert meta.record()["compute_counted_from"] == {"phase": "online", "step": 0}


def test_a_stop_during_pretraining_checkpoints_records_preempted_and_a_resume_finishes(tmp_path, tiny_env,
                                                                                      monkeypatch):
    from pex_jax.pretrain import pretrain

    def configs(**kw):
        return [tiny_config(tmp_path, task="tiny-a", algo="offline", seeds="0-1", offline_steps=300,
                            checkpoint_every=1, eval_workers=0, **kw)]

    real_save = checkpoint.save_run_state
    task_dir = tmp_path / "pre" / "tiny-a" / "offline"
    with stop_on_signals() as stop:  # pretrain's own call finds this one installed and polls it

        def save_then_sigterm(*args, **kwargs):
            path = real_save(*args, **kwargs)
            if not stop.requested:
                stop.request(signal.SIGTERM)  # as if SIGTERM arrived while the checkpoint was written
            return path

        monkeypatch.setattr(checkpoint, "save_run_state", save_then_sigterm)
        with pytest.raises(Preempted, match="offline phase at step 100, checkpoint offline-000000000100 written"):
            pretrain(configs(), tmp_path / "pre", memory_budget=1 << 40)
    monkeypatch.setattr(checkpoint, "save_run_state", real_save)
    summary = json.loads((task_dir / "summary.json").read_text())
    assert summary["status"] == "preempted" and summary["preempted"]["step"] == 100
    assert not finished(task_dir)

    pretrain(configs(resume="auto"), tmp_path / "pre", resume=True, memory_budget=1 << 40)
    assert finished(task_dir)
    timing = json.loads((task_dir / "summary.json").read_text())["timing"]
    assert timing["compute_s"] > timing["wall_s"] and timing["compute_counted_from"] is None  # both processes
    rows = [json.loads(line) for line in (task_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [(r["seed"], r["offline_step"]) for r in rows if "eval/normalized_score" in r]
    assert evals == [(0, 100), (1, 100), (0, 200), (1, 200), (0, 300), (1, 300)]
