"""Goal-reaching D4RL ant on an open floor: the training env for a maze-agnostic low-level controller.

Why: the AntMaze data generator steers a goal-reaching ant along BFS waypoints (`maze_planner`), as D4RL
and OGBench did (`shared/docs/antmaze-data-recipe.md`). The controller is trained here, without maze walls nearby,
on the D4RL ant physics (timestep 0.02, gear 30, solimp .8 .8 .01, 5 substeps = 0.1 s per step, via
`patch_d4rl_physics`), so that it later drives `D4RLAntMazeEnv` unchanged through `controller_observation`.

World: Gymnasium-Robotics `AntMaze_UMaze-v4` built on a 9 x 9 map whose only walls are the border, i.e. an open
28 m x 28 m floor centred on the origin (walls at |x|, |y| >= 14 m). The frame is gym's, which differs from the
D4RL frame by a translation only (`d4rl_antmaze`, route B), so world-frame relative targets and the torso yaw mean
the same in both envs.

Episode (continuing, so that the controller learns to switch targets while moving, as waypoint following needs):
the ant starts at the origin in D4RL's start pose (qpos0 + U(-0.1, 0.1) on all 15 qpos, 0.1 N(0, 1) on qvel)
with, by default, a uniform random yaw. A target is drawn at r ~ U(1, 6) m in a uniform direction from the torso
(kept inside |x|, |y| <= 9 m, away from the border walls). Reward per step = (d_prev - d) + success_bonus *
1[d <= 0.5], with d the torso-target distance after the step and d_prev before it: progress toward the target, in
metres. On success a new target is drawn from where the ant is; a target not reached within `target_steps` steps
is replaced too. The episode terminates only when the torso height leaves [0.2, 1.0] m (a flipped or jumping ant,
OGBench's rule), and is truncated after `max_episode_steps`.

The relative target in the observation is clipped to norm `TARGET_MAX_DIST` (6 m): a far waypoint looks like one
at the edge of the training range, in the same direction, so the controller is never asked about distances it
never saw.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from pex_jax.envs import register_robotics_envs
from pex_jax.envs.d4rl_antmaze import ACT_DIM, d4rl_start_state, make_patched_ant

# Controller observation layout (float64, 29): the D4RL ant state without absolute xy, then the target relative
# to the torso in the world frame (not rescaled).
OBS_LAYOUT: dict[str, slice] = {
    "qpos_2_15": slice(0, 13),  # torso z, torso quaternion (w, x, y, z), 8 joint angles
    "qvel_0_14": slice(13, 27),  # torso linear (3) + angular (3) velocity, 8 joint velocities
    "target_rel_xy": slice(27, 29),  # target xy - torso xy (world frame, metres)
}
OBS_DIM = 29
SUCCESS_RADIUS = 0.5
TARGET_MIN_DIST = 1.0
TARGET_MAX_DIST = 6.0
TARGET_BOX = 9.0  # targets stay inside |x|, |y| <= 9 m; the border walls are at 14 m
MAX_EPISODE_STEPS = 1000
TARGET_STEPS = 150
SUCCESS_BONUS = 1.0
HEALTHY_Z = (0.2, 1.0)
_HALF = 4  # open-floor map: (2 * _HALF + 1)^2 cells, border walls only -> the origin is the centre cell's centre


def clip_relative(rel: np.ndarray) -> np.ndarray:
    """Relative target(s) (..., 2) scaled down to norm <= TARGET_MAX_DIST, direction kept."""
    norm = np.linalg.norm(rel, axis=-1, keepdims=True)
    return rel * np.minimum(1.0, TARGET_MAX_DIST / np.maximum(norm, 1e-12))


def controller_observation(d4rl_obs: np.ndarray, target_xy: np.ndarray) -> np.ndarray:
    """Controller observation (..., 29) from a D4RL AntMaze observation (..., 29: qpos[0:15] ++ qvel[0:14], D4RL
    frame) and a target/waypoint (..., 2) in the same frame; the same layout as `GoalReachingAnt` (OBS_LAYOUT)."""
    d4rl_obs = np.asarray(d4rl_obs, dtype=np.float64)
    target_xy = np.asarray(target_xy, dtype=np.float64)
    if d4rl_obs.shape[-1] != OBS_DIM:
        raise ValueError(f"expected a D4RL antmaze observation with 29 entries, got shape {d4rl_obs.shape}")
    rel = clip_relative(target_xy - d4rl_obs[..., :2])
    return np.concatenate((d4rl_obs[..., 2:], np.broadcast_to(rel, d4rl_obs.shape[:-1] + (2,))), axis=-1)


class GoalReachingAnt(gym.Env):
    """Reach target after target, each 1-6 m away, on an open floor with the D4RL ant (see the module docstring).

    obs: float64 (29,) per OBS_LAYOUT; action: float32 (8,) in [-1, 1] (torque 30 a, as D4RL).
    step info: {"success" (a target was reached this step), "distance" (to the target that was active during the
    step), "target" (the active target after the step), "xy"}; reset info: {"success": False, "target", "xy"}.
    """

    metadata = {"render_modes": ["human", "rgb_array", "depth_array"], "render_fps": 10}

    def __init__(self, max_episode_steps: int = MAX_EPISODE_STEPS, success_bonus: float = SUCCESS_BONUS,
                 random_yaw: bool = True, target_steps: int = TARGET_STEPS, render_mode: str | None = None):
        register_robotics_envs()
        self.max_episode_steps = int(max_episode_steps)
        self.success_bonus = float(success_bonus)
        self.random_yaw = bool(random_yaw)
        self.target_steps = int(target_steps)
        self.render_mode = render_mode
        n = 2 * _HALF + 1
        open_map = [[1] * n] + [[1] + [0] * (n - 2) + [1] for _ in range(n - 2)] + [[1] * n]
        self._gym_env, self._maze, self._ant = make_patched_ant("AntMaze_UMaze-v4", open_map, render_mode)
        self.model: mujoco.MjModel = self._ant.model
        self.data: mujoco.MjData = self._ant.data
        self.frame_skip = int(self._ant.frame_skip)

        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(OBS_DIM,), dtype=np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(ACT_DIM,), dtype=np.float32)
        self._target = np.array([TARGET_MIN_DIST, 0.0])
        self._dist = float("nan")
        self._steps: int | None = None
        self._target_age = 0

    # ----------------------------------------------------------------------------------------------------- state
    @property
    def target(self) -> np.ndarray:
        """Current target xy (world frame)."""
        return self._target.copy()

    @property
    def xy(self) -> np.ndarray:
        """Torso xy (world frame)."""
        return self.data.qpos[:2].copy()

    @property
    def dt(self) -> float:
        """Seconds per env step (0.1 after the patch, as D4RL)."""
        return float(self.model.opt.timestep) * self.frame_skip

    def _distance(self) -> float:
        return math.hypot(self._target[0] - self.data.qpos[0], self._target[1] - self.data.qpos[1])

    def _obs(self) -> np.ndarray:
        rel = clip_relative(self._target - self.data.qpos[:2])
        return np.concatenate((self.data.qpos[2:], self.data.qvel, rel))

    def set_target(self, target_xy: np.ndarray) -> np.ndarray:
        """Move the target (world frame); returns the new observation. The next reward counts progress from here."""
        self._target = np.asarray(target_xy, dtype=np.float64)[:2].copy()
        self._dist = self._distance()
        self._maze.goal = self._target.copy()
        self._maze.update_target_site_pos()
        self._target_age = 0
        return self._obs()

    def _draw_target(self) -> np.ndarray:
        """A point U(1, 6) m from the torso in a uniform direction, inside the target box (rejection sampling;
        from outside the box, the point toward the origin)."""
        rng, xy = self.np_random, self.data.qpos[:2]
        for _ in range(100):
            angle = rng.uniform(0.0, 2.0 * math.pi)
            radius = rng.uniform(TARGET_MIN_DIST, TARGET_MAX_DIST)
            target = xy + radius * np.array([math.cos(angle), math.sin(angle)])
            if np.all(np.abs(target) <= TARGET_BOX):
                return target
        return xy - TARGET_MIN_DIST * xy / max(np.linalg.norm(xy), 1e-9)

    def set_state(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        """Set qpos (15, world frame) and qvel (14) without touching the progress baseline; for tests/replays."""
        self._ant.set_state(np.asarray(qpos, dtype=np.float64), np.asarray(qvel, dtype=np.float64))
        return self._obs()

    # ------------------------------------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        mujoco.mj_resetData(self.model, self.data)  # clears time, ctrl, warm start; the model patch stays
        qpos, qvel = d4rl_start_state(rng)
        if self.random_yaw:
            yaw = rng.uniform(0.0, 2.0 * math.pi)
            quat = np.empty(4)
            mujoco.mju_mulQuat(quat, np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]), qpos[3:7])
            qpos[3:7] = quat
        self._ant.set_state(qpos, qvel)
        obs = self.set_target(self._draw_target())
        self._steps = 0
        if self.render_mode == "human":
            self._ant.render()
        return obs, {"success": False, "target": self.target, "xy": self.xy}

    def step(self, action: np.ndarray):
        if self._steps is None:
            raise RuntimeError("call reset() before step()")
        self.data.ctrl[:] = action  # MuJoCo clamps ctrl to ctrlrange [-1, 1], as D4RL's NormalizedBoxEnv clips
        mujoco.mj_step(self.model, self.data, nstep=self.frame_skip)
        self._steps += 1
        self._target_age += 1
        distance = self._distance()
        success = distance <= SUCCESS_RADIUS
        reward = (self._dist - distance) + (self.success_bonus if success else 0.0)
        self._dist = distance
        if success or self._target_age >= self.target_steps:
            self.set_target(self._draw_target())
        z = float(self.data.qpos[2])
        terminated = not (HEALTHY_Z[0] <= z <= HEALTHY_Z[1])
        truncated = (not terminated) and self._steps >= self.max_episode_steps
        if self.render_mode == "human":
            self._ant.render()
        info = {"success": success, "distance": distance, "target": self.target, "xy": self.xy}
        return self._obs(), float(reward), terminated, truncated, info

    def render(self):
        return self._ant.render()

    def close(self) -> None:
        self._gym_env.close()
        super().close()
