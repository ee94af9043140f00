"""Algorithms (pex, direct, buffer, scratch, offline over `IQLState`; pex_sac, sac over SAC states).

`make_offline_chunk` and `online_step` return single-seed functions; the runner wraps
them in `jax.jit(jax.vmap(...))` so that all seeds advance in one device call.
"""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from pex_jax.agents.iql import (
    Batch,
    Hparams,
    IQLState,
    actor_update,
    create_state,
    init_params,
    iql_update,
    value_critic_update,
)
from pex_jax.agents.pex_sac import (
    init_sac,
    pex_sac_action,
    pex_sac_update,
    sac_action,
    sac_hparams,
    trained_params,
    warm_start,
)
from pex_jax.agents.policy_set import policy_set_action, single_policy_action
from pex_jax.agents.sac import sac_update
from pex_jax.data.replay import mixed_batch, sample_dataset, sample_rows


@dataclass(frozen=True)
class AlgoSpec:
    name: str
    offline_phase: bool  # runs (or reuses) offline IQL pre-training
    warm_start: str  # "pex": critic/V/target from offline, fresh new policy; "direct": all, target := critic
    offline_ratio: float  # share of offline rows in online batches
    policy_set: bool  # acts with the PEX policy set
    backbone: str = "iql"  # online learner: "iql" (IQLState) or "sac" (pex_jax.agents.pex_sac)


ALGORITHMS = {
    "pex": AlgoSpec("pex", True, "pex", 0.5, True),
    "direct": AlgoSpec("direct", True, "direct", 0.5, False),
    "buffer": AlgoSpec("buffer", False, "none", 0.5, False),
    "scratch": AlgoSpec("scratch", False, "none", 0.0, False),
    "offline": AlgoSpec("offline", True, "none", 0.0, False),
    # SAC backbone: offline IQL critic + frozen IQL actor + new SAC actor; and online SAC, RLPD-style batches.
    "pex_sac": AlgoSpec("pex_sac", True, "pex", 0.5, True, "sac"),
    "sac": AlgoSpec("sac", False, "none", 0.5, False, "sac"),
}


@dataclass(frozen=True)
class Dims:
    """Static problem shape; action bounds as tuples so they can parametrise flax modules."""

    obs_dim: int
    action_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]

    @classmethod
    def of(cls, info: Any) -> "Dims":
        """The shape of a loaded dataset (`DatasetInfo`: obs_dim, act_dim, action_low/high arrays)."""
        return cls(info.obs_dim, info.act_dim, tuple(float(x) for x in np.ravel(info.action_low)),
                   tuple(float(x) for x in np.ravel(info.action_high)))


# The config fields `Hparams` carries into jit as traced values (`--config.grid` may list several values of each).
TRACED_FIELDS = tuple(f.name for f in dataclasses.fields(Hparams))


def hparams(config: ml_collections.ConfigDict) -> Hparams:
    """The traced hyperparameters of `config`, as float32 scalars (stack them for a grid axis)."""
    return Hparams(**{name: np.float32(config[name]) for name in TRACED_FIELDS})


def stack_hparams(configs) -> Hparams:
    """One `Hparams` with a leading axis over `configs` (the tasks or grid points of one device call)."""
    return jax.tree.map(lambda *xs: np.stack(xs), *[hparams(c) for c in configs])


def _create(dims: Dims, config, actor, critic, value, target, decay_steps=0, offline_actor=None) -> IQLState:
    return create_state(
        actor, critic, value, target,
        action_dim=dims.action_dim, hidden_dims=config.hidden_dims,
        actor_decay_steps=decay_steps, action_low=dims.action_low, action_high=dims.action_high,
        offline_actor_params=offline_actor,
    )  # fmt: skip


def init_offline_state(key: jax.Array, dims: Dims, config) -> IQLState:
    """Fresh IQL state for pre-training; the actor's LR cosine-decays over the offline steps."""
    actor, critic, value = init_params(key, dims.obs_dim, dims.action_dim, config.hidden_dims, dims.action_low,
                                       dims.action_high)
    decay = config.offline_steps if config.actor_cosine_decay else 0
    return _create(dims, config, actor, critic, value, critic, decay_steps=decay)


def init_online_state(spec: AlgoSpec, key: jax.Array, dims: Dims, config, offline: IQLState | None):
    """Online state per algorithm; every optimizer restarts (no LR schedule), as in the reference.

    An `IQLState` for the IQL backbone; for SAC a `PEXSACState` (pex_sac) or a `SACState` (sac).
    """
    if spec.backbone == "sac":
        if spec.warm_start == "pex":
            return warm_start(key, offline, dims.obs_dim, dims.action_dim, config)
        return init_sac(key, dims.obs_dim, dims.action_dim, config)
    actor, critic, value = init_params(key, dims.obs_dim, dims.action_dim, config.hidden_dims, dims.action_low,
                                       dims.action_high)
    if spec.warm_start == "pex":
        return _create(dims, config, actor, offline.critic.params, offline.value.params,
                       offline.target_critic_params, offline_actor=offline.actor.params)
    if spec.warm_start == "direct":
        return _create(dims, config, offline.actor.params, offline.critic.params, offline.value.params,
                       offline.critic.params)
    return _create(dims, config, actor, critic, value, critic)


# --- Updates ---


def pex_update(state: IQLState, batch: Batch, key: jax.Array, hp: Hparams) -> tuple[IQLState, dict]:
    """IQL V/Q steps on stored actions, then AWR toward composite-policy actions (reference `pex.py`).

    The regression targets are the policy set's *training* actions at the batch states, scored by
    the target critic after this step's EMA minus the value net after this step's V update.
    """
    state, _, metrics = value_critic_update(state, batch, hp)
    keys = jax.random.split(key, batch.rewards.shape[0])
    select = jax.vmap(policy_set_action, in_axes=(None, 0, 0, None, None))
    actions, choices = select(state, keys, batch.observations, hp.inv_temperature, 1.0)
    actions = jax.lax.stop_gradient(actions)
    q_target = state.critic.apply_fn({"params": state.target_critic_params}, batch.observations, actions).min(0)
    v = state.value.apply_fn({"params": state.value.params}, batch.observations)
    state, actor_metrics = actor_update(state, batch.observations, actions, q_target - v, hp)
    metrics = {**metrics, **actor_metrics, "actor_target_offline_rate": 1.0 - choices.mean()}
    return state, metrics


def update_fn(spec: AlgoSpec, config):
    """`update(state, batch, key, hp)` of one seed. The SAC backbone reads its settings from `config` (compiled
    in: `--config.grid` refuses it) and ignores `hp`."""
    if spec.backbone == "sac":
        sac_hp = sac_hparams(config)

        def sac_backbone(state, batch: Batch, key: jax.Array, hp: Hparams):
            if spec.policy_set:
                return pex_sac_update(state, batch, key, hp=sac_hp, inv_temperature=config.inv_temperature,
                                      backup=config.pex_sac_backup)
            return sac_update(state, batch, key, hp=sac_hp)

        return sac_backbone
    return pex_update if spec.policy_set else iql_update


def finite_flag(state, metrics: dict) -> jax.Array:
    """True when every loss and parameter is finite: a cheap divergence check inside jit."""
    params = ((state.actor.params, state.critic.params, state.value.params) if isinstance(state, IQLState)
              else trained_params(state))
    leaves = jax.tree.leaves((params, metrics))
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def make_offline_chunk(config, num_updates: int):
    """`num_updates` offline IQL updates under `lax.scan`; returns chunk-mean metrics.

    Signature: (state, key, dataset, num_rows=None, hp=None, dataset_index=None). `num_rows` samples only
    the first rows of a padded dataset, and `dataset_index` picks one dataset of a stack, so that tasks
    with datasets of different lengths (and grid points sharing one) can share a call (`pex_jax.multitask`);
    with `num_rows == len(dataset)` the batches are the same as without it. `hp` (default: the config's
    values) is traced.
    """
    batch_size = config.batch_size

    def chunk(state: IQLState, key: jax.Array, dataset: Batch, num_rows: jax.Array | None = None,
              hp: Hparams | None = None, dataset_index: jax.Array | None = None):
        hp = hparams(config) if hp is None else hp

        def body(carry, _):
            state, key = carry
            key, k_batch, k_update = jax.random.split(key, 3)
            if num_rows is None:
                batch = sample_dataset(dataset, k_batch, batch_size)
            else:
                batch = sample_rows(dataset, num_rows, k_batch, batch_size, dataset_index)
            state, metrics = iql_update(state, batch, k_update, hp)
            return (state, key), metrics

        (state, key), metrics = jax.lax.scan(body, (state, key), None, length=num_updates)
        metrics = jax.tree.map(jnp.mean, metrics)
        metrics["finite"] = finite_flag(state, metrics)
        return state, key, metrics

    return chunk


# --- Acting ---


def act(spec: AlgoSpec, state, key: jax.Array, obs: jax.Array, config, evaluate: bool, hp: Hparams | None = None):
    """One action for one observation; returns (action, choice) with choice 1 for single policies.
    The policy set's `inv_temperature` and `eval_epsilon` come from `hp` (default: the config's values)."""
    hp = hparams(config) if hp is None else hp
    if spec.backbone == "sac":
        if spec.policy_set:
            epsilon = config.eval_epsilon if evaluate else 1.0
            return pex_sac_action(state, key, obs, config.inv_temperature, epsilon)
        return sac_action(state, key, obs, deterministic=evaluate), jnp.ones((), jnp.int32)
    if spec.policy_set:
        epsilon = hp.eval_epsilon if evaluate else 1.0
        return policy_set_action(state, key, obs, hp.inv_temperature, epsilon)
    return single_policy_action(state, key, obs, deterministic=evaluate), jnp.ones((), jnp.int32)


def over_seeds(fn: Callable, in_axes: tuple[int | None, ...], sequential: bool | None = None) -> Callable:
    """Apply a single-seed function to every seed: `jax.vmap`, or on CPU a loop over seeds (`lax.map`).

    For the offline chunk (`over_seeds(make_offline_chunk(config, n), (0, 0, None))`). On CPU a
    vmapped update interleaves the seeds op by op, so every op streams all seeds' weights and Adam
    moments (about 3.6 MB per seed at 2x256) through the caches; looping runs one seed's whole
    chunk while its working set is hot (1.26x the updates/s at 16 seeds on the 2-core dev CPU,
    docs/performance.md). The loop copies each seed's state in and out once per call, which a
    chunk of many updates amortises and a single online update does not (so `make_online_step`
    stays vmapped). Results equal the vmapped ones up to float rounding (~3e-7 relative per
    update). Accelerators, and several devices (seeds sharded by `pex_jax.sharding`), keep the
    vmap, which fills a GPU and partitions over devices; so does a single seed.
    `in_axes` entries are 0 (per-seed leading axis) or None (shared).
    """
    batched = jax.vmap(fn, in_axes=in_axes)
    if sequential is None:
        sequential = jax.default_backend() == "cpu" and jax.device_count() == 1
    if not sequential:
        return batched
    seeded = [i for i, axis in enumerate(in_axes) if axis == 0]

    def looped(*args):
        if jax.tree.leaves(args[seeded[0]])[0].shape[0] == 1:
            return batched(*args)

        def one(per_seed_args):
            full = list(args)
            for i, x in zip(seeded, per_seed_args, strict=True):
                full[i] = x
            return fn(*full)

        return jax.lax.map(one, tuple(args[i] for i in seeded))

    return looped


def online_step(spec: AlgoSpec, config, with_update: bool):
    """One seed's step after the insert: run `utd` updates (if `with_update`), then act on `obs`.

    Update and action selection share one device call per env step; the host only receives the
    actions. The insert (`ReplayBuffer.insert`) is a separate donated call: fused into this one,
    XLA sometimes copies the whole buffer every step to keep the gathers and the in-place write
    apart (seen as full-buffer `copy` ops in the HLO; 10x slower at 1M capacity).
    Signature: (state, online_data, online_size, key, obs, dataset, dataset_rows=None, hp=None,
    dataset_index=None) -> (state, key, action, choice, metrics); `dataset_rows` limits a padded dataset
    to its own rows and `dataset_index` picks one of a stack; `hp` (default: the config's values) is traced.
    The engine (`pex_jax.runner.online`) vmaps it over seeds and tasks. Seeds stay vmapped even on
    CPU: with one update per call, `over_seeds`' loop would copy every seed's state in and out per
    update, which cost more than the cache locality gained (measured).
    """
    update = update_fn(spec, config)
    # `offline_ratio` sets how many rows of each batch come from each source: a shape, compiled in.
    ratio = float(config.offline_ratio) if spec.offline_ratio > 0 else 0.0
    batch_size, utd = config.batch_size, config.utd

    def per_seed(state: IQLState, online: Batch, online_size: jax.Array, key: jax.Array, obs: jax.Array,
                 dataset: Batch, dataset_rows: jax.Array | None = None, hp: Hparams | None = None,
                 dataset_index: jax.Array | None = None):
        hp = hparams(config) if hp is None else hp
        metrics = {}
        if with_update:
            def body(carry, _):
                state, key = carry
                key, k_batch, k_update = jax.random.split(key, 3)
                batch = mixed_batch(k_batch, dataset, online, online_size, batch_size, ratio, dataset_rows,
                                    dataset_index)
                state, m = update(state, batch, k_update, hp)
                return (state, key), m

            (state, key), metrics = jax.lax.scan(body, (state, key), None, length=utd)
            metrics = jax.tree.map(jnp.mean, metrics)
            metrics["finite"] = finite_flag(state, metrics)
        key, k_act = jax.random.split(key)
        action, choice = act(spec, state, k_act, obs, config, evaluate=False, hp=hp)
        return state, key, action, choice, metrics

    return per_seed


def make_online_step(spec: AlgoSpec, config, with_update: bool):
    """`online_step` vmapped over seeds sharing one dataset:
    (states, online_data, online_size, keys, obs, dataset) -> (states, keys, actions, choices, metrics)."""
    return jax.vmap(online_step(spec, config, with_update), in_axes=(0, 0, None, 0, 0, None))
