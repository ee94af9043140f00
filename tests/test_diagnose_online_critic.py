"""The online-start critic diagnosis: it re-simulates a run's first rows exactly and reads every part from a run."""

import json
from pathlib import Path

import numpy as np
import pytest

from experiments import diagnose_online_critic as doc
from pex_jax import checkpoint
from pex_jax.agents.algorithms import Dims
from pex_jax.data.sources import load_transitions
from pex_jax.tools import pack_checkpoints
from pex_jax.train import run
from tests.conftest import tiny_config


def test_the_first_logged_step_is_the_first_log_after_updates_start():
    class C(dict):
        __getattr__ = dict.__getitem__

    assert doc.first_logged_step(C(learning_starts=5000, log_every=1000)) == 6000  # the paper runs' 6k
    assert doc.first_logged_step(C(learning_starts=100, log_every=100)) == 200
    assert doc.first_logged_step(C(learning_starts=150, log_every=100)) == 200


@pytest.fixture(scope="module")
def packed_pex_run(tiny_minari_root, tmp_path_factory):
    """A finished tiny `pex` run with its offline checkpoint and a packed copy of its last online checkpoint."""
    base = tmp_path_factory.mktemp("online_critic")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(tiny_minari_root))
        mp.setenv("WANDB_MODE", "disabled")
        c = tiny_config(base, algo="pex", seeds="0-1", online_steps=500, checkpoint_every=300, keep_checkpoints=5)
        run(c)
    assert pack_checkpoints.main([c.run_dir]) == 0
    return c


def test_the_warmup_rows_re_simulated_from_the_packed_copy_are_the_ones_the_run_stored(packed_pex_run, tiny_env):
    c = packed_pex_run
    data, info = load_transitions(c.dataset_id, download=False, progress=False)
    dims = Dims(info.obs_dim, info.act_dim, tuple(np.ravel(info.action_low).tolist()),
                tuple(np.ravel(info.action_high).tolist()))
    rows = doc.warmup_rows(Path(c.run_dir), 250, dims, info, [0, 1])
    full = [p for p in sorted((Path(c.run_dir) / checkpoint.RUN_DIR).glob("online-*"))
            if not p.name.endswith(checkpoint.PACKED_SUFFIX)]
    stored, _ = checkpoint.load_run_state(full[-1])
    for k, v in rows.items():
        assert v.shape[:2] == (2, 250)
        np.testing.assert_array_equal(v, np.asarray(stored["buffer"]["rows"][k])[0, :, :250], err_msg=k)


def test_every_part_reads_the_run_and_the_batch_mix_matches_its_arithmetic(packed_pex_run, tiny_env, tmp_path):
    c = packed_pex_run
    packed = next((Path(c.run_dir) / checkpoint.RUN_DIR).glob(f"online-*{checkpoint.PACKED_SUFFIX}"))
    out = tmp_path / "out.json"
    assert doc.main(["--run", c.run_dir, "--online", c.run_dir, "--checkpoints", str(packed), "--updates", "100",
                     "--n", "500", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["seeds"] == [0, 1] and result["offline_step"] == c.offline_steps
    starts = {r["start"]: r for r in result["restart"]}
    assert list(starts) == ["offline state", "offline Adam, target := critic", "online start (pex)",
                            "online start (direct)"]
    assert all(list(r["dataset_q"]) == ["1", "100"] for r in starts.values())
    # same batches, same params: only the optimizer and the target differ, and they change the critic
    assert starts["offline state"]["dataset_q"]["100"] != starts["online start (pex)"]["dataset_q"]["100"]

    (mix,) = result["batch_mix"]
    assert mix["warmup_steps"] == c.learning_starts and mix["logged_at"] == 200
    assert mix["logged_q"] is not None and len(mix["logged_q"]) == 2
    for d, o, e in zip(result["offline_dataset_q"], mix["online_rows_q"], mix["expected_batch_q"], strict=True):
        assert e == pytest.approx(c.offline_ratio * d + (1 - c.offline_ratio) * o, abs=0.01)

    (late,) = result["along_the_run"]
    assert late["online_step"] == 300
    assert late["dataset_q"] != result["offline_dataset_q"]  # 200 online updates moved the critic
    assert all(np.isfinite(late["dataset_q"] + late["warmup_q"]))
