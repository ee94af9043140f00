"""Offline IQL updates/s: the runner's scanned chunk (K updates in one jitted call, seeds looped or
vmapped by `over_seeds`) against its baseline, the same update as one jitted call per update.

Data: synthetic AntMaze-D4RL-shaped rows (obs 29, act 8); speed does not depend on the values.
"""

from __future__ import annotations

import jax

from pex_jax.agents.algorithms import hparams, make_offline_chunk, over_seeds
from pex_jax.agents.iql import Batch, iql_update
from pex_jax.data.replay import sample_dataset
from pex_jax.sharding import can_shard, replicate, shard_seeds
from pex_jax.tools.bench.ceiling import cost_flops, per_seed
from pex_jax.tools.bench.config import BenchConfig
from pex_jax.tools.bench.harness import alternate, compile_timed, ratio, stats
from pex_jax.tools.bench.problem import box_dims, init_offline_states, keys


def offline_update_once(config):
    """The baseline: one IQL update (same sampling, same keys) per jitted call, no scan."""
    hp, batch_size = hparams(config), config.batch_size

    def one(state, key, dataset):
        key, k_batch, k_update = jax.random.split(key, 3)
        state, metrics = iql_update(state, sample_dataset(dataset, k_batch, batch_size), k_update, hp)
        return state, key, metrics

    return one


def bench_offline(bc: BenchConfig, config, dataset: Batch, num_seeds: int, extra_windows: dict | None = None) -> dict:
    """Offline updates/s for `num_seeds` seeds: the runner's scanned chunk vs one call per update.

    `extra_windows` (name -> callable) join the alternation untimed here: the ceiling's matmul windows.
    """
    dims = box_dims(bc.obs_dim, bc.act_dim)
    k = max(2, round(bc.updates / num_seeds))

    sharded = bc.shard and can_shard(num_seeds)
    data = replicate(dataset) if sharded else dataset

    def fresh():
        states, ks = init_offline_states(keys(num_seeds, 1), dims, config), keys(num_seeds, 2)
        return shard_seeds((states, ks)) if sharded else (states, ks)

    chunk = make_offline_chunk(config, k)
    hp = hparams(config)  # traced, as the runner passes them
    # Seeds looped on a single CPU device (`over_seeds`), vmapped otherwise: what the runner calls.
    looped = not sharded and num_seeds > 1 and jax.default_backend() == "cpu" and jax.device_count() == 1
    fused = jax.jit(over_seeds(chunk, (0, 0, None, None, None), sequential=looped), donate_argnums=(0,))
    once = jax.jit(jax.vmap(offline_update_once(config), in_axes=(0, 0, None)), donate_argnums=(0,))
    states = {"fused": list(fresh()), "baseline": list(fresh())}
    compiled = {}
    compiled["fused"], fused_compile = compile_timed(fused, *states["fused"], data, None, hp)
    compiled["baseline"], once_compile = compile_timed(once, *states["baseline"], data)
    compile_s = {"fused_chunk": fused_compile, "baseline_update": once_compile}
    if looped:  # also the plain vmap over seeds, to show what looping the seeds brings on CPU
        states["vmap"] = list(fresh())
        vmapped = jax.jit(jax.vmap(chunk, in_axes=(0, 0, None, None, None)), donate_argnums=(0,))
        compiled["vmap"], compile_s["fused_chunk_vmap"] = compile_timed(vmapped, *states["vmap"], data, None, hp)

    def chunk_window(name):
        def run():
            box = states[name]
            box[0], box[1], m = compiled[name](box[0], box[1], data, None, hp)
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
    fused_s, base_s = stats(times["fused"], k), stats(times["baseline"], k)
    result = {
        "seeds": num_seeds,
        "sharded": sharded,
        "seeds_looped": looped,
        "updates_per_window": k,
        "fused_per_seed": fused_s,
        "fused_total": {key: v * num_seeds for key, v in fused_s.items() if key != "windows"},
        "baseline_per_seed": base_s,
        "baseline_total": {key: v * num_seeds for key, v in base_s.items() if key != "windows"},
        "ratio_to_baseline": ratio(fused_s, base_s),
        "compile_s": compile_s,
        # one seed's IQL update, from the per-update executable (the scanned chunk counts its body once)
        "flops_per_update": per_seed(cost_flops(compiled["baseline"]), num_seeds),
    }
    if "vmap" in times:
        vmap_s = stats(times["vmap"], k)
        result["fused_vmap_per_seed"] = vmap_s
        result["looped_to_vmap"] = ratio(fused_s, vmap_s)
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
