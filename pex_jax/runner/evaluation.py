"""Evaluation episodes: in the training process, or in worker processes on a parameter snapshot.

`Evaluator` runs one task's evaluation for all seeds of a run (one jitted policy call per step for
every seed's envs). `EvalScheduler` decides where it runs:

- `--config.eval_workers=0`: in the training process, which waits for it (the baseline);
- otherwise in a pool of worker processes. The engine takes a snapshot of the acting parameters
  (no optimizer state), submits the evaluation, and trains on. Results are logged at the step they
  belong to, one evaluation round late at the latest: the engine collects round k's results when it
  submits round k + 1, before a checkpoint and at the end. So the log order is fixed, and a resumed
  run replays exactly the lines the killed one wrote.

A task's evaluation is split by seeds into `seed_chunks` jobs, so that a few tasks with many seeds
fill a pool of many workers (6 tasks x 10 seeds on 15 workers: 3 jobs per task), and the results are
joined back in seed order. Each seed's episodes depend only on that seed (its env seeds and keys are
derived from the seed number), so a seed's numbers are the same in any chunk (tests/test_online_engine.py).

Workers run JAX on the CPU and never touch the accelerator. A job's numbers do not depend on where
it runs on the same platform: the worker calls the same `Evaluator` on the same values. Training
never reads evaluation results, so training is the same with evaluation in the background or not.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import serialization

from pex_jax.agents.algorithms import (
    ALGORITHMS,
    TRACED_FIELDS,
    AlgoSpec,
    Dims,
    act,
    init_offline_state,
    init_online_state,
)
from pex_jax.data import flatten_observation, normalized_score
from pex_jax.data.minari import DatasetInfo
from pex_jax.envs.task import Task, make_env
from pex_jax.runner.workers import WorkerError


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

    @staticmethod
    def join(parts: list[EvalResult]) -> EvalResult:
        """The results of seed chunks (in seed order) as one result."""
        if len(parts) == 1:
            return parts[0]

        def cat(name: str) -> np.ndarray | None:
            values = [getattr(r, name) for r in parts]
            return None if values[0] is None else np.concatenate(values)

        return EvalResult(normalized_score=cat("normalized_score"), returns=cat("returns"),
                          success_rate=cat("success_rate"), offline_choice_rate=cat("offline_choice_rate"),
                          minari_score=cat("minari_score"), episodes=parts[0].episodes,
                          env_steps=sum(r.env_steps for r in parts), seconds=sum(r.seconds for r in parts))

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

    def __init__(self, task: Task, info: DatasetInfo, seeds: list[int], episodes: int, parallel: int, config,
                 envs: Callable[[Task, int], list] | None = None):
        self.task, self.info, self.seeds, self.episodes, self.config = task, info, seeds, episodes, config
        self.parallel = max(1, min(parallel, episodes))
        self.env_seeds = [10_000_019 * (s + 1) + j for s in seeds for j in range(self.parallel)]
        # `envs(task, n)`: envs shared with other evaluators (every call reseeds them); by default its own
        self._owns_envs = envs is None
        self.envs = [make_env(task) for _ in self.env_seeds] if envs is None else envs(task, len(self.env_seeds))
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
            actions, choice = jax.device_get(policy(states, keys, t, obs.reshape(n, p, -1)))
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
        for env in self.envs if self._owns_envs else ():
            env.close()


# --- Snapshots: what a worker needs to act ---

_NOT_FOR_ACTING = ("opt_state", "target_critic_params")


def _prune(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _prune(v) for k, v in tree.items() if k not in _NOT_FOR_ACTING}
    return tree


def _overlay(base: Any, update: Any) -> Any:
    if isinstance(update, dict):
        return {k: (_overlay(base[k], update[k]) if k in update else v) for k, v in base.items()}
    return update


def acting_snapshot(states: Any) -> dict:
    """Host copy of the parameters acting needs (optimizer states and targets left on the device)."""
    return jax.device_get(_prune(serialization.to_state_dict(states)))


def restore_acting(template: Any, snapshot: dict) -> Any:
    """`template` (a state of the same structure) with the snapshot's parameters."""
    return serialization.from_state_dict(template, _overlay(serialization.to_state_dict(template), snapshot))


def state_template(spec: AlgoSpec, dims: Dims, config, num_seeds: int) -> Any:
    """A seed-stacked state of the right structure for `spec` (values are placeholders)."""
    keys = jax.random.split(jax.random.PRNGKey(0), num_seeds)
    offline = jax.vmap(lambda k: init_offline_state(k, dims, config))(keys)
    if spec.name == "offline":
        return offline
    return jax.vmap(lambda k, s: init_online_state(spec, k, dims, config, s))(keys, offline)


@dataclass(frozen=True)
class EvalTarget:
    """Everything that defines one task's evaluation, picklable for the workers."""

    task: Task
    info: DatasetInfo
    seeds: tuple[int, ...]
    episodes: int
    parallel: int
    dims: Dims
    config: dict  # the run's config as a plain dict

    def config_dict(self) -> ml_collections.ConfigDict:
        return ml_collections.ConfigDict(self.config)

    def evaluator(self, envs: Callable[[Task, int], list] | None = None) -> Evaluator:
        return Evaluator(self.task, self.info, list(self.seeds), self.episodes, self.parallel, self.config_dict(),
                         envs)


# --- The worker side ---

_CACHE: dict = {}
_ENVS: dict[str, list] = {}  # per task: the eval envs this worker's evaluators share (see `_task_envs`)


def _task_envs(task: Task, count: int) -> list:
    """`count` envs of `task`, shared by all of this worker's evaluators of the task. A job can land on any
    worker, so without sharing each worker would keep envs for every seed chunk (18 chunks x 40 ant envs
    on 16 cores). Sharing is safe: a worker runs one job at a time, and every evaluation reseeds its envs."""
    envs = _ENVS.setdefault(task.name, [])
    envs.extend(make_env(task) for _ in range(count - len(envs)))
    return envs[:count]


def _exit_with_parent() -> None:
    """A killed trainer (SIGKILL) cannot shut its pool down: the worker then ends itself."""
    import threading

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _init_worker() -> None:
    """Eval workers compute on the CPU: the accelerator belongs to the training process."""
    import signal

    from pex_jax.device import configure_runtime

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the trainer handles them, then shuts the pool down
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _exit_with_parent()
    os.environ["JAX_PLATFORMS"] = "cpu"
    jax.config.update("jax_platforms", "cpu")
    configure_runtime("worker")


def _evaluate_job(target: EvalTarget, spec_name: str, snapshot: dict, round_index: int, episodes: int) -> EvalResult:
    """One task's evaluation in a worker; evaluators and templates are cached per process."""
    spec = ALGORITHMS[spec_name]
    # The evaluator's policy reads the target's hyperparameters (the policy set's inverse temperature and epsilon):
    # grid points of one task are separate evaluators.
    key = (target.task.name, target.seeds, target.episodes, target.parallel,
           tuple(float(target.config[name]) for name in TRACED_FIELDS))
    if key not in _CACHE:
        _CACHE[key] = target.evaluator(envs=_task_envs)
    template_key = ("template", spec_name, target.dims, len(target.seeds), repr(sorted(target.config.items())))
    if template_key not in _CACHE:
        _CACHE[template_key] = state_template(spec, target.dims, target.config_dict(), len(target.seeds))
    states = restore_acting(_CACHE[template_key], snapshot)
    return _CACHE[key](spec, states, round_index=round_index, episodes=episodes)


# --- The scheduler ---


def default_eval_workers(requested: int) -> int:
    """`--config.eval_workers`: -1 = all cores but one, 0 = in the training process."""
    if requested < 0:
        return max(1, (os.cpu_count() or 2) - 1)
    return int(requested)


def seed_chunks(num_seeds: int, num_tasks: int, workers: int) -> list[slice]:
    """How a task's seeds are split into jobs: enough jobs for every worker, at most one per seed.

    In-process (0 workers) and with fewer workers than tasks, one job per task."""
    count = max(1, min(num_seeds, -(-int(workers) // max(num_tasks, 1)))) if workers > 0 else 1
    sizes = [num_seeds // count + (i < num_seeds % count) for i in range(count)]
    bounds = np.cumsum([0, *sizes])
    return [slice(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


class EvalScheduler:
    """Runs evaluation rounds in the training process or in a worker pool (see the module docstring).

    `submit` queues one task's evaluation with a callback; callbacks run in submission order, from
    `collect` (or at once, in-process). `blocked_seconds` is the time training waited for evaluation.
    """

    def __init__(self, targets: list[EvalTarget], workers: int, timeout: float = 3600.0):
        self.targets, self.timeout = targets, float(timeout)
        most_seeds = max((len(t.seeds) for t in targets), default=1)
        self.workers = min(int(workers), len(targets) * most_seeds) if workers > 0 else 0
        self._local = [t.evaluator() for t in targets] if self.workers == 0 else None
        # per task: (seed slice, the chunk's target) for every job of one evaluation
        self._jobs = [[(sl, dataclasses.replace(t, seeds=t.seeds[sl]))
                       for sl in seed_chunks(len(t.seeds), len(targets), self.workers)] for t in targets]
        self._pool = None
        if self.workers:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=min(self.workers, sum(map(len, self._jobs))), mp_context=mp.get_context("spawn"),
                initializer=_init_worker)
        self._pending: list[tuple[list[concurrent.futures.Future], Callable, str]] = []
        self.blocked_seconds, self.eval_seconds, self.env_steps = 0.0, 0.0, 0

    @property
    def background(self) -> bool:
        return self._pool is not None

    def submit(self, index: int, spec: AlgoSpec, states: Any, round_index: int, episodes: int,
               on_result: Callable[[EvalResult], None], where: str) -> None:
        """Evaluate task `index` with `states` (seed-stacked); `where` names the step for error lines."""
        t0 = time.perf_counter()
        if self._pool is None:
            result = self._local[index](spec, states, round_index=round_index, episodes=episodes)
            self._account(result, time.perf_counter() - t0)
            on_result(result)
            return
        snapshot = acting_snapshot(states)
        futures = [self._pool.submit(_evaluate_job, target, spec.name,
                                     jax.tree.map(lambda x, sl=sl: x[sl], snapshot), round_index, episodes)
                   for sl, target in self._jobs[index]]
        self._pending.append((futures, on_result, f"task {self.targets[index].task.name}, {where}"))
        self.blocked_seconds += time.perf_counter() - t0

    def collect(self) -> None:
        """Wait for every submitted evaluation and run the callbacks in submission order."""
        t0 = time.perf_counter()
        pending, self._pending = self._pending, []
        try:
            for futures, on_result, where in pending:
                try:
                    result = EvalResult.join([f.result(timeout=self.timeout) for f in futures])
                except concurrent.futures.TimeoutError:
                    raise WorkerError(f"an evaluation worker did not finish the evaluation of {where} within "
                                      f"{self.timeout:.0f} s; rerun with --config.resume=auto") from None
                except concurrent.futures.process.BrokenProcessPool:
                    raise WorkerError(f"an evaluation worker died during the evaluation of {where}; rerun with "
                                      f"--config.resume=auto") from None
                self._account(result, 0.0)
                on_result(result)
        finally:
            self.blocked_seconds += time.perf_counter() - t0

    def _account(self, result: EvalResult, blocked: float) -> None:
        self.eval_seconds += result.seconds
        self.env_steps += result.env_steps
        self.blocked_seconds += blocked

    def close(self) -> None:
        if self._pool is not None:
            for futures, _, _ in self._pending:
                for future in futures:
                    future.cancel()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        for ev in self._local or []:
            ev.close()
