"""The PEX policy set: a frozen offline policy and a new policy, composed by the critic.

Per state s (reference `pex.py:select_action`):
- a1 = mode of the frozen offline policy (always deterministic);
- a2 = a sample of the new policy with probability `epsilon`, else its mode
  (training: epsilon = 1, pure sampling; evaluation: epsilon = 0.1 as in the reference, 0 = greedy);
- q_i = min over the online critic's twins at (s, a_i);
- w ~ Categorical(inv_temperature * q) with probability `epsilon`, else argmax;
- the action is a_w; index 0 is the offline policy, 1 the new one.

`compose` is that rule for any pair of members (the IQL new policy here, the SAC one in
`pex_jax.agents.pex_sac`). Written for one state; `jax.vmap` adds batch and seed axes.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from pex_jax.agents.iql import IQLState
from pex_jax.agents.networks import gaussian_sample

OFFLINE, NEW = 0, 1


def compose(
    key: jax.Array,
    obs: jax.Array,
    offline_action: jax.Array,
    new_sample: Callable[[jax.Array], jax.Array],
    new_mode: jax.Array,
    q_fn: Callable[[jax.Array, jax.Array], jax.Array],
    inv_temperature: float,
    epsilon: float,
) -> tuple[jax.Array, jax.Array]:
    """(action, choice) for one observation from the offline action, the new member's sampler and mode,
    and `q_fn(obs_pair, action_pair) -> (num_qs, 2)`; the key split is shared by every backbone."""
    k_sample, k_explore_a, k_choice, k_explore_w = jax.random.split(key, 4)
    a2 = jnp.where(jax.random.uniform(k_explore_a) < epsilon, new_sample(k_sample), new_mode)
    candidates = jnp.stack([offline_action, a2])
    q = q_fn(jnp.stack([obs, obs]), candidates).min(0)
    logits = inv_temperature * q
    sampled = jax.random.categorical(k_choice, logits)
    choice = jnp.where(jax.random.uniform(k_explore_w) < epsilon, sampled, jnp.argmax(logits))
    return candidates[choice], choice


def policy_set_action(
    state: IQLState, key: jax.Array, obs: jax.Array, inv_temperature: float, epsilon: float
) -> tuple[jax.Array, jax.Array]:
    """Return (action, choice) for one observation; choice is 0 (offline policy) or 1 (new policy)."""
    apply = state.actor.apply_fn
    a1, _ = apply({"params": state.offline_actor_params}, obs)
    mean, log_std = apply({"params": state.actor.params}, obs)

    def q_fn(observations, actions):
        return state.critic.apply_fn({"params": state.critic.params}, observations, actions)

    return compose(key, obs, a1, lambda k: gaussian_sample(k, mean, log_std), mean, q_fn, inv_temperature, epsilon)


def single_policy_action(state: IQLState, key: jax.Array, obs: jax.Array, deterministic: bool) -> jax.Array:
    """Baselines: a sample of the (only) policy for training, its mode for evaluation."""
    mean, log_std = state.actor.apply_fn({"params": state.actor.params}, obs)
    return mean if deterministic else gaussian_sample(key, mean, log_std)
