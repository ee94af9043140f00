"""Envs for the env-pool comparison, built without importing JAX.

Why a module of its own: gymnasium's `AsyncVectorEnv` starts one process per env, and each child imports
the module its env factory lives in. Through this module a child imports gymnasium, MuJoCo and the D4RL
AntMaze env only (about 60 MB and 0.4 s each), so 60 children fit on a small machine.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

NULL_ID = "PexBench/Null-v0"
OBS_DIM, ACT_DIM = 29, 8  # the D4RL AntMaze env's


class NullEnv(gym.Env):
    """The D4RL AntMaze env's spaces and nothing else: a step costs next to nothing, so a pool's time per
    step with it is the pool's own overhead."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)
        self._obs = np.zeros(OBS_DIM)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return self._obs.copy(), {}

    def step(self, action):
        return self._obs.copy(), 0.0, False, False, {"success": False}


def null_spec(max_episode_steps: int = 1000) -> gym.envs.registration.EnvSpec:
    """`NullEnv` with a time limit (episodes end and reset as the ant's do), no checker or order wrappers."""
    return gym.envs.registration.EnvSpec(NULL_ID, entry_point=f"{__name__}:NullEnv",
                                         max_episode_steps=max_episode_steps, disable_env_checker=True,
                                         order_enforce=False)


def vector_member(kind: str, task_id: str, seed: int) -> gym.Env:
    """One env of an `AsyncVectorEnv`: "ant" is the D4RL AntMaze env as `envs.task.make_env` builds and
    seeds it; "null" is `NullEnv`."""
    if kind == "null":
        env = gym.make(null_spec())
    else:
        from pex_jax.envs.d4rl_antmaze import make_d4rl_antmaze

        env = make_d4rl_antmaze(task_id)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return env
