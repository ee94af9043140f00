"""Resume after SIGKILL, NaN guard, checkpoint write failures, reproducibility."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from pex_jax import checkpoint
from pex_jax.errors import CheckpointError, DivergenceError
from pex_jax.train import _check_finite, run
from tests.conftest import TINY_ID, tiny_config

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


@pytest.mark.slow
def test_sigkill_mid_online_then_resume_matches_an_uninterrupted_run(tmp_path, tiny_minari_root):
    ref_dir, killed_dir = tmp_path / "ref", tmp_path / "killed"
    argv, env = _cli(ref_dir, tiny_minari_root)
    subprocess.run(argv, cwd=ROOT, env=env, check=True, capture_output=True, timeout=600)

    wandb_dir = tmp_path / "wb"
    wandb_dir.mkdir()
    argv, env = _cli(killed_dir, tiny_minari_root, wandb_dir=wandb_dir)
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:  # wait for the second online checkpoint
        ckpt = checkpoint.latest_run_state(killed_dir)
        if ckpt is not None and ckpt.name.startswith("online") and int(ckpt.name.split("-")[1]) >= 600:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed_dir / "summary.json").exists()
    ids = json.loads((killed_dir / "wandb_ids.json").read_text())["seeds"]

    argv, env = _cli(killed_dir, tiny_minari_root, "--config.resume=auto", wandb_dir=wandb_dir)
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


def test_same_config_and_seeds_give_identical_results(tmp_path, tiny_env):
    a = run(tiny_config(tmp_path / "a", algo="buffer", seeds="0-1"))
    b = run(tiny_config(tmp_path / "b", algo="buffer", seeds="0-1"))
    assert a["final/normalized_score"] == b["final/normalized_score"]
    assert _evals(tmp_path / "a" / "run") == _evals(tmp_path / "b" / "run")


def test_divergence_names_seed_step_and_loss():
    metrics = {"finite": jnp.array([True, False]), "critic_loss": jnp.array([0.5, jnp.nan])}
    with pytest.raises(DivergenceError) as e:
        _check_finite(metrics, [3, 7], "online", 4200)
    msg = str(e.value)
    assert "[7]" in msg and "4200" in msg and "critic_loss" in msg and "\n" not in msg


def test_nan_in_training_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, tiny_env, monkeypatch):
    import pex_jax.train as train

    calls = {"n": 0}
    real = train._check_finite

    def poisoned(metrics, seeds, phase, step):
        calls["n"] += 1
        if phase == "online" and step >= 200:
            metrics = {**metrics, "finite": np.array([True, False])}
        return real(metrics, seeds, phase, step)

    monkeypatch.setattr(train, "_check_finite", poisoned)
    with pytest.raises(DivergenceError, match=r"seed\(s\) \[1\]"):
        run(tiny_config(tmp_path, algo="scratch", seeds="0-1", checkpoint_every=100))
    latest = checkpoint.latest_run_state(tmp_path / "run")
    assert latest is not None and latest.name == "online-000000000100"


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
