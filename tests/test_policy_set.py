"""The PEX policy set: selection frequencies, evaluation modes, and the actor's regression targets."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from pex_jax.agents.algorithms import ALGORITHMS, Dims, init_offline_state, init_online_state, pex_update
from pex_jax.agents.iql import Batch, IQLHparams
from pex_jax.agents.policy_set import policy_set_action
from pex_jax.config import default_config

DIMS = Dims(3, 2, (-1.0, -1.0), (1.0, 1.0))


def _pex_state(key=0):
    c = default_config()
    c.hidden_dims = (16, 16)
    c.offline_steps = 10
    offline = init_offline_state(jax.random.PRNGKey(key), DIMS, c)
    return init_online_state(ALGORITHMS["pex"], jax.random.PRNGKey(key + 100), DIMS, c, offline), c


def test_selection_frequencies_match_the_softmax_of_q_on_a_fixed_critic():
    state, _ = _pex_state()
    obs = jnp.array([0.3, -0.2, 0.5])
    a1, _ = state.actor.apply_fn({"params": state.offline_actor_params}, obs)
    a2, _ = state.actor.apply_fn({"params": state.actor.params}, obs)
    q = state.critic.apply_fn({"params": state.critic.params}, jnp.stack([obs, obs]), jnp.stack([a1, a2])).min(0)
    inv_temperature = 1.0 / float(jnp.abs(q[0] - q[1]) + 1e-3)  # makes the two choices comparably likely
    p_new = float(jax.nn.softmax(inv_temperature * q)[1])
    assert 0.05 < p_new < 0.95

    n = 20_000
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    actions, choices = jax.vmap(lambda k: policy_set_action(state, k, obs, inv_temperature, 1.0))(keys)
    # With epsilon = 1, a2 is a sample, so Q(a2) varies; compare against the expected softmax probability
    # averaged over those samples, computed independently here.
    k_sample = jax.vmap(lambda k: jax.random.split(k, 4)[0])(keys)
    mean, log_std = state.actor.apply_fn({"params": state.actor.params}, obs)
    a2_samples = mean + jnp.exp(log_std) * jax.vmap(lambda k: jax.random.normal(k, mean.shape))(k_sample)
    q_new = jax.vmap(lambda a: state.critic.apply_fn({"params": state.critic.params}, obs, a).min(0))(a2_samples)
    p_each = jax.nn.sigmoid(inv_temperature * (q_new - q[0]))
    expected = float(p_each.mean())
    observed = float(choices.mean())
    se = np.sqrt(expected * (1 - expected) / n)
    assert abs(observed - expected) < 4 * se, (observed, expected, se)
    # The chosen action is exactly the chosen candidate.
    np.testing.assert_allclose(np.asarray(actions)[np.asarray(choices) == 0], np.broadcast_to(a1, (n, 2))[
        np.asarray(choices) == 0])
    np.testing.assert_allclose(np.asarray(actions)[np.asarray(choices) == 1],
                               np.asarray(a2_samples)[np.asarray(choices) == 1], rtol=1e-5, atol=1e-6)


def test_greedy_evaluation_picks_the_higher_q_candidate_deterministically():
    state, _ = _pex_state()
    obs = jnp.array([0.1, 0.2, -0.4])
    keys = jax.random.split(jax.random.PRNGKey(3), 200)
    actions, choices = jax.vmap(lambda k: policy_set_action(state, k, obs, 10.0, 0.0))(keys)
    a1, _ = state.actor.apply_fn({"params": state.offline_actor_params}, obs)
    a2, _ = state.actor.apply_fn({"params": state.actor.params}, obs)
    q = state.critic.apply_fn({"params": state.critic.params}, jnp.stack([obs, obs]), jnp.stack([a1, a2])).min(0)
    assert np.all(np.asarray(choices) == int(jnp.argmax(q)))
    np.testing.assert_allclose(actions[0], (a1, a2)[int(jnp.argmax(q))], rtol=1e-6)
    assert np.unique(np.asarray(actions), axis=0).shape[0] == 1


def test_reference_evaluation_epsilon_explores_about_ten_percent():
    state, _ = _pex_state()
    obs = jnp.array([0.1, 0.2, -0.4])
    keys = jax.random.split(jax.random.PRNGKey(4), 4000)
    actions, _ = jax.vmap(lambda k: policy_set_action(state, k, obs, 10.0, 0.1))(keys)
    a2, _ = state.actor.apply_fn({"params": state.actor.params}, obs)
    a1, _ = state.actor.apply_fn({"params": state.offline_actor_params}, obs)
    is_mode = np.all(np.isclose(actions, a2), axis=1) | np.all(np.isclose(actions, a1), axis=1)
    # a2 is sampled with prob 0.1 (and then chosen or not): non-mode actions appear, but rarely.
    assert 0.0 < 1 - is_mode.mean() < 0.1 + 4 * np.sqrt(0.1 * 0.9 / 4000)


def test_pex_actor_regresses_toward_policy_set_actions_not_dataset_actions(monkeypatch):
    state, c = _pex_state()
    n = 32
    k = jax.random.split(jax.random.PRNGKey(9), 3)
    batch = Batch(jax.random.normal(k[0], (n, 3)), jnp.full((n, 2), 0.77), -jnp.ones(n),
                  jax.random.normal(k[1], (n, 3)), jnp.zeros(n))
    seen = {}
    import pex_jax.agents.algorithms as agents

    real_actor_update = agents.actor_update

    def spy(state, observations, actions, adv, hp):
        seen["actions"], seen["adv"] = actions, adv
        return real_actor_update(state, observations, actions, adv, hp)

    monkeypatch.setattr(agents, "actor_update", spy)
    key = jax.random.PRNGKey(5)
    new_state, metrics = pex_update(state, batch, key, IQLHparams(expectile=0.9), inv_temperature=10.0)
    # Recompute the targets independently: the policy set at the batch states, with the post-update critic.
    from pex_jax.agents.iql import value_critic_update

    after_vq, _, _ = value_critic_update(state, batch, IQLHparams(expectile=0.9))
    keys = jax.random.split(key, n)
    expected, choices = jax.vmap(policy_set_action, in_axes=(None, 0, 0, None, None))(
        after_vq, keys, batch.observations, 10.0, 1.0)
    np.testing.assert_allclose(seen["actions"], expected, rtol=1e-6)
    assert not np.any(np.isclose(np.asarray(seen["actions"]), 0.77))
    q_t = after_vq.critic.apply_fn({"params": after_vq.target_critic_params}, batch.observations, expected).min(0)
    v = after_vq.value.apply_fn({"params": after_vq.value.params}, batch.observations)
    np.testing.assert_allclose(seen["adv"], q_t - v, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["actor_target_offline_rate"], 1 - np.mean(choices))
    chex.assert_trees_all_equal(new_state.offline_actor_params, state.offline_actor_params)


def test_evaluation_epsilon_also_explores_the_policy_choice_not_only_the_new_action():
    state, _ = _pex_state()
    obs = jnp.array([0.2, -0.1, 0.3])
    a1, _ = state.actor.apply_fn({"params": state.offline_actor_params}, obs)
    # A critic that strongly prefers the offline action a1 over ANY other action (sampled or mode a2), so the
    # argmax always picks the offline policy and only an explored choice w can pick the new one.
    critic = state.critic.replace(
        apply_fn=lambda variables, o, a: jnp.broadcast_to(-100.0 * jnp.linalg.norm(a - a1, axis=-1), (2, a.shape[0])))
    state = state.replace(critic=critic)
    inv_temperature = 1e-6  # Categorical(inv_temperature * q) is then ~uniform: an explored w is a coin flip
    n = 4000
    keys = jax.random.split(jax.random.PRNGKey(11), n)
    rates = {}
    for epsilon in (0.0, 0.1, 1.0):
        actions, choices = jax.vmap(lambda k, e=epsilon: policy_set_action(state, k, obs, inv_temperature, e))(keys)
        chex.assert_shape(actions, (n, 2))
        chex.assert_shape(choices, (n,))
        chex.assert_type(choices, int)
        choices = np.asarray(choices)
        np.testing.assert_allclose(np.asarray(actions)[choices == 0], np.broadcast_to(a1, (n, 2))[choices == 0])
        rates[epsilon] = choices.mean()
    assert rates[0.0] == 0.0  # greedy: never the new policy
    se = np.sqrt(0.25 / n)
    assert abs(rates[1.0] - 0.5) < 4 * se, rates  # fully explored choice: uniform
    expected = 0.1 * 0.5  # explored with probability epsilon, then a coin flip
    assert abs(rates[0.1] - expected) < 4 * np.sqrt(expected * (1 - expected) / n), rates
