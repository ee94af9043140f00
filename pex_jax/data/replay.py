"""Device-resident replay: a fixed-capacity ring buffer shared by all seeds, and batch mixing.

All seeds step their envs in lockstep, so every seed inserts exactly one transition per env
step: the write pointer and size are scalars shared by the seeds, and rows live in arrays of
shape (num_seeds, capacity, ...). An insert is then one in-place dynamic-update-slice per array
(with buffer donation); a per-seed pointer under `vmap` would become a scatter that XLA may
lower to a full-buffer select, i.e. O(capacity) work per env step.
"""

import jax
import jax.numpy as jnp
from flax import struct

from pex_jax.agents.iql import Batch


class ReplayBuffer(struct.PyTreeNode):
    data: Batch  # leaves of shape (*agents, capacity, ...): (seeds,) or (tasks, seeds)
    size: jax.Array  # int32 scalar: number of valid rows (same for every seed)
    ptr: jax.Array  # int32 scalar: next row to write

    @classmethod
    def create(cls, num_seeds: int | tuple[int, ...], obs_dim: int, action_dim: int, capacity: int) -> "ReplayBuffer":
        agents = (num_seeds,) if isinstance(num_seeds, int) else tuple(num_seeds)

        def zeros(*shape):
            return jnp.zeros((*agents, capacity, *shape), jnp.float32)

        data = Batch(zeros(obs_dim), zeros(action_dim), zeros(), zeros(obs_dim), zeros())
        return cls(data=data, size=jnp.zeros((), jnp.int32), ptr=jnp.zeros((), jnp.int32))

    @property
    def capacity(self) -> int:
        return self.data.rewards.shape[-1]

    def insert(self, transitions: Batch) -> "ReplayBuffer":
        """Write one transition per agent (leaves shaped (*agents, ...)) at `ptr`, overwriting the oldest."""
        at = (slice(None),) * (self.data.rewards.ndim - 1) + (self.ptr,)
        data = jax.tree.map(lambda buf, x: buf.at[at].set(x.astype(buf.dtype)), self.data, transitions)
        return self.replace(
            data=data, ptr=(self.ptr + 1) % self.capacity, size=jnp.minimum(self.size + 1, self.capacity)
        )


def sample_rows(data: Batch, num_rows: jax.Array, key: jax.Array, n: int, index: jax.Array | None = None) -> Batch:
    """Uniform with replacement over the first `num_rows` rows of one seed's data (of `data[index]`, when
    `data` stacks several datasets: one gather, no copy of the chosen dataset).

    The reference samples the online buffer without replacement (`random.sample`); with
    replacement is the standard choice for a jitted sampler (docs/deviations.md).
    """
    idx = jax.random.randint(key, (n,), 0, jnp.maximum(num_rows, 1))
    if index is None:
        return jax.tree.map(lambda x: x[idx], data)
    return jax.tree.map(lambda x: x[index, idx], data)


def sample_dataset(dataset: Batch, key: jax.Array, n: int) -> Batch:
    """Uniform with replacement over a static dataset, as the reference's `torch.randint`."""
    return sample_rows(dataset, dataset.rewards.shape[0], key, n)


def mixed_batch(
    key: jax.Array, dataset: Batch, online: Batch, online_size: jax.Array, batch_size: int, offline_ratio: float,
    dataset_rows: jax.Array | None = None, dataset_index: jax.Array | None = None,
) -> Batch:
    """`offline_ratio` of the rows from the offline dataset (first, as in the reference), the rest
    from one seed's online rows. `dataset_rows` limits the offline rows to a padded dataset's own
    (several tasks in one call), and `dataset_index` picks one dataset of a stack; the full length draws
    the same rows as without it."""
    n_offline = int(round(batch_size * offline_ratio))
    k_off, k_on = jax.random.split(key)
    parts = []
    if n_offline > 0:
        rows = dataset.rewards.shape[-1] if dataset_rows is None else dataset_rows
        parts.append(sample_rows(dataset, rows, k_off, n_offline, dataset_index))
    if batch_size - n_offline > 0:
        parts.append(sample_rows(online, online_size, k_on, batch_size - n_offline))
    return jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)
