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
class Hparams:
    """Every scalar hyperparameter read inside jit, as pytree leaves: traced, never compiled in, so one compiled
    update serves any values and grid points share a device call as seeds do (`--config.grid`,
    `pex_jax.grid`). `lr` scales unit-rate Adam steps (`apply_gradients`); `inv_temperature` and
    `eval_epsilon` are the policy set's."""

    gamma: Any = 0.99
    expectile: Any = 0.7
    beta: Any = 10.0
    adv_clip: Any = 100.0
    tau: Any = 0.005
    lr: Any = 3e-4
    inv_temperature: Any = 10.0
    eval_epsilon: Any = 0.1


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
    actor_decay_steps: int = 0,
    action_low=-1.0,
    action_high=1.0,
    offline_actor_params: Params = None,
) -> IQLState:
    """Wrap parameters with fresh Adam states. `actor_decay_steps > 0` enables the actor's cosine decay.

    The optimizers run at unit rate; `apply_gradients` multiplies their steps by `hp.lr`, so the learning rate is
    a traced value. Adam's state is the same as with the rate inside, so checkpoints are unaffected."""
    actor, critic, value = make_networks(action_dim, hidden_dims, action_low, action_high)
    actor_rate = optax.cosine_decay_schedule(1.0, actor_decay_steps) if actor_decay_steps > 0 else 1.0
    return IQLState(
        actor=TrainState.create(apply_fn=actor.apply, params=actor_params, tx=optax.adam(actor_rate)),
        critic=TrainState.create(apply_fn=critic.apply, params=critic_params, tx=optax.adam(1.0)),
        target_critic_params=target_critic_params,
        value=TrainState.create(apply_fn=value.apply, params=value_params, tx=optax.adam(1.0)),
        offline_actor_params=offline_actor_params,
    )


def apply_gradients(train_state: TrainState, grads: Params, lr: jax.Array) -> TrainState:
    """One optimizer step of a unit-rate `create_state` optimizer at learning rate `lr` (a traced value)."""
    updates, opt_state = train_state.tx.update(grads, train_state.opt_state, train_state.params)
    updates = jax.tree.map(lambda u: lr * u, updates)
    return train_state.replace(step=train_state.step + 1, params=optax.apply_updates(train_state.params, updates),
                               opt_state=opt_state)


# --- Update ---

ActorTargetFn = Callable[[IQLState, jax.Array, Batch, jax.Array], tuple[jax.Array, jax.Array]]


def value_critic_update(state: IQLState, batch: Batch, hp: Hparams) -> tuple[IQLState, jax.Array, dict]:
    """Steps 1-4 of the reference update; returns the detached advantage of the data actions."""
    critic_apply, value_apply = state.critic.apply_fn, state.value.apply_fn
    target_q = critic_apply({"params": state.target_critic_params}, batch.observations, batch.actions).min(0)
    next_v = value_apply({"params": state.value.params}, batch.next_observations)

    def value_loss(params):
        v = value_apply({"params": params}, batch.observations)
        return expectile_loss(target_q - v, hp.expectile).mean(), v

    (v_loss, v_old), v_grads = jax.value_and_grad(value_loss, has_aux=True)(state.value.params)
    value = apply_gradients(state.value, v_grads, hp.lr)

    y = td_target(batch.rewards, batch.terminals, next_v, hp.gamma)

    def critic_loss(params):
        qs = critic_apply({"params": params}, batch.observations, batch.actions)  # (2, B)
        return ((qs - y) ** 2).mean(), qs

    (q_loss, qs), q_grads = jax.value_and_grad(critic_loss, has_aux=True)(state.critic.params)
    critic = apply_gradients(state.critic, q_grads, hp.lr)
    target = optax.incremental_update(critic.params, state.target_critic_params, hp.tau)

    state = state.replace(critic=critic, value=value, target_critic_params=target)
    metrics = {"value_loss": v_loss, "critic_loss": q_loss, "q_mean": qs.mean(), "v_mean": v_old.mean()}
    return state, target_q - v_old, metrics


def actor_update(
    state: IQLState, observations: jax.Array, actions: jax.Array, adv: jax.Array, hp: Hparams
) -> tuple[IQLState, dict]:
    """AWR: maximise weighted log-likelihood of `actions` (data actions for IQL, composite ones for PEX)."""
    weights = awr_weight(jax.lax.stop_gradient(adv), hp.beta, hp.adv_clip)

    def loss_fn(params):
        mean, log_std = state.actor.apply_fn({"params": params}, observations)
        return -(weights * gaussian_log_prob(mean, log_std, actions)).mean()

    loss, grads = jax.value_and_grad(loss_fn)(state.actor.params)
    actor = apply_gradients(state.actor, grads, hp.lr)
    return state.replace(actor=actor), {"actor_loss": loss, "adv_mean": adv.mean(), "awr_weight_mean": weights.mean()}


def iql_update(state: IQLState, batch: Batch, key: jax.Array, hp: Hparams) -> tuple[IQLState, dict]:
    """Standard IQL update (offline phase and the direct/buffer/scratch baselines)."""
    del key
    state, adv, metrics = value_critic_update(state, batch, hp)
    state, actor_metrics = actor_update(state, batch.observations, batch.actions, adv, hp)
    return state, {**metrics, **actor_metrics}
