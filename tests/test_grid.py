"""Hyperparameter grids on the vmapped axis: parsing and refusals, the run layout, and exactness against the
separate runs (the values are traced, not compiled in)."""

import json
from pathlib import Path

import numpy as np
import pytest

from pex_jax.config import default_config
from pex_jax.errors import ConfigError
from pex_jax.grid import expand, offline_label, offline_points, parse_grid
from pex_jax.tools.report import find_run_dirs, load_run
from pex_jax.train import run
from tests.conftest import tiny_config
from tests.test_online_engine import _assert_close, _rows


def test_a_grid_spec_parses_into_fields_and_values_in_order():
    assert parse_grid("inv_temperature=10,100; expectile=0.7,0.9") == {"inv_temperature": [10.0, 100.0],
                                                                       "expectile": [0.7, 0.9]}


@pytest.mark.parametrize("spec, words", [
    ("hidden_dims=64,128", ("hidden_dims", "shape", "one process per value")),
    ("offline_ratio=0.25,0.5", ("offline_ratio", "shape")),
    ("inv_temperatur=10,100", ("unknown field", "inv_temperature")),
    ("expectile=0.7,1.5", ("expectile must be", "1.5")),
    ("beta=1,1", ("repeats",)),
    ("beta", ("<field>=<value>",)),
    ("beta=1;beta=3", ("listed twice",)),
    ("tau=fast", ("not numbers",)),
])
def test_a_bad_grid_is_refused_with_one_line_naming_the_field(spec, words):
    with pytest.raises(ConfigError) as e:
        parse_grid(spec, default_config())
    assert all(w in str(e.value) for w in words) and "\n" not in str(e.value)


def test_the_sac_backbone_refuses_a_grid():
    c = default_config()
    c.algo, c.grid = "pex_sac", "inv_temperature=10,100"
    with pytest.raises(ConfigError, match="IQL-backbone"):
        expand(c)


def test_points_are_the_product_and_share_offline_runs_where_their_offline_fields_agree():
    c = default_config()
    c.grid = "inv_temperature=10,100;expectile=0.7,0.9"
    points = expand(c)
    assert [p.grid_point for p in points] == ["inv_temperature=10,expectile=0.7", "inv_temperature=10,expectile=0.9",
                                              "inv_temperature=100,expectile=0.7",
                                              "inv_temperature=100,expectile=0.9"]
    assert [(p.inv_temperature, p.expectile) for p in points] == [(10, 0.7), (10, 0.9), (100, 0.7), (100, 0.9)]
    assert len({t for p in points for t in p.wandb.tags if t.startswith("grid-")}) == 1
    assert [offline_label(p) for p in offline_points(points)] == ["expectile=0.7", "expectile=0.9"]


def _grid_config(tmp_path, **kw):
    return tiny_config(tmp_path, algo="pex", seeds="0-1", grid="inv_temperature=1,30;expectile=0.7,0.9",
                       run_dir=str(tmp_path / "grid"), **kw)


def test_a_2x2_grid_with_2_seeds_equals_the_four_separate_runs_and_resumes_skipping_them(
        tmp_path, tiny_minari_root, monkeypatch, capsys):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tiny_minari_root))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    summaries = run(_grid_config(tmp_path))
    root = tmp_path / "grid"
    record = json.loads((root / "grid.json").read_text())
    assert record["offline_runs"] == ["pointmaze-tiny/offline@expectile=0.7", "pointmaze-tiny/offline@expectile=0.9"]
    assert len(summaries) == 4 and len(record["runs"]) == 4
    for point in record["points"]:
        values = dict(kv.split("=") for kv in point.split(","))
        inv_t, expectile = float(values["inv_temperature"]), float(values["expectile"])
        alone = tmp_path / "alone" / point
        run(tiny_config(tmp_path, algo="pex", seeds="0-1", inv_temperature=inv_t, expectile=expectile,
                        run_dir=str(alone)))
        together = root / "pointmaze-tiny" / f"pex@{point}"
        assert json.loads((together / "config.json").read_text())["grid_point"] == point
        ref = _rows(alone)  # one directory with both phases; the grid has an offline run per expectile
        _assert_close(_rows(root / "pointmaze-tiny" / f"offline@expectile={values['expectile']}"),
                      [r for r in ref if r["phase"] == "offline"])
        _assert_close(_rows(together), [r for r in ref if r["phase"] == "online"])  # losses, choices, scores
    # The points differ from each other (the values reached the device), which the comparison alone would not show.
    finals = {p: json.loads((root / "pointmaze-tiny" / f"pex@{p}" / "summary.json").read_text())
              for p in record["points"]}
    losses = [np.mean([r["train/critic_loss"] for r in _rows(root / "pointmaze-tiny" / f"pex@{p}")
                       if "train/critic_loss" in r]) for p in finals]
    assert len(set(np.round(losses, 6))) == 4
    # make report: each point is its own configuration
    labels = {load_run(d).algo for d in find_run_dirs([str(root)])}
    assert {f"pex@{p}" for p in record["points"]} <= labels
    # the same command with resume=auto finds every point finished
    capsys.readouterr()
    run(_grid_config(tmp_path, resume="auto"))
    assert "already done" in capsys.readouterr().out


def test_multi_task_commands_expand_every_task_into_its_grid_points():
    from pex_jax.grid import expand_tasks
    from pex_jax.pretrain import task_configs

    configs = task_configs("experiments/configs/pointmaze.py", ["umaze", "medium"],
                           {"grid": "inv_temperature=1,3;expectile=0.7,0.9"})
    points = expand_tasks(configs)  # what `python -m pex_jax.finetune` (and make antmaze) trains
    assert len(points) == 8 and {c.inv_temperature for c in points} == {1.0, 3.0}
    # what `python -m pex_jax.pretrain` trains: one offline run per task and expectile
    assert sorted((c.task, c.grid_point) for c in offline_points(points)) == [
        ("pointmaze-medium", "expectile=0.7"), ("pointmaze-medium", "expectile=0.9"),
        ("pointmaze-umaze", "expectile=0.7"), ("pointmaze-umaze", "expectile=0.9")]


def test_an_evaluation_worker_scores_each_grid_point_with_its_own_policy_set_settings(tiny_env):
    """Two points that differ only in the inverse temperature, the same states: a worker's evaluations differ
    (one cached evaluator per task would score the second point with the first point's temperature)."""
    import jax

    from pex_jax.agents.algorithms import ALGORITHMS, Dims
    from pex_jax.data.sources import load_transitions
    from pex_jax.envs.task import task_for_dataset
    from pex_jax.runner.evaluation import EvalTarget, _evaluate_job, acting_snapshot, state_template

    _, info = load_transitions("pex/pointmaze/tiny-v0", download=False, progress=False)
    dims = Dims(info.obs_dim, info.act_dim, tuple(map(float, info.action_low)), tuple(map(float, info.action_high)))
    base = tiny_config(Path("unused"), algo="pex", eval_epsilon=0.0)
    states = jax.device_get(state_template(ALGORITHMS["pex"], dims, base, 1))
    rates = []
    for inv_t in (0.0, 1000.0):  # uniform choice vs argmax of Q
        c = tiny_config(Path("unused"), algo="pex", eval_epsilon=1.0, inv_temperature=inv_t, grid_point=f"t={inv_t}")
        target = EvalTarget(task_for_dataset(info), info, (0,), 2, 2, dims, c.to_dict())
        rates.append(_evaluate_job(target, "pex", acting_snapshot(states), 0, 2).offline_choice_rate[0])
    assert rates[0] != rates[1]
