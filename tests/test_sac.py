"""SAC: losses against numpy computations, the tanh change of variables, vmap over seeds, and learning."""

from functools import cache, partial

import chex
import jax
import jax.numpy as jnp
import numpy as np

from pex_jax.agents.iql import Batch
from pex_jax.agents.sac import (
    SACHparams,
    actor_step,
    create_sac_state,
    critic_step,
    sac_act,
    sac_update,
    sample_and_log_prob,
    soft_target,
    tanh_log_det,
    target_entropy,
    temperature_step,
)

OBS, ACT, HIDDEN = 3, 2, (16, 16)
HP = SACHparams(gamma=0.9, tau=0.1, init_temperature=0.5)


def _create(key: jax.Array):
    return create_sac_state(key, OBS, ACT, HP, HIDDEN, lr=1e-3)


@cache
def _state():
    """One state for the loss tests. Every `create_sac_state` call has its own treedef (bound
    `apply_fn`s, optax closures), so sharing this one lets the jitted steps below compile once."""
    state = _create(jax.random.PRNGKey(0))
    # A target that differs from the critic, so the test can tell which one the backup uses.
    return state.replace(target_critic_params=jax.tree.map(lambda x: x + 0.05, state.critic.params))


# Jitted once per module: eager op-by-op dispatch is far slower than one compile on a loaded CPU.
_critic_step = jax.jit(critic_step, static_argnums=3)
_actor_step = jax.jit(actor_step)
_temperature_step = jax.jit(temperature_step, static_argnums=2)
_update = jax.jit(sac_update, static_argnums=3)


def _batch(n=2, seed=1):
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    return Batch(
        observations=jax.random.normal(k[0], (n, OBS)),
        actions=jax.random.uniform(k[1], (n, ACT), minval=-1, maxval=1),
        rewards=jnp.array([0.5, -1.0] * (n // 2)),
        next_observations=jax.random.normal(k[2], (n, OBS)),
        terminals=jnp.array([0.0, 1.0] * (n // 2)),
    )


def _np_tanh_gaussian(mean, log_std, key):
    """Sample and log-prob in float64 numpy with the naive change of variables (same noise as the sampler)."""
    mean, log_std = np.asarray(mean, np.float64), np.asarray(log_std, np.float64)
    u = mean + np.exp(log_std) * np.asarray(jax.random.normal(key, mean.shape), np.float64)
    gauss = -0.5 * ((u - mean) / np.exp(log_std)) ** 2 - log_std - 0.5 * np.log(2 * np.pi)
    return np.tanh(u), np.sum(gauss - np.log(1 - np.tanh(u) ** 2), -1)


def _np_sample(state, obs, key):
    return _np_tanh_gaussian(*state.actor.apply_fn({"params": state.actor.params}, obs), key)


def _q(state, params, obs, act):
    return np.asarray(state.critic.apply_fn({"params": params}, obs, jnp.asarray(act, jnp.float32)), np.float64)


def test_soft_target_backs_up_entropy_and_masks_terminals():
    y = soft_target(jnp.array([1.0, 2.0]), jnp.array([0.0, 1.0]), jnp.array([3.0, 3.0]), jnp.array([0.5, 0.5]),
                    0.2, 0.9, backup_entropy=True)
    np.testing.assert_allclose(y, [1.0 + 0.9 * (3.0 - 0.2 * 0.5), 2.0], rtol=1e-6)
    y = soft_target(jnp.array([1.0]), jnp.array([0.0]), jnp.array([3.0]), jnp.array([0.5]), 0.2, 0.9, False)
    np.testing.assert_allclose(y, [1.0 + 0.9 * 3.0], rtol=1e-6)


def test_critic_loss_matches_numpy_backup_from_target_twins_and_current_policy():
    state, batch, key = _state(), _batch(), jax.random.PRNGKey(7)
    next_a, next_logp = _np_sample(state, batch.next_observations, key)
    next_q = _q(state, state.target_critic_params, batch.next_observations, next_a).min(0)
    qs = _q(state, state.critic.params, batch.observations, batch.actions)
    r, d = np.asarray(batch.rewards), np.asarray(batch.terminals)
    y = r + 0.9 * (1 - d) * (next_q - 0.5 * next_logp)  # gamma = 0.9, alpha = init_temperature = 0.5
    assert y[1] == r[1]  # the second sample is terminal: no bootstrap
    expected = np.mean(np.sum((qs - y) ** 2, 0))
    without_entropy = np.mean(np.sum((qs - r - 0.9 * (1 - d) * next_q) ** 2, 0))
    assert abs(expected - without_entropy) > 1e-2 * expected  # so the check below sees the entropy term
    _, metrics = _critic_step(state, batch, key, HP)
    np.testing.assert_allclose(metrics["critic_loss"], expected, rtol=1e-5)


def test_actor_and_temperature_losses_match_numpy():
    state, batch, key = _state(), _batch(), jax.random.PRNGKey(3)
    a, logp = _np_sample(state, batch.observations, key)
    q = _q(state, state.critic.params, batch.observations, a).min(0)
    new_state, log_prob, metrics = _actor_step(state, batch, key)
    np.testing.assert_allclose(metrics["actor_loss"], np.mean(0.5 * logp - q), rtol=1e-5)
    np.testing.assert_allclose(log_prob, logp, rtol=1e-5)
    assert new_state.actor.step == 1 and new_state.critic.step == 0  # critic params are not touched

    _, metrics = _temperature_step(state, log_prob, -2.0)
    np.testing.assert_allclose(metrics["temperature_loss"], -np.log(0.5) * np.mean(logp - 2.0), rtol=1e-5)


def test_temperature_rises_below_target_entropy_and_falls_above():
    state = _state()
    log_alpha = float(state.temperature.params["log_alpha"])
    low_entropy = jnp.full((2,), 3.0)  # entropy -3 < target -2
    high_entropy = jnp.full((2,), 1.0)  # entropy -1 > target -2
    up, _ = _temperature_step(state, low_entropy, -2.0)
    down, _ = _temperature_step(state, high_entropy, -2.0)
    assert float(up.temperature.params["log_alpha"]) > log_alpha > float(down.temperature.params["log_alpha"])


def test_tanh_log_det_is_stable_and_log_prob_integrates_to_one():
    u = jnp.linspace(-3.0, 3.0, 13)[:, None]
    np.testing.assert_allclose(tanh_log_det(u), np.log(1 - np.tanh(np.float64(u[:, 0])) ** 2), rtol=1e-5, atol=1e-6)
    big = tanh_log_det(jnp.array([[50.0], [-50.0]]))
    np.testing.assert_allclose(big, 2 * (np.log(2) - 50.0), rtol=1e-6)  # naive form: log(0) = -inf

    # Density of a = tanh(u), u ~ N(0.4, 0.8^2), on (-1, 1): the change of variables must integrate to 1.
    mean, log_std = 0.4, np.log(0.8)
    a = np.linspace(-1 + 1e-6, 1 - 1e-6, 200001)
    u = np.arctanh(a)
    gauss = -0.5 * ((u - mean) / 0.8) ** 2 - log_std - 0.5 * np.log(2 * np.pi)
    log_p = gauss - np.asarray(tanh_log_det(jnp.asarray(u, jnp.float32)[:, None]), np.float64)
    assert abs(np.trapezoid(np.exp(log_p), a) - 1.0) < 1e-3

    # The sampler's log-prob equals the naive change of variables at its own samples.
    m, s = jnp.array([[0.3, -0.5]] * 64), jnp.array([[-0.5, 0.2]] * 64)
    key = jax.random.PRNGKey(0)
    actions, logp = sample_and_log_prob(m, s, key)
    naive_actions, naive = _np_tanh_gaussian(m, s, key)
    np.testing.assert_allclose(actions, naive_actions, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logp, naive, rtol=1e-4, atol=1e-4)


def test_target_entropy_defaults_to_minus_action_dim_and_act_shapes():
    assert target_entropy(SACHparams(), 6) == -6.0
    assert target_entropy(SACHparams(target_entropy=-1.5), 6) == -1.5
    state, key = _state(), jax.random.PRNGKey(0)
    obs = jax.random.normal(key, (5, OBS))
    chex.assert_shape(sac_act(state, key, obs[0], deterministic=False), (ACT,))
    batch_actions = sac_act(state, key, obs, deterministic=False)
    chex.assert_shape(batch_actions, (5, ACT))
    assert jnp.all(jnp.abs(batch_actions) <= 1.0)
    det = sac_act(state, key, obs, deterministic=True)
    chex.assert_trees_all_equal(det, sac_act(state, jax.random.PRNGKey(1), obs, deterministic=True))
    mean, log_std = state.actor.apply_fn({"params": state.actor.params}, obs)
    actions, logp = sample_and_log_prob(mean, log_std, key)
    chex.assert_shape([actions, logp], [(5, ACT), (5,)])
    chex.assert_shape(sample_and_log_prob(mean[0], log_std[0], key)[1], ())


def test_sac_update_is_critic_then_actor_then_temperature_then_target():
    state, batch, key, hp = _state(), _batch(), jax.random.PRNGKey(5), HP
    new, metrics = _update(state, batch, key, hp)
    k_critic, k_actor = jax.random.split(key)
    s, _ = _critic_step(state, batch, k_critic, hp)
    s, logp, m = _actor_step(s, batch, k_actor)  # against the updated critic
    s, _ = _temperature_step(s, logp, -float(ACT))
    np.testing.assert_allclose(metrics["actor_loss"], m["actor_loss"], rtol=1e-6)
    chex.assert_trees_all_close((new.actor.params, new.critic.params, new.temperature.params),
                                (s.actor.params, s.critic.params, s.temperature.params), rtol=1e-6)
    expected_target = jax.tree.map(lambda t, c: 0.9 * t + 0.1 * c, state.target_critic_params, s.critic.params)
    chex.assert_trees_all_close(new.target_critic_params, expected_target, rtol=1e-6, atol=1e-7)


def test_vmap_over_three_seeds_equals_three_separate_runs():
    batch, keys = _batch(), jax.random.split(jax.random.PRNGKey(0), 3)
    stacked_shapes = jax.eval_shape(jax.vmap(_create), keys)  # creation vmaps over keys (traced, not compiled)
    chex.assert_shape(stacked_shapes.actor.params["Dense_0"]["kernel"], (3, 16, ACT))
    # The same stack, built from separately created states (cheaper on CPU than compiling the vmapped
    # init). Their treedefs differ only in equivalent static functions; `_state`'s lets `_update` reuse its compile.
    leaves = [jax.tree.leaves(_create(k)) for k in keys]
    states = jax.tree.unflatten(jax.tree.structure(_state()), [jnp.stack(xs) for xs in zip(*leaves, strict=True)])
    separate = [jax.tree.map(lambda x, i=i: x[i], states) for i in range(3)]

    batched = jax.jit(jax.vmap(partial(sac_update, hp=HP), in_axes=(0, None, 0)))
    for step in range(3):
        step_keys = jax.vmap(lambda k, s=step: jax.random.fold_in(k, s))(keys)
        states, _ = batched(states, batch, step_keys)
        separate = [_update(s, batch, k, HP)[0] for s, k in zip(separate, step_keys, strict=True)]
    chex.assert_trees_all_close(states, jax.tree.map(lambda *xs: jnp.stack(xs), *separate), rtol=1e-5, atol=1e-6)
    kernels = states.actor.params["Dense_0"]["kernel"]
    assert not np.allclose(kernels[0], kernels[1])  # the seeds really differ


def test_short_sac_run_moves_the_policy_to_the_best_action_of_a_one_step_task():
    """One-step task: reward -||a - a*||^2, every episode terminal. Data from the current policy each update."""
    a_star = jnp.array([0.5, -0.4])
    hp = SACHparams(init_temperature=0.1)
    state = create_sac_state(jax.random.PRNGKey(0), OBS, ACT, hp, hidden_dims=(32, 32), lr=3e-3)
    eval_obs = jax.random.normal(jax.random.PRNGKey(9), (64, OBS))

    def ret(state):
        return jnp.mean(-jnp.sum((sac_act(state, None, eval_obs, deterministic=True) - a_star) ** 2, -1))

    @jax.jit
    def train(state, key):
        def body(state, key):
            k_obs, k_act, k_update = jax.random.split(key, 3)
            obs = jax.random.normal(k_obs, (64, OBS))
            actions = sac_act(state, k_act, obs, deterministic=False)
            rewards = -jnp.sum((actions - a_star) ** 2, -1)
            batch = Batch(obs, actions, rewards, obs, jnp.ones(64))
            return sac_update(state, batch, k_update, hp)

        return jax.lax.scan(body, state, jax.random.split(key, 400))

    before = float(ret(state))
    state, metrics = train(state, jax.random.PRNGKey(1))
    after = float(ret(state))
    assert np.isfinite(metrics["critic_loss"]).all()
    assert before < -0.15 and after > -0.06, (before, after)  # 8 seeds: -0.04 at worst
