"""The critic diagnosis: its regions, its hover arithmetic, and both kinds of checkpoint it reads."""

import json

import numpy as np
import pytest

from experiments import diagnose_critic as dc
from pex_jax.datagen.antmaze import eval_goal
from pex_jax.train import run
from tests.conftest import tiny_config


def test_regions_split_medium_play_data_by_play_goal_and_evaluation_goal_without_overlap():
    goal = eval_goal("antmaze-medium-play-v2")  # (20.75, 20.75)
    xy = np.array([[16.75, 20.75], [20.75, 4.75], [0.75, 16.75], goal, goal + 0.9, [8.0, 8.0], [16.75, 22.5]])
    masks = dc.regions(xy, "antmaze-medium-play-v2", radius=1.0)
    assert list(masks) == ["play goal (2, 6)", "play goal (5, 1)", "play goal (6, 5)", "evaluation goal", "elsewhere"]
    stacked = np.stack(list(masks.values()))
    np.testing.assert_array_equal(stacked.sum(0), 1)  # every transition in exactly one region
    assert masks["play goal (6, 5)"].tolist() == [True] + [False] * 6
    assert masks["play goal (2, 6)"].tolist() == [False, True] + [False] * 5
    assert masks["evaluation goal"].tolist() == [False] * 3 + [True, False, False, False]  # 1.27 m away: not in it
    assert masks["elsewhere"].tolist() == [False] * 4 + [True, True, True]


def test_umaze_has_its_play_goal_in_the_evaluation_goal_cell_and_other_data_gets_one_region():
    masks = dc.regions(np.array([[0.75, 8.75], [0.0, 0.0]]), "antmaze-umaze-v2", radius=1.0)
    assert masks["play goal (3, 1)"].tolist() == [True, False]
    assert not masks["evaluation goal"].any()  # taken by the play goal at the same place
    assert list(dc.regions(np.zeros((3, 2)), None, 1.0)) == ["all"]


def test_hover_value_is_minus_100_without_a_gap_and_crosses_zero_at_a_gap_of_one_step():
    assert dc.hover_value(0.0, 0.99) == pytest.approx(-100.0)
    assert dc.hover_value(1.0, 0.99) == pytest.approx(0.0)
    assert dc.hover_value(3.0, 0.99) == pytest.approx(200.0)


def test_summarize_reports_share_bound_violations_target_error_and_gap_per_region():
    q = np.array([-50.0, -50.0, 10.0, 20.0])
    v = np.array([-49.0, -49.0, 13.0, 23.0])
    y = np.array([-50.0, -51.0, 10.0, 18.0])
    masks = {"a": np.array([True, True, False, False]), "b": np.array([False, False, True, True]),
             "empty": np.zeros(4, bool)}
    rows = {r["region"]: r for r in dc.summarize(q, v, y, masks, gamma=0.99, q_max=0.0)}
    assert set(rows) == {"a", "b"}  # an empty region is left out
    assert rows["a"]["share"] == 0.5 and rows["a"]["above_max"] == 0.0 and rows["a"]["q_minus_y"] == 0.5
    assert rows["b"]["above_max"] == 1.0 and rows["b"]["gap"] == 3.0
    assert rows["b"]["hover_value"] == pytest.approx(200.0)


def test_it_reads_a_finished_runs_offline_ckpt_and_a_mid_run_checkpoint(tmp_path, tiny_env):
    c = tiny_config(tmp_path, algo="offline", seeds="0-1", checkpoint_every=100, keep_checkpoints=5)
    run(c)
    out_final, out_mid = tmp_path / "final.json", tmp_path / "mid.json"
    assert dc.main(["--run", c.run_dir, "--n", "500", "--json", str(out_final)]) == 0
    mids = sorted((tmp_path / "run" / "checkpoints").glob("offline-*"))
    assert mids, "the offline run kept no mid-run checkpoint"
    assert dc.main(["--run", c.run_dir, "--checkpoint", str(mids[0]), "--n", "500", "--json", str(out_mid)]) == 0
    final, mid = json.loads(out_final.read_text()), json.loads(out_mid.read_text())
    assert [r["seed"] for r in final] == [0, 1] and [r["region"] for r in final] == ["all", "all"]
    assert final[0]["offline_step"] == c.offline_steps and mid[0]["offline_step"] == 100
    assert final[0]["q"] != mid[0]["q"]  # two different critics, not one read twice
    assert all(np.isfinite(r["q"]) and r["share"] == 1.0 for r in final + mid)
