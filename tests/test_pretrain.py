"""Multi-task offline pre-training (`pex_jax.pretrain`): same results as one task at a time."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import serialization

from pex_jax import checkpoint
from pex_jax.agents.algorithms import Dims
from pex_jax.errors import ConfigError
from pex_jax.pretrain import group_tasks, pretrain, task_configs
from pex_jax.runner.common import call_groups
from pex_jax.train import run
from tests.conftest import TINY2_ID, TINY_ID, tiny_config

ROOT = Path(__file__).resolve().parents[1]


def _task(tmp_path, name, dataset_id, **kw):
    return tiny_config(tmp_path, task=name, dataset_id=dataset_id, algo="offline", seeds="0-1", **kw)


def _saved_leaves(run_dir) -> dict[str, np.ndarray]:
    """Every array of an offline checkpoint, keyed by its path in the state dict."""
    state = serialization.msgpack_restore((checkpoint.resolve_offline_path(run_dir) / "state.msgpack").read_bytes())
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_flatten_with_path(state)[0]}


def test_each_pretrained_task_equals_its_single_task_offline_run(tmp_path, two_task_root, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(two_task_root))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    configs = [_task(tmp_path, "tiny-a", TINY_ID), _task(tmp_path, "tiny-b", TINY2_ID)]
    summaries = pretrain(configs, tmp_path / "multi", memory_budget=1 << 40)
    assert sorted(summaries) == ["tiny-a", "tiny-b"]

    for name, dataset_id in (("tiny-a", TINY_ID), ("tiny-b", TINY2_ID)):
        alone = run(_task(tmp_path, name, dataset_id, run_dir=str(tmp_path / "alone" / name)))
        multi_dir = tmp_path / "multi" / name / "offline"
        assert json.loads((multi_dir / "config.json").read_text())["dataset_id"] == dataset_id
        a, m = _saved_leaves(tmp_path / "alone" / name), _saved_leaves(multi_dir)
        assert sorted(a) == sorted(m) and len(a) > 10
        for k in a:  # same batches and keys; only float summation order may differ
            np.testing.assert_allclose(m[k], a[k], rtol=1e-3, atol=1e-4, err_msg=k)
        assert set(summaries[name]["per_seed"]) == {"0", "1"} and len(alone["final/normalized_score"]) == 2

    # pex fine-tunes from a pre-trained task like from any offline run directory
    out = run(tiny_config(tmp_path, task="tiny-b", dataset_id=TINY2_ID, algo="pex", seeds="0-1",
                          offline_checkpoint=str(tmp_path / "multi" / "tiny-b" / "offline"),
                          run_dir=str(tmp_path / "pex")))
    assert len(out["online/normalized_score"]) == 2
    pre = summaries["tiny-b"]["per_seed"]  # the final table carries the pre-training's scores along
    assert out["offline/normalized_score"] == [pre[s]["offline/normalized_score"] for s in ("0", "1")]


def test_tasks_with_their_own_traced_hyperparameters_share_a_call_and_each_trains_as_alone(
        tmp_path, two_task_root, monkeypatch, capsys):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(two_task_root))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    configs = [_task(tmp_path, "tiny-a", TINY_ID, expectile=0.9), _task(tmp_path, "tiny-b", TINY2_ID, expectile=0.7)]
    pretrain(configs, tmp_path / "multi", memory_budget=1 << 40)
    assert "in 1 call group(s) [['tiny-a', 'tiny-b']]" in capsys.readouterr().out
    multi_dir = tmp_path / "multi" / "tiny-b" / "offline"
    assert json.loads((multi_dir / "config.json").read_text())["expectile"] == 0.7
    run(_task(tmp_path, "tiny-b", TINY2_ID, expectile=0.7, run_dir=str(tmp_path / "alone")))
    a, m = _saved_leaves(tmp_path / "alone"), _saved_leaves(multi_dir)
    for k in a:  # its own expectile, traced in the shared call: the same parameters as it alone
        np.testing.assert_allclose(m[k], a[k], rtol=1e-3, atol=1e-4, err_msg=k)


def test_tasks_that_differ_in_a_compiled_setting_form_separate_call_groups(tmp_path):
    dims = [Dims(4, 2, (-1.0, -1.0), (1.0, 1.0))] * 3
    configs = [_task(tmp_path, "a", TINY_ID), _task(tmp_path, "b", TINY2_ID, expectile=0.5),
               _task(tmp_path, "c", TINY2_ID, batch_size=16)]
    assert call_groups(configs, dims) == [[0, 1], [2]]  # batch_size is a shape; expectile is traced
    sac = [tiny_config(tmp_path, task="a", algo="sac"), tiny_config(tmp_path, task="b", algo="sac", tau=0.01)]
    assert call_groups(sac, dims[:2]) == [[0], [1]]  # the SAC backbone compiles its settings in


def test_tasks_are_grouped_while_their_padded_stack_fits_the_budget():
    assert group_tasks([100, 100, 100], row_bytes=1, budget=300) == [[0, 1, 2]]
    assert group_tasks([100, 100, 100], row_bytes=1, budget=200) == [[0, 1], [2]]
    assert group_tasks([100, 300, 100], row_bytes=1, budget=350) == [[0], [1], [2]]  # padding counts
    assert group_tasks([500], row_bytes=1, budget=10) == [[0]]  # too big alone: runs alone
    assert group_tasks([100, 100, 100], row_bytes=1, budget=100, data=["u", "u", "u"]) == [[0, 1, 2]]  # one copy


def test_task_configs_apply_command_line_overrides_to_every_task():
    configs = task_configs(str(ROOT / "experiments/configs/antmaze.py"), ["umaze", "large-play"],
                           {"seeds": "0-9", "hidden_dims": (64, 64), "wandb.project": "p"})
    assert [c.dataset_id for c in configs] == ["D4RL/antmaze/umaze-v1", "D4RL/antmaze/large-play-v1"]
    assert all(c.seeds == "0-9" and c.hidden_dims == (64, 64) and c.wandb.project == "p" for c in configs)
    with pytest.raises(ConfigError, match="unknown AntMaze task 'nope'"):
        task_configs(str(ROOT / "experiments/configs/antmaze.py"), ["nope"], {})


def test_make_antmaze_without_data_fails_with_the_data_layers_error(tmp_path):
    env = {**os.environ, "MINARI_DATASETS_PATH": str(tmp_path / "empty"), "WANDB_MODE": "disabled",
           "HF_HUB_OFFLINE": "1", "JAX_PLATFORMS": "cpu"}
    argv = [sys.executable, "-m", "pex_jax.pretrain", "--config=experiments/configs/antmaze.py",
            "--tasks=umaze,medium-play", "--config.seeds=0-9", "--config.download=False",
            f"--config.run_dir={tmp_path / 'runs'}"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "D4RL/antmaze/umaze-v1" in last and str(tmp_path / "empty") in last


def test_interrupted_pretraining_resumes_to_the_uninterrupted_result(tmp_path, two_task_root, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(two_task_root))
    monkeypatch.setenv("WANDB_MODE", "disabled")

    def configs(**kw):
        return [_task(tmp_path, "tiny-a", TINY_ID, checkpoint_every=1, **kw),
                _task(tmp_path, "tiny-b", TINY2_ID, checkpoint_every=1, **kw)]

    pretrain(configs(), tmp_path / "ref", memory_budget=1 << 40)

    real_save = checkpoint.save_run_state

    def save_then_crash(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt  # the process dies right after its first checkpoint (step 100 of 200)

    monkeypatch.setattr(checkpoint, "save_run_state", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        pretrain(configs(), tmp_path / "killed", memory_budget=1 << 40)
    monkeypatch.setattr(checkpoint, "save_run_state", real_save)
    killed = json.loads((tmp_path / "killed" / "tiny-a" / "offline" / "summary.json").read_text())
    assert killed["status"] == "failed"  # a resume must not skip it as done

    pretrain(configs(resume="auto"), tmp_path / "killed", resume=True, memory_budget=1 << 40)
    for name in ("tiny-a", "tiny-b"):
        ref, got = tmp_path / "ref" / name / "offline", tmp_path / "killed" / name / "offline"
        a, b = _saved_leaves(ref), _saved_leaves(got)
        assert all(np.array_equal(a[k], b[k]) for k in a)  # bit-equal
        lines = [json.loads(x) for x in (got / "metrics.jsonl").read_text().splitlines()]
        for kind in ("train/critic_loss", "eval/normalized_score"):  # each logged once per step and seed
            assert [(r["seed"], r["offline_step"]) for r in lines if kind in r] == [(0, 100), (1, 100), (0, 200),
                                                                                  (1, 200)]
        assert json.loads((got / "summary.json").read_text())["per_seed"] == \
            json.loads((ref / "summary.json").read_text())["per_seed"]


def test_a_typo_in_the_fine_tuning_algorithm_fails_before_any_pre_training(tmp_path):
    configs = [tiny_config(tmp_path, task="a", dataset_id="pex/pointmaze/absent-v0", algo="pexx")]  # no data either
    with pytest.raises(ConfigError, match="unknown algorithm 'pexx'"):
        pretrain(configs, tmp_path / "multi")
    assert not (tmp_path / "multi").exists()
