"""IQL losses against hand-computed values, and network shapes/initialisation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from pex_jax.agents.iql import (
    Batch,
    Hparams,
    awr_weight,
    create_state,
    expectile_loss,
    init_params,
    iql_update,
    td_target,
)
from pex_jax.agents.networks import LOG_STD_MAX, LOG_STD_MIN, Critic, GaussianPolicy, gaussian_log_prob


def test_expectile_loss_weights_positive_and_negative_errors_asymmetrically():
    diff = jnp.array([2.0, -2.0, 0.5])
    np.testing.assert_allclose(expectile_loss(diff, 0.9), [0.9 * 4.0, 0.1 * 4.0, 0.9 * 0.25], rtol=1e-6)


def test_awr_weight_is_clipped_above_only():
    adv = jnp.array([-1.0, 0.0, 0.1, 1.0])
    np.testing.assert_allclose(awr_weight(adv, 10.0, 100.0), [np.exp(-10.0), 1.0, np.e, 100.0], rtol=1e-6)


def test_td_target_does_not_bootstrap_through_terminals():
    np.testing.assert_allclose(
        td_target(jnp.array([-1.0, 0.0]), jnp.array([0.0, 1.0]), jnp.array([5.0, 5.0]), 0.99), [-1.0 + 4.95, 0.0]
    )


def test_gaussian_log_prob_matches_closed_form():
    mean, log_std, a = jnp.array([0.1, -0.2]), jnp.array([0.0, -1.0]), jnp.array([0.3, 0.0])
    std = np.exp(np.array([0.0, -1.0]))
    expected = np.sum(-0.5 * ((np.array([0.3, 0.0]) - [0.1, -0.2]) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi))
    np.testing.assert_allclose(gaussian_log_prob(mean, log_std, a), expected, rtol=1e-6)


def test_policy_has_tanh_bounded_mean_and_clipped_state_independent_log_std():
    policy = GaussianPolicy((16, 16), 3)
    params = policy.init(jax.random.PRNGKey(0), jnp.zeros((1, 5)))["params"]
    np.testing.assert_array_equal(params["log_std"], np.zeros(3))  # reference init: 0
    np.testing.assert_array_equal(params["Dense_0"]["bias"], 0.0)  # xavier weights, zero bias
    params["log_std"] = jnp.array([-9.0, 0.5, 7.0])
    obs = 100.0 * jax.random.normal(jax.random.PRNGKey(1), (4, 5))
    mean, log_std = policy.apply({"params": params}, obs)
    chex.assert_shape([mean, log_std], (4, 3))
    assert jnp.all(jnp.abs(mean) <= 1.0)
    np.testing.assert_allclose(log_std[0], [LOG_STD_MIN, 0.5, LOG_STD_MAX])
    np.testing.assert_allclose(log_std[0], log_std[3])  # state-independent


def test_critic_is_an_ensemble_of_two_independent_torch_initialised_qs():
    critic = Critic((64, 64))
    params = critic.init(jax.random.PRNGKey(0), jnp.zeros((1, 6)), jnp.zeros((1, 2)))["params"]
    kernel = params["VmapQNet_0"]["MLP_0"]["TorchDense_0"]["kernel"]
    bias = params["VmapQNet_0"]["MLP_0"]["TorchDense_0"]["bias"]
    chex.assert_shape(kernel, (2, 8, 64))
    bound = 1.0 / np.sqrt(8)
    assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound and np.abs(bias).max() > 0
    assert not np.allclose(kernel[0], kernel[1])
    out = critic.apply({"params": params}, jnp.ones((5, 6)), jnp.ones((5, 2)))
    chex.assert_shape(out, (2, 5))


def _state_and_batch(key=0):
    obs_dim, act_dim, n = 4, 2, 8
    actor, critic, value = init_params(jax.random.PRNGKey(key), obs_dim, act_dim, (16, 16))
    state = create_state(actor, critic, value, jax.tree.map(lambda x: x + 0.1, critic), action_dim=act_dim,
                         hidden_dims=(16, 16))
    k = jax.random.split(jax.random.PRNGKey(key + 1), 4)
    batch = Batch(
        observations=jax.random.normal(k[0], (n, obs_dim)),
        actions=jax.random.uniform(k[1], (n, act_dim), minval=-1, maxval=1),
        rewards=-jnp.ones(n),
        next_observations=jax.random.normal(k[2], (n, obs_dim)),
        terminals=(jnp.arange(n) % 3 == 0).astype(jnp.float32),
    )
    return state, batch


def test_iql_update_losses_match_hand_computation_with_pre_update_networks():
    state, batch = _state_and_batch()
    hp = Hparams(gamma=0.99, expectile=0.8, beta=3.0, adv_clip=100.0, tau=0.005, lr=1e-3)
    params = lambda ts: {"params": ts.params}  # noqa: E731
    target_qs = state.critic.apply_fn({"params": state.target_critic_params}, batch.observations, batch.actions)
    target_q = np.min(target_qs, 0)
    v = np.asarray(state.value.apply_fn(params(state.value), batch.observations))
    next_v = np.asarray(state.value.apply_fn(params(state.value), batch.next_observations))
    qs = np.asarray(state.critic.apply_fn(params(state.critic), batch.observations, batch.actions))
    diff = target_q - v
    expected_v = np.mean(np.where(diff > 0, 0.8, 0.2) * diff**2)
    y = np.asarray(batch.rewards) + (1 - np.asarray(batch.terminals)) * 0.99 * next_v  # pre-update V
    expected_q = np.mean((qs - y) ** 2)
    mean, log_std = state.actor.apply_fn(params(state.actor), batch.observations)
    logp = np.asarray(gaussian_log_prob(mean, log_std, batch.actions))
    expected_actor = -np.mean(np.minimum(np.exp(3.0 * diff), 100.0) * logp)  # adv uses the old V

    new_state, metrics = iql_update(state, batch, jax.random.PRNGKey(0), hp)
    np.testing.assert_allclose(metrics["value_loss"], expected_v, rtol=1e-5)
    np.testing.assert_allclose(metrics["critic_loss"], expected_q, rtol=1e-5)
    np.testing.assert_allclose(metrics["actor_loss"], expected_actor, rtol=1e-5)
    # Target EMA: 0.995 * old target + 0.005 * updated critic.
    expected_target = jax.tree.map(lambda t, c: 0.995 * t + 0.005 * c, state.target_critic_params,
                                   new_state.critic.params)
    chex.assert_trees_all_close(new_state.target_critic_params, expected_target, rtol=1e-6, atol=1e-7)
    assert new_state.actor.step == 1 and new_state.critic.step == 1 and new_state.value.step == 1


def test_actor_learning_rate_cosine_decays_to_zero_while_critics_keep_learning():
    _, batch = _state_and_batch()
    actor, critic, value = init_params(jax.random.PRNGKey(0), 4, 2, (16, 16))
    state = create_state(actor, critic, value, critic, action_dim=2, hidden_dims=(16, 16), actor_decay_steps=2)
    hp = Hparams(lr=1e-3)
    for _ in range(2):  # learning rates 1e-3, then 1e-3 * (1 + cos(pi / 2)) / 2
        state, _ = iql_update(state, batch, jax.random.PRNGKey(0), hp)
    before = state
    state, _ = iql_update(state, batch, jax.random.PRNGKey(0), hp)  # step 2 of 2: lr = 0
    chex.assert_trees_all_equal(state.actor.params, before.actor.params)
    assert not np.allclose(state.value.params["MLP_0"]["TorchDense_0"]["kernel"],
                           before.value.params["MLP_0"]["TorchDense_0"]["kernel"])
