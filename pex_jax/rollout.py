"""Host-side environment plumbing: env step results -> the transitions the online buffer stores.

This is the edge of the system: envs step on the host (`pex_jax.runner.workers`), and what crosses
to the device is one packed array per env step.
"""

import numpy as np

from pex_jax.agents.iql import Batch
from pex_jax.data import flatten_observation, transform_rewards


def final_observations(next_obs: np.ndarray, info: dict, done: np.ndarray) -> np.ndarray:
    """True next observations: in SAME_STEP autoreset mode, ended envs report the reset obs,
    and the last obs of the finished episode sits in `info["final_obs"]`."""
    if not done.any():
        return next_obs
    out = next_obs.copy()
    for i in np.flatnonzero(done):
        out[i] = flatten_observation(info["final_obs"][i])
    return out


def step_success(info: dict, done: np.ndarray, n: int) -> np.ndarray:
    """Per-env `success` flag of this step (from `final_info` for envs that just ended)."""
    success = np.asarray(info.get("success", np.zeros(n)), dtype=bool).copy()
    final = info.get("final_info")
    if done.any() and isinstance(final, dict) and "success" in final:
        # Vector-env info layout: a dict of per-env arrays with a `_success` validity mask.
        valid = np.asarray(final.get("_success", done), dtype=bool) & done
        success[valid] = np.asarray(final["success"], dtype=bool)[valid]
    return success


def goal_terminals(terminals, raw_rewards, terminal_on_success: bool) -> np.ndarray:
    """Terminal flags for learning: true terminations, plus goal-reaching (sparse reward > 0) if asked."""
    if not terminal_on_success:
        return np.asarray(terminals, np.float32)
    return np.maximum(np.asarray(terminals, np.float32), (np.asarray(raw_rewards) > 0).astype(np.float32))


def stored_transition(obs: np.ndarray, actions: np.ndarray, step: tuple, reward_transform: str,
                      terminal_on_success: bool) -> tuple[Batch, np.ndarray, np.ndarray, np.ndarray]:
    """What the online buffer stores for one vector-env step (SAME_STEP autoreset).

    `step` is `vector_env.step(actions)`. Returns (transition, next_obs, done, success): the stored
    next observation is the episode's true last one where an env just ended (`final_obs`), while
    the returned `next_obs` is what the policy acts on next (the reset obs there). Terminal = true
    termination (or goal reached, if asked); a time-limit truncation stays 0 so it bootstraps.
    """
    next_obs_raw, reward, terminated, truncated, info = step
    next_obs = flatten_observation(next_obs_raw)
    done = np.asarray(terminated) | np.asarray(truncated)
    transition = Batch(
        observations=np.asarray(obs, np.float32),
        actions=np.asarray(actions, np.float32),
        rewards=np.asarray(transform_rewards(np.asarray(reward), reward_transform), np.float32),
        next_observations=final_observations(next_obs, info, done),
        terminals=goal_terminals(terminated, reward, terminal_on_success),
    )
    return transition, next_obs, done, step_success(info, done, len(done))
