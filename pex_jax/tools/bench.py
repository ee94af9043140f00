"""Throughput benchmark: offline IQL updates/s, the online loop's env-steps/s, action selection,
several tasks in one call, compile times and memory. Writes `bench.json` and `bench.md`.

    python -m pex_jax.tools.bench --out bench_out/ [--seeds 1,4,16] [--quick]   # or: make bench

Why an in-run baseline: the machines this runs on are shared and timings move by 2x with other
people's load, so each fused figure is measured next to its unfused baseline, alternating short
windows of the two, and reported as a ratio to it:
- offline: the same IQL update as one jitted call per update from Python (no `lax.scan`);
- online: separate jitted calls for insert, update and act per env step, instead of the
  runner's insert + fused update-and-act.
Each figure is the best and the median over `--reps` windows; the best is the least disturbed
by other processes. The load average before and after is recorded next to the numbers.

Shapes: offline runs on AntMaze-D4RL-shaped data (obs 29, act 8, synthetic rows: speed does not
depend on the values). The online loop steps a real gymnasium `AntMaze_UMaze-v4` vector env
(one sub-env per seed, as the runner) and flattens its dict observation the way the runner
does, to 31 features (observation 27 + achieved_goal 2 + desired_goal 2; the D4RL reference
has 29), so its networks take 31 inputs. "Env step excluded" replays recorded env outputs
through the same host code instead of calling MuJoCo.

Three kinds of figure, and no ratio uses a number from outside the run:
- **in-run baselines**: the ratios above (fused vs unfused, looped vs vmapped, one call vs per task);
- **fraction of the ceiling**: every run measures XLA's matmul throughput on this device at the
  update's shapes and at a large size; peak = the best window of either. Each rate is reported as
  rate x FLOPs per update (XLA's cost analysis of the compiled update) / peak;
- **the reference side by side** (`--reference PYTHON`, `make bench-reference`): the reference
  PyTorch PEX's own IQL and PEX classes (pinned commit, `pex_jax.tools.ref_pex`) run in a child
  process of their own venv, timed in windows that alternate with the project's (A B B A ...).
Figures measured elsewhere stay in `CONTEXT`, printed as labelled context, never a denominator.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pex_jax.agents.algorithms import (
    ALGORITHMS,
    Dims,
    act,
    hparams,
    init_offline_state,
    init_online_state,
    make_offline_chunk,
    make_online_step,
    over_seeds,
    update_fn,
)
from pex_jax.agents.iql import Batch, iql_update
from pex_jax.config import default_config
from pex_jax.data import flatten_observation, transform_rewards
from pex_jax.data.replay import ReplayBuffer, mixed_batch, sample_dataset
from pex_jax.multitask import make_multitask_offline_chunk, stack_datasets
from pex_jax.rollout import final_observations
from pex_jax.sharding import can_shard, replicate, shard_seeds
from pex_jax.tools import ref_pex

# Figures measured outside this run, kept only as labelled context: never a denominator.
CONTEXT = [
    {"figure": "reference PyTorch PEX, offline IQL updates/s, 2 threads", "value": 190.0,
     "measured": "by issue 6's author, machine and load not recorded, before 2026-11-27"},
    {"figure": "reference PyTorch PEX, offline IQL updates/s, 1 thread", "value": 130.0,
     "measured": "by issue 6's author, machine and load not recorded, before 2026-11-27"},
    {"figure": "reference PyTorch PEX, online PEX updates/s", "value": 100.0,
     "measured": "by issue 6's author, machine and load not recorded, before 2026-11-27"},
    {"figure": "reference PyTorch PEX, action selections/s", "value": 3400.0,
     "measured": "by issue 6's author, machine and load not recorded, before 2026-11-27"},
    {"figure": "reference PyTorch PEX, offline IQL updates/s, 2 threads, side by side", "value": "46-57",
     "measured": "by issue 17's author, side by side on the project's 2-core dev VM (shared), before 2026-11-30"},
    {"figure": "XLA large-matmul peak, GFLOP/s", "value": "110",
     "measured": "by issue 17's author, side by side on the project's 2-core dev VM (shared), before 2026-11-30"},
]

ENV_ID = "AntMaze_UMaze-v4"


@dataclass
class BenchConfig:
    """What to measure and at which size; `--quick` shrinks everything to test size."""

    out: str = "bench_out"
    seeds: list[int] = field(default_factory=lambda: [1, 4, 16])
    online_seeds: list[int] = field(default_factory=lambda: [1, 4, 16])
    algos: list[str] = field(default_factory=lambda: ["pex", "direct"])
    obs_dim: int = 29
    act_dim: int = 8
    hidden_dims: tuple[int, ...] = (256, 256)
    batch_size: int = 256
    dataset_size: int = 1_000_000
    buffer_capacity: int = 1_000_000
    buffer_bytes_limit: int = 2 << 30  # online buffers are capped at this many bytes in total
    updates: int = 100  # offline updates per window for one seed (scaled down with more seeds)
    online_steps: int = 50  # env steps per window for one seed (scaled down with more seeds)
    reps: int = 3
    env: str = ENV_ID  # "none" skips the real-env online runs
    tasks: int = 3  # multitask: tasks in one call (0 skips)
    shard: bool = False  # split seeds over local devices when possible
    skip: list[str] = field(default_factory=list)  # any of offline, online, act, multitask
    quick: bool = False
    check_scaling: float = 0.0  # > 0: exit 1 unless total(S) >= check_scaling * S * total(1), offline
    ceiling_window_s: float = 1.0  # seconds per matmul-throughput window
    large_matmul: int = 0  # side of the large square matmul (0: 2048 on CPU, 8192 on accelerators)
    # The reference side by side (off unless `reference` names the Python of a venv with torch).
    reference: str = ""  # path to that Python, "auto" (.venv-ref/bin/python when it has torch), or ""
    reference_src: str = ""  # a clone, bare git dir or source tree of the reference (default: git clone)
    reference_commit: str = ref_pex.REF_COMMIT
    reference_dir: str = ""  # where the code at that commit is put (default .ref/PEX-<commit>)
    reference_threads: list[int] = field(default_factory=list)  # torch threads tried (default 1 and the cores)
    reference_window_s: float = 3.0  # seconds per side-by-side window
    reference_reps: int = 4  # windows per side and figure, alternating (A B B A)
    reference_buffer_rows: int = 100_000  # transitions in the reference's online ReplayMemory

    @classmethod
    def quick_config(cls, **overrides) -> BenchConfig:
        base = dict(seeds=[1, 2], online_seeds=[1], algos=["pex"], hidden_dims=(32, 32), batch_size=32,
                    dataset_size=2_000, buffer_capacity=1_000, updates=4, online_steps=3, reps=2, tasks=2,
                    quick=True, ceiling_window_s=0.02, large_matmul=256, reference_window_s=0.2,
                    reference_reps=2, reference_buffer_rows=1_000)
        base.update(overrides)
        return cls(**base)


# --- Timing helpers ---


def _stats(seconds: Sequence[float], work: float) -> dict[str, float]:
    rates = [work / s for s in seconds]
    return {"best": float(max(rates)), "median": float(np.median(rates)), "windows": len(rates)}


def _ratio(a: dict, b: dict) -> dict[str, float]:
    return {"best": a["best"] / b["best"], "median": a["median"] / b["median"]}


def alternate(windows: dict[str, Callable[[], None]], reps: int) -> dict[str, list[float]]:
    """Run each window `reps` times, interleaved (A B B A ...), so load changes hit all alike."""
    times: dict[str, list[float]] = {k: [] for k in windows}
    names = list(windows)
    for r in range(reps):
        for name in names if r % 2 == 0 else names[::-1]:
            t = time.perf_counter()
            windows[name]()
            times[name].append(time.perf_counter() - t)
    return times


def compile_timed(fn, *args) -> tuple[Any, float]:
    """Ahead-of-time lower + compile; returns the executable and the seconds it took."""
    t = time.perf_counter()
    compiled = fn.lower(*args).compile()
    return compiled, time.perf_counter() - t


def _unalias(tree):
    return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)


# Initial values do not matter for speed; XLA's cheapest settings compile the (random-op heavy)
# initialisation ~10x faster than the default or than eager op-by-op dispatch. Not for timed code:
# both options slow the compiled program down.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


_INITS: dict[tuple, Callable] = {}  # one jitted initialiser per problem, so repeated calls reuse the executable


def _fast_jit(fn: Callable) -> Callable:
    """`jax.jit` with FAST_COMPILE where this jax's XLA knows the options; plain `jax.jit` where it does not
    (jax 0.12 rejects `xla_cpu_use_fusion_emitters`: 'No such compile option')."""
    fast = jax.jit(fn, compiler_options=FAST_COMPILE)
    chosen = [fast]

    def call(*args):
        if chosen[0] is fast:
            try:
                return fast(*args)
            except Exception as e:  # noqa: BLE001 - the error type differs across jax versions
                if "option" not in str(e).lower():
                    raise
                chosen[0] = jax.jit(fn)
        return chosen[0](*args)

    return call


def init_offline_states(keys: jax.Array, dims: Dims, config) -> Any:
    """Offline states for keys of any leading shape (seeds, or tasks x seeds)."""
    key = ("offline", dims, id(config))
    if key not in _INITS:
        _INITS[key] = _fast_jit(jax.vmap(lambda k: init_offline_state(k, dims, config)))
    lead = keys.shape[:-1]
    states = _INITS[key](keys.reshape(-1, keys.shape[-1]))
    return _unalias(jax.tree.map(lambda x: x.reshape(*lead, *x.shape[1:]), states))


def init_online_states(spec, keys: jax.Array, offline_keys: jax.Array, dims: Dims, config) -> Any:
    """Online states as the runner builds them (warm-started from fresh offline states)."""
    key = ("online", spec.name, dims, id(config))
    if key not in _INITS:

        def one(k, k_off):
            return init_online_state(spec, k, dims, config, init_offline_state(k_off, dims, config))

        _INITS[key] = _fast_jit(jax.vmap(one))
    return _unalias(_INITS[key](keys, offline_keys))


def _keys(n: int, stream: int) -> jax.Array:
    return jax.random.split(jax.random.fold_in(jax.random.PRNGKey(0), stream), n)


# --- Problem set-up ---


def make_config(bc: BenchConfig):
    config = default_config()
    config.hidden_dims = tuple(bc.hidden_dims)
    config.batch_size = bc.batch_size
    config.utd = 1
    config.offline_steps = 1_000_000
    return config


def box_dims(obs_dim: int, act_dim: int) -> Dims:
    return Dims(obs_dim, act_dim, (-1.0,) * act_dim, (1.0,) * act_dim)


def synthetic_dataset(n: int, obs_dim: int, act_dim: int, seed: int = 0) -> Batch:
    """AntMaze-like rows (rewards 0 / -1 after `minus_one`, rare terminals); values do not change speed."""
    rng = np.random.default_rng(seed)
    return Batch(
        observations=jnp.asarray(rng.normal(size=(n, obs_dim)).astype(np.float32)),
        actions=jnp.asarray(rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32)),
        rewards=jnp.asarray(-(rng.random(n) > 0.01).astype(np.float32)),
        next_observations=jnp.asarray(rng.normal(size=(n, obs_dim)).astype(np.float32)),
        terminals=jnp.asarray((rng.random(n) < 0.01).astype(np.float32)),
    )


def _offline_update_once(config):
    """The baseline: one IQL update (same sampling, same keys) per jitted call, no scan."""
    hp, batch_size = hparams(config), config.batch_size

    def one(state, key, dataset):
        key, k_batch, k_update = jax.random.split(key, 3)
        state, metrics = iql_update(state, sample_dataset(dataset, k_batch, batch_size), k_update, hp)
        return state, key, metrics

    return one


# --- The ceiling: matmul throughput and FLOPs per update ---


def cost_flops(compiled) -> float | None:
    """FLOPs of one call of a compiled executable, from XLA's cost analysis (None where unavailable).

    XLA counts a while loop's body once, so this is taken from executables without a scan over updates.
    """
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - backends without cost analysis raise various errors
        return None
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    flops = cost.get("flops") if cost else None
    return float(flops) if flops and flops > 0 else None


class MatmulCeiling:
    """XLA's f32 matmul throughput on the default device: (m, n) @ (n, n) chained `inner` times per call.

    Two sizes: the update's (batch x widest layer, the shape of most of its matmuls) and a large square
    one. `measure(reps)` runs `reps` interleaved windows of each. The run measures `bc.reps` windows of
    each at the start and at the end, and interleaves more with the offline (both sizes) and online
    (update shape) windows, so that the peak is sampled under the same load as the rates; the peak is
    the best window of all.
    """

    def __init__(self, bc: BenchConfig):
        accelerator = jax.default_backend() != "cpu"
        large = bc.large_matmul or (8192 if accelerator else 2048)
        target = (1e9 if bc.quick else 5e11) if accelerator else (2e7 if bc.quick else 2e9)  # FLOPs per call
        shapes = {"update shape": (bc.batch_size, max(bc.hidden_dims)), "large": (large, large)}
        self.window_s, self.reps, self.sizes, self.calls, self.rates = bc.ceiling_window_s, bc.reps, {}, {}, {}
        rng = np.random.default_rng(0)
        for name, (m, n) in shapes.items():
            inner = max(1, int(np.ceil(target / (2.0 * m * n * n))))
            x = jnp.asarray(rng.normal(size=(m, n)).astype(np.float32))
            w = jnp.asarray((rng.normal(size=(n, n)) / np.sqrt(n)).astype(np.float32))  # keeps |x| about constant
            fn = jax.jit(lambda x, w, inner=inner: jax.lax.fori_loop(0, inner, lambda _, y: y @ w, x))
            compiled = fn.lower(x, w).compile()
            compiled(x, w).block_until_ready()  # warm-up
            self.sizes[name] = {"m": m, "k": n, "n": n, "chained": inner, "flops_per_call": 2.0 * m * n * n * inner}
            self.calls[name] = (compiled, x, w)
            self.rates[name] = []

    def _window(self, name: str) -> None:
        compiled, x, w = self.calls[name]
        calls, t0 = 0, time.perf_counter()
        while True:
            compiled(x, w).block_until_ready()
            calls += 1
            dt = time.perf_counter() - t0
            if dt >= self.window_s:
                break
        self.rates[name].append(calls * self.sizes[name]["flops_per_call"] / dt / 1e9)

    def windows(self, names: Sequence[str] | None = None) -> dict[str, Callable[[], None]]:
        """Matmul windows to interleave with a part's own windows (A B C ... C B A)."""
        return {f"matmul {name}": (lambda name=name: self._window(name)) for name in (names or self.calls)}

    def measure(self, reps: int | None = None) -> None:
        names = list(self.calls)
        for r in range(self.reps if reps is None else reps):
            for name in names if r % 2 == 0 else names[::-1]:
                self._window(name)

    def result(self) -> dict:
        matmul = {name: {**self.sizes[name], **_rate_stats(self.rates[name])} for name in self.calls}
        peak_from = max(matmul, key=lambda k: matmul[k]["best"])
        return {"unit": "GFLOP/s", "window_s": self.window_s, "matmul": matmul,
                "peak_gflops": matmul[peak_from]["best"], "peak_from": peak_from}


def _rate_stats(rates: Sequence[float]) -> dict[str, Any]:
    return {"best": float(max(rates)), "median": float(np.median(rates)), "windows": len(rates),
            "rates": [float(r) for r in rates]}


def fraction_of_ceiling(rate: float, flops: float | None, peak_gflops: float | None) -> float | None:
    """rate (updates or steps per second) x FLOPs each / peak FLOP/s; None without either number."""
    if not flops or not peak_gflops:
        return None
    return rate * flops / (peak_gflops * 1e9)


# --- Offline ---


def bench_offline(bc: BenchConfig, config, dataset: Batch, num_seeds: int, extra_windows: dict | None = None) -> dict:
    """Offline updates/s for `num_seeds` seeds: the runner's scanned chunk vs one call per update.

    `extra_windows` (name -> callable) join the alternation untimed here: the ceiling's matmul windows.
    """
    dims = box_dims(bc.obs_dim, bc.act_dim)
    k = max(2, round(bc.updates / num_seeds))

    sharded = bc.shard and can_shard(num_seeds)
    data = replicate(dataset) if sharded else dataset

    def fresh():
        states, keys = init_offline_states(_keys(num_seeds, 1), dims, config), _keys(num_seeds, 2)
        return shard_seeds((states, keys)) if sharded else (states, keys)

    chunk = make_offline_chunk(config, k)
    # Seeds looped on a single CPU device (`over_seeds`), vmapped otherwise: what the runner should call.
    looped = not sharded and num_seeds > 1 and jax.default_backend() == "cpu" and jax.device_count() == 1
    fused = jax.jit(over_seeds(chunk, (0, 0, None), sequential=looped), donate_argnums=(0,))
    once = jax.jit(jax.vmap(_offline_update_once(config), in_axes=(0, 0, None)), donate_argnums=(0,))
    states = {"fused": list(fresh()), "baseline": list(fresh())}
    compiled = {}
    compiled["fused"], fused_compile = compile_timed(fused, *states["fused"], data)
    compiled["baseline"], once_compile = compile_timed(once, *states["baseline"], data)
    compile_s = {"fused_chunk": fused_compile, "baseline_update": once_compile}
    if looped:  # also the plain vmap over seeds, to show what looping the seeds brings on CPU
        states["vmap"] = list(fresh())
        vmapped = jax.jit(jax.vmap(chunk, in_axes=(0, 0, None)), donate_argnums=(0,))
        compiled["vmap"], compile_s["fused_chunk_vmap"] = compile_timed(vmapped, *states["vmap"], data)

    def chunk_window(name):
        def run():
            box = states[name]
            box[0], box[1], m = compiled[name](box[0], box[1], data)
            jax.block_until_ready(m)

        return run

    def run_once():
        box, m = states["baseline"], None
        for _ in range(k):
            box[0], box[1], m = compiled["baseline"](box[0], box[1], data)
        jax.block_until_ready(m)

    windows = {name: chunk_window(name) for name in compiled if name != "baseline"}
    windows["baseline"] = run_once
    windows.update(extra_windows or {})
    for run in windows.values():
        run()  # warm-up: first-call allocations
    times = alternate(windows, bc.reps)
    fused_s, base_s = _stats(times["fused"], k), _stats(times["baseline"], k)
    result = {
        "seeds": num_seeds,
        "sharded": sharded,
        "seeds_looped": looped,
        "updates_per_window": k,
        "fused_per_seed": fused_s,
        "fused_total": {key: v * num_seeds for key, v in fused_s.items() if key != "windows"},
        "baseline_per_seed": base_s,
        "baseline_total": {key: v * num_seeds for key, v in base_s.items() if key != "windows"},
        "ratio_to_baseline": _ratio(fused_s, base_s),
        "compile_s": compile_s,
        # one seed's IQL update, from the per-update executable (the scanned chunk counts its body once)
        "flops_per_update": _per_seed(cost_flops(compiled["baseline"]), num_seeds),
    }
    if "vmap" in times:
        vmap_s = _stats(times["vmap"], k)
        result["fused_vmap_per_seed"] = vmap_s
        result["looped_to_vmap"] = _ratio(fused_s, vmap_s)
    return result


def _per_seed(flops: float | None, num_seeds: int) -> float | None:
    return flops / num_seeds if flops else None


# --- Online ---


def _make_env(num_envs: int, env_id: str):
    import gymnasium as gym

    if "Maze" in env_id:
        import gymnasium_robotics

        gym.register_envs(gymnasium_robotics)
    fns = [lambda: gym.make(env_id) for _ in range(num_envs)]
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


class _RecordedEnv:
    """Replays recorded `env.step` outputs: the online loop with the env step itself excluded."""

    def __init__(self, env, num_envs: int, act_dim: int, steps: int = 64):
        rng = np.random.default_rng(0)
        self.records = [env.step(rng.uniform(-1, 1, (num_envs, act_dim)).astype(np.float32)) for _ in range(steps)]
        self.i = 0

    def step(self, actions):
        del actions
        self.i = (self.i + 1) % len(self.records)
        return self.records[self.i]


class _OnlineLoop:
    """The runner's per-env-step host code (`train.online_phase`), with per-phase timers."""

    PHASES = ("env_step", "host_prep", "insert_call", "obs_to_device", "step_call", "device_get")

    def __init__(self, env, obs, actions, reward_transform: str):
        self.env, self.obs, self.actions, self.reward_transform = env, obs, actions, reward_transform
        self.phase_s = dict.fromkeys(self.PHASES, 0.0)
        self.steps = 0

    def transition(self):
        t0 = time.perf_counter()
        next_obs_raw, reward, terminated, truncated, info = self.env.step(self.actions)
        t1 = time.perf_counter()
        next_obs = flatten_observation(next_obs_raw)
        done = terminated | truncated
        transition = Batch(
            observations=self.obs,
            actions=np.asarray(self.actions, np.float32),
            rewards=np.asarray(transform_rewards(reward, self.reward_transform), np.float32),
            next_observations=final_observations(next_obs, info, done),
            terminals=np.asarray(terminated, np.float32),
        )
        t2 = time.perf_counter()
        self.phase_s["env_step"] += t1 - t0
        self.phase_s["host_prep"] += t2 - t1
        return transition, next_obs

    def fused_step(self, insert, step, ctx):
        """Runner order: insert (donated), one fused update-and-act call, fetch the actions."""
        transition, next_obs = self.transition()
        t0 = time.perf_counter()
        ctx["buffers"] = insert(ctx["buffers"], transition)
        t1 = time.perf_counter()
        obs_dev = jnp.asarray(next_obs)
        t2 = time.perf_counter()
        ctx["states"], ctx["keys"], actions, choices, _ = step(
            ctx["states"], ctx["buffers"].data, ctx["buffers"].size, ctx["keys"], obs_dev, ctx["dataset"]
        )
        t3 = time.perf_counter()
        self.actions, _ = jax.device_get((actions, choices))
        t4 = time.perf_counter()
        for name, dt in zip(self.PHASES[2:], (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            self.phase_s[name] += dt
        self.obs = next_obs
        self.steps += 1

    def unfused_step(self, insert, update, act_fn, ctx):
        """Baseline: insert, update and act as three separate jitted calls."""
        transition, next_obs = self.transition()
        ctx["buffers"] = insert(ctx["buffers"], transition)
        ctx["states"], ctx["keys"], _ = update(
            ctx["states"], ctx["buffers"].data, ctx["buffers"].size, ctx["keys"], ctx["dataset"]
        )
        ctx["keys"], actions, choices = act_fn(ctx["states"], ctx["keys"], jnp.asarray(next_obs))
        self.actions, _ = jax.device_get((actions, choices))
        self.obs = next_obs


def _online_update_once(spec, config):
    """Baseline update: the same mixed batch and update as `make_online_step`, without acting."""
    update = update_fn(spec, config)
    batch_size, ratio = config.batch_size, spec.offline_ratio

    def one(state, online, online_size, key, dataset):
        key, k_batch, k_update = jax.random.split(key, 3)
        state, metrics = update(state, mixed_batch(k_batch, dataset, online, online_size, batch_size, ratio), k_update)
        return state, key, metrics

    return one


def _act_once(spec, config):
    def one(state, key, obs):
        key, k_act = jax.random.split(key)
        action, choice = act(spec, state, k_act, obs, config, evaluate=False)
        return key, action, choice

    return one


def bench_online(bc: BenchConfig, config, algo: str, num_seeds: int, extra_windows: dict | None = None) -> dict:
    """Env-steps/s per seed of the online loop at UTD 1, with the real env and with it excluded.

    `extra_windows` join each alternation, as in `bench_offline`.
    """
    spec = ALGORITHMS[algo]
    real_env = _make_env(num_seeds, bc.env) if bc.env != "none" else None
    if real_env is not None:
        obs0, _ = real_env.reset(seed=list(range(num_seeds)))
        obs0 = flatten_observation(obs0)
        obs_dim = obs0.shape[-1]
        act_dim = int(np.prod(real_env.single_action_space.shape))
    else:
        obs_dim, act_dim = bc.obs_dim, bc.act_dim
        obs0 = np.zeros((num_seeds, obs_dim), np.float32)
    dims = box_dims(obs_dim, act_dim)
    dataset = synthetic_dataset(bc.dataset_size, obs_dim, act_dim, seed=1)
    row_bytes = 4 * (2 * obs_dim + act_dim + 2)
    capacity = int(max(1, min(bc.buffer_capacity, bc.buffer_bytes_limit // (row_bytes * num_seeds))))
    sharded = bc.shard and can_shard(num_seeds)

    def fresh():
        states = init_online_states(spec, _keys(num_seeds, 3), _keys(num_seeds, 1), dims, config)
        buffers = ReplayBuffer.create(num_seeds, obs_dim, act_dim, capacity)
        buffers = buffers.replace(size=jnp.asarray(capacity // 2, jnp.int32), ptr=jnp.asarray(capacity // 2, jnp.int32))
        keys = _keys(num_seeds, 4)
        if sharded:
            states, keys, buffers = shard_seeds((states, keys, buffers))
        return {"states": states, "keys": keys, "buffers": buffers,
                "dataset": replicate(dataset) if sharded else dataset}

    fused_ctx, base_ctx = fresh(), fresh()
    insert = jax.jit(ReplayBuffer.insert, donate_argnums=(0,))
    step = jax.jit(make_online_step(spec, config, True), donate_argnums=(0,))
    update = jax.jit(jax.vmap(_online_update_once(spec, config), in_axes=(0, 0, None, 0, None)), donate_argnums=(0,))
    act_fn = jax.jit(jax.vmap(_act_once(spec, config)))
    sample = Batch(obs0, np.zeros((num_seeds, act_dim), np.float32), np.zeros(num_seeds, np.float32), obs0,
                   np.zeros(num_seeds, np.float32))
    c = fused_ctx
    insert_c, insert_compile = compile_timed(insert, c["buffers"], sample)
    step_c, step_compile = compile_timed(step, c["states"], c["buffers"].data, c["buffers"].size, c["keys"],
                                         jnp.asarray(obs0), c["dataset"])
    c = base_ctx
    update_c, update_compile = compile_timed(update, c["states"], c["buffers"].data, c["buffers"].size, c["keys"],
                                             c["dataset"])
    act_c, act_compile = compile_timed(act_fn, c["states"], c["keys"], jnp.asarray(obs0))

    n = max(2, round(bc.online_steps / num_seeds))
    actions0 = np.zeros((num_seeds, act_dim), np.float32)
    reward_transform = "minus_one"
    result: dict[str, Any] = {
        "algo": algo, "seeds": num_seeds, "sharded": sharded, "utd": 1, "obs_dim": obs_dim, "act_dim": act_dim,
        "buffer_capacity": capacity, "steps_per_window": n,
        "compile_s": {"insert": insert_compile, "fused_step": step_compile, "baseline_update": update_compile,
                      "baseline_act": act_compile},
        # per seed and env step: the fused update-and-act call; and the update alone
        "flops_per_env_step": _per_seed(cost_flops(step_c), num_seeds),
        "flops_per_update": _per_seed(cost_flops(update_c), num_seeds),
    }
    modes = {}
    if real_env is not None:
        modes["env"] = real_env
        modes["no_env"] = _RecordedEnv(real_env, num_seeds, act_dim)
    else:
        modes["no_env"] = _RecordedEnv(_SyntheticEnv(num_seeds, obs_dim), num_seeds, act_dim)
    for mode, env in modes.items():
        fused_loop = _OnlineLoop(env, obs0, actions0, reward_transform)
        base_loop = _OnlineLoop(env, obs0, actions0, reward_transform)

        def run_fused(loop=fused_loop):
            for _ in range(n):
                loop.fused_step(insert_c, step_c, fused_ctx)

        def run_base(loop=base_loop):
            for _ in range(n):
                loop.unfused_step(insert_c, update_c, act_c, base_ctx)

        run_fused(), run_base()  # warm-up
        fused_loop.phase_s, fused_loop.steps = dict.fromkeys(_OnlineLoop.PHASES, 0.0), 0
        times = alternate({"fused": run_fused, "baseline": run_base, **(extra_windows or {})}, bc.reps)
        fused_s, base_s = _stats(times["fused"], n), _stats(times["baseline"], n)
        result[mode] = {
            "env_steps_per_s_per_seed": fused_s,
            "env_steps_per_s_total": {k: v * num_seeds for k, v in fused_s.items() if k != "windows"},
            "baseline_env_steps_per_s_per_seed": base_s,
            "ratio_to_baseline": _ratio(fused_s, base_s),
            "host_ms_per_step": {k: 1e3 * v / max(fused_loop.steps, 1) for k, v in fused_loop.phase_s.items()},
        }
    if real_env is not None:
        real_env.close()
    return result


class _SyntheticEnv:
    """Stand-in when `--env none`: Box observations of the requested size."""

    def __init__(self, n: int, obs_dim: int):
        self.n, self.obs_dim, self.rng = n, obs_dim, np.random.default_rng(0)

    def step(self, actions):
        del actions
        obs = self.rng.normal(size=(self.n, self.obs_dim)).astype(np.float32)
        z = np.zeros(self.n, bool)
        return obs, np.zeros(self.n), z, z, {}


# --- Action selection ---


def bench_act(bc: BenchConfig, config, algo: str) -> dict:
    """Single-seed, single-observation action selections per second, host round trip included."""
    spec = ALGORITHMS[algo]
    dims = box_dims(bc.obs_dim, bc.act_dim)
    states = init_online_states(spec, _keys(1, 3), _keys(1, 1), dims, config)
    act_fn = jax.jit(jax.vmap(_act_once(spec, config)))
    keys = _keys(1, 4)
    obs = np.zeros((1, bc.obs_dim), np.float32)
    compiled, compile_s = compile_timed(act_fn, states, keys, obs)
    n = 20 if bc.quick else 500
    box = [keys]

    def run():
        for _ in range(n):
            box[0], a, c = compiled(states, box[0], obs)
            jax.device_get((a, c))

    run()
    times = alternate({"act": run}, bc.reps)
    s = _stats(times["act"], n)
    return {"algo": algo, "act_per_s": s, "flops_per_call": cost_flops(compiled), "compile_s": compile_s}


# --- Several tasks in one call ---


def bench_multitask(bc: BenchConfig, config, num_tasks: int, num_seeds: int) -> dict:
    """Offline updates/s of `num_tasks` tasks x `num_seeds` seeds in one call vs one call per task."""
    dims = box_dims(bc.obs_dim, bc.act_dim)
    # Different lengths, as real tasks have (the quick run keeps one length: one compile fewer per task).
    sizes = [max(bc.batch_size, int(bc.dataset_size * (1 - (0 if bc.quick else 0.1) * i))) for i in range(num_tasks)]
    datasets = [synthetic_dataset(s, bc.obs_dim, bc.act_dim, seed=10 + i) for i, s in enumerate(sizes)]
    stacked, rows = stack_datasets(datasets)
    k = max(2, round(bc.updates / (num_seeds * num_tasks)))
    keys = jnp.stack([_keys(num_seeds, 20 + i) for i in range(num_tasks)])
    multi = jax.jit(make_multitask_offline_chunk(config, k), donate_argnums=(0,))
    m_state = [init_offline_states(keys, dims, config), keys]
    multi_c, multi_compile = compile_timed(multi, *m_state, stacked, rows)
    # The other axis order, for the record: all (task, seed) pairs vmapped (what accelerators get).
    vmapped = jax.jit(make_multitask_offline_chunk(config, k, sequential=False), donate_argnums=(0,))
    v_state = [init_offline_states(keys, dims, config), keys]
    vmapped_c, _ = compile_timed(vmapped, *v_state, stacked, rows)
    # The baseline: the runner's per-task call, one task after another.
    single = jax.jit(over_seeds(make_offline_chunk(config, k), (0, 0, None)), donate_argnums=(0,))
    s_states = [[init_offline_states(keys[i], dims, config), keys[i]] for i in range(num_tasks)]
    by_rows: dict[int, Any] = {}  # one executable per dataset length, as separate runs would have
    single_compile = 0.0
    for i in range(num_tasks):
        if sizes[i] not in by_rows:
            by_rows[sizes[i]], dt = compile_timed(single, *s_states[i], datasets[i])
            single_compile += dt
    single_c = [by_rows[n] for n in sizes]

    def run_multi():
        m_state[0], m_state[1], m = multi_c(m_state[0], m_state[1], stacked, rows)
        jax.block_until_ready(m)

    def run_vmapped():
        v_state[0], v_state[1], m = vmapped_c(v_state[0], v_state[1], stacked, rows)
        jax.block_until_ready(m)

    def run_sequential():
        m = None
        for i in range(num_tasks):
            s_states[i][0], s_states[i][1], m = single_c[i](s_states[i][0], s_states[i][1], datasets[i])
        jax.block_until_ready(m)

    run_multi(), run_vmapped(), run_sequential()
    times = alternate({"multitask": run_multi, "vmapped": run_vmapped, "sequential": run_sequential}, bc.reps)
    work = k * num_seeds * num_tasks
    multi_s, seq_s = _stats(times["multitask"], work), _stats(times["sequential"], work)
    vmapped_s = _stats(times["vmapped"], work)
    return {
        "tasks": num_tasks, "seeds_per_task": num_seeds, "dataset_rows": sizes, "updates_per_window": k,
        "multitask_updates_per_s_total": multi_s, "sequential_updates_per_s_total": seq_s,
        "ratio_to_sequential": _ratio(multi_s, seq_s),
        "vmapped_updates_per_s_total": vmapped_s, "vmapped_ratio_to_sequential": _ratio(vmapped_s, seq_s),
        "compile_s": {"multitask": multi_compile, "sequential_all_tasks": single_compile},
    }


# --- The reference PyTorch PEX, side by side ---

SIDE_FIGURES = {  # worker figure name -> (label, unit); 1 seed, PEX, the reference's AntMaze shapes
    "offline": ("offline IQL updates/s", "updates/s"),
    "pex_update": ("online PEX updates/s (update alone, half dataset / half buffer batch)", "updates/s"),
    "online_step": ("online PEX env-steps/s, env excluded (act + update + buffer insert)", "env-steps/s"),
    "act": ("PEX action selections/s (1 observation, host round trip)", "per s"),
}


def _project_side(bc: BenchConfig, config) -> dict:
    """pex-jax's side of each side-by-side figure: a callable, the work one call does, FLOPs per unit of work."""
    spec, obs_dim, act_dim = ALGORITHMS["pex"], bc.obs_dim, bc.act_dim
    dims = box_dims(obs_dim, act_dim)
    dataset = synthetic_dataset(bc.dataset_size, obs_dim, act_dim, seed=2)
    compile_s: dict[str, float] = {}
    # Offline: the runner's chunk of K updates in one call.
    k = max(2, bc.updates)
    off = [init_offline_states(_keys(1, 1), dims, config), _keys(1, 2)]
    chunk = jax.jit(jax.vmap(make_offline_chunk(config, k), in_axes=(0, 0, None)), donate_argnums=(0,))
    chunk_c, compile_s["offline_chunk"] = compile_timed(chunk, *off, dataset)
    once = jax.jit(jax.vmap(_offline_update_once(config), in_axes=(0, 0, None)))
    offline_flops = cost_flops(once.lower(*off, dataset).compile())  # the chunk's scan hides its trip count

    def offline():
        off[0], off[1], m = chunk_c(off[0], off[1], dataset)
        return m

    # Online: the runner's loop with the env step excluded; the update alone; action selection.
    capacity = int(max(1, min(bc.buffer_capacity, bc.buffer_bytes_limit // (4 * (2 * obs_dim + act_dim + 2)))))
    obs0 = np.zeros((1, obs_dim), np.float32)

    def context(stream: int, rows: int = capacity) -> dict:
        buffers = ReplayBuffer.create(1, obs_dim, act_dim, rows)
        buffers = buffers.replace(size=jnp.asarray(rows // 2, jnp.int32), ptr=jnp.asarray(rows // 2, jnp.int32))
        return {"states": init_online_states(spec, _keys(1, stream), _keys(1, 1), dims, config),
                "keys": _keys(1, stream + 1), "buffers": buffers, "dataset": dataset}

    loop_ctx, update_ctx, act_ctx = context(3), context(5), context(7, rows=2)  # acting reads no buffer
    sample = Batch(obs0, np.zeros((1, act_dim), np.float32), np.zeros(1, np.float32), obs0, np.zeros(1, np.float32))
    c = loop_ctx
    insert = jax.jit(ReplayBuffer.insert, donate_argnums=(0,))
    insert_c, compile_s["insert"] = compile_timed(insert, c["buffers"], sample)
    step_c, compile_s["fused_step"] = compile_timed(jax.jit(make_online_step(spec, config, True), donate_argnums=(0,)),
                                                    c["states"], c["buffers"].data, c["buffers"].size, c["keys"],
                                                    jnp.asarray(obs0), dataset)
    update = jax.jit(jax.vmap(_online_update_once(spec, config), in_axes=(0, 0, None, 0, None)), donate_argnums=(0,))
    c = update_ctx
    update_c, compile_s["update"] = compile_timed(update, c["states"], c["buffers"].data, c["buffers"].size, c["keys"],
                                                  dataset)
    act_c, compile_s["act"] = compile_timed(jax.jit(jax.vmap(_act_once(spec, config))), act_ctx["states"],
                                            act_ctx["keys"], obs0)
    loop = _OnlineLoop(_RecordedEnv(_SyntheticEnv(1, obs_dim), 1, act_dim), obs0, np.zeros((1, act_dim), np.float32),
                       "minus_one")

    def online_step():
        loop.fused_step(insert_c, step_c, loop_ctx)  # ends with device_get of the actions

    def pex_update():
        c = update_ctx
        c["states"], c["keys"], m = update_c(c["states"], c["buffers"].data, c["buffers"].size, c["keys"], dataset)
        return m

    def act_once():
        c = act_ctx
        c["keys"], a, choice = act_c(c["states"], c["keys"], obs0)
        jax.device_get((a, choice))

    sides = {"offline": (offline, k, offline_flops), "pex_update": (pex_update, 1, cost_flops(update_c)),
             "online_step": (online_step, 1, cost_flops(step_c)), "act": (act_once, 1, cost_flops(act_c))}
    for fn, _, _ in sides.values():  # warm-up: first-call allocations
        jax.block_until_ready(fn())
    return {"sides": sides, "compile_s": compile_s, "buffer_capacity": capacity}


def _project_window(fn: Callable, seconds: float) -> tuple[int, float]:
    calls, out, t0 = 0, None, time.perf_counter()
    while True:
        out = fn()
        calls += 1
        if time.perf_counter() - t0 >= seconds:
            break
    jax.block_until_ready(out)
    return calls, time.perf_counter() - t0


def bench_side_by_side(bc: BenchConfig, config, worker, threads: Sequence[int],
                       log: Callable[[str], None] = print) -> dict:
    """Each figure: pex-jax and the reference (at each thread count) in alternating windows (A B B A ...).

    `worker.window(figure, seconds, threads) -> (calls, seconds)` times the reference's side. The ratio
    divides pex-jax by the reference at its faster thread count; the range is over the reps, each
    rep's pex-jax window divided by the faster of that rep's reference windows.
    """
    project = _project_side(bc, config)
    figures = []
    for name, (label, unit) in SIDE_FIGURES.items():
        fn, work, flops = project["sides"][name]
        rates: dict[Any, list[float]] = {"pex-jax": [], **{t: [] for t in threads}}
        order = ["pex-jax", *threads]
        for r in range(bc.reference_reps):
            for side in order if r % 2 == 0 else order[::-1]:
                if side == "pex-jax":
                    calls, dt = _project_window(fn, bc.reference_window_s)
                    rates[side].append(calls * work / dt)
                else:
                    calls, dt = worker.window(name, bc.reference_window_s, side)
                    rates[side].append(calls / dt)
        ours = _rate_stats(rates["pex-jax"])
        ref = {str(t): _rate_stats(rates[t]) for t in threads}
        per_rep = [rates["pex-jax"][r] / max(rates[t][r] for t in threads) for r in range(bc.reference_reps)]
        fig = {"figure": name, "label": label, "unit": unit, "flops_per_unit": flops, "project": ours,
               "reference": ref, "reference_best_threads": int(max(ref, key=lambda t: ref[t]["best"])),
               "ratio": {"best": ours["best"] / max(v["best"] for v in ref.values()),
                         "median": ours["median"] / max(v["median"] for v in ref.values())},
               "ratio_range": [min(per_rep), max(per_rep)]}
        log(f"side by side, {label}: pex-jax {_bm(ours)}, reference "
            + ", ".join(f"{_bm(v)} ({t} thr)" for t, v in ref.items())
            + f" -> x{fig['ratio']['best']:.2f} (best), x{min(per_rep):.2f}-{max(per_rep):.2f} per rep")
        figures.append(fig)
    return {"reference": dict(worker.info), "threads": [int(t) for t in threads], "window_s": bc.reference_window_s,
            "reps": bc.reference_reps, "shapes": {"obs": bc.obs_dim, "act": bc.act_dim,
                                                  "hidden": list(bc.hidden_dims), "batch": bc.batch_size},
            "dataset_rows": bc.dataset_size, "project_buffer_rows": project["buffer_capacity"] // 2,
            "figures": figures, "compile_s": project["compile_s"]}


def reference_hparams(config) -> dict:
    """The project's hyperparameters under the reference's names (speed does not depend on them)."""
    return {"lr": config.lr, "expectile": config.expectile, "beta": config.beta, "discount": config.gamma,
            "target_rate": config.tau, "inv_temperature": config.inv_temperature,
            "offline_steps": config.offline_steps}


def prepare_reference(bc: BenchConfig, log: Callable[[str], None] = print) -> dict | None:
    """Check the reference's Python and put its code in place before anything is timed (fails fast).

    None when `bc.reference == "auto"` and no .venv-ref with torch is there.
    """
    python = bc.reference
    if python == "auto":
        python = str(Path(".venv-ref") / "bin" / "python")
        if not Path(python).exists():
            log("reference: no .venv-ref here (make bench-reference builds it); side by side skipped")
            return None
    torch_version = ref_pex.check_python(python)
    dest = bc.reference_dir or str(Path(".ref") / f"PEX-{bc.reference_commit}")
    source = ref_pex.prepare_source(dest, bc.reference_commit, bc.reference_src or None, log=log)
    return {"python": python, "torch": torch_version, "dir": dest, "source": source}


# --- Report ---


def machine_info() -> dict:
    dev = jax.devices()[0]
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=5, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "platform": dev.platform, "device_kind": dev.device_kind, "device_count": jax.device_count(),
        "cpu": cpu, "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "jax": jax.__version__, "python": sys.version.split()[0], "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "git_commit": commit, "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


def memory_info() -> dict:
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    stats = None
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory stats raise various errors
        stats = None
    device = None
    if stats:
        device = {k: int(v) for k, v in stats.items() if k in ("peak_bytes_in_use", "bytes_in_use", "bytes_limit")}
    return {"peak_rss_mib": rss_kib / 1024.0, "device_memory": device}


def _f(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def _ratio_text(r: dict) -> str:
    return f"{r['best']:.2f} / {r['median']:.2f}"


def _bm(d: dict) -> str:
    return f"{_f(d['best'])} / {_f(d['median'])}"


def _pct(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.0f}%" if x >= 0.1 else f"{100 * x:.1f}%" if x >= 0.001 else f"{100 * x:.2g}%"


def _frac_bm(rates: dict, flops: float | None, peak: float | None) -> str:
    """Best / median of a rate as fractions of the ceiling, computed here from the measured fields."""
    best, median = (fraction_of_ceiling(rates[k], flops, peak) for k in ("best", "median"))
    return "-" if best is None else f"{_pct(best)} / {_pct(median)}"


def _online_rates(r: dict, mode: str) -> dict:
    return r[mode]["env_steps_per_s_total"]


def ceiling_rows(result: dict) -> list[tuple[str, float]]:
    """(work, FLOPs each) for every kind of work in the run, from XLA's cost analysis."""
    rows: list[tuple[str, float]] = []
    offline_flops = next((r.get("flops_per_update") for r in result.get("offline") or [] if r.get("flops_per_update")),
                         None)
    if offline_flops:
        rows.append(("offline IQL update (1 seed)", offline_flops))
    seen = set()
    for r in result.get("online") or []:
        key = (r["algo"], r["obs_dim"])
        if key not in seen and r.get("flops_per_env_step"):
            seen.add(key)
            rows.append((f"online {r['algo']} env step, obs {r['obs_dim']} (update + act)", r["flops_per_env_step"]))
    if (result.get("act") or {}).get("flops_per_call"):
        rows.append((f"{result['act']['algo']} action selection", result["act"]["flops_per_call"]))
    return rows


def _all_fractions(result: dict) -> list[float]:
    """Best-window fractions of the ceiling of the offline and online rates, recomputed from measured fields."""
    peak = (result.get("ceiling") or {}).get("peak_gflops")
    out = [fraction_of_ceiling(r["fused_total"]["best"], r.get("flops_per_update"), peak)
           for r in result.get("offline") or []]
    out += [fraction_of_ceiling(r[mode]["env_steps_per_s_total"]["best"], r.get("flops_per_env_step"), peak)
            for r in result.get("online") or [] for mode in ("env", "no_env") if mode in r]
    return [x for x in out if x is not None]


def to_markdown(result: dict) -> str:
    """The report, rebuilt from the JSON's measured fields alone (ratios and fractions computed here)."""
    m, cfg = result["machine"], result["config"]
    ceiling = result.get("ceiling") or {}
    peak = ceiling.get("peak_gflops")
    lines = [
        "# pex-jax benchmark",
        "",
        f"Run {m.get('date', '?')} on {m['platform']} ({m['device_kind']}) x{m['device_count']}, CPU {m['cpu']}, "
        f"{m['cpu_affinity']} usable cores; jax {m['jax']}; commit {m['git_commit'] or '?'}; "
        f"XLA_FLAGS={m['xla_flags']!r}; load average {result['load_before']} -> {result['load_after']}.",
        f"Shapes: obs {cfg['obs_dim']} (online: the env's), act {cfg['act_dim']}, hidden {tuple(cfg['hidden_dims'])}, "
        f"batch {cfg['batch_size']}. Figures are best / median over interleaved windows. Three kinds: ratios to an "
        "in-run baseline; fractions of this device's matmul ceiling, measured in this run; and, when asked for, the "
        "reference PyTorch PEX measured side by side in this run. Figures from elsewhere appear only under Context.",
        "",
    ]
    if ceiling:
        lines += ["## Ceiling (measured in this run)", "",
                  "| XLA f32 matmul | shape | GFLOP/s (best / median) | windows |", "|---|---|---|---|"]
        for name, x in ceiling["matmul"].items():
            chain = f", {x['chained']} chained per call" if x["chained"] > 1 else ""
            shape = f"({x['m']} x {x['k']}) @ ({x['k']} x {x['n']}){chain}"
            lines.append(f"| {name} | {shape} | {_bm(x)} | {x['windows']} |")
        update_rate = ceiling["matmul"].get("update shape", {}).get("best")
        lines += ["", f"Peak: **{_f(peak)} GFLOP/s** (best window, {ceiling['peak_from']}; windows at the start and "
                  "the end of the run and interleaved with the offline and online windows). A rate's fraction of the "
                  "ceiling = rate x FLOPs each (XLA's cost analysis of the compiled executable) / peak.", "",
                  "| work | GFLOP each | ceiling at the peak (per s) | at the update-shape matmul rate (per s) |",
                  "|---|---|---|---|"]
        for name, flops in ceiling_rows(result):
            at_update = _f(update_rate * 1e9 / flops) if update_rate else "-"
            lines.append(f"| {name} | {flops / 1e9:.3g} | {_f(peak * 1e9 / flops)} | {at_update} |")
        top = max(_all_fractions(result), default=0.0)
        if top > 1:
            lines += ["", f"Some rates reach {_pct(top)} of this peak: every matmul window fell in a busier spell than "
                      "those rates' best windows (a shared machine), so the peak here is a lower bound."]
        lines.append("")
    if result.get("offline"):
        lines += [
            "## Offline IQL updates/s",
            "",
            "| seeds | fused per seed | fused total | per-update-call baseline per seed | ratio (best / median) "
            "| total, fraction of ceiling | total / 1-seed total | total / (seeds x 1-seed total) "
            "| seeds looped / vmapped |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in result["offline"]:
            rr = r["ratio_to_baseline"]
            eff = r.get("efficiency_vs_1_seed")
            vs_one = f"{eff * r['seeds']:.2f}" if eff else "-"
            lines.append(
                f"| {r['seeds']}{' (sharded)' if r['sharded'] else ''} | {_bm(r['fused_per_seed'])} "
                f"| {_bm(r['fused_total'])} | {_bm(r['baseline_per_seed'])} | {rr['best']:.2f} / {rr['median']:.2f} "
                f"| {_frac_bm(r['fused_total'], r.get('flops_per_update'), peak)} "
                f"| {vs_one} | {f'{eff:.2f}' if eff else '-'} "
                f"| {_ratio_text(r['looped_to_vmap']) if 'looped_to_vmap' in r else '-'} |"
            )
        lines.append("")
    if result.get("online"):
        lines += [
            "## Online loop, env-steps/s per seed (UTD 1)",
            "",
            "| algo | seeds | env | fused loop | unfused baseline | ratio (best / median) | total env-steps/s "
            "| total, fraction of ceiling |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in result["online"]:
            for mode in ("env", "no_env"):
                if mode not in r:
                    continue
                x = r[mode]
                label = f"{ENV_ID if mode == 'env' else 'excluded'}"
                rr = x["ratio_to_baseline"]
                lines.append(
                    f"| {r['algo']} | {r['seeds']}{' (sharded)' if r['sharded'] else ''} | {label} "
                    f"| {_bm(x['env_steps_per_s_per_seed'])} "
                    f"| {_bm(x['baseline_env_steps_per_s_per_seed'])} | {rr['best']:.2f} / {rr['median']:.2f} "
                    f"| {_bm(x['env_steps_per_s_total'])} "
                    f"| {_frac_bm(_online_rates(r, mode), r.get('flops_per_env_step'), peak)} |"
                )
        lines += ["", "### Host time per env step in the fused loop (ms, mean; device work shows up in device_get)", "",
                  "| algo | seeds | env | " + " | ".join(_OnlineLoop.PHASES) + " |",
                  "|---|---|---|" + "---|" * len(_OnlineLoop.PHASES)]
        for r in result["online"]:
            for mode in ("env", "no_env"):
                if mode in r:
                    h = r[mode]["host_ms_per_step"]
                    lines.append(f"| {r['algo']} | {r['seeds']} | {mode} | "
                                 + " | ".join(f"{h[p]:.3f}" for p in _OnlineLoop.PHASES) + " |")
        lines.append("")
    if result.get("act"):
        a = result["act"]
        lines += ["## Action selection (1 seed, 1 observation, host round trip)", "",
                  f"{a['algo']}: {_bm(a['act_per_s'])} per s; fraction of ceiling "
                  f"{_frac_bm(a['act_per_s'], a.get('flops_per_call'), peak)} (a latency figure: one observation "
                  "uses a sliver of the device).", ""]
    if result.get("side_by_side"):
        lines += side_by_side_markdown(result["side_by_side"], peak)
    if result.get("multitask"):
        t = result["multitask"]
        rr = t["ratio_to_sequential"]
        vr = t.get("vmapped_ratio_to_sequential") or {"best": float("nan"), "median": float("nan")}
        offline_flops = next((r.get("flops_per_update") for r in result.get("offline") or []), None)
        lines += ["## Several tasks in one call (offline)", "",
                  "| tasks x seeds | one call, updates/s total | one call per task | ratio (best / median) "
                  "| all pairs vmapped, ratio | one call, fraction of ceiling |",
                  "|---|---|---|---|---|---|",
                  f"| {t['tasks']} x {t['seeds_per_task']} | {_bm(t['multitask_updates_per_s_total'])} "
                  f"| {_bm(t['sequential_updates_per_s_total'])} | {rr['best']:.2f} / {rr['median']:.2f} "
                  f"| {vr['best']:.2f} / {vr['median']:.2f} "
                  f"| {_frac_bm(t['multitask_updates_per_s_total'], offline_flops, peak)} |", ""]
    lines += ["## Compile times (s)", "", "| what | seconds |", "|---|---|"]
    for name, sec in result["compile_s"].items():
        lines.append(f"| {name} | {sec:.2f} |" if sec >= 0.01 else f"| {name} | cached (same program compiled above) |")
    mem = result["memory"]
    lines += ["", "## Memory", "", f"Peak RSS {mem['peak_rss_mib']:.0f} MiB; device memory: "
              f"{mem['device_memory'] if mem['device_memory'] else 'not reported by this backend'}.", ""]
    if "scaling_check" in result:
        c = result["scaling_check"]
        lines += ["## Seed scaling check", "",
                  f"total({c['seeds']} seeds) = {_f(c['total'])} vs {c['required_fraction']} x {c['seeds']} x "
                  f"single-seed {_f(c['single'])} = {_f(c['required'])}: {'PASS' if c['passed'] else 'FAIL'}", ""]
    if result.get("context"):
        lines += ["## Context: figures not measured in this run (never used in a ratio)", "",
                  "| figure | value | measured |", "|---|---|---|"]
        lines += [f"| {c['figure']} | {c['value']} | {c['measured']} |" for c in result["context"]]
        lines.append("")
    return "\n".join(lines)


def side_by_side_markdown(sbs: dict, peak: float | None) -> list[str]:
    ref, threads = sbs["reference"], sbs["threads"]
    sh = sbs["shapes"]
    commit = ref.get("commit", "?")
    lines = [
        "## The reference PyTorch PEX, side by side (measured in this run)", "",
        f"Reference {commit[:7] if len(commit) == 40 else commit} from {ref.get('origin', '?')}; torch "
        f"{ref.get('torch', '?')} on {ref.get('device', '?')}, Python {ref.get('python', '?')}, in its own venv and "
        f"process. Its own IQL and PEX classes, networks, ReplayMemory and batch samplers, built as its "
        f"main_offline.py / main_online.py build them, at 1 seed, obs {sh['obs']}, act {sh['act']}, hidden "
        f"{tuple(sh['hidden'])}, batch {sh['batch']} ({sbs['dataset_rows']:,}-row dataset; online memory "
        f"{ref.get('buffer_rows', 0):,} rows, pex-jax's buffer {sbs['project_buffer_rows']:,}). Windows of "
        f"{sbs['window_s']} s alternate between pex-jax and the reference at {', '.join(map(str, threads))} torch "
        f"thread(s) (A B B A ..., {sbs['reps']} per side and figure). The ratio divides by the reference at its faster "
        "thread count; the range is over reps, each pex-jax window against the faster reference window next to it.",
        "",
        "| figure | pex-jax (best / median) | "
        + " | ".join(f"reference, {t} thread{'s' if t > 1 else ''}" for t in threads)
        + " | pex-jax / reference (best / median) | range over reps | GFLOP each "
        "| fraction of ceiling: pex-jax / reference |",
        "|---|---|" + "---|" * len(threads) + "---|---|---|---|",
    ]
    for fig in sbs["figures"]:
        p, r = fig["project"], fig["reference"]
        best = {k: max(v[k] for v in r.values()) for k in ("best", "median")}
        lo, hi = fig["ratio_range"]
        flops = fig.get("flops_per_unit")
        ref_frac = fraction_of_ceiling(best["best"], flops, peak)
        lines.append(
            f"| {fig['label']} | {_bm(p)} | " + " | ".join(_bm(r[str(t)]) for t in threads)
            + f" | **{p['best'] / best['best']:.2f}x** / {p['median'] / best['median']:.2f}x | {lo:.2f}-{hi:.2f}x "
            f"| {f'{flops / 1e9:.3g}' if flops else '-'} "
            f"| {_pct(fraction_of_ceiling(p['best'], flops, peak))} / {_pct(ref_frac)} |")
    lines += ["", "Run-time patches to the reference (its files are not edited):", ""]
    lines += [f"- {p}" for p in ref.get("patches", [])] or ["- none"]
    lines += ["- torch.set_num_threads per window, as listed above (the reference's scripts call "
              "torch.set_num_threads(1))", ""]
    return lines


def attach_fractions(result: dict) -> None:
    """Store each rate's fraction of the ceiling next to it in the JSON (the Markdown recomputes them)."""
    peak = (result.get("ceiling") or {}).get("peak_gflops")

    def frac(rates: dict, flops) -> dict | None:
        best = fraction_of_ceiling(rates["best"], flops, peak)
        return None if best is None else {"best": best, "median": fraction_of_ceiling(rates["median"], flops, peak)}

    for r in result.get("offline") or []:
        r["fraction_of_ceiling"] = frac(r["fused_total"], r.get("flops_per_update"))
    for r in result.get("online") or []:
        for mode in ("env", "no_env"):
            if mode in r:
                r[mode]["fraction_of_ceiling"] = frac(r[mode]["env_steps_per_s_total"], r.get("flops_per_env_step"))
    if result.get("act"):
        result["act"]["fraction_of_ceiling"] = frac(result["act"]["act_per_s"], result["act"].get("flops_per_call"))
    if result.get("multitask"):
        flops = next((r.get("flops_per_update") for r in result.get("offline") or []), None)
        result["multitask"]["fraction_of_ceiling"] = frac(result["multitask"]["multitask_updates_per_s_total"], flops)
    for fig in (result.get("side_by_side") or {}).get("figures", []):
        fig["project"]["fraction_of_ceiling"] = frac(fig["project"], fig.get("flops_per_unit"))
        for r in fig["reference"].values():
            r["fraction_of_ceiling"] = frac(r, fig.get("flops_per_unit"))


def summary_lines(result: dict) -> list[str]:
    """What `make bench` prints at the end: the ceiling and every rate's fraction of it (best windows)."""
    c = result.get("ceiling")
    if not c:
        return []
    peak = c["peak_gflops"]
    others = ", ".join(f"{k} {_f(v['best'])}" for k, v in c["matmul"].items() if k != c["peak_from"])
    out = [f"ceiling: peak {_f(peak)} GFLOP/s ({c['peak_from']} matmul; {others}); "
           + "; ".join(f"{name} {flops / 1e9:.3g} GFLOP -> at most {_f(peak * 1e9 / flops)}/s"
                       for name, flops in ceiling_rows(result))]
    parts = [f"offline {r['seeds']} seed{'s' if r['seeds'] > 1 else ''} {_pct(r['fraction_of_ceiling']['best'])}"
             for r in result.get("offline") or [] if r.get("fraction_of_ceiling")]
    for r in result.get("online") or []:
        for mode in ("env", "no_env"):
            if (r.get(mode) or {}).get("fraction_of_ceiling"):
                env = "env" if mode == "env" else "env excluded"
                parts.append(f"online {r['algo']} {r['seeds']} seed{'s' if r['seeds'] > 1 else ''} {env} "
                             f"{_pct(r[mode]['fraction_of_ceiling']['best'])}")
    if (result.get("multitask") or {}).get("fraction_of_ceiling"):
        parts.append(f"multitask {_pct(result['multitask']['fraction_of_ceiling']['best'])}")
    if parts:
        out.append("fraction of ceiling (total rate, best window): " + ", ".join(parts))
    for fig in (result.get("side_by_side") or {}).get("figures", []):
        lo, hi = fig["ratio_range"]
        out.append(f"side by side: {fig['label']}: pex-jax / reference x{fig['ratio']['best']:.2f} best, "
                   f"x{fig['ratio']['median']:.2f} median, x{lo:.2f}-{hi:.2f} over reps")
    return out


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def run(bc: BenchConfig, log: Callable[[str], None] = print) -> dict:
    """Run every measurement not in `bc.skip`; returns the result dict (also what `main` writes).

    Raises `ref_pex.RefBenchError` before anything is timed when the reference was asked for and cannot run.
    """
    config = make_config(bc)
    reference = prepare_reference(bc, log) if bc.reference and "reference" not in bc.skip else None
    result: dict[str, Any] = {"machine": machine_info(), "context": CONTEXT, "load_before": _load(),
                              "config": {**asdict(bc), "hidden_dims": list(bc.hidden_dims)}}
    ceiling = MatmulCeiling(bc)
    ceiling.measure()
    log("matmul (start): " + ", ".join(f"{k} {_f(v[-1])} GFLOP/s" for k, v in ceiling.rates.items()))
    compile_s: dict[str, float] = {}
    if "offline" not in bc.skip:
        dataset = synthetic_dataset(bc.dataset_size, bc.obs_dim, bc.act_dim)
        result["offline"] = []
        for s in bc.seeds:
            r = bench_offline(bc, config, dataset, s, ceiling.windows())
            log(f"offline {s} seeds: {_bm(r['fused_per_seed'])} upd/s/seed, total {_bm(r['fused_total'])}, "
                f"x{r['ratio_to_baseline']['best']:.2f} vs per-update calls")
            result["offline"].append(r)
            compile_s.update({f"offline {k} ({s} seeds)": v for k, v in r["compile_s"].items()})
        single = next((r["fused_total"]["best"] for r in result["offline"] if r["seeds"] == 1), None)
        for r in result["offline"]:
            r["efficiency_vs_1_seed"] = r["fused_total"]["best"] / (r["seeds"] * single) if single else None
        del dataset
    if "online" not in bc.skip:
        result["online"] = []
        for algo in bc.algos:
            for s in bc.online_seeds:
                r = bench_online(bc, config, algo, s, ceiling.windows(["update shape"]))
                for mode in ("env", "no_env"):
                    if mode in r:
                        log(f"online {algo} {s} seeds ({mode}): {_bm(r[mode]['env_steps_per_s_per_seed'])} "
                            f"env-steps/s/seed, x{r[mode]['ratio_to_baseline']['best']:.2f} vs unfused")
                result["online"].append(r)
                compile_s.update({f"online {algo} {k} ({s} seeds)": v for k, v in r["compile_s"].items()})
    if "act" not in bc.skip:
        result["act"] = bench_act(bc, config, bc.algos[0])
        log(f"act {bc.algos[0]}: {_bm(result['act']['act_per_s'])} /s")
        compile_s[f"act {bc.algos[0]}"] = result["act"]["compile_s"]
    if reference is not None:
        threads = bc.reference_threads or sorted({1, result["machine"]["cpu_affinity"] or 1})
        device = "cpu" if jax.default_backend() == "cpu" else "auto"
        log(f"reference: starting its worker (torch {reference['torch']}, {reference['dir']})")
        with ref_pex.ReferenceWorker(reference["python"], reference["dir"], obs_dim=bc.obs_dim, act_dim=bc.act_dim,
                                     hidden_dims=bc.hidden_dims, batch_size=bc.batch_size,
                                     hp=reference_hparams(config), threads=max(threads), device=device,
                                     dataset_size=bc.dataset_size, buffer_rows=bc.reference_buffer_rows,
                                     buffer_capacity=bc.buffer_capacity) as worker:
            result["side_by_side"] = bench_side_by_side(bc, config, worker, threads, log)
        result["side_by_side"]["reference"]["python_path"] = reference["python"]
        compile_s.update({f"side by side {k}": v for k, v in result["side_by_side"]["compile_s"].items()})
        ceiling.measure(1)
    if "multitask" not in bc.skip and bc.tasks > 0:
        result["multitask"] = bench_multitask(bc, config, bc.tasks, min(bc.seeds))
        t = result["multitask"]
        log(f"multitask {bc.tasks} tasks: {_bm(t['multitask_updates_per_s_total'])} upd/s total, "
            f"x{t['ratio_to_sequential']['best']:.2f} vs one call per task")
        compile_s.update({f"multitask {k}": v for k, v in t["compile_s"].items()})
    ceiling.measure()
    result["ceiling"] = ceiling.result()
    attach_fractions(result)
    result["compile_s"] = compile_s
    result["memory"] = memory_info()
    result["load_after"] = _load()
    if bc.check_scaling > 0 and result.get("offline"):
        check = scaling_check(result["offline"], bc.check_scaling)
        if check is not None:
            result["scaling_check"] = check
    for line in summary_lines(result):
        log(line)
    return result


def scaling_check(offline: list[dict], fraction: float) -> dict | None:
    """Seed scaling of the offline runs: does total(S) reach `fraction` x S x total(1) at the largest S?

    The GPU acceptance test (docs/performance.md): S = 10, fraction = 0.8. None without a
    single-seed run and a larger one to compare.
    """
    by_seeds = {r["seeds"]: r for r in offline}
    if 1 not in by_seeds or len(by_seeds) < 2:
        return None
    s = max(by_seeds)
    single, total = by_seeds[1]["fused_total"]["best"], by_seeds[s]["fused_total"]["best"]
    required = fraction * s * single
    return {"seeds": s, "single": single, "total": total, "required": required, "required_fraction": fraction,
            "efficiency": total / (s * single), "passed": bool(total >= required)}


def write(result: dict, out: str | Path) -> tuple[Path, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "bench.json", out / "bench.md"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    md_path.write_text(to_markdown(result))
    return json_path, md_path


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_args(argv: Sequence[str] | None) -> BenchConfig:
    p = argparse.ArgumentParser(prog="python -m pex_jax.tools.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench_out", help="output directory for bench.json and bench.md")
    p.add_argument("--quick", action="store_true", help="test-sized run: tiny nets, few steps")
    p.add_argument("--seeds", type=_int_list, help="seed counts for the offline runs (default 1,4,16)")
    p.add_argument("--online-seeds", type=_int_list, help="seed counts for the online runs (default: --seeds)")
    p.add_argument("--algos", help="online algorithms, comma-separated (default pex,direct)")
    p.add_argument("--env", help=f"gymnasium env id for the online loop, or 'none' (default {ENV_ID})")
    p.add_argument("--updates", type=int, help="offline updates per timing window for one seed")
    p.add_argument("--online-steps", type=int, help="env steps per timing window for one seed")
    p.add_argument("--reps", type=int, help="timing windows per figure")
    p.add_argument("--tasks", type=int, help="tasks in the multitask run (0 skips it)")
    p.add_argument("--dataset-size", type=int, help="offline dataset rows")
    p.add_argument("--buffer-capacity", type=int, help="online buffer rows per seed")
    p.add_argument("--shard", action="store_true", help="split seeds over all local devices when they divide")
    p.add_argument("--skip", default="",
                   help="comma-separated parts to skip: offline,online,act,multitask,reference")
    p.add_argument("--check-scaling", type=float, default=0.0,
                   help="exit 1 unless offline total(S) >= this x S x total(1) for the largest S (GPU check)")
    r = p.add_argument_group("the reference PyTorch PEX, side by side (make bench-reference)")
    r.add_argument("--reference", default="", metavar="PYTHON",
                   help="Python of a venv with torch and numpy (never the project's); 'auto': .venv-ref/bin/python "
                        "when it exists")
    r.add_argument("--reference-src", default="", metavar="PATH",
                   help="a clone, bare git dir or source tree of github.com/Haichao-Zhang/PEX (default: git clone)")
    r.add_argument("--reference-commit", default=ref_pex.REF_COMMIT, help="its commit (default %(default)s)")
    r.add_argument("--reference-dir", default="", help="where its code is put (default .ref/PEX-<commit>)")
    r.add_argument("--reference-threads", type=_int_list, help="torch thread counts to time (default 1 and the cores)")
    r.add_argument("--reference-window", type=float, help="seconds per side-by-side window (default 3)")
    r.add_argument("--reference-reps", type=int, help="windows per side and figure (default 4)")
    a = p.parse_args(argv)
    overrides: dict[str, Any] = {"out": a.out, "shard": a.shard, "check_scaling": a.check_scaling,
                                 "skip": [s for s in a.skip.split(",") if s], "reference": a.reference,
                                 "reference_src": a.reference_src, "reference_commit": a.reference_commit,
                                 "reference_dir": a.reference_dir}
    if a.reference_threads:
        overrides["reference_threads"] = a.reference_threads
    if a.reference_window is not None:
        overrides["reference_window_s"] = a.reference_window
    if a.reference_reps is not None:
        overrides["reference_reps"] = a.reference_reps
    unknown = set(overrides["skip"]) - {"offline", "online", "act", "multitask", "reference"}
    if unknown:
        p.error(f"unknown --skip parts: {', '.join(sorted(unknown))}")
    if a.seeds:
        overrides["seeds"] = a.seeds
        overrides["online_seeds"] = a.seeds
    if a.online_seeds:
        overrides["online_seeds"] = a.online_seeds
    if a.algos:
        algos = [x for x in a.algos.split(",") if x]
        bad = [x for x in algos if x not in ALGORITHMS or x == "offline"]
        if bad:
            p.error(f"unknown online algorithms {bad}; choose from pex, direct, buffer, scratch")
        overrides["algos"] = algos
    for name in ("env", "updates", "online_steps", "reps", "tasks", "dataset_size", "buffer_capacity"):
        if getattr(a, name) is not None:
            overrides[name] = getattr(a, name)
    return BenchConfig.quick_config(**overrides) if a.quick else BenchConfig(**overrides)


def main(argv: Sequence[str] | None = None) -> int:
    bc = parse_args(argv)
    try:
        result = run(bc, log=lambda s: print(s, flush=True))
    except ref_pex.RefBenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    json_path, md_path = write(result, bc.out)
    print(f"wrote {json_path} and {md_path}")
    check = result.get("scaling_check")
    if check is not None and not check["passed"]:
        print(f"seed scaling check FAILED: total {check['total']:.0f} < required {check['required']:.0f}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
