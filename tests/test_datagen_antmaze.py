"""Locally generated AntMaze data: recipes, relabelling, controller checkpoints, a tiny dataset round trip."""

import json

import numpy as np
import pytest

from pex_jax.datagen import ant_controller
from pex_jax.datagen import antmaze as antmaze_gen
from pex_jax.datagen.antmaze import G_CELLS, RECIPES, eval_goal, free_cells, relabel
from pex_jax.envs.d4rl_antmaze import MAPS, TASKS
from pex_jax.errors import ConfigError


def test_recipes_follow_d4rl_start_and_goal_definitions():
    umaze = RECIPES["umaze"]
    assert umaze.start_cells() == [(1, 1)] and umaze.goal_cells() == [(3, 1)]
    for name, recipe in RECIPES.items():
        maze = recipe.maze
        assert all(MAPS[maze][i][j] != 1 for i, j in recipe.start_cells() + recipe.goal_cells()), name
        if recipe.multistart:
            assert set(recipe.start_cells()) == set(free_cells(maze)) - set(G_CELLS[maze]), name
        if name.endswith("-play"):
            assert recipe.goal_cells() == list(G_CELLS[maze])
        if name.endswith("-diverse"):
            assert recipe.goal_cells() == free_cells(maze)
        # the dataset is evaluated on the task of the same name
        assert recipe.task_id == f"antmaze-{name}-v2" and recipe.dataset_id == f"pex/antmaze/{name}-v0"
    assert len(free_cells("umaze")) == 7 and len(free_cells("medium")) == 26 and len(free_cells("large")) == 46
    np.testing.assert_allclose(eval_goal("antmaze-large-play-v2"), (32.75, 24.75))


def test_relabel_is_success_at_half_a_metre_of_the_eval_goal():
    goal = np.array([0.75, 8.75])
    xy = goal + np.array([[0.0, 0.0], [0.5, 0.0], [0.0, -0.4999], [0.5001, 0.0], [3.0, 3.0]])
    np.testing.assert_array_equal(relabel(xy, goal), [1, 1, 1, 0, 0])
    assert relabel(xy, goal).dtype == np.float32


def test_unknown_task_is_refused():
    with pytest.raises(ConfigError, match="valid: umaze"):
        antmaze_gen.recipe_for("medium")


# ----------------------------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def random_controller(tmp_path_factory):
    """A correctly labelled checkpoint of an untrained actor: enough to exercise loading and generation."""
    import jax

    from pex_jax.agents.sac import create_sac_state

    path = tmp_path_factory.mktemp("ctrl") / "ctrl.npz"
    state = create_sac_state(jax.random.PRNGKey(0), 29, 8, hidden_dims=(16, 16))
    ant_controller.save_controller(path, state.actor.params, {"hidden_dims": [16, 16],
                                                              "physics": ant_controller.physics_signature()})
    return path


def test_controller_checkpoint_round_trips_to_the_same_actions(random_controller):
    c1 = ant_controller.load_controller(random_controller)
    c2 = ant_controller.load_controller(random_controller)
    obs = np.random.default_rng(0).normal(size=(5, 29))
    a = c1.act(obs)
    assert a.shape == (5, 8) and np.all(np.abs(a) <= 1)
    np.testing.assert_array_equal(a, c2.act(obs))


def test_missing_corrupt_or_foreign_checkpoint_is_one_error_naming_file_and_fix(random_controller, tmp_path):
    with pytest.raises(ConfigError, match=r"does not exist.*make ant-expert"):
        ant_controller.load_controller(tmp_path / "none.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ConfigError, match=r"bad\.npz is unreadable.*make ant-expert"):
        ant_controller.load_controller(bad)
    with np.load(random_controller) as f:
        arrays = {k: f[k] for k in f.files}
    header = json.loads(str(arrays["header"]))
    header["physics"]["timestep"] = 0.01  # trained for Gymnasium's ant physics
    header["physics"]["obs_dim"] = 31
    arrays["header"] = np.asarray(json.dumps(header))
    other = tmp_path / "other.npz"
    np.savez(other, **arrays)
    with pytest.raises(ConfigError, match=r"other physics or observations \(timestep: file 0.01.*obs_dim.*ant-expert"):
        ant_controller.load_controller(other)


def test_cli_errors_before_any_work(random_controller, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        antmaze_gen.run_cli(lambda: antmaze_gen.main(["--task=umaze,mediumm",
                                                                f"--controller={random_controller}"]))
    assert exit_info.value.code == 1
    assert "unknown AntMaze dataset 'mediumm'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        antmaze_gen.run_cli(lambda: antmaze_gen.main(["--task=umaze", f"--controller={tmp_path}/x.npz"]))
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "x.npz does not exist" in err and "make ant-expert" in err
    assert not any(tmp_path.iterdir())  # nothing written


# ------------------------------------------------------------------------------------------------- round trip
TEST_GOAL = (0.5, 0.2)  # next to the umaze start: the short episodes hold both reward 0 and reward 1 steps


def _generate(tmp_path, monkeypatch, controller_path, root: str, goal=TEST_GOAL):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / root))
    monkeypatch.setattr(antmaze_gen, "eval_goal", lambda task_id: np.asarray(goal))
    ctrl = ant_controller.load_controller(controller_path)
    return antmaze_gen.generate_antmaze("umaze", ctrl, steps=80, episode_steps=40, noise=0.5, seed=3,
                                             progress=False, parallel=2)


def test_tiny_generated_dataset_round_trips_with_d4rl_layout_and_relabelled_rewards(random_controller, tmp_path,
                                                                                   monkeypatch):
    from pex_jax.data.sources import load_transitions
    from pex_jax.envs.task import check_task, task_for_dataset

    summary = _generate(tmp_path, monkeypatch, random_controller, "a")
    assert summary["episodes"] == 2 and summary["steps"] == 80
    data, info = load_transitions("pex/antmaze/umaze-v0")
    assert info.source == "local" and info.domain == "maze" and (info.obs_dim, info.act_dim) == (29, 8)
    assert (info.ref_min_score, info.ref_max_score) == (0.0, 1.0)
    assert len(data) == 80 and data.episode_ends.sum() == 2 and data.observations.dtype == np.float32
    # D4RL layout: xy first (near the umaze start, the origin), torso height next, quaternion, joints, velocities
    first = data.observations[0]
    assert np.all(np.abs(first[:2]) <= 0.1 + 1e-6) and 0.6 < first[2] < 0.9
    # reward = terminal = success at 0.5 of the eval goal, on the post-step position
    expected = (np.linalg.norm(data.next_observations[:, :2] - TEST_GOAL, axis=1) <= 0.5).astype(np.float32)
    np.testing.assert_array_equal(data.rewards, expected)
    np.testing.assert_array_equal(data.terminals, expected)
    assert 0 < expected.sum() < 80
    # next observation of step t is the observation of step t + 1 inside an episode
    ends = np.flatnonzero(data.episode_ends)
    inner = np.setdiff1d(np.arange(79), ends)
    np.testing.assert_array_equal(data.next_observations[inner], data.observations[inner + 1])
    # trained and evaluated on the D4RL task, like the original file
    task = task_for_dataset(info)
    assert (task.kind, task.env_id, task.max_episode_steps) == ("d4rl_antmaze", "antmaze-umaze-v2", 700)
    check_task(task, info)
    # same seed, same dataset
    _generate(tmp_path, monkeypatch, random_controller, "b")
    again, _ = load_transitions("pex/antmaze/umaze-v0")
    np.testing.assert_array_equal(again.observations, data.observations)
    np.testing.assert_array_equal(again.actions, data.actions)


def test_existing_dataset_is_kept_unless_overwrite(random_controller, tmp_path, monkeypatch):
    from pex_jax.errors import DatasetError

    _generate(tmp_path, monkeypatch, random_controller, "c")
    with pytest.raises(DatasetError, match="--overwrite"):
        _generate(tmp_path, monkeypatch, random_controller, "c")


# ------------------------------------------------------------------------------------ the committed controller
@pytest.mark.parametrize("maze, episodes", [("umaze", 4), ("medium", 2), ("large", 2)])
def test_committed_controller_reaches_the_eval_goal_without_noise(maze, episodes):
    """A small-count version of the >= 90% acceptance check (`python -m pex_jax.datagen.ant_controller check`)."""
    controller = ant_controller.load_controller()
    res = antmaze_gen.waypoint_success(controller, antmaze_gen.CHECK_TASKS[maze], episodes, seed=1)
    assert res["success"] == 1.0, res
    assert res["mean_steps"] < TASKS[antmaze_gen.CHECK_TASKS[maze]].max_episode_steps


def test_controller_actions_are_the_policy_mode_on_the_action_grid(random_controller):
    import jax.numpy as jnp

    from pex_jax.agents.sac import TanhGaussianPolicy, mode

    c = ant_controller.load_controller(random_controller)
    obs = np.random.default_rng(1).normal(size=(64, 29)).astype(np.float32)
    a = c.act(obs)
    flax_mode = np.asarray(mode(TanhGaussianPolicy((16, 16), 8).apply({"params": c.params}, jnp.asarray(obs))[0]))
    np.testing.assert_allclose(a, flax_mode, atol=1e-5)
    np.testing.assert_array_equal(np.round(a / ant_controller.ACTION_GRID) * ant_controller.ACTION_GRID, a)


@pytest.mark.slow
def test_generated_antmaze_data_does_not_depend_on_the_cpus_vector_instructions(tmp_path):
    """Older instruction sets for XLA and OpenBLAS stand in for another machine's CPU (docs/data.md)."""
    import hashlib
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    digests = []
    for i, cpu in enumerate([{}, {"XLA_FLAGS": "--xla_cpu_max_isa=SSE4_2", "OPENBLAS_CORETYPE": "Prescott"}]):
        env = {**os.environ, "MINARI_DATASETS_PATH": str(tmp_path / str(i)), **cpu}
        subprocess.run([sys.executable, "-m", "pex_jax.datagen.antmaze", "--task=umaze", "--steps=2000"],
                       cwd=root, env=env, check=True, capture_output=True, timeout=300)
        (data,) = (tmp_path / str(i)).rglob("main_data.hdf5")
        digests.append(hashlib.sha256(data.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
