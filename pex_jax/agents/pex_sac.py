"""PEX with a SAC backbone (`pex_sac`) and its baseline, online SAC on offline + online data (`sac`).

`pex_sac` online (the offline phase is the IQL pre-training of every PEX run). docs/pex-sac.md says
which parts come from the paper and which are ours:
- policy set = {frozen offline IQL actor (its mode), a new SAC tanh-Gaussian actor (fresh init)},
  composed by `policy_set.compose` with the SAC critic: the same selection rule as the IQL PEX;
- the SAC critic and its target start as the offline critic and target critic (V is dropped);
- critic target r + gamma (1 - d) min Q_targ(s', a') with a' drawn from the policy set at s'
  (training mode) and no entropy bonus: the offline Q carries none, so at the switch the
  transferred critic already fits this backup, and a random new policy cannot drag it down;
- actor: SAC's loss alpha log pi(a~|s) - min Q(s, a~) on the new member only (the frozen member has
  no gradient path), against the critic just updated;
- temperature: learned toward the target entropy -|A|, from `init_temperature`.

`sac` is `sac.sac_update` on fresh networks with the same 50/50 batches. All functions are for one
seed; the runner vmaps them. Actions are tanh-squashed to [-1, 1], so the SAC algorithms need tasks
whose action bounds are [-1, 1] (checked in `check_action_bounds`).
"""

from collections.abc import Callable, Sequence

import jax
import ml_collections
import optax
from flax import struct
from flax.training.train_state import TrainState

from pex_jax.agents.iql import Batch, IQLState, Params
from pex_jax.agents.policy_set import compose
from pex_jax.agents.sac import (
    SACHparams,
    SACState,
    actor_step,
    create_sac_state,
    critic_loss,
    critic_step,
    mode,
    sample_and_log_prob,
    target_entropy,
    temperature_step,
)
from pex_jax.errors import ConfigError

BACKUPS = ("policy_set", "new")


class PEXSACState(struct.PyTreeNode):
    """The learner (`sac`: new actor, critic, target, temperature) and the frozen offline member."""

    sac: SACState
    offline_actor_params: Params
    offline_apply_fn: Callable = struct.field(pytree_node=False)


def sac_hparams(config: ml_collections.ConfigDict) -> SACHparams:
    return SACHparams(gamma=config.gamma, tau=config.tau, init_temperature=config.init_temperature,
                      backup_entropy=config.sac_backup_entropy)


def check_action_bounds(low: Sequence[float], high: Sequence[float]) -> None:
    """SAC's tanh squashing emits [-1, 1]; a task with other bounds would need a rescaling we don't do."""
    if any(lo != -1.0 for lo in low) or any(hi != 1.0 for hi in high):
        raise ConfigError(f"the SAC algorithms (pex_sac, sac) need action bounds [-1, 1], this task has "
                          f"low={tuple(low)} high={tuple(high)}; use an IQL algorithm (pex, buffer, ...)")


def init_sac(key: jax.Array, obs_dim: int, act_dim: int, config: ml_collections.ConfigDict) -> SACState:
    """Fresh SAC networks and temperature (the `sac` baseline, and the new member of `pex_sac`)."""
    return create_sac_state(key, obs_dim, act_dim, sac_hparams(config), tuple(config.hidden_dims), config.lr)


def warm_start(key: jax.Array, offline: IQLState, obs_dim: int, act_dim: int,
               config: ml_collections.ConfigDict) -> PEXSACState:
    """New SAC actor and temperature; critic := offline critic (fresh Adam), target := offline target.

    Both critics are `networks.Critic(hidden_dims)`, so the offline parameters fit as they are.
    """
    fresh = init_sac(key, obs_dim, act_dim, config)
    critic = TrainState.create(apply_fn=fresh.critic.apply_fn, params=offline.critic.params,
                               tx=optax.adam(config.lr))
    learner = fresh.replace(critic=critic, target_critic_params=offline.target_critic_params)
    return PEXSACState(sac=learner, offline_actor_params=offline.actor.params,
                       offline_apply_fn=offline.actor.apply_fn)


# --- Acting ---


def pex_sac_action(
    state: PEXSACState, key: jax.Array, obs: jax.Array, inv_temperature: float, epsilon: float
) -> tuple[jax.Array, jax.Array]:
    """The policy set for one observation: (action, choice), choice 0 = offline member, 1 = new one."""
    learner = state.sac
    a1, _ = state.offline_apply_fn({"params": state.offline_actor_params}, obs)
    mean, log_std = learner.actor.apply_fn({"params": learner.actor.params}, obs)

    def q_fn(observations, actions):
        return learner.critic.apply_fn({"params": learner.critic.params}, observations, actions)

    def sample(k):
        return sample_and_log_prob(mean, log_std, k)[0]

    return compose(key, obs, a1, sample, mode(mean), q_fn, inv_temperature, epsilon)


def sac_action(state: SACState, key: jax.Array, obs: jax.Array, deterministic: bool) -> jax.Array:
    """The `sac` baseline: a tanh-Gaussian sample for training, tanh(mean) for evaluation."""
    mean, log_std = state.actor.apply_fn({"params": state.actor.params}, obs)
    return mode(mean) if deterministic else sample_and_log_prob(mean, log_std, key)[0]


# --- Update ---


def policy_set_backup(
    state: PEXSACState, batch: Batch, key: jax.Array, gamma: float, inv_temperature: float
) -> tuple[jax.Array, jax.Array]:
    """y = r + gamma (1 - d) min Q_targ(s', a'), a' the policy set's training action at s'; also the choices.

    a' is chosen with the online critic (as when acting) and scored by the target critic. No entropy
    term: a' may be the offline member's mode, which has no density.
    """
    keys = jax.random.split(key, batch.rewards.shape[0])
    select = jax.vmap(pex_sac_action, in_axes=(None, 0, 0, None, None))
    next_actions, choices = select(state, keys, batch.next_observations, inv_temperature, 1.0)
    learner = state.sac
    next_q = learner.critic.apply_fn({"params": learner.target_critic_params}, batch.next_observations,
                                     next_actions).min(0)
    y = batch.rewards + gamma * (1.0 - batch.terminals) * next_q
    return jax.lax.stop_gradient(y), choices


def fit_critic(state: SACState, batch: Batch, y: jax.Array) -> tuple[SACState, dict]:
    """One Adam step of both twins toward the given targets (the loss of `sac.critic_step`)."""

    def loss_fn(params):
        qs = state.critic.apply_fn({"params": params}, batch.observations, batch.actions)  # (2, B)
        return jax.vmap(critic_loss, in_axes=(1, 0))(qs, y).mean(), qs

    (loss, qs), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.critic.params)
    return state.replace(critic=state.critic.apply_gradients(grads=grads)), {"critic_loss": loss, "q_mean": qs.mean()}


def pex_sac_update(
    state: PEXSACState, batch: Batch, key: jax.Array, hp: SACHparams, inv_temperature: float,
    backup: str = "policy_set",
) -> tuple[PEXSACState, dict]:
    """Critic (policy-set backup, or stock SAC's with `backup="new"`), new actor, temperature, target EMA.

    Keys: `k_critic, k_actor = jax.random.split(key)`, as in `sac.sac_update`. The actor and temperature
    steps are SAC's own (`sac.actor_step`, `sac.temperature_step`): they see only the new member, so the
    offline parameters never enter a gradient. `alpha` in the metrics is the pre-step value.
    """
    if backup not in BACKUPS:
        raise ValueError(f"backup must be one of {BACKUPS}, got {backup!r}")
    k_critic, k_actor = jax.random.split(key)
    learner = state.sac
    if backup == "policy_set":
        y, choices = policy_set_backup(state, batch, k_critic, hp.gamma, inv_temperature)
        learner, metrics = fit_critic(learner, batch, y)
        metrics["backup_offline_rate"] = 1.0 - choices.mean()
    else:
        learner, metrics = critic_step(learner, batch, k_critic, hp)
    learner, log_prob, actor_metrics = actor_step(learner, batch, k_actor)
    learner, temp_metrics = temperature_step(learner, log_prob, target_entropy(hp, batch.actions.shape[-1]))
    target = optax.incremental_update(learner.critic.params, learner.target_critic_params, hp.tau)
    learner = learner.replace(target_critic_params=target)
    return state.replace(sac=learner), {**metrics, **actor_metrics, **temp_metrics}


def learner_of(state: SACState | PEXSACState) -> SACState:
    return state.sac if isinstance(state, PEXSACState) else state


def trained_params(state: SACState | PEXSACState) -> tuple:
    """What the divergence check looks at: the learned parameters (not the optimizer moments)."""
    learner = learner_of(state)
    return learner.actor.params, learner.critic.params, learner.temperature.params
