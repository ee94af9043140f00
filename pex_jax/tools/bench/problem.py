"""The problems the device-side workloads time: the run's config at the bench's sizes, AntMaze-D4RL-shaped
synthetic data, and agent states initialised the way the runner initialises them.

Speed does not depend on the values, so the data is synthetic and the states are fresh; what matters
is that shapes, dtypes and the jitted functions are the runner's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pex_jax.agents.algorithms import Dims, init_offline_state, init_online_state
from pex_jax.agents.iql import Batch
from pex_jax.config import default_config
from pex_jax.tools.bench.config import BenchConfig

# Initial values do not matter for speed; XLA's cheapest settings compile the (random-op heavy)
# initialisation ~10x faster than the default or than eager op-by-op dispatch. Not for timed code:
# both options slow the compiled program down.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}

_INITS: dict[tuple, Callable] = {}  # one jitted initialiser per problem, so repeated calls reuse the executable


def fast_jit(fn: Callable) -> Callable:
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


def unalias(tree):
    """Fresh buffers for every leaf (init can return one buffer twice, which donation rejects)."""
    return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)


def init_offline_states(keys: jax.Array, dims: Dims, config) -> Any:
    """Offline states for keys of any leading shape (seeds, or tasks x seeds)."""
    key = ("offline", dims, id(config))
    if key not in _INITS:
        _INITS[key] = fast_jit(jax.vmap(lambda k: init_offline_state(k, dims, config)))
    lead = keys.shape[:-1]
    states = _INITS[key](keys.reshape(-1, keys.shape[-1]))
    return unalias(jax.tree.map(lambda x: x.reshape(*lead, *x.shape[1:]), states))


def init_online_states(spec, keys: jax.Array, offline_keys: jax.Array, dims: Dims, config) -> Any:
    """Online states as the runner builds them (warm-started from fresh offline states), for keys of any
    leading shape (seeds, or tasks x seeds)."""
    key = ("online", spec.name, dims, id(config))
    if key not in _INITS:

        def one(k, k_off):
            return init_online_state(spec, k, dims, config, init_offline_state(k_off, dims, config))

        _INITS[key] = fast_jit(jax.vmap(one))
    lead = keys.shape[:-1]
    states = _INITS[key](keys.reshape(-1, keys.shape[-1]), offline_keys.reshape(-1, offline_keys.shape[-1]))
    return unalias(jax.tree.map(lambda x: x.reshape(*lead, *x.shape[1:]), states))


def keys(n: int | tuple[int, ...], stream: int) -> jax.Array:
    """PRNG keys with leading shape `n` from an independent `stream`."""
    shape = (n,) if isinstance(n, int) else tuple(n)
    flat = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(0), stream), int(np.prod(shape)))
    return flat.reshape(*shape, -1)


def make_config(bc: BenchConfig, hidden_dims: tuple[int, ...] | None = None):
    config = default_config()
    config.hidden_dims = tuple(hidden_dims or bc.hidden_dims)
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
