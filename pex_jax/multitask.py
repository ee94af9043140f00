"""Offline pre-training of several tasks in one device call: a task axis outside the seed axis.

Tasks must share the problem shape (obs/action dims and action bounds, which parametrise the
networks) and the config; each task keeps its own dataset. Datasets are padded to the longest
one and stacked, and each task samples only its own first `num_rows` rows, so every (task, seed)
pair gets exactly the batches, and therefore the parameters, it would get when run alone
(tests/test_bench.py checks this).

    datasets, rows = stack_datasets([umaze, medium, large])
    states = init_multitask_states(keys, dims, config)           # keys: (tasks, seeds, 2)
    chunk = jax.jit(make_multitask_offline_chunk(config, 1000), donate_argnums=(0,))
    states, keys, metrics = chunk(states, keys, datasets, rows, stack_hparams(configs), jnp.arange(3))
    # metrics: (tasks, seeds); the "tasks" may also be grid points sharing one dataset (`pex_jax.grid`)

Why: on an accelerator one call for tasks x seeds fills the device where one task would not;
on CPU it saves one dispatch per task and chunk and lets XLA batch the small matmuls
(docs/performance.md has the measured speed-up).
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from pex_jax.agents.algorithms import Dims, hparams, init_offline_state, make_offline_chunk, over_seeds
from pex_jax.agents.iql import Batch, Hparams, IQLState


def stack_datasets(datasets: Sequence[Batch]) -> tuple[Batch, jax.Array]:
    """Zero-pad every dataset to the longest and stack: leaves (tasks, max_rows, ...), and the
    per-task row counts (int32, shape (tasks,))."""
    if not datasets:
        raise ValueError("stack_datasets needs at least one dataset")
    shapes = {tuple(x.shape[1:] for x in d) for d in datasets}
    if len(shapes) != 1:
        raise ValueError(f"tasks in one call need equal obs/action shapes, got {sorted(shapes)}")
    rows = [int(d.rewards.shape[0]) for d in datasets]
    longest = max(rows)

    def pad(x):
        x = jnp.asarray(x)
        return jnp.pad(x, [(0, longest - x.shape[0])] + [(0, 0)] * (x.ndim - 1))

    stacked = jax.tree.map(lambda *xs: jnp.stack([pad(x) for x in xs]), *datasets)
    return stacked, jnp.asarray(rows, jnp.int32)


def init_multitask_states(keys: jax.Array, dims: Dims, config) -> IQLState:
    """Fresh offline states for keys shaped (tasks, seeds, 2); leaves get leading (tasks, seeds)."""
    lead = keys.shape[:-1]
    states = jax.vmap(lambda k: init_offline_state(k, dims, config))(keys.reshape(-1, keys.shape[-1]))
    # Fresh buffers (donation rejects aliased leaves) with the (tasks, seeds) axes restored.
    return jax.tree.map(lambda x: jnp.array(x.reshape(*lead, *x.shape[1:]), copy=True), states)


def make_multitask_offline_chunk(config, num_updates: int, sequential: bool | None = None):
    """`make_offline_chunk` over seeds (shared dataset and hyperparameters) and then tasks (own dataset,
    own traced hyperparameters).

    Signature: (states, keys, datasets, rows, hps, index) -> (states, keys, metrics), with leading
    (tasks, seeds) axes on states/keys/metrics, (tasks,) on rows, hps (`stack_hparams`) and index (which
    of the stacked datasets each task samples), and the stack itself shared. Both axes go through
    `over_seeds`: vmapped on accelerators and several devices, looped on a single CPU, where
    interleaving every (task, seed) op by op thrashes the caches (6 tasks x 2 seeds vmapped ran at
    0.87x the tasks one after another; docs/performance.md).
    """
    chunk = make_offline_chunk(config, num_updates)
    per_task = over_seeds(chunk, (0, 0, None, None, None, None), sequential)
    over_tasks = over_seeds(per_task, (0, 0, None, 0, 0, 0), sequential)

    def multi(states, keys, datasets: Batch, rows: jax.Array, hps: Hparams | None = None,
              index: jax.Array | None = None):
        """hps default: the config's values for every task; index default: task i samples dataset i."""
        count = rows.shape[0]
        if hps is None:
            hps = jax.tree.map(lambda x: jnp.broadcast_to(x, (count,)), hparams(config))
        if index is None:
            index = jnp.arange(count, dtype=jnp.int32)
        return over_tasks(states, keys, datasets, rows, hps, index)

    return multi


def unique_datasets(datasets: Sequence[Batch]) -> tuple[list[Batch], jax.Array]:
    """The distinct datasets (by identity) and, per entry, the index of its own: grid points of one task
    share one device copy of its data."""
    unique, index, seen = [], [], {}
    for d in datasets:
        if id(d) not in seen:
            seen[id(d)] = len(unique)
            unique.append(d)
        index.append(seen[id(d)])
    return unique, jnp.asarray(index, jnp.int32)
