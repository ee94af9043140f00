"""Device-resident replay: a fixed-capacity ring buffer and offline/online batch mixing.

Everything is a pytree of arrays, so inserting and sampling happen inside the jitted
(and seed-vmapped) online step; donating the buffer lets XLA update it in place.
"""

import jax
import jax.numpy as jnp
from flax import struct

from pex_jax.iql import Batch


class ReplayBuffer(struct.PyTreeNode):
    data: Batch
    size: jax.Array  # int32 scalar: number of valid rows
    ptr: jax.Array  # int32 scalar: next row to write

    @classmethod
    def create(cls, obs_dim: int, action_dim: int, capacity: int) -> "ReplayBuffer":
        data = Batch(
            observations=jnp.zeros((capacity, obs_dim), jnp.float32),
            actions=jnp.zeros((capacity, action_dim), jnp.float32),
            rewards=jnp.zeros((capacity,), jnp.float32),
            next_observations=jnp.zeros((capacity, obs_dim), jnp.float32),
            terminals=jnp.zeros((capacity,), jnp.float32),
        )
        return cls(data=data, size=jnp.zeros((), jnp.int32), ptr=jnp.zeros((), jnp.int32))

    @property
    def capacity(self) -> int:
        return self.data.rewards.shape[0]

    def insert(self, transition: Batch) -> "ReplayBuffer":
        """Write one transition at `ptr`, overwriting the oldest row once full."""
        data = jax.tree.map(lambda buf, x: buf.at[self.ptr].set(x.astype(buf.dtype)), self.data, transition)
        return self.replace(
            data=data, ptr=(self.ptr + 1) % self.capacity, size=jnp.minimum(self.size + 1, self.capacity)
        )

    def sample(self, key: jax.Array, n: int) -> Batch:
        """Uniform with replacement over the valid rows (the reference samples without; see deviations)."""
        idx = jax.random.randint(key, (n,), 0, jnp.maximum(self.size, 1))
        return jax.tree.map(lambda x: x[idx], self.data)


def sample_dataset(dataset: Batch, key: jax.Array, n: int) -> Batch:
    """Uniform with replacement over a static dataset, as the reference's `torch.randint`."""
    idx = jax.random.randint(key, (n,), 0, dataset.rewards.shape[0])
    return jax.tree.map(lambda x: x[idx], dataset)


def mixed_batch(key: jax.Array, dataset: Batch, buffer: ReplayBuffer, batch_size: int, offline_ratio: float) -> Batch:
    """`offline_ratio` of the rows from the offline dataset (first), the rest from the online buffer."""
    n_offline = int(round(batch_size * offline_ratio))
    k_off, k_on = jax.random.split(key)
    parts = []
    if n_offline > 0:
        parts.append(sample_dataset(dataset, k_off, n_offline))
    if batch_size - n_offline > 0:
        parts.append(buffer.sample(k_on, batch_size - n_offline))
    return jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)
