"""One task per run: maze/cell derivation from a dataset (incl. Minari's mirrored AntMaze eval map, Minari #304),
GoalMazeTask's end-at-the-goal semantics, and training/eval envs built from the same task."""

import warnings

import gymnasium as gym
import gymnasium_robotics
import minari
import numpy as np
import pytest

from pex_jax.data import load_dataset
from pex_jax.envs.goal_maze import cells, walls, with_cells
from pex_jax.envs.task import Task, make_env, make_vector_env, task_for_dataset
from pex_jax.errors import DatasetError
from pex_jax.runner.evaluation import Evaluator
from tests.conftest import TINY_ID

gym.register_envs(gymnasium_robotics)

# Minari D4RL/antmaze/umaze-v1: collected in DATA_MAP, evaluated in its column mirror (EVAL_ENV_MAPS, Minari #304).
DATA_MAP = [[1, 1, 1, 1, 1], [1, "g", 0, 0, 1], [1, 1, 1, 0, 1], [1, "r", 0, 0, 1], [1, 1, 1, 1, 1]]
MIRRORED_EVAL_MAP = [[1, 1, 1, 1, 1], [1, 0, 0, "r", 1], [1, 0, 1, 1, 1], [1, 0, 0, "g", 1], [1, 1, 1, 1, 1]]
U_MAZE = [[1, 1, 1, 1, 1], [1, 0, 0, 0, 1], [1, 1, 1, 0, 1], [1, 0, 0, 0, 1], [1, 1, 1, 1, 1]]


@pytest.fixture(autouse=True)
def _minari_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))


def make_maze_dataset(dataset_id, data_map, eval_map, env_id="AntMaze_UMaze-v4", eval_env_id=None, steps=40,
                      max_episode_steps=700):
    """A tiny random-action dataset with the real Minari maze env spec shape (continuing task, fixed target)."""
    kwargs = {} if data_map is None else {"maze_map": data_map}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # v4 deprecation, missing author_email / code_permalink
        env = minari.DataCollector(gym.make(env_id, continuing_task=True, reset_target=False,
                                            max_episode_steps=max_episode_steps, **kwargs), record_infos=False)
        env.reset(seed=0)
        env.action_space.seed(0)
        for _ in range(steps):
            env.step(env.action_space.sample())
        eval_env = gym.make(eval_env_id or env_id, maze_map=eval_map, continuing_task=True, reset_target=False,
                            max_episode_steps=max_episode_steps)
        env.create_dataset(dataset_id=dataset_id, eval_env=eval_env, ref_min_score=0.0, ref_max_score=1.0,
                           algorithm_name="random", author="t")
        env.close()
    return load_dataset(dataset_id, download=False)[1]


def _env_cells(env, seed):
    """(reset cell, goal cell) of one reset of a Gymnasium-Robotics maze env."""
    obs, _ = env.reset(seed=seed)
    maze = env.unwrapped.maze
    return (tuple(int(v) for v in maze.cell_xy_to_rowcol(obs["achieved_goal"])),
            tuple(int(v) for v in maze.cell_xy_to_rowcol(obs["desired_goal"])))


def _check_env_matches(task, data_map, reset_cell, goal_cell):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = make_env(task, seed=0)
    try:
        assert walls(env.unwrapped.maze.maze_map) == walls(data_map)
        for seed in (1, 2):
            assert _env_cells(env, seed) == (reset_cell, goal_cell)
    finally:
        env.close()


def test_minari_antmaze_umaze_trains_and_evaluates_in_the_data_maze_not_the_mirrored_eval_map():
    info = make_maze_dataset("D4RL/antmaze/umaze-v1", DATA_MAP, MIRRORED_EVAL_MAP)
    task = task_for_dataset(info)
    assert task.kind == "goal_maze" and task.env_id == "AntMaze_UMaze-v4" and task.max_episode_steps == 700
    assert walls(task.maze_map) == walls(DATA_MAP) != walls(MIRRORED_EVAL_MAP)
    assert cells(task.maze_map, "r") == [(3, 1)] and cells(task.maze_map, "g") == [(1, 1)]
    assert task.success_radius == 0.5
    assert len(task.notes) == 1 and "Minari #304" in task.notes[0]
    assert task.describe()["reset_cell"] == (3, 1) and task.describe()["goal_cell"] == (1, 1)
    _check_env_matches(task, DATA_MAP, (3, 1), (1, 1))


def test_data_maze_without_cells_gets_the_eval_cells_column_mirrored_into_it():
    # umaze-diverse-like: the collection env uses the default U_MAZE walls with no 'r'/'g' cell.
    info = make_maze_dataset("D4RL/antmaze/umaze-diverse-v1", None, MIRRORED_EVAL_MAP)
    task = task_for_dataset(info)
    assert walls(task.maze_map) == walls(U_MAZE)
    assert cells(task.maze_map, "r") == [(1, 1)] and cells(task.maze_map, "g") == [(3, 1)]
    assert len(task.notes) == 1 and "Minari #304" in task.notes[0] and "column-mirrored" in task.notes[0]
    _check_env_matches(task, U_MAZE, (1, 1), (3, 1))


def test_eval_env_with_the_data_walls_supplies_the_cells_and_no_note():
    eval_map = with_cells(U_MAZE, (3, 2), (1, 2))
    info = make_maze_dataset("t/antmaze/same-walls-v0", DATA_MAP, [list(row) for row in eval_map])
    task = task_for_dataset(info)
    assert task.maze_map == eval_map
    assert task.notes == ()
    _check_env_matches(task, DATA_MAP, (3, 2), (1, 2))


def test_eval_env_in_a_maze_of_another_size_is_a_one_line_dataset_error():
    medium = gym.spec("PointMaze_Medium-v3").kwargs["maze_map"]
    info = make_maze_dataset("t/pointmaze/size-mismatch-v0", U_MAZE, medium, env_id="PointMaze_UMaze-v3",
                             eval_env_id="PointMaze_Medium-v3", max_episode_steps=300)
    with pytest.raises(DatasetError) as err:
        task_for_dataset(info)
    message = str(err.value)
    assert "\n" not in message
    assert "5x5" in message and "8x8" in message


def _pointmaze_task(radius=0.45):
    return Task(name="t", kind="goal_maze", env_id="PointMaze_UMaze-v3", max_episode_steps=300,
                maze_map=with_cells(U_MAZE, (3, 1), (1, 1)), success_radius=radius)


def test_goal_maze_rewards_and_ends_exactly_within_the_success_radius_and_keeps_its_goal():
    env = make_env(_pointmaze_task(), seed=0)
    try:
        obs, info = env.reset(seed=5)
        assert info["success"] is False
        goal = obs["desired_goal"].copy()
        np.testing.assert_array_equal(env.unwrapped.goal, goal)
        point = env.unwrapped.point_env
        outcomes = []
        # Cell (1, 2), to the +x side of the goal cell (1, 1), is free: teleport along +x, at rest.
        for offset in (0.8, 0.46, 0.44, 0.2, 0.0):
            point.set_state(goal + np.array([offset, 0.0]), np.zeros(2))
            obs, reward, terminated, truncated, info = env.step(np.zeros(2, np.float32))
            distance = float(np.linalg.norm(obs["achieved_goal"] - obs["desired_goal"]))
            assert info["distance"] == pytest.approx(distance)
            assert distance == pytest.approx(offset, abs=2e-3)
            inside = distance <= 0.45
            assert reward == float(inside) and terminated is inside and info["success"] is inside
            assert truncated is False
            np.testing.assert_array_equal(obs["desired_goal"], goal)  # the goal never moves, even on success
            np.testing.assert_array_equal(env.unwrapped.goal, goal)
            outcomes.append(inside)
        assert outcomes == [False, False, True, True, True]
    finally:
        env.close()


def test_training_and_eval_envs_of_the_tiny_pointmaze_share_maze_and_cells(tiny_env):
    _, info = load_dataset(TINY_ID, download=False)
    task = task_for_dataset(info)
    expected_map = [list(row) for row in task.maze_map]
    venv = make_vector_env(task, 2, [0, 1])
    ev = Evaluator(task, info, [0, 1], episodes=2, parallel=2, config=None)
    try:
        obs, _ = venv.reset(seed=[11, 12])
        train_cells = set()
        for i, env in enumerate(venv.envs):
            maze = env.unwrapped.maze
            assert maze.maze_map == expected_map
            train_cells.add((tuple(int(v) for v in maze.cell_xy_to_rowcol(obs["achieved_goal"][i])),
                             tuple(int(v) for v in maze.cell_xy_to_rowcol(obs["desired_goal"][i]))))
        eval_cells = set()
        for k, env in enumerate(ev.envs):
            assert env.unwrapped.maze.maze_map == expected_map
            eval_cells.add(_env_cells(env, 100 + k))
        assert train_cells == eval_cells == {((3, 1), (1, 1))}
        assert (task.describe()["reset_cell"], task.describe()["goal_cell"]) == ((3, 1), (1, 1))
    finally:
        venv.close()
        ev.close()
