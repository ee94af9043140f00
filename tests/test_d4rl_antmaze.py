"""D4RL AntMaze v2 env on patched Gymnasium-Robotics AntMaze_*-v4: frame, physics, start/goal, success, seeding."""

import mujoco
import numpy as np
import pytest

from pex_jax.envs.d4rl_antmaze import (
    ACT_DIM,
    OBS_DIM,
    SUCCESS_RADIUS,
    TASKS,
    cell_to_xy,
    free_space_fraction,
    make_d4rl_antmaze,
)
from pex_jax.errors import ConfigError

MAZE_TASK = {"umaze": "antmaze-umaze-v2", "medium": "antmaze-medium-play-v2", "large": "antmaze-large-diverse-v2"}
QPOS0 = np.array([0, 0, 0.75, 1] + [0] * 11, dtype=np.float64)
ZERO = np.zeros(ACT_DIM, dtype=np.float32)


@pytest.fixture(scope="module")
def envs():
    made = {maze: make_d4rl_antmaze(tid, seed=0) for maze, tid in MAZE_TASK.items()}
    yield made
    for env in made.values():
        env.close()


def _place(env, dx, dy=0.0):
    """Put the resting ant (zero velocity, default pose) at goal + (dx, dy), D4RL frame."""
    qpos = QPOS0.copy()
    qpos[:2] = env.goal + (dx, dy)
    env.set_state(qpos, np.zeros(14))


def test_tasks_have_d4rl_maps_cells_offsets_and_limits():
    assert len(TASKS) == 6
    expected = {"umaze": ((3, 1), (-4.0, -4.0), 700, "AntMaze_UMaze-v4"),
                "medium": ((6, 6), (-10.0, -10.0), 1000, "AntMaze_Medium-v4"),
                "large": ((7, 9), (-18.0, -12.0), 1000, "AntMaze_Large-v4")}
    for tid, spec in TASKS.items():
        goal_cell, offset, steps, gym_id = expected[spec.maze]
        assert spec.task_id == tid and spec.start_cell == (1, 1) and spec.goal_cell == goal_cell
        assert spec.offset == offset and spec.max_episode_steps == steps and spec.gym_id == gym_id
        assert spec.d4rl_map[1][1] == "r" and spec.d4rl_map[goal_cell[0]][goal_cell[1]] == "g"
    assert TASKS["antmaze-medium-play-v2"].d4rl_map == TASKS["antmaze-medium-diverse-v2"].d4rl_map
    assert cell_to_xy(1, 1) == (0.0, 0.0) and cell_to_xy(7, 9) == (32.0, 24.0)


@pytest.mark.parametrize("maze", ["umaze", "medium", "large"])
def test_reset_start_within_d4rl_noise_and_goal_inside_d4rl_goal_box(envs, maze):
    env = envs[maze]
    gx, gy = cell_to_xy(*env.task.goal_cell)
    goals = []
    for k in range(6):
        obs, info = env.reset(seed=100 + k) if k == 0 else env.reset()
        assert obs.shape == (OBS_DIM,) and obs.dtype == np.float64 and env.observation_space.contains(obs)
        assert np.all(np.abs(obs[:15] - QPOS0) <= 0.1)  # xy within 0.1 of the origin, other qpos within 0.1
        assert np.any(obs[15:] != 0) and np.all(np.abs(obs[15:]) < 0.6)  # 0.1 * N(0, 1) velocities
        goal = info["goal"]
        assert gx <= goal[0] <= gx + 1.5 and gy <= goal[1] <= gy + 1.5, goal
        np.testing.assert_array_equal(goal, env.goal)
        assert info["success"] is False
        goals.append(goal)
    assert len({tuple(g) for g in goals}) == len(goals)  # resampled at every reset


def test_success_ends_episode_at_distance_half_and_not_before(envs):
    env = envs["umaze"]
    env.reset(seed=1)
    ret = 0.0
    for _ in range(3):  # near the start, 8+ m from the goal
        _, r, term, trunc, info = env.step(ZERO)
        ret += r
        assert not term and not trunc and r == 0.0 and info["distance"] > 7
    _place(env, 0.6)
    _, r, term, trunc, info = env.step(ZERO)
    assert 0.55 < info["distance"] and not term and not trunc and r == 0.0 and info["success"] is False
    _place(env, 0.0, 0.4)
    _, r, term, trunc, info = env.step(ZERO)
    ret += r
    assert info["distance"] < 0.45 and term and not trunc and r == 1.0 and info["success"] is True
    assert ret == 1.0


def test_termination_follows_half_metre_rule_across_the_boundary(envs):
    env = envs["umaze"]
    outcomes = set()
    for k, d in enumerate(np.linspace(0.44, 0.56, 25)):
        env.reset(seed=200 + k)
        angle = 2 * np.pi * k / 25
        _place(env, d * np.cos(angle), d * np.sin(angle))
        obs, r, term, trunc, info = env.step(ZERO)
        dist = float(np.linalg.norm(obs[:2] - info["goal"]))
        assert info["distance"] == pytest.approx(dist, abs=1e-12)
        assert term == (dist <= SUCCESS_RADIUS) == info["success"] and r == float(term) and not trunc
        outcomes.add(term)
    assert outcomes == {True, False}  # the sweep really crossed 0.5 (gym's own radius, 0.45, would differ)


def test_umaze_truncates_exactly_at_700_steps_without_success():
    env = make_d4rl_antmaze("antmaze-umaze-diverse-v2", seed=5)
    env.reset()
    ret = 0.0
    for t in range(1, 701):
        _, r, term, trunc, _ = env.step(ZERO)
        ret += r
        assert not term and trunc == (t == 700), t
    assert ret == 0.0
    env.close()


def _rollout_starts(env, n, seed=None):
    out = []
    for k in range(n):
        obs, info = env.reset(seed=seed if k == 0 else None)
        out.append(np.concatenate([obs, info["goal"]]))
    return np.stack(out)


def test_same_seed_same_starts_and_goals_different_seed_differs():
    tid = "antmaze-medium-diverse-v2"
    a = make_d4rl_antmaze(tid, seed=7)
    b = make_d4rl_antmaze(tid)
    runs_a = _rollout_starts(a, 4)
    runs_b = _rollout_starts(b, 4, seed=7)  # make(seed=s) + reset() == reset(seed=s)
    np.testing.assert_array_equal(runs_a, runs_b)
    np.testing.assert_array_equal(_rollout_starts(a, 4, seed=7), runs_a)  # reseeding replays
    other = _rollout_starts(b, 4, seed=8)
    assert not np.any(np.all(other == runs_a, axis=1))
    a.step(ZERO)
    b.reset(seed=7)
    b.step(ZERO)  # physics is deterministic given the seed
    np.testing.assert_array_equal(a.reset(seed=3)[0], b.reset(seed=3)[0])
    a.close()
    b.close()


# --- physics: an ant written here with D4RL's ant.xml parameters (doc section 1.5) ---------------------------------
_LEGS = [  # (leg body, hip body, k, dx, dy, ankle axis, ankle range, geom names)
    ("front_left_leg", "aux_1", 1, 0.2, 0.2, "-1 1 0", "30 70", ("aux_1_geom", "left_leg_geom", "left_ankle_geom")),
    ("front_right_leg", "aux_2", 2, -0.2, 0.2, "1 1 0", "-70 -30",
     ("aux_2_geom", "right_leg_geom", "right_ankle_geom")),
    ("back_leg", "aux_3", 3, -0.2, -0.2, "-1 1 0", "-70 -30", ("aux_3_geom", "back_leg_geom", "third_ankle_geom")),
    ("right_back_leg", "aux_4", 4, 0.2, -0.2, "1 1 0", "30 70",
     ("aux_4_geom", "rightback_leg_geom", "fourth_ankle_geom")),
]


def _d4rl_ant_xml() -> str:
    legs = ""
    for leg, aux, k, dx, dy, axis, rng, (g0, g1, g2) in _LEGS:
        legs += f"""
      <body name="{leg}" pos="0 0 0">
        <geom fromto="0 0 0 {dx} {dy} 0" name="{g0}" size="0.08" type="capsule"/>
        <body name="{aux}" pos="{dx} {dy} 0">
          <joint axis="0 0 1" name="hip_{k}" pos="0 0 0" range="-30 30" type="hinge"/>
          <geom fromto="0 0 0 {dx} {dy} 0" name="{g1}" size="0.08" type="capsule"/>
          <body name="ankle_body_{k}" pos="{dx} {dy} 0">
            <joint axis="{axis}" name="ankle_{k}" pos="0 0 0" range="{rng}" type="hinge"/>
            <geom fromto="0 0 0 {2 * dx} {2 * dy} 0" name="{g2}" size="0.08" type="capsule"/>
          </body>
        </body>
      </body>"""
    motors = "".join(f'<motor ctrllimited="true" ctrlrange="-30 30" joint="{j}_{k}"/>'
                     for k in (4, 1, 2, 3) for j in ("hip", "ankle"))
    return f"""<mujoco model="d4rl_ant">
  <compiler angle="degree" inertiafromgeom="true"/>
  <option timestep="0.02" integrator="RK4"/>
  <default>
    <joint armature="1" damping="1" limited="true"/>
    <geom conaffinity="0" condim="3" density="5.0" friction="1 .5 .5" margin=".01" solref=".02 1"
          solimp=".8 .8 .01"/>
  </default>
  <worldbody>
    <geom conaffinity="1" condim="3" name="floor" pos="0 0 0" size="40 40 40" type="plane"/>
    <body name="torso" pos="0 0 0.75">
      <geom name="torso_geom" pos="0 0 0" size="0.25" type="sphere"/>
      <joint armature="0" damping="0" limited="false" margin="0.01" name="root" pos="0 0 0" type="free"/>{legs}
    </body>
  </worldbody>
  <actuator>{motors}</actuator>
</mujoco>"""


def _ant_bodies(m):
    """Ant body ids by a name valid in both models: named bodies, plus the ankle bodies found via their joint."""
    names = ["torso"] + [b for leg in _LEGS for b in leg[:2]]
    ids = {n: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, n) for n in names}
    for k in range(1, 5):
        ids[f"ankle_body_{k}"] = m.jnt_bodyid[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, f"ankle_{k}")]
    assert min(ids.values()) >= 0
    return ids


def test_patched_model_matches_d4rl_ant_parameters_by_name(envs):
    ref = mujoco.MjModel.from_xml_string(_d4rl_ant_xml())
    m = envs["umaze"].model
    assert m.opt.timestep == ref.opt.timestep == 0.02
    assert m.opt.integrator == ref.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
    assert envs["umaze"].frame_skip == 5 and envs["umaze"].dt == pytest.approx(0.1)  # 0.1 s per env step, as D4RL
    rb, mb = _ant_bodies(ref), _ant_bodies(m)
    for name, i in rb.items():
        j = mb[name]
        np.testing.assert_allclose(m.body_mass[j], ref.body_mass[i], rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(m.body_inertia[j], ref.body_inertia[i], rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(m.body_ipos[j], ref.body_ipos[i], atol=1e-12, err_msg=name)
        if name != "torso":  # the torso's pos is the world placement, shifted into the start cell in the maze
            np.testing.assert_allclose(m.body_pos[j], ref.body_pos[i], atol=1e-12, err_msg=name)
    geoms = ["torso_geom"] + [g for leg in _LEGS for g in leg[-1]]
    for name in geoms + ["floor"]:
        i, j = (mujoco.mj_name2id(x, mujoco.mjtObj.mjOBJ_GEOM, name) for x in (ref, m))
        for field in ("geom_solimp", "geom_solref", "geom_friction", "geom_margin", "geom_condim"):
            np.testing.assert_allclose(getattr(m, field)[j], getattr(ref, field)[i], atol=1e-12,
                                       err_msg=f"{field} {name}")
        if name != "floor":
            np.testing.assert_allclose(m.geom_size[j], ref.geom_size[i], atol=1e-12, err_msg=name)
    np.testing.assert_allclose(m.geom_solimp, np.tile(ref.geom_solimp[0], (m.ngeom, 1)))  # walls too
    for jn in ["root"] + [f"{p}_{k}" for k in range(1, 5) for p in ("hip", "ankle")]:
        i, j = (mujoco.mj_name2id(x, mujoco.mjtObj.mjOBJ_JOINT, jn) for x in (ref, m))
        np.testing.assert_allclose(m.jnt_range[j], ref.jnt_range[i], atol=1e-12, err_msg=jn)
        np.testing.assert_allclose(m.jnt_axis[j], ref.jnt_axis[i], atol=1e-12, err_msg=jn)
        di, dj = ref.jnt_dofadr[i], m.jnt_dofadr[j]
        n = 6 if jn == "root" else 1
        np.testing.assert_allclose(m.dof_armature[dj:dj + n], ref.dof_armature[di:di + n], err_msg=jn)
        np.testing.assert_allclose(m.dof_damping[dj:dj + n], ref.dof_damping[di:di + n], err_msg=jn)
    # torque at action a = 1: D4RL gear 1 x ctrl 30 (NormalizedBoxEnv rescales +-1 -> +-30); patched gear 30 x ctrl 1
    assert m.nu == ref.nu == ACT_DIM
    for a in range(ref.nu):
        jn = mujoco.mj_id2name(ref, mujoco.mjtObj.mjOBJ_JOINT, ref.actuator_trnid[a, 0])
        assert mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, m.actuator_trnid[a, 0]) == jn  # same action order
        for lim in (0, 1):
            d4rl_torque = ref.actuator_gear[a, 0] * ref.actuator_ctrlrange[a, lim]
            assert m.actuator_gear[a, 0] * m.actuator_ctrlrange[a, lim] == pytest.approx(d4rl_torque), jn
        assert d4rl_torque == 30.0


def test_observation_is_d4rl_frame_and_walls_are_d4rl_walls_translated(envs):
    for maze, env in envs.items():
        off = np.asarray(env.task.offset)
        obs, info = env.reset(seed=11)
        assert np.all(np.abs(obs[:2]) <= 0.1)
        np.testing.assert_allclose(env.data.qpos[:2], obs[:2] + off, atol=1e-12)
        for _ in range(5):
            obs, *_ = env.step(env.action_space.sample())
        np.testing.assert_allclose(env.data.qpos[:2], obs[:2] + off, atol=1e-12)
        np.testing.assert_array_equal(obs[2:15], env.data.qpos[2:])
        np.testing.assert_array_equal(obs[15:], env.data.qvel)
        site = mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_SITE, "target")
        np.testing.assert_allclose(env.model.site_pos[site, :2], info["goal"] + off, atol=1e-12)
        boxes = {tuple(np.round(env.model.geom_pos[g, :2], 6)) for g in range(env.model.ngeom)
                 if env.model.geom_type[g] == mujoco.mjtGeom.mjGEOM_BOX}
        walls = {tuple(np.round(np.asarray(cell_to_xy(i, j)) + off, 6))
                 for i, row in enumerate(env.task.d4rl_map) for j, c in enumerate(row) if c == 1}
        assert boxes == walls, maze
    assert env.action_space.shape == (ACT_DIM,) and env.action_space.dtype == np.float32


@pytest.mark.parametrize("maze", ["umaze", "medium", "large"])
def test_free_space_fraction_separates_free_cells_walls_and_outside(maze):
    m = TASKS[MAZE_TASK[maze]].d4rl_map
    cells = [(i, j) for i in range(len(m)) for j in range(len(m[0]))]
    free = np.array([cell_to_xy(i, j) for i, j in cells if m[i][j] != 1])
    wall = np.array([cell_to_xy(i, j) for i, j in cells if m[i][j] == 1])
    outside = np.array([cell_to_xy(-1, 0), cell_to_xy(0, -1), cell_to_xy(len(m), 1), cell_to_xy(1, len(m[0]))])
    assert free_space_fraction(maze, free) == 1.0
    assert free_space_fraction(maze, free + 1.9) == 1.0  # still nearest to the same cell
    assert free_space_fraction(maze, wall) == 0.0
    assert free_space_fraction(maze, outside) == 0.0
    assert free_space_fraction(maze, np.concatenate([free[:1], wall[:1]])) == 0.5


def test_mirrored_medium_maze_data_is_rejected():
    m = TASKS["antmaze-medium-play-v2"].d4rl_map
    free = np.array([cell_to_xy(i, j) for i in range(8) for j in range(8) if m[i][j] != 1])
    mirrored = free * (1, -1) + (0, 20)  # row i -> 7 - i: gym's default-map frame is D4RL's y-mirror (doc §0)
    assert free_space_fraction("medium", mirrored) < 0.9


def test_unknown_task_id_raises_config_error_listing_valid_ids():
    with pytest.raises(ConfigError) as exc:
        make_d4rl_antmaze("antmaze-huge-v2")
    for tid in TASKS:
        assert tid in str(exc.value)
    with pytest.raises(ConfigError):
        free_space_fraction("huge", np.zeros((1, 2)))
