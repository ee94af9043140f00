"""Host-side environment plumbing: vector-env step results -> flat arrays, and seed-vmapped evaluation.

This is the edge of the system: gymnasium vector envs step on the host, and the only thing
crossing to the host from the device each step is the action array.
"""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from pex_jax.agents import AlgoSpec, act
from pex_jax.data import flatten_observation, make_vector_env, normalized_score
from pex_jax.data.minari import DatasetInfo


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


def seed_keys(seeds: list[int], stream: int) -> jax.Array:
    """One PRNG key per seed, for an independent `stream` (init, offline, online, eval...)."""
    return jnp.stack([jax.random.fold_in(jax.random.PRNGKey(s), stream) for s in seeds])


@dataclass
class EvalResult:
    normalized_score: np.ndarray  # (n_seeds,) mean over episodes, x100
    returns: np.ndarray  # (n_seeds,)
    success_rate: np.ndarray  # (n_seeds,)
    offline_choice_rate: np.ndarray | None  # (n_seeds,) PEX only

    def metrics(self) -> dict[str, np.ndarray]:
        out = {
            "eval/normalized_score": self.normalized_score,
            "eval/return": self.returns,
            "eval/success_rate": self.success_rate,
        }
        if self.offline_choice_rate is not None:
            out["eval/offline_choice_rate"] = self.offline_choice_rate
        return out


class Evaluator:
    """Runs `episodes` evaluation episodes per seed on separate, seeded eval envs.

    Each seed gets `parallel` envs, stepped together with one jitted call per step that is
    vmapped over seeds and envs.
    """

    def __init__(self, info: DatasetInfo, seeds: list[int], episodes: int, parallel: int, config):
        self.info, self.seeds, self.episodes, self.config = info, seeds, episodes, config
        self.parallel = max(1, min(parallel, episodes))
        self.per_env = -(-episodes // self.parallel)
        n_envs = len(seeds) * self.parallel
        self.env_seeds = [10_000_019 * (s + 1) + j for s in seeds for j in range(self.parallel)]
        self.env = make_vector_env(info, n_envs, eval=True, seeds=self.env_seeds)
        self._policies = {}

    def _policy(self, spec: AlgoSpec):
        if spec.name not in self._policies:
            config = self.config

            def one(state, key, obs):
                return act(spec, state, key, obs, config, evaluate=True)

            per_seed = jax.vmap(one, in_axes=(None, 0, 0))  # envs of one seed

            def batched(states, keys, t, obs):
                keys = jax.vmap(lambda k: jax.random.split(jax.random.fold_in(k, t), self.parallel))(keys)
                return jax.vmap(per_seed)(states, keys, obs)

            self._policies[spec.name] = jax.jit(batched)
        return self._policies[spec.name]

    def __call__(self, spec: AlgoSpec, states, round_index: int) -> EvalResult:
        n, p = len(self.seeds), self.parallel
        policy = self._policy(spec)
        keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(s), 7_000_000 + round_index) for s in self.seeds])
        obs, _ = self.env.reset(seed=[s + 1_000 * round_index for s in self.env_seeds])
        obs = flatten_observation(obs)
        ep_return = np.zeros(n * p)
        ep_success = np.zeros(n * p, dtype=bool)
        returns = [[] for _ in range(n * p)]
        successes = [[] for _ in range(n * p)]
        choices = [[] for _ in range(n)]
        t = 0
        while min(len(r) for r in returns) < self.per_env:
            actions, choice = jax.device_get(policy(states, keys, t, jnp.asarray(obs).reshape(n, p, -1)))
            choices_flat = choice.reshape(n, p)
            next_obs, reward, terminated, truncated, info = self.env.step(actions.reshape(n * p, -1))
            done = terminated | truncated
            active = np.array([len(r) < self.per_env for r in returns])
            for i in range(n):
                choices[i].extend(choices_flat[i][active[i * p : (i + 1) * p]].tolist())
            ep_return += reward
            ep_success |= step_success(info, done, n * p)
            for i in np.flatnonzero(done):
                if len(returns[i]) < self.per_env:
                    returns[i].append(ep_return[i])
                    successes[i].append(ep_success[i])
                ep_return[i], ep_success[i] = 0.0, False
            obs = flatten_observation(next_obs)
            t += 1
        per_seed_returns = [
            np.concatenate([returns[i * p + j] for j in range(p)])[: self.episodes] for i in range(n)
        ]
        per_seed_success = [
            np.concatenate([successes[i * p + j] for j in range(p)])[: self.episodes] for i in range(n)
        ]
        return EvalResult(
            normalized_score=np.array([normalized_score(r, self.info).mean() for r in per_seed_returns]),
            returns=np.array([r.mean() for r in per_seed_returns]),
            success_rate=np.array([np.mean(s) for s in per_seed_success]),
            offline_choice_rate=(np.array([1.0 - np.mean(c) for c in choices]) if spec.policy_set else None),
        )

    def close(self) -> None:
        self.env.close()
