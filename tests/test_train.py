"""End to end: every algorithm runs offline -> online on a tiny generated dataset; bad input fails clearly."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pex_jax.errors import CheckpointError, ConfigError, DatasetNotFoundError
from pex_jax.seeds import parse_seeds
from pex_jax.train import run, validate_config
from tests.conftest import tiny_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "spec, expected",
    [("4", [4]), ("0-3", [0, 1, 2, 3]), ("0,3,7", [0, 3, 7]), ("0-1,5", [0, 1, 5]), (" 2 ", [2]), (3, [3])],
)
def test_seed_specifications_parse(spec, expected):
    assert parse_seeds(spec) == expected


@pytest.mark.parametrize("spec", ["", "a", "3-1", "1-", "-2", "1,,2", "0-2,1", "1.5"])
def test_bad_seed_specifications_raise_one_line_errors(spec):
    with pytest.raises(ConfigError) as e:
        parse_seeds(spec)
    assert "\n" not in str(e.value) and "SEED=" in str(e.value)


@pytest.mark.parametrize(
    "field, value, needle",
    [
        ("algo", "ppo", "unknown algorithm"),
        ("expectile", 1.0, "expectile"),
        ("expectile", 0.0, "expectile"),
        ("online_steps", -5, "online_steps"),
        ("batch_size", 0, "batch_size"),
        ("seeds", "x", "seed"),
        ("resume", "yes", "resume"),
    ],
)
def test_invalid_configs_are_rejected_before_any_work(tmp_path, field, value, needle):
    c = tiny_config(tmp_path)
    c[field] = value
    with pytest.raises(ConfigError, match=needle):
        validate_config(c)


def test_batch_larger_than_dataset_is_rejected(tmp_path, tiny_env):
    with pytest.raises(ConfigError, match="exceeds the dataset"):
        run(tiny_config(tmp_path, batch_size=10**6, buffer_capacity=10**6))


def test_missing_dataset_names_id_path_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "empty"))
    with pytest.raises(DatasetNotFoundError) as e:
        run(tiny_config(tmp_path, dataset_id="pex/pointmaze/nothere-v0"))
    assert "pex/pointmaze/nothere-v0" in str(e.value) and str(tmp_path / "empty") in str(e.value)


def test_missing_offline_checkpoint_fails_fast(tmp_path, tiny_env):
    with pytest.raises(CheckpointError, match="no offline checkpoint"):
        run(tiny_config(tmp_path, algo="pex", offline_checkpoint=str(tmp_path / "nope")))


@pytest.fixture(scope="module")
def offline_run(tiny_minari_root, tmp_path_factory):
    """One shared offline pre-training (2 seeds) that pex and direct reuse, as in the reference."""
    tmp = tmp_path_factory.mktemp("offline")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(tiny_minari_root))
        mp.setenv("WANDB_MODE", "disabled")
        summary = run(tiny_config(tmp, algo="offline", seeds="0-1"))
    return tmp / "run", summary


def _metrics(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def test_offline_phase_writes_checkpoint_metrics_and_summary(offline_run):
    run_dir, summary = offline_run
    assert (run_dir / "offline_ckpt" / "state.msgpack").exists()
    rows = [r for r in _metrics(run_dir) if "eval/normalized_score" in r]
    assert {(r["seed"], r["offline_step"]) for r in rows} == {(s, k) for s in (0, 1) for k in (100, 200)}
    assert all(r["phase"] == "offline" and r["online_step"] == 0 for r in rows)
    assert len(summary["final/normalized_score"]) == 2
    assert np.isfinite(summary["final/normalized_score_mean"])


@pytest.mark.parametrize("algo", ["pex", "direct", "buffer", "scratch"])
def test_online_algorithms_run_end_to_end(algo, offline_run, tiny_env, tmp_path):
    offline_dir, _ = offline_run
    extra = {"offline_checkpoint": str(offline_dir)} if algo in ("pex", "direct") else {}
    summary = run(tiny_config(tmp_path, algo=algo, seeds="0-1", **extra))
    rows = _metrics(tmp_path / "run")
    evals = [r for r in rows if r["phase"] == "online" and "eval/normalized_score" in r]
    assert sorted({r["online_step"] for r in evals}) == [0, 150, 300]  # step 0: before any online update
    train = [r for r in rows if "train/critic_loss" in r]
    assert train and all(np.isfinite(r["train/critic_loss"]) for r in train)
    assert ("train/offline_choice_rate" in train[-1]) == (algo == "pex")
    assert len(summary["online/normalized_score"]) == 2


def test_pex_reuses_only_the_requested_seeds_of_a_checkpoint(offline_run, tiny_env, tmp_path):
    offline_dir, _ = offline_run
    run(tiny_config(tmp_path, algo="pex", seeds="1", offline_checkpoint=str(offline_dir), online_steps=150))
    with pytest.raises(CheckpointError, match="seeds"):
        run(tiny_config(tmp_path / "b", algo="pex", seeds="0-2", offline_checkpoint=str(offline_dir)))


def test_existing_run_directory_is_not_overwritten_without_resume(tmp_path, tiny_env, offline_run):
    offline_dir, _ = offline_run
    with pytest.raises(ConfigError, match="resume"):
        run(tiny_config(offline_dir.parent, algo="offline", seeds="0"))


def test_cli_prints_a_single_line_error_and_exits_nonzero_without_the_dataset(tmp_path):
    env = {**os.environ, "MINARI_DATASETS_PATH": str(tmp_path), "WANDB_MODE": "disabled", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-m", "pex_jax.train", "--config=experiments/configs/antmaze.py:umaze",
         "--config.seeds=0-9", "--config.download=False", f"--config.run_dir={tmp_path / 'r'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "D4RL/antmaze/umaze-v1" in errors[0]
    assert "Traceback" not in proc.stderr


def test_goal_reaching_transitions_become_terminal_only_when_asked():
    from pex_jax.rollout import goal_terminals

    terminals, rewards = np.array([0.0, 0.0, 1.0, 0.0]), np.array([0.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(goal_terminals(terminals, rewards, False), [0, 0, 1, 0])
    np.testing.assert_array_equal(goal_terminals(terminals, rewards, True), [0, 1, 1, 0])
    assert goal_terminals(np.array([True, False]), np.zeros(2), False).dtype == np.float32


@pytest.mark.slow
def test_runner_sharded_over_two_host_devices_matches_the_single_device_run(tmp_path, tiny_minari_root):
    """Seeds split over 2 (forced) CPU devices: same training metrics as one device, up to float rounding."""
    script = (
        "import sys; sys.path.insert(0, sys.argv[2]); from pathlib import Path; import jax;"
        "from tests.conftest import tiny_config; from pex_jax.train import run;"
        "print('devices', jax.device_count());"
        "run(tiny_config(Path(sys.argv[1]), algo='pex', seeds='0-1', online_steps=300))"
    )
    out = {}
    for name, flags in (("one", ""), ("two", "--xla_force_host_platform_device_count=2")):
        env = {**os.environ, "MINARI_DATASETS_PATH": str(tiny_minari_root), "WANDB_MODE": "disabled",
               "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags}
        proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / name), str(ROOT)], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"devices {1 if name == 'one' else 2}" in proc.stdout
        out[name] = _metrics(tmp_path / name / "run")
    assert len(out["one"]) == len(out["two"])
    for a, b in zip(out["one"], out["two"], strict=True):
        for k, v in a.items():
            if k.startswith(("train/", "eval/")) and "per_s" not in k and isinstance(v, float):
                # A sampled policy-set choice can flip when two Q-values differ by a rounding error.
                tol = 0.02 if "choice_rate" in k else 1e-4
                assert b[k] == pytest.approx(v, rel=1e-3, abs=tol), k
