"""Resume after SIGKILL, a NaN found by the real update and detector, checkpoint write failures,
reproducibility."""

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization

from pex_jax import checkpoint
from pex_jax.errors import CheckpointError, DivergenceError
from pex_jax.finetune import finetune
from pex_jax.runner.common import check_finite
from pex_jax.train import run
from tests.conftest import TINY_ID, tiny_config
from tests.test_run_dir import sigterm_at_first_checkpoint

ROOT = Path(__file__).resolve().parents[1]

CLI_TINY = [
    "--config=experiments/configs/pointmaze.py:umaze", f"--config.dataset_id={TINY_ID}", "--config.algo=pex",
    "--config.seeds=0-1", "--config.hidden_dims=(32, 32)", "--config.batch_size=64", "--config.offline_steps=200",
    "--config.offline_eval_every=100", "--config.updates_per_call=100", "--config.online_steps=1200",
    "--config.learning_starts=100", "--config.online_eval_every=300", "--config.log_every=100",
    "--config.checkpoint_every=300", "--config.eval_episodes=2", "--config.eval_parallel_envs=2",
    "--config.buffer_capacity=2000", "--config.download=False", "--config.progress=False",
]


def _cli(run_dir, root, *extra, wandb_dir=None):
    env = {**os.environ, "MINARI_DATASETS_PATH": str(root), "WANDB_MODE": "disabled", "JAX_PLATFORMS": "cpu"}
    if wandb_dir is not None:
        env.update(WANDB_MODE="offline", WANDB_DIR=str(wandb_dir), WANDB_SILENT="true")
        for var in ("WANDB_SWEEP_ID", "WANDB_RUN_ID"):
            env.pop(var, None)
    return [sys.executable, "-m", "pex_jax.train", *CLI_TINY, f"--config.run_dir={run_dir}", *extra], env


def _evals(run_dir):
    rows = [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [(r["seed"], r["phase"], r["offline_step"], r["online_step"], r["eval/normalized_score"],
             r["eval/return"]) for r in rows if "eval/normalized_score" in r]


def _children(pid: int) -> list[int]:
    """Child processes of `pid` (env and evaluation workers), read from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 1], ids=["in_process", "env_and_eval_workers"])
def test_sigkill_mid_online_then_resume_matches_an_uninterrupted_run(tmp_path, tiny_minari_root, workers):
    """With eval workers the checkpoint's own evaluation is still in flight when it is written: the
    resume must run it again, once, with the checkpoint's states."""
    flags = (f"--config.env_workers={workers}", f"--config.eval_workers={workers}")
    ref_dir, killed_dir = tmp_path / "ref", tmp_path / "killed"
    argv, env = _cli(ref_dir, tiny_minari_root, *flags)
    subprocess.run(argv, cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)

    wandb_dir = tmp_path / "wb"
    wandb_dir.mkdir()
    argv, env = _cli(killed_dir, tiny_minari_root, *flags, wandb_dir=wandb_dir)
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:  # wait for the second online checkpoint
        ckpt = checkpoint.latest_run_state(killed_dir)
        if ckpt is not None and ckpt.name.startswith("online") and int(ckpt.name.split("-")[1]) >= 600:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    children = _children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for pid in children:  # a pool's evaluation worker outlives a SIGKILLed trainer
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not (killed_dir / "summary.json").exists()
    ids = json.loads((killed_dir / "wandb_ids.json").read_text())["seeds"]
    _, host = checkpoint.load_run_state(checkpoint.latest_run_state(killed_dir))
    assert (host["pending_eval"] is not None) == (workers > 0)  # the path under test is taken

    argv, env = _cli(killed_dir, tiny_minari_root, *flags, "--config.resume=auto", wandb_dir=wandb_dir)
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming" in done.stdout
    ref = json.loads((ref_dir / "summary.json").read_text())
    resumed = json.loads((killed_dir / "summary.json").read_text())
    assert resumed["per_seed"] == ref["per_seed"]  # bit-equal final scores
    assert _evals(killed_dir) == _evals(ref_dir)  # every evaluation, once, with equal values
    assert json.loads((killed_dir / "wandb_ids.json").read_text())["seeds"] == ids
    run_ids = sorted(p.name.split("-", 3)[3] for p in (wandb_dir / "wandb").glob("offline-run-*"))
    assert run_ids == sorted([*ids.values()] * 2)  # the resumed process continued the same W&B runs


@pytest.mark.slow
def test_sigterm_during_the_online_phase_checkpoints_exits_preempted_and_a_resume_finishes(tmp_path,
                                                                                          tiny_minari_root):
    run_dir = tmp_path / "stopped"
    argv, env = _cli(run_dir, tiny_minari_root, "--config.algo=buffer", "--config.env_workers=1")
    step = sigterm_at_first_checkpoint(argv, env, run_dir, "online")
    assert 300 <= step < 1200

    argv, env = _cli(run_dir, tiny_minari_root, "--config.algo=buffer", "--config.env_workers=1",
                     "--config.resume=auto")
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    online_evals = [e for e in _evals(run_dir) if e[1] == "online"]
    assert sorted({e[3] for e in online_evals}) == [0, 300, 600, 900, 1200]  # every evaluation, once per seed
    assert len(online_evals) == 2 * 5


def test_same_config_and_seeds_give_identical_results(tmp_path, tiny_env):
    a = run(tiny_config(tmp_path / "a", algo="buffer", seeds="0-1"))
    b = run(tiny_config(tmp_path / "b", algo="buffer", seeds="0-1"))
    assert a["final/normalized_score"] == b["final/normalized_score"]
    assert _evals(tmp_path / "a" / "run") == _evals(tmp_path / "b" / "run")


def test_divergence_names_seed_step_and_loss():
    metrics = {"finite": jnp.array([True, False]), "critic_loss": jnp.array([0.5, jnp.nan])}
    with pytest.raises(DivergenceError) as e:
        check_finite(metrics, [3, 7], "online", 4200)
    msg = str(e.value)
    assert "[7]" in msg and "4200" in msg and "critic_loss" in msg and "\n" not in msg


@pytest.fixture(scope="module")
def offline_ckpt(tiny_minari_root, tmp_path_factory):
    """A real pre-training of seeds 3-4 (seed 4 is row 1, so a seed/row mix-up shows)."""
    tmp = tmp_path_factory.mktemp("nan_offline")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(tiny_minari_root))
        mp.setenv("WANDB_MODE", "disabled")
        run(tiny_config(tmp, algo="offline", seeds="3-4", offline_steps=100))
    return checkpoint.resolve_offline_path(tmp / "run")


def _copy_with_nan_value_net(src: Path, dst: Path, row: int | None) -> Path:
    """A copy of an offline checkpoint whose `row`-th seed has a NaN value network (None: a clean copy).

    The value net only enters the critic's target, so acting and evaluation stay finite until the
    first update spreads the NaN: the real update and the real detector have to find it."""
    state = serialization.msgpack_restore((src / "state.msgpack").read_bytes())
    if row is not None:
        def poison(x):
            x = np.array(x)
            x[row] = np.nan
            return x

        state["value"]["params"] = jax.tree.map(poison, state["value"]["params"])
    dst.mkdir(parents=True)
    (dst / "state.msgpack").write_bytes(serialization.msgpack_serialize(state))
    (dst / "meta.json").write_bytes((src / "meta.json").read_bytes())
    return dst


# Updates start after step 50; the log and the checkpoint at step 100 are the first to read the flag.
NAN_RUN = {"algo": "pex", "seeds": "3-4", "learning_starts": 50, "log_every": 50, "checkpoint_every": 100,
           "online_steps": 300, "online_eval_every": 150}


def _rows(run_dir) -> list[dict]:
    return [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def _assert_stopped_before_step_100(run_dir: Path) -> None:
    """What was logged before the divergence is there, nothing from the step that found it."""
    rows = _rows(run_dir)
    assert {(r["seed"], r["online_step"]) for r in rows if "eval/normalized_score" in r} == {(3, 0), (4, 0)}
    assert all(np.isfinite(r["eval/normalized_score"]) for r in rows if "eval/normalized_score" in r)
    assert {r["online_step"] for r in rows if r["phase"] == "online"} == {0, 50}


def test_nan_in_one_seeds_network_is_found_by_the_real_update_and_stops_every_seed(tmp_path, tiny_env,
                                                                                   offline_ckpt):
    source = _copy_with_nan_value_net(offline_ckpt, tmp_path / "offline", row=1)
    source_bytes = (source / "state.msgpack").read_bytes()
    with pytest.raises(DivergenceError, match=r"seed\(s\) \[4\] in the online .* at step 100") as e:
        run(tiny_config(tmp_path, offline_checkpoint=str(source), **NAN_RUN))
    assert (e.value.seed, e.value.step, e.value.phase) == (4, 100, "online")
    run_dir = tmp_path / "run"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["seeds"] == [3, 4]
    assert summary["diverged"] == {"seed": 4, "step": 100, "phase": "online"}
    assert "final/normalized_score" not in summary
    _assert_stopped_before_step_100(run_dir)
    assert checkpoint.latest_run_state(run_dir) is None  # the checkpoint due at step 100 was not written
    assert (source / "state.msgpack").read_bytes() == source_bytes  # the checkpoint it started from stays


def test_nan_in_one_task_stops_the_multitask_process_and_marks_the_other_task_failed(tmp_path, tiny_env,
                                                                                    offline_ckpt):
    run_dir = tmp_path / "multi"
    _copy_with_nan_value_net(offline_ckpt, run_dir / "tiny-a" / "offline", row=None)
    _copy_with_nan_value_net(offline_ckpt, run_dir / "tiny-b" / "offline", row=1)
    configs = [tiny_config(tmp_path, task=name, dataset_id=TINY_ID, **NAN_RUN) for name in ("tiny-a", "tiny-b")]
    with pytest.raises(DivergenceError, match=r"seed\(s\) \[4\] in the online \(tiny-b\) phase") as e:
        finetune(configs, run_dir)
    assert (e.value.task_index, e.value.seed, e.value.step) == (1, 4, 100)
    diverged = json.loads((run_dir / "tiny-b" / "pex" / "summary.json").read_text())
    assert diverged["status"] == "diverged"
    assert diverged["diverged"] == {"seed": 4, "step": 100, "phase": "online"}
    failed = json.loads((run_dir / "tiny-a" / "pex" / "summary.json").read_text())
    assert failed["status"] == "failed" and "\n" not in failed["error"]
    assert "tiny-b" in failed["error"] and "diverged" in failed["error"]
    for name in ("tiny-a", "tiny-b"):
        _assert_stopped_before_step_100(run_dir / name / "pex")
    assert not list(run_dir.glob("_online-*/checkpoints/online-*"))


def test_failed_checkpoint_write_is_reported_and_earlier_checkpoints_survive(tmp_path, monkeypatch):
    checkpoint.save_run_state(tmp_path, "online", 100, {"x": np.ones(3)}, {"stats": {}}, keep=2)

    real_open = open

    def full_disk(path, mode="r", *args, **kwargs):
        if "w" in mode and ".tmp-" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", full_disk)
    with pytest.raises(CheckpointError, match="No space left on device"):
        checkpoint.save_run_state(tmp_path, "online", 200, {"x": np.ones(3)}, {"stats": {}}, keep=2)
    monkeypatch.undo()
    assert checkpoint.latest_run_state(tmp_path).name == "online-000000000100"
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    for step in (100, 200, 300):
        checkpoint.save_run_state(tmp_path, "online", step, {"x": np.full(2, step)}, {}, keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["online-000000000200", "online-000000000300"]
    raw, host = checkpoint.load_run_state(checkpoint.latest_run_state(tmp_path))
    np.testing.assert_array_equal(raw["x"], [300, 300])
    assert host["step"] == 300
