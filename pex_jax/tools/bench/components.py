"""What one suite step is made of, each part timed on its own at the suite's shapes (6 AntMaze tasks x 10
seeds, 2x256, UTD 1), with the engine's own functions:

- the device call: `runner.online.make_engine_step` (every agent's update and next action), and the
  donated insert before it;
- the two transfers: one packed upload ([reward, terminal, final obs, next obs] per agent) and one packed
  download ([action, choice] per agent);
- the host's per-step work: `pack_step` and the episode bookkeeping (`EpisodeStats.step`);
- one env step of the D4RL AntMaze env (`runner.workers.step_one`, as the trainer or a worker runs it);
- evaluation: `runner.evaluation.Evaluator` on the same env, per episode and per env step;
- the env pools: time per step of all envs, for `LocalEnvs` (in the trainer), `EnvPool` with N workers and
  gymnasium's `AsyncVectorEnv(shared_memory=True)` (one process per env), with the ant and with `NullEnv`,
  whose time per step is the pool's own overhead.

These are the projection's measured inputs (`pex_jax.tools.bench.projection`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from pex_jax.agents.algorithms import ALGORITHMS, stack_hparams
from pex_jax.data.replay import ReplayBuffer
from pex_jax.envs.task import Task
from pex_jax.multitask import stack_datasets
from pex_jax.runner.evaluation import Evaluator
from pex_jax.runner.online import EpisodeStats, insert_packed, make_engine_step, pack_step
from pex_jax.runner.workers import EnvPool, EnvSlot, LocalEnvs, StepResult, make_slot_env, step_one
from pex_jax.tools.bench.antmaze import LocalAntMaze
from pex_jax.tools.bench.ceiling import cost_flops
from pex_jax.tools.bench.config import BenchConfig, parse_size
from pex_jax.tools.bench.envs import ACT_DIM, OBS_DIM, null_spec, vector_member
from pex_jax.tools.bench.harness import alternate, compile_timed, rate_stats, usable_cores
from pex_jax.tools.bench.problem import box_dims, init_online_states, keys, make_config, synthetic_dataset


class EngineStepper:
    """The engine's device side for (tasks, seeds) agents, as `run_online` drives it: one packed upload, the
    donated insert, one engine step (UTD updates of every agent and the next actions), one packed download."""

    def __init__(self, bc: BenchConfig, config, algo: str, n_tasks: int, n_seeds: int,
                 obs_dim: int = OBS_DIM, act_dim: int = ACT_DIM, dataset_rows: int | None = None):
        spec = ALGORITHMS[algo]
        lead = (n_tasks, n_seeds)
        dims = box_dims(obs_dim, act_dim)
        rows = dataset_rows or bc.dataset_size
        self.datasets, self.rows = stack_datasets([synthetic_dataset(rows, obs_dim, act_dim, seed=30 + t)
                                                   for t in range(n_tasks)])
        # as `run_online` passes them: each task's traced hyperparameters and its dataset's index in the stack
        self.hps = jax.device_put(stack_hparams([config] * n_tasks))
        self.index = jnp.arange(n_tasks, dtype=jnp.int32)
        row_bytes = 4 * (2 * obs_dim + act_dim + 2)
        capacity = int(max(2, min(bc.buffer_capacity, bc.buffer_bytes_limit // (row_bytes * n_tasks * n_seeds))))
        self.buffer = ReplayBuffer.create(lead, obs_dim, act_dim, capacity).replace(
            size=jnp.asarray(capacity // 2, jnp.int32), ptr=jnp.asarray(capacity // 2, jnp.int32))
        self.states = init_online_states(spec, keys(lead, 3), keys(lead, 1), dims, config)
        self.keys = keys(lead, 4)
        self.obs = jnp.zeros((*lead, obs_dim), jnp.float32)
        self.actions = jnp.zeros((*lead, act_dim), jnp.float32)
        rng = np.random.default_rng(0)
        self.packed_host = rng.normal(size=(*lead, 2 + 2 * obs_dim)).astype(np.float32)
        self.lead, self.capacity, self.dataset_rows = lead, capacity, rows
        self.n_agents = n_tasks * n_seeds
        packed = jax.device_put(self.packed_host)
        self.compile_s: dict[str, float] = {}
        self._insert, self.compile_s["insert"] = compile_timed(jax.jit(insert_packed, donate_argnums=(0,)),
                                                               self.buffer, self.obs, self.actions, packed)
        step = jax.jit(make_engine_step(spec, config, True), donate_argnums=(0,))
        self._step, self.compile_s["engine_step"] = compile_timed(step, self.states, self.buffer.data,
                                                                  self.buffer.size, self.keys, packed,
                                                                  self.datasets, self.rows, self.hps, self.index)
        self.flops = cost_flops(self._step)
        self._fresh = jax.jit(lambda x: x + 0)  # a not-yet-fetched copy, so each download really copies
        self.out = self.step(packed)
        jax.block_until_ready(self.out)

    def upload(self, host: np.ndarray) -> jax.Array:
        return jax.device_put(host)

    def insert(self, packed: jax.Array) -> None:
        self.buffer = self._insert(self.buffer, self.obs, self.actions, packed)

    def step(self, packed: jax.Array) -> jax.Array:
        self.states, self.keys, self.obs, self.actions, out, _ = self._step(
            self.states, self.buffer.data, self.buffer.size, self.keys, packed, self.datasets, self.rows, self.hps,
            self.index)
        return out

    def cycle(self, result: StepResult, transforms: list[str], terminal_on_success: list[bool]) -> np.ndarray:
        """One env step's host and device work, env excluded: pack, upload, insert, step, download."""
        packed = self.upload(pack_step(result, transforms, terminal_on_success, self.lead[1]).reshape(*self.lead, -1))
        self.insert(packed)
        return np.asarray(self.step(packed)).reshape(self.n_agents, -1)


def _per_call_window(fn: Callable[[], float], seconds: float) -> float:
    """Calls per second of `fn`, which returns the seconds of the part it times (e.g. a download alone)."""
    spent, calls, t0 = 0.0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or calls == 0:
        spent += fn()
        calls += 1
    return calls / spent


def bench_device(bc: BenchConfig, algo: str, tasks: int, seeds: int, hidden: tuple[int, ...],
                 dataset_rows: int | None = None, extra_windows: dict | None = None) -> dict:
    """The device call, the insert and the two transfers for tasks x seeds agents; `extra_windows` (the
    ceiling's matmul) join the alternation."""
    config = make_config(bc, hidden)
    stepper = EngineStepper(bc, config, algo, tasks, seeds, dataset_rows=dataset_rows)
    packed = stepper.upload(stepper.packed_host)

    def timed(fn: Callable[[], object]) -> Callable[[], float]:
        def call() -> float:
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            return time.perf_counter() - t0
        return call

    def download() -> float:
        fresh = stepper._fresh(stepper.out)
        fresh.block_until_ready()
        t0 = time.perf_counter()
        np.asarray(fresh)
        return time.perf_counter() - t0

    def device_call():
        stepper.out = stepper.step(packed)
        return stepper.out

    def insert():
        stepper.insert(packed)
        return stepper.buffer.size

    parts = {"device_call": timed(device_call), "insert": timed(insert),
             "upload": timed(lambda: stepper.upload(stepper.packed_host)), "download": download}
    rates: dict[str, list[float]] = {k: [] for k in parts}
    windows = {k: (lambda k=k: rates[k].append(_per_call_window(parts[k], bc.component_window_s))) for k in parts}
    windows.update(extra_windows or {})
    alternate(windows, bc.reps)
    out = {k: rate_stats(v) for k, v in rates.items()}
    # CPU time of the device call (every XLA thread of this process): on a CPU device, what the call takes
    # from the cores that envs and evaluations could otherwise use
    cpu_ms = []
    for _ in range(bc.reps):
        calls, c0, t0 = 0, time.process_time(), time.perf_counter()
        while time.perf_counter() - t0 < bc.component_window_s or calls == 0:
            jax.block_until_ready(device_call())
            calls += 1
        cpu_ms.append(1e3 * (time.process_time() - c0) / calls)
    return {"tasks": tasks, "seeds": seeds, "agents": stepper.n_agents,
            "device_call_cpu_ms": {"best": min(cpu_ms), "median": float(np.median(cpu_ms))},
            "hidden": list(config.hidden_dims), "batch": config.batch_size, "utd": int(config.utd), "algo": algo,
            "dataset_rows": stepper.dataset_rows, "buffer_rows": stepper.capacity, "flops_per_call": stepper.flops,
            "upload_shape": list(stepper.packed_host.shape), "download_shape": list(stepper.out.shape),
            "compile_s": stepper.compile_s, "calls_per_s": out}


def bench_host(bc: BenchConfig) -> dict:
    """The host's per-step work at the suite's agents and at one task's: packing the upload, and the episode
    bookkeeping (which the engine overlaps with the envs' stepping)."""
    rng = np.random.default_rng(0)
    out = {}
    for tasks, seeds in ((bc.suite_tasks, bc.suite_seeds), (1, bc.suite_seeds)):
        n = tasks * seeds
        result = StepResult(rng.normal(size=(n, OBS_DIM)).astype(np.float32),
                            rng.normal(size=(n, OBS_DIM)).astype(np.float32), -np.ones(n), np.zeros(n, bool),
                            np.zeros(n, bool), np.zeros(n, bool))  # mid-episode: ends are 1 step in 700-1000
        stats = EpisodeStats(n)
        choices = np.zeros(n)
        parts = {"pack_step": lambda r=result, t=tasks, s=seeds: pack_step(r, ["minus_one"] * t, [True] * t, s),
                 "bookkeeping": lambda r=result, st=stats, c=choices: st.step(r.reward, r.success, r.done, c)}
        rates: dict[str, list[float]] = {k: [] for k in parts}

        def window(name, parts=parts, rates=rates):
            calls, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < bc.component_window_s or calls == 0:
                parts[name]()
                calls += 1
            rates[name].append(calls / (time.perf_counter() - t0))

        alternate({k: partial(window, k) for k in parts}, bc.reps)
        out[f"{tasks}x{seeds}"] = {"agents": n, **{k: rate_stats(v) for k, v in rates.items()}}
    return out


def bench_env_step(bc: BenchConfig, task: Task) -> dict:
    """One D4RL AntMaze env step (`step_one`: step, flatten, reset at an episode's end), random actions."""
    env = make_slot_env(EnvSlot(task, 0))
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (1000, ACT_DIM)).astype(np.float32)
    rates: list[float] = []
    i = 0

    def window():
        nonlocal i
        calls, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 2 * bc.component_window_s or calls == 0:
            step_one(env, actions[i % len(actions)])
            i += 1
            calls += 1
        rates.append(calls / (time.perf_counter() - t0))

    window()  # warm-up
    alternate({"env": window}, bc.reps)
    env.close()
    return {"task": task.name, "max_episode_steps": task.max_episode_steps, "steps_per_s": rate_stats(rates[1:])}


def bench_eval(bc: BenchConfig, task: Task, info, algo: str) -> dict:
    """`Evaluator` (what evaluation runs, in the trainer or a worker) on the task with untrained policies, so
    every episode runs to the time limit: `eval_component_seeds` seeds x `eval_component_episodes` episodes, all
    of a seed's envs stepped together (one policy call per step for all of them, as an evaluation round).

    A first call with 1 episode per seed compiles the policy (the policy's shapes do not depend on the count)."""
    spec = ALGORITHMS[algo]
    config = make_config(bc)
    seeds = list(range(bc.eval_component_seeds))
    episodes = bc.eval_component_episodes
    evaluator = Evaluator(task, info, seeds, episodes, episodes, config)
    n = len(seeds)
    states = init_online_states(spec, keys(n, 3), keys(n, 1), box_dims(OBS_DIM, ACT_DIM), config)
    calls = []
    try:
        warm = evaluator(spec, states, round_index=0, episodes=1)
        for round_index in range(1, 1 + max(1, bc.reps - 2)):
            r = evaluator(spec, states, round_index=round_index)
            calls.append({"seconds": r.seconds, "env_steps": r.env_steps})
    finally:
        evaluator.close()
    ms = [1e3 * c["seconds"] / c["env_steps"] for c in calls]
    per_episode = [c["seconds"] / (n * episodes) for c in calls]
    return {"task": task.name, "seeds": n, "episodes_per_seed": episodes,
            "envs_per_policy_call": n * evaluator.parallel, "hidden": list(config.hidden_dims), "calls": calls,
            "warmup_s": warm.seconds,
            "ms_per_env_step": {"best": min(ms), "median": float(np.median(ms))},
            "s_per_episode": {"best": min(per_episode), "median": float(np.median(per_episode))},
            "env_steps_per_episode": float(np.mean([c["env_steps"] for c in calls])) / (n * episodes)}


def null_task() -> Task:
    """A task whose env is `NullEnv`, for `LocalEnvs` and `EnvPool` (built through `envs.task.make_env`)."""
    spec = null_spec()
    return Task(name="null", kind="gym", env_id=spec.id, max_episode_steps=spec.max_episode_steps, env_spec=spec)


class _AsyncPool:
    """gymnasium's `AsyncVectorEnv(shared_memory=True)` (one process per env, SAME_STEP autoreset), stepped
    like the engine's pools."""

    def __init__(self, kind: str, task_id: str, seeds: list[int]):
        import gymnasium as gym

        fns = [partial(vector_member, kind, task_id, s) for s in seeds]
        self.env = gym.vector.AsyncVectorEnv(fns, shared_memory=True, context="spawn",
                                             autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)

    def reset(self, seeds: list[int]) -> None:
        self.env.reset(seed=seeds)

    def step(self, actions):
        return self.env.step(actions)

    def close(self):
        self.env.close()


def pool_workers(bc: BenchConfig) -> list[int]:
    cores = usable_cores()
    return sorted(set(bc.pool_workers or [1, max(1, cores - 1), cores]))


def bench_pools(bc: BenchConfig, task: Task, log: Callable[[str], None] = print) -> list[dict]:
    """Time per step of every env, per pool kind, with the ant and with `NullEnv`; kinds alternate."""
    out = []
    for n in bc.pool_envs:
        for env_kind in ("null", "ant"):
            slot_task = null_task() if env_kind == "null" else task
            slots = [EnvSlot(slot_task, s) for s in range(n)]
            makers: dict[str, Callable[[], object]] = {"LocalEnvs": partial(LocalEnvs, slots, OBS_DIM, ACT_DIM)}
            for w in pool_workers(bc):
                if w <= n:
                    makers[f"EnvPool({w})"] = partial(EnvPool, slots, OBS_DIM, ACT_DIM, w)
            makers["AsyncVectorEnv"] = partial(_AsyncPool, env_kind, task.env_id, list(range(n)))
            pools, startup = {}, {}
            try:
                for name, make in makers.items():
                    t0 = time.perf_counter()
                    pools[name] = make()
                    startup[name] = time.perf_counter() - t0
                    pools[name].reset(list(range(n)))
                actions = np.random.default_rng(n).uniform(-1, 1, (64, n, ACT_DIM)).astype(np.float32)
                rates: dict[str, list[float]] = {k: [] for k in pools}

                def window(name, pools=pools, rates=rates, actions=actions):
                    calls, t0 = 0, time.perf_counter()
                    while time.perf_counter() - t0 < bc.component_window_s or calls == 0:
                        pools[name].step(actions[calls % len(actions)])
                        calls += 1
                    rates[name].append(calls / (time.perf_counter() - t0))

                for name in pools:
                    window(name)  # warm-up
                    rates[name].clear()
                alternate({k: partial(window, k) for k in pools}, bc.reps)
            finally:
                for p in pools.values():
                    p.close()
            for name in pools:
                row = {"envs": n, "env": env_kind, "pool": name, "steps_per_s": rate_stats(rates[name]),
                       "startup_s": startup[name]}
                out.append(row)
            log(f"pools, {n} envs, {env_kind}: " + ", ".join(
                f"{name} {1e3 / rate_stats(rates[name])['best']:.2f} ms/step" for name in pools))
    return out


def bench_components(bc: BenchConfig, data: LocalAntMaze, extra_windows: dict | None = None,
                     log: Callable[[str], None] = print) -> dict:
    """Every component; `extra_windows` (the ceiling's matmul) join the device windows."""
    algo = bc.algos[0]
    task, info = data.info(data.names(1)[0])
    result = {"device": bench_device(bc, algo, bc.suite_tasks, bc.suite_seeds, bc.hidden_dims,
                                     extra_windows=extra_windows)}
    d = result["device"]["calls_per_s"]
    log(f"components: engine step {result['device']['agents']} agents {1e3 / d['device_call']['best']:.2f} ms, insert "
        f"{1e3 / d['insert']['best']:.3f} ms, upload {1e3 / d['upload']['best']:.3f} ms, download "
        f"{1e3 / d['download']['best']:.3f} ms")
    if bc.acceptance:  # the acceptance case's device call: what workers cannot hide
        tasks, seeds = parse_size(bc.acceptance)
        result["device_acceptance"] = bench_device(bc, algo, tasks, seeds, bc.acceptance_hidden,
                                                   dataset_rows=max(bc.engine_data_steps, bc.batch_size))
    result["host"] = bench_host(bc)
    result["env_step"] = bench_env_step(bc, task)
    log(f"components: one {task.name} env step {1e3 / result['env_step']['steps_per_s']['best']:.3f} ms")
    result["eval"] = bench_eval(bc, task, info, algo)
    log(f"components: evaluation {result['eval']['ms_per_env_step']['best']:.3f} ms per env step, "
        f"{result['eval']['s_per_episode']['best']:.2f} s per episode")
    result["pools"] = bench_pools(bc, task, log)
    return result
