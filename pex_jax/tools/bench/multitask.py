"""Several tasks in one offline call (`pex_jax.multitask`) against one call per task, one task after
another (what separate runs would do)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from pex_jax.agents.algorithms import make_offline_chunk, over_seeds
from pex_jax.multitask import make_multitask_offline_chunk, stack_datasets
from pex_jax.tools.bench.config import BenchConfig
from pex_jax.tools.bench.harness import alternate, compile_timed, ratio, stats
from pex_jax.tools.bench.problem import box_dims, init_offline_states, keys, synthetic_dataset


def bench_multitask(bc: BenchConfig, config, num_tasks: int, num_seeds: int) -> dict:
    """Offline updates/s of `num_tasks` tasks x `num_seeds` seeds in one call vs one call per task."""
    dims = box_dims(bc.obs_dim, bc.act_dim)
    # Different lengths, as real tasks have (the quick run keeps one length: one compile fewer per task).
    sizes = [max(bc.batch_size, int(bc.dataset_size * (1 - (0 if bc.quick else 0.1) * i))) for i in range(num_tasks)]
    datasets = [synthetic_dataset(s, bc.obs_dim, bc.act_dim, seed=10 + i) for i, s in enumerate(sizes)]
    stacked, rows = stack_datasets(datasets)
    k = max(2, round(bc.updates / (num_seeds * num_tasks)))
    task_keys = jnp.stack([keys(num_seeds, 20 + i) for i in range(num_tasks)])
    multi = jax.jit(make_multitask_offline_chunk(config, k), donate_argnums=(0,))
    m_state = [init_offline_states(task_keys, dims, config), task_keys]
    multi_c, multi_compile = compile_timed(multi, *m_state, stacked, rows)
    # The other axis order, for the record: all (task, seed) pairs vmapped (what accelerators get).
    vmapped = jax.jit(make_multitask_offline_chunk(config, k, sequential=False), donate_argnums=(0,))
    v_state = [init_offline_states(task_keys, dims, config), task_keys]
    vmapped_c, _ = compile_timed(vmapped, *v_state, stacked, rows)
    # The baseline: the runner's per-task call, one task after another.
    single = jax.jit(over_seeds(make_offline_chunk(config, k), (0, 0, None)), donate_argnums=(0,))
    s_states = [[init_offline_states(task_keys[i], dims, config), task_keys[i]] for i in range(num_tasks)]
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
    multi_s, seq_s = stats(times["multitask"], work), stats(times["sequential"], work)
    vmapped_s = stats(times["vmapped"], work)
    return {
        "tasks": num_tasks, "seeds_per_task": num_seeds, "dataset_rows": sizes, "updates_per_window": k,
        "multitask_updates_per_s_total": multi_s, "sequential_updates_per_s_total": seq_s,
        "ratio_to_sequential": ratio(multi_s, seq_s),
        "vmapped_updates_per_s_total": vmapped_s, "vmapped_ratio_to_sequential": ratio(vmapped_s, seq_s),
        "compile_s": {"multitask": multi_compile, "sequential_all_tasks": single_compile},
    }
