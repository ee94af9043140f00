"""BFS maze planner (D4RL frame) and the open-floor goal-reaching D4RL ant + its controller observation."""

import numpy as np
import pytest

from pex_jax.envs.d4rl_antmaze import MAPS, TASKS, cell_to_xy, make_d4rl_antmaze
from pex_jax.envs.goal_reaching_ant import (
    OBS_DIM,
    OBS_LAYOUT,
    SUCCESS_RADIUS,
    GoalReachingAnt,
    controller_observation,
)
from pex_jax.envs.maze_planner import (
    d4rl_cell,
    distance_table,
    next_waypoint,
    next_waypoint_d4rl,
    shortest_path_cells,
    xy_to_cell,
)
from pex_jax.errors import ConfigError

MAZE_TASK = {"umaze": "antmaze-umaze-v2", "medium": "antmaze-medium-play-v2", "large": "antmaze-large-play-v2"}
ZERO = np.zeros(8, dtype=np.float32)


def _bfs_len(maze, start, goal):
    """Independent BFS (plain dict/list) for the shortest path length in moves."""
    free = {(i, j) for i, row in enumerate(MAPS[maze]) for j, c in enumerate(row) if c != 1}
    seen, frontier, d = {start}, [start], 0
    while frontier:
        if goal in frontier:
            return d
        nxt = []
        for i, j in frontier:
            for c in ((i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)):
                if c in free and c not in seen:
                    seen.add(c)
                    nxt.append(c)
        frontier, d = nxt, d + 1
    return None


def test_umaze_path_by_hand():
    assert shortest_path_cells("umaze", (1, 1), (3, 1)) == [(1, 1), (1, 2), (1, 3), (2, 3), (3, 3), (3, 2), (3, 1)]
    assert distance_table("umaze", (3, 1))[1, 1] == 6


@pytest.mark.parametrize("maze", list(MAZE_TASK))
def test_waypoints_follow_shortest_free_path(maze):
    spec = TASKS[MAZE_TASK[maze]]
    start, goal = spec.start_cell, spec.goal_cell
    path = shortest_path_cells(maze, start, goal)
    assert path[0] == start and path[-1] == goal
    assert len(path) - 1 == _bfs_len(maze, start, goal)
    goal_xy = np.asarray(cell_to_xy(*goal)) + (0.7, 0.3)
    cell, visited = start, [start]
    rng = np.random.default_rng(0)
    while cell != goal:
        xy = np.asarray(cell_to_xy(*cell)) + rng.uniform(-1.9, 1.9, size=2)  # anywhere inside the cell
        assert xy_to_cell(xy) == cell
        wp = next_waypoint(maze, xy, goal_xy)
        nxt = xy_to_cell(wp)
        assert MAPS[maze][nxt[0]][nxt[1]] != 1, "waypoint in a wall"
        assert abs(nxt[0] - cell[0]) + abs(nxt[1] - cell[1]) == 1, "waypoint not a 4-neighbour"
        np.testing.assert_allclose(wp, cell_to_xy(*nxt))  # a cell centre
        cell = nxt
        visited.append(cell)
        assert len(visited) <= len(path)
    assert visited == path
    np.testing.assert_allclose(next_waypoint(maze, cell_to_xy(*goal), goal_xy), goal_xy)  # in the goal cell


def test_d4rl_lookup_is_floor_with_the_half_cell_shift():
    assert d4rl_cell((0.0, 0.0)) == (1, 1)  # the start cell's centre
    assert d4rl_cell((-1.5, -0.3)) == (1, 1)  # negatives clamp to 1e-4
    assert d4rl_cell((3.99, 0.0)) == (1, 1) and d4rl_cell((4.0, 0.0)) == (1, 2)  # switches at the next centre
    assert xy_to_cell((2.1, 0.0)) == (1, 2) and d4rl_cell((2.1, 0.0)) == (1, 1)  # the nearest-cell lookup differs
    assert d4rl_cell((8.0, 7.99)) == (2, 3)


@pytest.mark.parametrize("maze", list(MAZE_TASK))
def test_d4rl_waypoints_are_next_cell_centres_plus_positive_noise_then_the_exact_goal(maze):
    spec = TASKS[MAZE_TASK[maze]]
    goal_xy = np.asarray(cell_to_xy(*spec.goal_cell)) + (1.2, 0.4)
    rng = np.random.default_rng(0)
    path = shortest_path_cells(maze, spec.start_cell, spec.goal_cell)
    offsets = []
    for cell, nxt in zip(path[:-1], path[1:], strict=True):
        xy = np.asarray(cell_to_xy(*cell)) + rng.uniform(0.0, 3.9, size=2)  # inside the planner's (shifted) cell
        assert d4rl_cell(xy) == cell
        wp = next_waypoint_d4rl(maze, xy, goal_xy, rng)
        if nxt == spec.goal_cell:
            np.testing.assert_allclose(wp, goal_xy)  # the exact goal once the next cell is the goal's
        else:
            offsets.append(wp - np.asarray(cell_to_xy(*nxt)))
    offsets = np.asarray(offsets)
    assert np.all((offsets >= 0.0) & (offsets < 1.0)), offsets  # centre + U(0, 1) per axis
    np.testing.assert_allclose(next_waypoint_d4rl(maze, goal_xy - 0.1, goal_xy, rng), goal_xy)


def test_planner_rejects_wall_goal_and_recovers_from_wall_xy():
    with pytest.raises(ConfigError):
        shortest_path_cells("umaze", (1, 1), (2, 1))
    wp = next_waypoint("umaze", cell_to_xy(2, 1), cell_to_xy(3, 1))  # xy inside the wall cell (2, 1)
    assert MAPS["umaze"][xy_to_cell(wp)[0]][xy_to_cell(wp)[1]] != 1


@pytest.fixture(scope="module")
def ant():
    env = GoalReachingAnt(max_episode_steps=5)
    yield env
    env.close()


def test_physics_patch_and_spaces(ant):
    assert ant.model.opt.timestep == pytest.approx(0.02)
    np.testing.assert_allclose(ant.model.actuator_gear[:, 0], 30.0)
    assert ant.dt == pytest.approx(0.1)
    assert ant.observation_space.shape == (OBS_DIM,) and ant.action_space.shape == (8,)


def test_obs_layout_and_target(ant):
    obs, info = ant.reset(seed=3)
    assert obs.shape == (OBS_DIM,) == (29,)
    np.testing.assert_allclose(obs[OBS_LAYOUT["target_rel_xy"]], info["target"] - info["xy"])
    np.testing.assert_allclose(obs[OBS_LAYOUT["qpos_2_15"]], ant.data.qpos[2:15])
    np.testing.assert_allclose(obs[OBS_LAYOUT["qvel_0_14"]], ant.data.qvel)
    assert 1.0 <= np.linalg.norm(info["target"] - info["xy"]) <= 6.0
    # no absolute xy: moving the ant and the target together leaves the observation unchanged
    qpos, qvel = ant.data.qpos.copy(), ant.data.qvel.copy()
    qpos[:2] += (3.0, -2.0)
    ant.set_state(qpos, qvel)
    np.testing.assert_allclose(ant.set_target(info["target"] + (3.0, -2.0)), obs)


def test_progress_reward_sign_and_success(ant):
    obs, info = ant.reset(seed=1)
    direction = (info["target"] - info["xy"]) / np.linalg.norm(info["target"] - info["xy"])
    qpos, qvel = ant.data.qpos.copy(), np.zeros(14)
    qpos[:2] = info["xy"] + 1.0 * direction  # 1 m closer
    ant.set_state(qpos, qvel)
    _, r, term, trunc, step_info = ant.step(ZERO)
    assert r > 0.5 and not term and not trunc and not step_info["success"]
    qpos[:2] = info["xy"] - 1.0 * direction  # now farther than at reset
    ant.set_state(qpos, qvel)
    _, r, term, _, _ = ant.step(ZERO)
    assert r < 0 and not term
    qpos[:2] = info["target"]  # onto the target
    ant.set_state(qpos, qvel)
    obs, r, term, trunc, step_info = ant.step(ZERO)
    assert step_info["success"] and step_info["distance"] <= SUCCESS_RADIUS and not term and not trunc
    assert r > ant.success_bonus
    # continuing: a new target 1-6 m from where the ant is, and the observation already points at it
    new = step_info["target"]
    assert not np.allclose(new, info["target"]) and 1.0 <= np.linalg.norm(new - step_info["xy"]) <= 6.0
    np.testing.assert_allclose(obs[OBS_LAYOUT["target_rel_xy"]], new - step_info["xy"])


def test_truncation(ant):
    ant.reset(seed=2)
    outs = [ant.step(ZERO) for _ in range(5)]
    assert [o[3] for o in outs] == [False] * 4 + [True]
    assert not any(o[2] for o in outs)


def test_unreached_target_is_replaced_and_a_flip_terminates():
    env = GoalReachingAnt(max_episode_steps=50, target_steps=3)
    try:
        _, info = env.reset(seed=0)
        targets = [env.step(ZERO)[4]["target"] for _ in range(6)]
        assert np.allclose(targets[0], info["target"]) and np.allclose(targets[1], info["target"])
        assert not np.allclose(targets[2], info["target"])  # replaced after 3 steps without success
        assert not np.allclose(targets[5], targets[2])
        qpos, qvel = env.data.qpos.copy(), np.zeros(14)
        qpos[2] = 2.0  # torso thrown up: above the healthy band [0.2, 1.0] (as after a flip-over jump)
        env.set_state(qpos, qvel)
        _, _, term, trunc, _ = env.step(ZERO)
        assert term and not trunc
    finally:
        env.close()


def test_far_targets_are_seen_at_the_edge_of_the_training_range(ant):
    ant.reset(seed=5)
    obs = ant.set_target(ant.xy + np.array([30.0, -40.0]))
    np.testing.assert_allclose(obs[OBS_LAYOUT["target_rel_xy"]], [3.6, -4.8])  # 50 m -> 6 m, same direction
    d4 = np.zeros(29)
    np.testing.assert_allclose(controller_observation(d4, [0.0, 12.0])[27:], [0.0, 6.0])
    np.testing.assert_allclose(controller_observation(d4, [1.0, 2.0])[27:], [1.0, 2.0])


def test_seeding_reproducible(ant):
    a, ia = ant.reset(seed=7)
    sa = [ant.step(np.full(8, 0.3, np.float32))[0] for _ in range(3)]
    b, ib = ant.reset(seed=7)
    sb = [ant.step(np.full(8, 0.3, np.float32))[0] for _ in range(3)]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ia["target"], ib["target"])
    np.testing.assert_array_equal(np.stack(sa), np.stack(sb))
    c, _ = ant.reset(seed=8)
    assert not np.array_equal(a, c)


def test_controller_observation_matches_env_layout(ant):
    ant.reset(seed=4)
    d4 = make_d4rl_antmaze("antmaze-umaze-v2", seed=0)
    try:
        d4.reset(seed=0)
        qpos, qvel = ant.data.qpos.copy(), ant.data.qvel.copy()
        d4_qpos = qpos.copy()
        d4_qpos[:2] = (4.0, 0.3)  # same pose elsewhere, D4RL frame
        d4_obs = d4.set_state(d4_qpos, qvel)
        waypoint = d4_qpos[:2] + (ant.target - qpos[:2])  # same relative target
        np.testing.assert_allclose(controller_observation(d4_obs, waypoint), ant.set_state(qpos, qvel))
        batch = controller_observation(np.stack([d4_obs, d4_obs]), waypoint)
        assert batch.shape == (2, OBS_DIM)
    finally:
        d4.close()
