"""D4RL AntMaze v2 evaluation/training env, rebuilt on Gymnasium-Robotics `AntMaze_*-v4` (route B).

Why: policies trained on the original D4RL antmaze hdf5 datasets must act in the same world they were trained in.
Gymnasium's AntMaze differs from D4RL on every point that matters (full analysis, with measurements:
`shared/docs/d4rl-antmaze.md`), so this module fixes each one:

- frame: the D4RL test map is passed with its rows reversed, so D4RL -> gym is the pure translation
  `xy_g = xy_d + offset` (without the reversal, medium/large are mirror images); observations are in the D4RL frame;
- physics: the ant model is patched to D4RL's (timestep 0.02, gear 30 at ctrl +-1, solimp .8 .8 .01), otherwise
  one action means 5x the torque at twice the control rate;
- start: D4RL's `qpos0 + U(-0.1, 0.1)` on all 15 qpos and `0.1 N(0, 1)` on qvel, in the 'r' cell;
- goal: the 'g' cell + U(0, 1) + U(0, 0.5) per axis (one-sided), resampled at every reset, from this env's seed;
- success: |torso xy - goal| <= 0.5 gives reward 1 and ends the episode (gym uses 0.45 and never ends), so the
  episode return is the success flag; time limit 700 (umaze) / 1000 (medium, large) steps of 0.1 s.

Observations are float64 (29,) = D4RL qpos[0:15] ++ qvel[0:14]; the goal is not observed, as in D4RL v2 eval.
Speed (2-core CPU, zero actions, best of 5x3000): umaze 3.4k, large 3.3k steps/s vs gym.make AntMaze_UMaze-v4 2.9k.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from pex_jax.envs import register_robotics_envs
from pex_jax.errors import ConfigError

SUCCESS_RADIUS = 0.5
OBS_DIM = 29
ACT_DIM = 8
CELL_SIZE = 4.0  # D4RL/gym maze_size_scaling

# D4RL ant parameters that differ from Gymnasium's ant.xml (doc section 3.3).
D4RL_TIMESTEP = 0.02
D4RL_GEAR = 30.0
D4RL_SOLIMP = (0.8, 0.8, 0.01, 0.5, 2.0)
_START_QPOS_NOISE = 0.1  # U(-0.1, 0.1) on every qpos entry
_START_QVEL_SCALE = 0.1  # 0.1 * N(0, 1) on every qvel entry
_GOAL_NOISE_CELL = 0.25 * CELL_SIZE  # U(0, 1): D4RL _rowcol_to_xy(add_random_noise=True)
_GOAL_NOISE_EXTRA = 0.5 * 0.25 * CELL_SIZE  # U(0, 0.5): D4RL goal_sampler's extra term

_R, _G = "r", "g"

# D4RL maps (d4rl/locomotion/maze_env.py), rows in D4RL order: row i, column j <-> D4RL xy (4j - 4, 4i - 4).
MAPS: dict[str, tuple[tuple, ...]] = {
    "umaze": (  # U_MAZE_TEST
        (1, 1, 1, 1, 1),
        (1, _R, 0, 0, 1),
        (1, 1, 1, 0, 1),
        (1, _G, 0, 0, 1),
        (1, 1, 1, 1, 1),
    ),
    "medium": (  # BIG_MAZE_TEST
        (1, 1, 1, 1, 1, 1, 1, 1),
        (1, _R, 0, 1, 1, 0, 0, 1),
        (1, 0, 0, 1, 0, 0, 0, 1),
        (1, 1, 0, 0, 0, 1, 1, 1),
        (1, 0, 0, 1, 0, 0, 0, 1),
        (1, 0, 1, 0, 0, 1, 0, 1),
        (1, 0, 0, 0, 1, 0, _G, 1),
        (1, 1, 1, 1, 1, 1, 1, 1),
    ),
    "large": (  # HARDEST_MAZE_TEST
        (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1),
        (1, _R, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1),
        (1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1),
        (1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1),
        (1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1),
        (1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1),
        (1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1),
        (1, 0, 0, 1, 0, 0, 0, 1, 0, _G, 0, 1),
        (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1),
    ),
}
_GYM_IDS = {"umaze": "AntMaze_UMaze-v4", "medium": "AntMaze_Medium-v4", "large": "AntMaze_Large-v4"}
_MAX_STEPS = {"umaze": 700, "medium": 1000, "large": 1000}


@dataclasses.dataclass(frozen=True)
class AntMazeSpec:
    """One D4RL antmaze v2 task. play/diverse variants share everything but the dataset."""

    task_id: str
    maze: str  # "umaze" | "medium" | "large"
    gym_id: str
    d4rl_map: tuple[tuple, ...]  # D4RL frame and row order, with 'r'/'g'
    start_cell: tuple[int, int]  # D4RL (row, col)
    goal_cell: tuple[int, int]  # D4RL (row, col)
    max_episode_steps: int
    offset: tuple[float, float]  # o: gym xy = D4RL xy + o


def _find(m: tuple[tuple, ...], tag: str) -> tuple[int, int]:
    return next((i, j) for i, row in enumerate(m) for j, c in enumerate(row) if c == tag)


def _make_spec(task_id: str, maze: str) -> AntMazeSpec:
    m = MAPS[maze]
    n_rows, n_cols = len(m), len(m[0])
    return AntMazeSpec(task_id=task_id, maze=maze, gym_id=_GYM_IDS[maze], d4rl_map=m, start_cell=_find(m, _R),
                       goal_cell=_find(m, _G), max_episode_steps=_MAX_STEPS[maze],
                       offset=(6.0 - 2.0 * n_cols, 6.0 - 2.0 * n_rows))


TASKS: dict[str, AntMazeSpec] = {
    tid: _make_spec(tid, maze)
    for tid, maze in [
        ("antmaze-umaze-v2", "umaze"),
        ("antmaze-umaze-diverse-v2", "umaze"),
        ("antmaze-medium-play-v2", "medium"),
        ("antmaze-medium-diverse-v2", "medium"),
        ("antmaze-large-play-v2", "large"),
        ("antmaze-large-diverse-v2", "large"),
    ]
}


def cell_to_xy(i: int, j: int) -> tuple[float, float]:
    """Centre of D4RL map cell (row i, col j) in the D4RL frame (start cell (1, 1) is the origin)."""
    return (CELL_SIZE * j - CELL_SIZE, CELL_SIZE * i - CELL_SIZE)


def free_space_fraction(maze: str, xy: np.ndarray) -> float:
    """Fraction of D4RL-frame points `xy` (N, 2) whose nearest cell is inside `maze`'s map and not a wall.

    Nearest cell = (floor(y/4 + 0.5) + 1, floor(x/4 + 0.5) + 1), i.e. round half up. Used to reject a dataset
    recorded in another maze or another frame (e.g. the y-mirrored gym frame). An empty `xy` gives 0.0.
    """
    if maze not in MAPS:
        raise ConfigError(f"unknown antmaze maze {maze!r}; valid: {', '.join(MAPS)}")
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if xy.shape[0] == 0:
        return 0.0
    free = np.array([[c != 1 for c in row] for row in MAPS[maze]], dtype=bool)
    i = np.floor(xy[:, 1] / CELL_SIZE + 0.5) + 1
    j = np.floor(xy[:, 0] / CELL_SIZE + 0.5) + 1
    inside = np.isfinite(i) & np.isfinite(j) & (i >= 0) & (i < free.shape[0]) & (j >= 0) & (j < free.shape[1])
    ok = np.zeros(xy.shape[0], dtype=bool)
    ok[inside] = free[i[inside].astype(np.int64), j[inside].astype(np.int64)]
    return float(ok.mean())


def patch_d4rl_physics(model: mujoco.MjModel) -> None:
    """Make Gymnasium's ant-maze model D4RL's: timestep 0.02, torque 30 per unit action, D4RL contact softness."""
    model.opt.timestep = D4RL_TIMESTEP
    model.actuator_gear[:, 0] = D4RL_GEAR
    model.geom_solimp[:] = D4RL_SOLIMP


D4RL_QPOS0 = np.array([0.0, 0.0, 0.75, 1.0] + [0.0] * 11)  # D4RL init_qpos: torso z 0.75, identity quat, joints 0


def d4rl_start_state(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """D4RL AntEnv.reset_model (non_zero_reset=False): qpos0 + U(-0.1, 0.1) on all 15, qvel 0.1 N(0, 1)."""
    qpos = D4RL_QPOS0 + rng.uniform(-_START_QPOS_NOISE, _START_QPOS_NOISE, size=15)
    return qpos, _START_QVEL_SCALE * rng.standard_normal(14)


def make_patched_ant(gym_id: str, maze_map: list[list], render_mode: str | None = None) -> tuple[gym.Env, Any, Any]:
    """(gym env, its maze env, its ant env) for a Gymnasium-Robotics AntMaze v4 with D4RL's ant physics.

    The gym wrappers (TimeLimit, checkers) are for callers who step `.unwrapped` and keep their own count.
    """
    register_robotics_envs()
    # v4 is deliberate: its 27-d ant obs is D4RL's (v5 adds cfrc_ext); pex_jax.envs silences its deprecation
    env = gym.make(gym_id, maze_map=maze_map, continuing_task=True, render_mode=render_mode, disable_env_checker=True)
    maze = env.unwrapped
    with contextlib.suppress(OSError, AttributeError):  # gymnasium-robotics leaves its maze XML in /tmp
        os.remove(maze.tmp_xml_file_path)
    ant = maze.ant_env
    patch_d4rl_physics(ant.model)
    assert ant.model.nq == 15 and ant.model.nv == 14 and ant.model.nu == ACT_DIM, "unexpected ant model"
    return env, maze, ant


class D4RLAntMazeEnv(gym.Env):
    """D4RL antmaze v2 task on a patched Gymnasium-Robotics AntMaze_*-v4 (see the module docstring).

    obs: float64 (29,) in the D4RL frame; action: float32 (8,) in [-1, 1], D4RL's normalised action.
    step info: {"success", "goal" (D4RL frame), "distance"}; reset info: {"success": False, "goal"}.
    """

    metadata = {"render_modes": ["human", "rgb_array", "depth_array"], "render_fps": 10}

    def __init__(self, task_id: str, render_mode: str | None = None, end_at_success: bool = True,
                 max_episode_steps: int | None = None):
        """`end_at_success=False, max_episode_steps=1000` is the data-collection variant (D4RL's collection episodes
        run their full length whatever happens); the defaults are the evaluation task."""
        if task_id not in TASKS:
            raise ConfigError(f"unknown D4RL antmaze task {task_id!r}; valid ids: {', '.join(TASKS)}")
        self.task: AntMazeSpec = TASKS[task_id]
        spec = self.task
        self.render_mode = render_mode
        self.end_at_success = bool(end_at_success)
        self.max_episode_steps = int(max_episode_steps or spec.max_episode_steps)
        gym_map = [list(row) for row in reversed(spec.d4rl_map)]  # route B: rows reversed -> pure translation
        # We step `.unwrapped` and count steps here (no TimeLimit).
        self._gym_env, self._maze, self._ant = make_patched_ant(spec.gym_id, gym_map, render_mode)
        self.model: mujoco.MjModel = self._ant.model
        self.data: mujoco.MjData = self._ant.data
        self.frame_skip = int(self._ant.frame_skip)

        self.offset = np.asarray(spec.offset, dtype=np.float64)
        self._ox, self._oy = spec.offset
        self._start_xy_g = np.asarray(cell_to_xy(*spec.start_cell)) + self.offset
        self._goal_cell_xy = np.asarray(cell_to_xy(*spec.goal_cell), dtype=np.float64)

        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(OBS_DIM,), dtype=np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(ACT_DIM,), dtype=np.float32)
        self._goal = self._goal_cell_xy.copy()  # D4RL frame
        self._gx, self._gy = float(self._goal[0]), float(self._goal[1])
        self._steps: int | None = None
        self._inner_seeded = False

    # ----------------------------------------------------------------------------------------------------- state
    @property
    def goal(self) -> np.ndarray:
        """Current goal xy in the D4RL frame."""
        return self._goal.copy()

    @property
    def dt(self) -> float:
        """Seconds per env step (0.1 after the patch, as D4RL)."""
        return float(self.model.opt.timestep) * self.frame_skip

    @property
    def elapsed_steps(self) -> int | None:
        return self._steps

    def _obs(self) -> np.ndarray:
        obs = np.concatenate((self.data.qpos, self.data.qvel))
        obs[0] -= self._ox
        obs[1] -= self._oy
        return obs

    def set_state(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        """Set the ant's qpos (15, D4RL frame) and qvel (14); returns the new observation. For tests/replays."""
        qpos_g = np.array(qpos, dtype=np.float64, copy=True)
        qpos_g[:2] += self.offset
        self._ant.set_state(qpos_g, np.asarray(qvel, dtype=np.float64))
        return self._obs()

    def set_goal(self, goal_d: np.ndarray) -> None:
        """Move the goal (D4RL frame); success and reward refer to it from the next step on."""
        self._set_goal(goal_d)

    def _set_goal(self, goal_d: np.ndarray) -> None:
        self._goal = np.asarray(goal_d, dtype=np.float64).copy()
        self._gx, self._gy = float(self._goal[0]), float(self._goal[1])
        self._maze.goal = self._goal + self.offset
        self._maze.update_target_site_pos()

    # ------------------------------------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        inner_seed = None
        if seed is not None or not self._inner_seeded:  # seed gym's own RNGs from ours; their draws are overridden
            inner_seed = int(rng.integers(2**31 - 1))
            self._inner_seeded = True
        self._maze.reset(seed=inner_seed)  # mj_resetData: clears time, ctrl, warmstart
        # D4RL AntEnv.reset_model (non_zero_reset=False), then the start cell (the origin in D4RL's frame).
        qpos, qvel = d4rl_start_state(rng)
        qpos[:2] += self._start_xy_g
        self._ant.set_state(qpos, qvel)
        # D4RL MazeEnv.goal_sampler: cell + U(0, 1) + U(0, 0.5) per axis, then max(., 0).
        goal = self._goal_cell_xy + rng.uniform(0.0, _GOAL_NOISE_CELL, size=2)
        goal = np.maximum(goal + rng.uniform(0.0, _GOAL_NOISE_EXTRA, size=2), 0.0)
        self._set_goal(goal)
        self._steps = 0
        if self.render_mode == "human":
            self._ant.render()
        return self._obs(), {"success": False, "goal": self._goal.copy()}

    def step(self, action: np.ndarray):
        if self._steps is None:
            raise RuntimeError("call reset() before step()")
        # MuJoCo clamps ctrl to ctrlrange [-1, 1], as D4RL's NormalizedBoxEnv clips.
        self.data.ctrl[:] = action
        mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)
        self._steps += 1
        obs = self._obs()
        distance = math.hypot(obs[0] - self._gx, obs[1] - self._gy)
        success = distance <= SUCCESS_RADIUS
        terminated = success and self.end_at_success
        truncated = (not terminated) and self._steps >= self.max_episode_steps
        if self.render_mode == "human":
            self._ant.render()
        info = {"success": success, "goal": self._goal.copy(), "distance": distance}
        return obs, (1.0 if success else 0.0), terminated, truncated, info

    def render(self):
        return self._ant.render()

    def close(self) -> None:
        self._gym_env.close()
        super().close()


def make_d4rl_antmaze(task_id: str, seed: int | None = None) -> D4RLAntMazeEnv:
    """Build the env for a D4RL antmaze v2 id; `seed` seeds its RNG so the first `reset()` is reproducible."""
    if task_id not in TASKS:
        raise ConfigError(f"unknown D4RL antmaze task {task_id!r}; valid ids: {', '.join(TASKS)}")
    env = D4RLAntMazeEnv(task_id)
    if seed is not None:
        env.np_random = np.random.default_rng(seed)
        env.action_space.seed(seed)
    return env


GYM_ID = "pex/D4RLAntMaze-v2"


def register() -> None:
    """Register `GYM_ID` (kwargs: task_id, end_at_success, max_episode_steps) so that Minari datasets can name this
    env in their env specs and `gym.make` can rebuild it from them. Idempotent."""
    if GYM_ID not in gym.registry:
        gym.register(GYM_ID, entry_point=f"{__name__}:D4RLAntMazeEnv", disable_env_checker=True)


register()
