"""Implicit Q-Learning as in the reference (gwthomas/IQL-PyTorch lineage), as pure functions.

One update, in the reference's order (`pex/algorithms/iql.py`):
1. target_q = min of the *target* twins at (s, a); next_v = V(s'); both before any step.
2. V step: expectile regression of V(s) toward target_q.
3. Q step: both twins regress to r + (1 - terminal) * gamma * next_v (pre-update V).
4. Target EMA at rate tau.
5. Actor step: AWR with weights min(exp(beta * adv), adv_clip), adv = target_q - V_old(s).
   PEX replaces this step (see `pex_jax.agents.algorithms`): its regression targets come from the policy set.

Losses are written per sample and averaged over the batch axis.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training.train_state import TrainState

from pex_jax.agents.networks import Critic, GaussianPolicy, ValueNet, gaussian_log_prob

Params = Any


class Batch(NamedTuple):
    """Transitions; per-sample functions see scalars/vectors, batches add a leading axis."""

    observations: jax.Array
    actions: jax.Array
    rewards: jax.Array
    next_observations: jax.Array
    terminals: jax.Array


@flax.struct.dataclass
class IQLHparams:
    """Hyperparameters used inside jit. Static (hashable) so they specialise the compiled update."""

    gamma: float = struct.field(pytree_node=False, default=0.99)
    expectile: float = struct.field(pytree_node=False, default=0.7)
    beta: float = struct.field(pytree_node=False, default=10.0)
    adv_clip: float = struct.field(pytree_node=False, default=100.0)
    tau: float = struct.field(pytree_node=False, default=0.005)


class IQLState(struct.PyTreeNode):
    """All learnable state of one run. `offline_actor_params` is the frozen PEX member (None otherwise)."""

    actor: TrainState
    critic: TrainState
    target_critic_params: Params
    value: TrainState
    offline_actor_params: Params = None


# --- Per-sample losses ---


def expectile_loss(diff: jax.Array, expectile: float) -> jax.Array:
    """Asymmetric L2: weight `expectile` where diff > 0, 1 - expectile otherwise."""
    weight = jnp.where(diff > 0, expectile, 1.0 - expectile)
    return weight * diff**2


def awr_weight(adv: jax.Array, beta: float, clip: float) -> jax.Array:
    """exp(beta * adv) clipped above at `clip` (no lower clip, as in the reference)."""
    return jnp.minimum(jnp.exp(beta * adv), clip)


def td_target(reward: jax.Array, terminal: jax.Array, next_v: jax.Array, gamma: float) -> jax.Array:
    return reward + (1.0 - terminal) * gamma * next_v


# --- Construction ---


def make_networks(action_dim: int, hidden_dims, action_low=-1.0, action_high=1.0):
    actor = GaussianPolicy(tuple(hidden_dims), action_dim, action_low, action_high)
    return actor, Critic(tuple(hidden_dims)), ValueNet(tuple(hidden_dims))


def init_params(key: jax.Array, obs_dim: int, action_dim: int, hidden_dims, action_low=-1.0, action_high=1.0):
    """Fresh (actor, critic, value) parameters."""
    actor, critic, value = make_networks(action_dim, hidden_dims, action_low, action_high)
    k_a, k_c, k_v = jax.random.split(key, 3)
    obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
    return actor.init(k_a, obs)["params"], critic.init(k_c, obs, act)["params"], value.init(k_v, obs)["params"]


def create_state(
    actor_params: Params,
    critic_params: Params,
    value_params: Params,
    target_critic_params: Params,
    *,
    action_dim: int,
    hidden_dims,
    lr: float,
    actor_decay_steps: int = 0,
    action_low=-1.0,
    action_high=1.0,
    offline_actor_params: Params = None,
) -> IQLState:
    """Wrap parameters with fresh Adam states. `actor_decay_steps > 0` enables the actor's cosine decay."""
    actor, critic, value = make_networks(action_dim, hidden_dims, action_low, action_high)
    actor_lr = optax.cosine_decay_schedule(lr, actor_decay_steps) if actor_decay_steps > 0 else lr
    return IQLState(
        actor=TrainState.create(apply_fn=actor.apply, params=actor_params, tx=optax.adam(actor_lr)),
        critic=TrainState.create(apply_fn=critic.apply, params=critic_params, tx=optax.adam(lr)),
        target_critic_params=target_critic_params,
        value=TrainState.create(apply_fn=value.apply, params=value_params, tx=optax.adam(lr)),
        offline_actor_params=offline_actor_params,
    )


# --- Update ---

ActorTargetFn = Callable[[IQLState, jax.Array, Batch, jax.Array], tuple[jax.Array, jax.Array]]


def value_critic_update(state: IQLState, batch: Batch, hp: IQLHparams) -> tuple[IQLState, jax.Array, dict]:
    """Steps 1-4 of the reference update; returns the detached advantage of the data actions."""
    critic_apply, value_apply = state.critic.apply_fn, state.value.apply_fn
    target_q = critic_apply({"params": state.target_critic_params}, batch.observations, batch.actions).min(0)
    next_v = value_apply({"params": state.value.params}, batch.next_observations)

    def value_loss(params):
        v = value_apply({"params": params}, batch.observations)
        return expectile_loss(target_q - v, hp.expectile).mean(), v

    (v_loss, v_old), v_grads = jax.value_and_grad(value_loss, has_aux=True)(state.value.params)
    value = state.value.apply_gradients(grads=v_grads)

    y = td_target(batch.rewards, batch.terminals, next_v, hp.gamma)

    def critic_loss(params):
        qs = critic_apply({"params": params}, batch.observations, batch.actions)  # (2, B)
        return ((qs - y) ** 2).mean(), qs

    (q_loss, qs), q_grads = jax.value_and_grad(critic_loss, has_aux=True)(state.critic.params)
    critic = state.critic.apply_gradients(grads=q_grads)
    target = optax.incremental_update(critic.params, state.target_critic_params, hp.tau)

    state = state.replace(critic=critic, value=value, target_critic_params=target)
    metrics = {"value_loss": v_loss, "critic_loss": q_loss, "q_mean": qs.mean(), "v_mean": v_old.mean()}
    return state, target_q - v_old, metrics


def actor_update(
    state: IQLState, observations: jax.Array, actions: jax.Array, adv: jax.Array, hp: IQLHparams
) -> tuple[IQLState, dict]:
    """AWR: maximise weighted log-likelihood of `actions` (data actions for IQL, composite ones for PEX)."""
    weights = awr_weight(jax.lax.stop_gradient(adv), hp.beta, hp.adv_clip)

    def loss_fn(params):
        mean, log_std = state.actor.apply_fn({"params": params}, observations)
        return -(weights * gaussian_log_prob(mean, log_std, actions)).mean()

    loss, grads = jax.value_and_grad(loss_fn)(state.actor.params)
    actor = state.actor.apply_gradients(grads=grads)
    return state.replace(actor=actor), {"actor_loss": loss, "adv_mean": adv.mean(), "awr_weight_mean": weights.mean()}


def iql_update(state: IQLState, batch: Batch, key: jax.Array, hp: IQLHparams) -> tuple[IQLState, dict]:
    """Standard IQL update (offline phase and the direct/buffer/scratch baselines)."""
    del key
    state, adv, metrics = value_critic_update(state, batch, hp)
    state, actor_metrics = actor_update(state, batch.observations, batch.actions, adv, hp)
    return state, {**metrics, **actor_metrics}
