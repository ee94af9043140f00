"""Packed online checkpoints: the replay reduced to its actions, re-simulated on resume, checked bit for bit."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pex_jax import checkpoint
from pex_jax.errors import CheckpointError
from pex_jax.tools import pack_checkpoints
from pex_jax.train import run
from tests.conftest import tiny_config

ONLINE = dict(algo="pex", seeds="0-1", online_steps=600, checkpoint_every=200, keep_checkpoints=10,
              online_eval_every=200)


def _evals(run_dir: Path) -> list[tuple]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["seed"], r["phase"], r["online_step"], r["eval/normalized_score"], r["eval/return"])
            for r in rows if "eval/normalized_score" in r]


def _only_packed_at(run_dir: Path, step: int) -> Path:
    """Turn a finished run dir into one stopped at `step` whose machine kept nothing but the packed copy
    (packed once at the checkpoint before, then at `step`, as a run packed at every stop is)."""
    (run_dir / "summary.json").unlink()
    root = run_dir / checkpoint.RUN_DIR
    full = root / f"online-{step:012d}"
    full.rename(root / "aside")
    assert pack_checkpoints.main([str(run_dir)]) == 0  # packs the newest online checkpoint: the one before
    (root / "aside").rename(full)
    assert pack_checkpoints.main([str(run_dir)]) == 0
    packed = full.with_name(full.name + checkpoint.PACKED_SUFFIX)
    assert [p.name for p in root.glob(f"*{checkpoint.PACKED_SUFFIX}")] == [packed.name]  # the older copy is gone
    assert sorted(p.name for p in packed.glob("actions-*")) == [  # its actions to 200 kept as they were
        f"actions-{0:012d}-{200:012d}.npy", f"actions-{200:012d}-{step:012d}.npy"]
    raw, _ = checkpoint.load_run_state(packed)
    assert sorted(raw["buffer"]) == ["actions", "ptr", "size"]  # no observations, rewards or terminals
    full_raw, _ = checkpoint.load_run_state(full)
    assert np.array_equal(raw["buffer"]["actions"], full_raw["buffer"]["rows"]["actions"])
    for p in root.glob("online-*"):
        if not p.name.endswith(checkpoint.PACKED_SUFFIX):
            shutil.rmtree(p)
    return packed


@pytest.fixture(scope="module")
def finished_runs(tiny_minari_root, tmp_path_factory):
    """One uninterrupted run (the reference) and a copy of it to interrupt."""
    base = tmp_path_factory.mktemp("packed")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(tiny_minari_root))
        mp.setenv("WANDB_MODE", "disabled")
        ref = run(tiny_config(base / "ref", **ONLINE))
    return base, ref


def test_a_run_resumed_from_a_packed_checkpoint_equals_the_uninterrupted_run(finished_runs, tmp_path, tiny_env):
    base, ref = finished_runs
    run_dir = tmp_path / "run"
    shutil.copytree(base / "ref" / "run", run_dir)
    packed = _only_packed_at(run_dir, 400)
    _, host = checkpoint.load_run_state(packed)
    assert host["boundaries"] == [0, 200]  # every reset of the phase, as the replay needs them
    assert host["compute_s"] > 0 and host["compute_counted_from"] is None  # the run clock travels with it

    resumed = run(tiny_config(tmp_path, **ONLINE, resume="auto"))
    assert resumed["final/normalized_score"] == ref["final/normalized_score"]
    timing = resumed["timing"]  # the first process to its 400-step checkpoint, then the resumed one
    assert timing["compute_s"] == pytest.approx(host["compute_s"] + timing["wall_s"], abs=0.02)
    assert _evals(run_dir) == _evals(base / "ref" / "run")  # every evaluation after 400 again, bit-equal


def test_a_replay_that_does_not_reproduce_is_refused_and_names_the_way_out(finished_runs, tmp_path, tiny_env):
    base, _ = finished_runs
    run_dir = tmp_path / "run"
    shutil.copytree(base / "ref" / "run", run_dir)
    packed = _only_packed_at(run_dir, 400)
    host = json.loads((packed / "host.json").read_text())
    host["boundaries"] = [0]  # a reset the replay does not know about: other transitions from step 200 on
    (packed / "host.json").write_text(json.dumps(host))
    with pytest.raises(CheckpointError, match="does not reproduce.*delete the packed one"):
        run(tiny_config(tmp_path, **ONLINE, resume="auto"))


def test_packing_refuses_a_replay_that_dropped_its_oldest_steps(tmp_path, tiny_env):
    run(tiny_config(tmp_path, **{**ONLINE, "buffer_capacity": 300}))
    full = tmp_path / "run" / checkpoint.RUN_DIR / f"online-{400:012d}"
    with pytest.raises(CheckpointError, match="300 of 400 online steps.*buffer_capacity"):
        checkpoint.pack_run_state(full)
    assert pack_checkpoints.main([str(tmp_path / "run")]) == 1


def test_a_packed_copy_outlives_checkpoint_pruning_so_the_next_pack_stores_only_new_actions(
        finished_runs, tmp_path, tiny_env):
    base, _ = finished_runs
    run_dir, root = tmp_path / "run", tmp_path / "run" / checkpoint.RUN_DIR
    shutil.copytree(base / "ref" / "run", run_dir)
    (run_dir / "summary.json").unlink()
    for p in root.glob("online-*"):  # a machine that kept only the packed copy at 200
        if p.name != f"online-{200:012d}":
            shutil.rmtree(p)
    packed = pack_checkpoints.pack_newest(root)
    shutil.rmtree(root / f"online-{200:012d}")
    old_chunk = {p.name: p.read_bytes() for p in packed.glob("actions-*")}
    run(tiny_config(tmp_path, **{**ONLINE, "keep_checkpoints": 1}, resume="auto"))  # as the long runs are kept

    assert sorted(p.name for p in root.iterdir()) == [packed.name, f"online-{400:012d}"]  # offline-100 pruned
    newer = pack_checkpoints.pack_newest(root)
    assert not packed.exists()  # replaced by the newer copy
    assert sorted(p.name for p in newer.glob("actions-*")) == [*old_chunk, f"actions-{200:012d}-{400:012d}.npy"]
    assert all((newer / name).read_bytes() == data for name, data in old_chunk.items())  # the same blob for git
