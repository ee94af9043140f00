"""Spread the seed axis over all local devices; keep everything else replicated.

Every per-seed pytree in pex-jax (states, PRNG keys, the replay buffer's rows, actions) carries
the seeds on its leading axis, and seeds never exchange data. Splitting that axis over a 1-D
mesh named "seeds" therefore needs no code change in the jitted steps: `jax.jit` propagates the
input shardings through `vmap`, each device runs its own seeds, and the outputs come back sharded
the same way (so buffer donation keeps working). The offline dataset is read by every seed and
is replicated.

Usage in a runner (when there are several devices and the seeds divide evenly):

    if can_shard(len(seeds)):
        states, keys, buffers = shard_seeds((states, keys, buffers))
        dataset = replicate(dataset)

Scalar leaves (the buffer's shared `size` / `ptr`) are replicated, since they have no seed axis.
"""

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

SEED_AXIS = "seeds"


def seed_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over `devices` (default: all local devices) with the axis named "seeds"."""
    devices = list(devices) if devices is not None else jax.local_devices()
    return Mesh(np.array(devices), (SEED_AXIS,))


def can_shard(num_seeds: int, devices: Sequence[jax.Device] | None = None) -> bool:
    """True when there is more than one device and every device gets the same number of seeds."""
    n = len(devices) if devices is not None else jax.local_device_count()
    return n > 1 and num_seeds % n == 0


def shard_seeds(tree, mesh: Mesh | None = None, axis: int = 0):
    """Place every leaf with a seed axis (`axis`: 0, or 1 behind a task axis) split over the mesh;
    leaves without one (the buffer's scalar `size` / `ptr`) are replicated.

    Raises ValueError when the seed axis does not divide by the number of devices, instead of
    letting XLA pad silently.
    """
    mesh = mesh if mesh is not None else seed_mesh()
    split = NamedSharding(mesh, PartitionSpec(*([None] * axis), SEED_AXIS))
    whole = NamedSharding(mesh, PartitionSpec())
    n = mesh.devices.size

    def place(x):
        if np.ndim(x) <= axis:
            return jax.device_put(x, whole)
        if x.shape[axis] % n:
            raise ValueError(f"seed axis of length {x.shape[axis]} does not divide over {n} devices")
        return jax.device_put(x, split)

    return jax.tree.map(place, tree)


def replicate(tree, mesh: Mesh | None = None):
    """A full copy of every leaf on every device of the mesh (the offline dataset, shared inputs)."""
    mesh = mesh if mesh is not None else seed_mesh()
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))
