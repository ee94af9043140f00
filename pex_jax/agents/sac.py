"""Soft Actor-Critic (Haarnoja et al. 2018, "SAC: Algorithms and Applications") as pure functions.

Same shape as `pex_jax.agents.iql`: a `SACState` pytree of flax `TrainState`s, static `SACHparams`, and a
pure `sac_update(state, batch, key, hp)` that jits and vmaps over a leading seed axis of (state, key).

One update, in this order:
1. Critic: both twins regress to r + gamma (1 - d) (min Q_targ(s', a') - alpha log pi(a'|s')),
   a' ~ pi(.|s') from the current actor, alpha the current temperature.
2. Actor: minimise alpha log pi(a~|s) - min Q(s, a~) with a~ reparameterised, against the critic
   just updated (as in the paper's Algorithm 1 and common JAX implementations).
3. Temperature: one step on -log_alpha (log pi(a~|s) + target_entropy), reusing step 2's samples
   (detached), so alpha moves with the entropy of the policy the actor step started from.
4. Target EMA at rate tau, last, so the next update's backup sees this step's critic.

Actions lie in [-1, 1] (tanh-squashed); callers rescale to their environment's bounds.
Temperature is parameterised as log_alpha (stays positive; the gradient does not vanish as alpha -> 0).
"""

from collections.abc import Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training.train_state import TrainState

from pex_jax.agents.iql import Batch, Params
from pex_jax.agents.networks import MLP, Critic, Dense

# Hard clip of the state-dependent log-std: std in [4.5e-5, 7.4]. Low enough for a near-deterministic
# policy, high enough to be uniform-like after tanh; log-probs stay well inside float32.
LOG_STD_MIN, LOG_STD_MAX = -10.0, 2.0


@flax.struct.dataclass
class SACHparams:
    """Static hyperparameters. `target_entropy=None` means -act_dim (resolved from the batch shape)."""

    gamma: float = struct.field(pytree_node=False, default=0.99)
    tau: float = struct.field(pytree_node=False, default=0.005)
    target_entropy: float | None = struct.field(pytree_node=False, default=None)
    init_temperature: float = struct.field(pytree_node=False, default=1.0)
    backup_entropy: bool = struct.field(pytree_node=False, default=True)


def target_entropy(hp: SACHparams, act_dim: int) -> float:
    return -float(act_dim) if hp.target_entropy is None else hp.target_entropy


class SACState(struct.PyTreeNode):
    """All learnable state of one run; `temperature.params` is {"log_alpha": scalar}."""

    actor: TrainState
    critic: TrainState
    target_critic_params: Params
    temperature: TrainState


# --- Policy ---


class TanhGaussianPolicy(nn.Module):
    """Returns the *pre-tanh* (mean, log_std) of a diagonal Gaussian; log_std is state-dependent."""

    hidden_dims: Sequence[int]
    action_dim: int

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = MLP(self.hidden_dims, activate_final=True, torch_init=False)(obs)
        mean = Dense(self.action_dim)(h)
        log_std = jnp.clip(Dense(self.action_dim)(h), LOG_STD_MIN, LOG_STD_MAX)
        return mean, log_std


def tanh_log_det(u: jax.Array) -> jax.Array:
    """sum log(1 - tanh(u)^2) = sum 2 (log 2 - u - softplus(-2u)); finite for any u, unlike the naive form."""
    return jnp.sum(2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u)), axis=-1)


def sample_and_log_prob(mean: jax.Array, log_std: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Reparameterised a = tanh(mean + std eps) and log pi(a) by change of variables.

    The Gaussian term uses eps directly rather than (u - mean) / std, which loses precision at tiny std.
    Works for one observation (shape (act_dim,)) or a batch (leading axes); log-prob sums the last axis.
    """
    eps = jax.random.normal(key, mean.shape, mean.dtype)
    u = mean + jnp.exp(log_std) * eps
    gauss = jnp.sum(-0.5 * eps**2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi), axis=-1)
    return jnp.tanh(u), gauss - tanh_log_det(u)


def mode(mean: jax.Array) -> jax.Array:
    return jnp.tanh(mean)


# --- Per-sample losses ---


def soft_target(reward, terminal, next_q, next_log_prob, alpha, gamma: float, backup_entropy: bool) -> jax.Array:
    """r + gamma (1 - d) (min Q_targ(s', a') - alpha log pi(a'|s')); no entropy term if not `backup_entropy`."""
    soft_v = next_q - alpha * next_log_prob if backup_entropy else next_q
    return reward + gamma * (1.0 - terminal) * soft_v


def critic_loss(qs: jax.Array, target: jax.Array) -> jax.Array:
    """One sample: sum over twins of (Q_i - y)^2, i.e. each twin's own squared error."""
    return jnp.sum((qs - target) ** 2)


def actor_loss(log_prob: jax.Array, q: jax.Array, alpha: jax.Array) -> jax.Array:
    return alpha * log_prob - q


def temperature_loss(log_alpha: jax.Array, log_prob: jax.Array, target_ent: float) -> jax.Array:
    """-log_alpha (log pi + H_target): alpha rises when the entropy -log pi is below the target."""
    return -log_alpha * jax.lax.stop_gradient(log_prob + target_ent)


# --- Construction ---


def _alpha_apply(params: Params) -> jax.Array:
    """Module-level (not a lambda) so that states created separately share one treedef."""
    return jnp.exp(params["log_alpha"])


def create_sac_state(
    key: jax.Array,
    obs_dim: int,
    act_dim: int,
    hp: SACHparams | None = None,
    hidden_dims: Sequence[int] = (256, 256),
    lr: float = 3e-4,
) -> SACState:
    """Fresh state (Adam at `lr` for all three); target critic = critic. vmap over `key` for seeds.

    Only `hp.init_temperature` is read here; the rest of `hp` is passed to `sac_update`.
    """
    hp = SACHparams() if hp is None else hp
    actor, critic = TanhGaussianPolicy(tuple(hidden_dims), act_dim), Critic(tuple(hidden_dims))
    k_a, k_c = jax.random.split(key)
    obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, act_dim))
    actor_params = actor.init(k_a, obs)["params"]
    critic_params = critic.init(k_c, obs, act)["params"]
    temp_params = {"log_alpha": jnp.log(jnp.asarray(hp.init_temperature, jnp.float32))}
    return SACState(
        actor=TrainState.create(apply_fn=actor.apply, params=actor_params, tx=optax.adam(lr)),
        critic=TrainState.create(apply_fn=critic.apply, params=critic_params, tx=optax.adam(lr)),
        target_critic_params=critic_params,
        temperature=TrainState.create(apply_fn=_alpha_apply, params=temp_params, tx=optax.adam(lr)),
    )


def alpha(state: SACState) -> jax.Array:
    return state.temperature.apply_fn(state.temperature.params)


# --- Update steps (each pure; `sac_update` chains them) ---


def critic_step(state: SACState, batch: Batch, key: jax.Array, hp: SACHparams) -> tuple[SACState, dict]:
    mean, log_std = state.actor.apply_fn({"params": state.actor.params}, batch.next_observations)
    next_actions, next_log_prob = sample_and_log_prob(mean, log_std, key)
    next_q = state.critic.apply_fn({"params": state.target_critic_params}, batch.next_observations, next_actions)
    y = soft_target(batch.rewards, batch.terminals, next_q.min(0), next_log_prob, alpha(state), hp.gamma,
                    hp.backup_entropy)

    def loss_fn(params):
        qs = state.critic.apply_fn({"params": params}, batch.observations, batch.actions)  # (2, B)
        return jax.vmap(critic_loss, in_axes=(1, 0))(qs, y).mean(), qs

    (loss, qs), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.critic.params)
    return state.replace(critic=state.critic.apply_gradients(grads=grads)), {"critic_loss": loss, "q_mean": qs.mean()}


def actor_step(state: SACState, batch: Batch, key: jax.Array) -> tuple[SACState, jax.Array, dict]:
    """Returns the new state and the (detached) log-probs of the samples, for the temperature step."""
    a = alpha(state)

    def loss_fn(params):
        mean, log_std = state.actor.apply_fn({"params": params}, batch.observations)
        actions, log_prob = sample_and_log_prob(mean, log_std, key)
        q = state.critic.apply_fn({"params": state.critic.params}, batch.observations, actions).min(0)
        return actor_loss(log_prob, q, a).mean(), log_prob

    (loss, log_prob), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.actor.params)
    state = state.replace(actor=state.actor.apply_gradients(grads=grads))
    return state, jax.lax.stop_gradient(log_prob), {"actor_loss": loss, "entropy": -log_prob.mean()}


def temperature_step(state: SACState, log_prob: jax.Array, target_ent: float) -> tuple[SACState, dict]:
    def loss_fn(params):
        return temperature_loss(params["log_alpha"], log_prob, target_ent).mean()

    loss, grads = jax.value_and_grad(loss_fn)(state.temperature.params)
    temperature = state.temperature.apply_gradients(grads=grads)
    return state.replace(temperature=temperature), {"temperature_loss": loss, "alpha": alpha(state)}


def sac_update(state: SACState, batch: Batch, key: jax.Array, hp: SACHparams) -> tuple[SACState, dict]:
    """Critic, actor, temperature, target EMA (module docstring says why). `alpha` metric is pre-step."""
    k_critic, k_actor = jax.random.split(key)
    state, critic_metrics = critic_step(state, batch, k_critic, hp)
    state, log_prob, actor_metrics = actor_step(state, batch, k_actor)
    state, temp_metrics = temperature_step(state, log_prob, target_entropy(hp, batch.actions.shape[-1]))
    target = optax.incremental_update(state.critic.params, state.target_critic_params, hp.tau)
    return state.replace(target_critic_params=target), {**critic_metrics, **actor_metrics, **temp_metrics}


# --- Acting ---


def sac_act(state: SACState, key: jax.Array, obs: jax.Array, deterministic: bool) -> jax.Array:
    """Action in [-1, 1] for one observation or a batch; `deterministic` (static) gives tanh(mean)."""
    mean, log_std = state.actor.apply_fn({"params": state.actor.params}, obs)
    if deterministic:
        return mode(mean)
    return sample_and_log_prob(mean, log_std, key)[0]
