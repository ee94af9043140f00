"""Host-side environment plumbing: vector-env step results -> flat arrays, and seed-vmapped evaluation.

This is the edge of the system: gymnasium vector envs step on the host, and the only thing
crossing to the host from the device each step is the action array.
"""

import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from pex_jax.agents.algorithms import AlgoSpec, act
from pex_jax.agents.iql import Batch
from pex_jax.data import flatten_observation, normalized_score, transform_rewards
from pex_jax.data.minari import DatasetInfo
from pex_jax.envs.task import Task, make_env


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


def seed_keys(seeds: list[int], stream: int) -> jax.Array:
    """One PRNG key per seed, for an independent `stream` (init, offline, online, eval...)."""
    return jnp.stack([jax.random.fold_in(jax.random.PRNGKey(s), stream) for s in seeds])


@dataclass
class EvalResult:
    normalized_score: np.ndarray  # (n_seeds,) the headline: 100 x success rate for mazes, else normalized return
    returns: np.ndarray  # (n_seeds,)
    success_rate: np.ndarray  # (n_seeds,)
    offline_choice_rate: np.ndarray | None  # (n_seeds,) PEX only
    minari_score: np.ndarray | None = None  # (n_seeds,) Minari's return-based score, where the dataset has refs
    episodes: int = 0  # per seed
    env_steps: int = 0  # all envs together
    seconds: float = 0.0

    def metrics(self) -> dict[str, np.ndarray]:
        out = {
            "eval/normalized_score": self.normalized_score,
            "eval/return": self.returns,
            "eval/success_rate": self.success_rate,
        }
        if self.offline_choice_rate is not None:
            out["eval/offline_choice_rate"] = self.offline_choice_rate
        if self.minari_score is not None:
            out["eval/minari_score"] = self.minari_score
        return out


class Evaluator:
    """Runs evaluation episodes per seed on the run's task, in separate, seeded eval envs.

    Each seed gets `parallel` envs whose observations go through one jitted policy call per step
    (vmapped over seeds and envs). Envs are stepped one by one and only while they still owe
    episodes, so an episode that ends at the goal costs no further env steps; `episodes` can differ
    per call (few for interim evaluations, many for the final one).
    """

    def __init__(self, task: Task, info: DatasetInfo, seeds: list[int], episodes: int, parallel: int, config):
        self.task, self.info, self.seeds, self.episodes, self.config = task, info, seeds, episodes, config
        self.parallel = max(1, min(parallel, episodes))
        self.env_seeds = [10_000_019 * (s + 1) + j for s in seeds for j in range(self.parallel)]
        self.envs = [make_env(task) for _ in self.env_seeds]
        self._policies = {}
        self.total_seconds, self.total_env_steps = 0.0, 0

    def _policy(self, spec: AlgoSpec):
        if spec.name not in self._policies:
            config, parallel = self.config, self.parallel

            def one(state, key, obs):
                return act(spec, state, key, obs, config, evaluate=True)

            per_seed = jax.vmap(one, in_axes=(None, 0, 0))  # envs of one seed

            def batched(states, keys, t, obs):
                keys = jax.vmap(lambda k: jax.random.split(jax.random.fold_in(k, t), parallel))(keys)
                return jax.vmap(per_seed)(states, keys, obs)

            self._policies[spec.name] = jax.jit(batched)
        return self._policies[spec.name]

    def __call__(self, spec: AlgoSpec, states, round_index: int, episodes: int | None = None) -> EvalResult:
        start = time.perf_counter()
        episodes = int(episodes or self.episodes)
        n, p = len(self.seeds), self.parallel
        policy = self._policy(spec)
        keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(s), 7_000_000 + round_index) for s in self.seeds])
        # Env j of a seed runs that seed's episodes j, j + p, j + 2p, ...
        owed = np.array([len(range(j, episodes, p)) for _ in range(n) for j in range(p)])
        first = [env.reset(seed=s + 1_000 * round_index)[0] for env, s in zip(self.envs, self.env_seeds, strict=True)]
        obs = np.stack([flatten_observation(o) for o in first])
        ep_return, ep_success = np.zeros(n * p), np.zeros(n * p, dtype=bool)
        returns, successes = [[] for _ in range(n)], [[] for _ in range(n)]
        picks, count = np.zeros(n), np.zeros(n)  # steps on which the policy set chose the offline policy (0)
        t, env_steps = 0, 0
        while owed.any():
            actions, choice = jax.device_get(policy(states, keys, t, jnp.asarray(obs).reshape(n, p, -1)))
            actions, choice = actions.reshape(n * p, -1), choice.reshape(n * p)
            for i in np.flatnonzero(owed):
                seed_index = i // p
                picks[seed_index] += choice[i] == 0
                count[seed_index] += 1
                next_obs, reward, terminated, truncated, info = self.envs[i].step(actions[i])
                env_steps += 1
                ep_return[i] += reward
                ep_success[i] |= bool(info.get("success", False))
                if terminated or truncated:
                    returns[seed_index].append(ep_return[i])
                    successes[seed_index].append(ep_success[i])
                    ep_return[i], ep_success[i] = 0.0, False
                    owed[i] -= 1
                    if owed[i]:
                        next_obs, _ = self.envs[i].reset()
                obs[i] = flatten_observation(next_obs)
            t += 1
        returns_arr = np.array([np.mean(r) for r in returns])
        success_rate = np.array([np.mean(s) for s in successes])
        minari = None
        if self.task.score == "success":
            headline = 100.0 * success_rate
            if self.info.source in ("minari", "local") and self.info.ref_min_score is not None \
                    and self.info.ref_max_score is not None and self.info.ref_max_score != self.info.ref_min_score:
                minari = np.array([normalized_score(r, self.info).mean() for r in returns])
        else:
            headline = np.array([normalized_score(r, self.info).mean() for r in returns])
        seconds = time.perf_counter() - start
        self.total_seconds += seconds
        self.total_env_steps += env_steps
        return EvalResult(
            normalized_score=headline,
            returns=returns_arr,
            success_rate=success_rate,
            offline_choice_rate=(picks / np.maximum(count, 1)) if spec.policy_set else None,
            minari_score=minari,
            episodes=episodes,
            env_steps=env_steps,
            seconds=seconds,
        )

    def close(self) -> None:
        for env in self.envs:
            env.close()
