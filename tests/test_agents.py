"""Algorithm construction and the seed-vmapped steps the runner jits."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pex_jax.agents.algorithms import (
    ALGORITHMS,
    Dims,
    init_offline_state,
    init_online_state,
    make_offline_chunk,
    make_online_step,
)
from pex_jax.agents.iql import Batch
from pex_jax.config import default_config
from pex_jax.data.replay import ReplayBuffer

DIMS = Dims(5, 2, (-1.0, -1.0), (1.0, 1.0))


def _config():
    c = default_config()
    c.hidden_dims = (32, 32)
    c.batch_size = 32
    c.offline_steps = 50
    return c


def _dataset(n=500, seed=0):
    rng = np.random.default_rng(seed)
    return Batch(
        jnp.asarray(rng.normal(size=(n, 5)), jnp.float32),
        jnp.asarray(rng.uniform(-1, 1, size=(n, 2)), jnp.float32),
        jnp.asarray(rng.integers(0, 2, size=n) - 1.0, jnp.float32),
        jnp.asarray(rng.normal(size=(n, 5)), jnp.float32),
        jnp.asarray(rng.integers(0, 2, size=n), jnp.float32),
    )


def _keys(seeds):
    return jnp.stack([jax.random.PRNGKey(s) for s in seeds])


def _offline(seeds, c, dataset, n_updates=20):
    states = jax.vmap(lambda k: init_offline_state(k, DIMS, c))(_keys(seeds))
    chunk = jax.jit(jax.vmap(make_offline_chunk(c, n_updates), in_axes=(0, 0, None)))
    states, _, metrics = chunk(states, _keys([s + 1000 for s in seeds]), dataset)
    return states, metrics


def test_offline_chunk_vmapped_over_three_seeds_equals_three_single_seed_runs():
    c, data = _config(), _dataset()
    batched, metrics = _offline([0, 1, 2], c, data)
    assert bool(np.all(metrics["finite"]))
    for i, seed in enumerate([0, 1, 2]):
        single, _ = _offline([seed], c, data)
        chex.assert_trees_all_close(jax.tree.map(lambda x, i=i: x[i], batched.critic.params),
                                    jax.tree.map(lambda x: x[0], single.critic.params), rtol=2e-5, atol=2e-6)
        chex.assert_trees_all_close(jax.tree.map(lambda x, i=i: x[i], batched.actor.params),
                                    jax.tree.map(lambda x: x[0], single.actor.params), rtol=2e-5, atol=2e-6)


def _host_transitions(steps, n_seeds=3):
    """Stand-ins for what each seed's env returns: row i belongs to seed index i."""
    rng = np.random.default_rng(1)
    shapes = [(5,), (2,), (), (5,), ()]
    return [Batch(*(np.asarray(rng.normal(size=(n_seeds,) + sh), np.float32) for sh in shapes)) for _ in range(steps)]


def _online(spec_name, seeds, c, data, offline, steps=12, start_updates=4):
    spec = ALGORITHMS[spec_name]
    k = _keys([s + 3000 for s in seeds])
    if spec.warm_start == "none":
        states = jax.vmap(lambda kk: init_online_state(spec, kk, DIMS, c, None))(k)
    else:
        states = jax.vmap(lambda kk, s: init_online_state(spec, kk, DIMS, c, s))(k, offline)
    buffer = ReplayBuffer.create(len(seeds), DIMS.obs_dim, DIMS.action_dim, 64)
    collect = jax.jit(make_online_step(spec, c, False))
    update = jax.jit(make_online_step(spec, c, True))
    keys = _keys([s + 2000 for s in seeds])
    actions = []
    for t, all_tr in enumerate(_host_transitions(steps)):
        tr = jax.tree.map(lambda x: jnp.asarray(x[np.array(seeds)]), all_tr)
        buffer = buffer.insert(tr)
        step = update if t >= start_updates else collect
        states, keys, a, choice, metrics = step(states, buffer.data, buffer.size, keys, tr.next_observations, data)
        actions.append(a)
    return states, jnp.stack(actions, 1), metrics


@pytest.mark.parametrize("algo", ["pex", "direct", "buffer", "scratch"])
def test_online_steps_vmapped_over_seeds_equal_single_seed_runs(algo):
    c, data = _config(), _dataset()
    offline, _ = _offline([0, 1, 2], c, data)
    states, actions, metrics = _online(algo, [0, 1, 2], c, data, offline)
    assert bool(np.all(metrics["finite"]))
    for i in [0, 2]:
        single_offline = jax.tree.map(lambda x, i=i: x[i : i + 1], offline)
        _, a1, _ = _online(algo, [i], c, data, single_offline)
        np.testing.assert_allclose(actions[i], a1[0], rtol=1e-4, atol=1e-5)


def test_offline_policy_parameters_stay_bit_identical_during_pex_online_updates():
    c, data = _config(), _dataset()
    offline, _ = _offline([0, 1], c, data)
    states, _, _ = _online("pex", [0, 1], c, data, offline, steps=20, start_updates=2)
    chex.assert_trees_all_equal(states.offline_actor_params, offline.actor.params)
    # ...while the new policy, critic and value did learn.
    assert not np.allclose(states.critic.params["VmapQNet_0"]["MLP_0"]["TorchDense_0"]["kernel"],
                           offline.critic.params["VmapQNet_0"]["MLP_0"]["TorchDense_0"]["kernel"])


def test_warm_starts_follow_the_reference():
    c, data = _config(), _dataset()
    offline, _ = _offline([0], c, data)
    off = jax.tree.map(lambda x: x[0], offline)
    key = jax.random.PRNGKey(3)
    pex = init_online_state(ALGORITHMS["pex"], key, DIMS, c, off)
    chex.assert_trees_all_equal(pex.critic.params, off.critic.params)
    chex.assert_trees_all_equal(pex.value.params, off.value.params)
    chex.assert_trees_all_equal(pex.target_critic_params, off.target_critic_params)  # loads the target
    chex.assert_trees_all_equal(pex.offline_actor_params, off.actor.params)
    assert not np.allclose(pex.actor.params["Dense_0"]["kernel"], off.actor.params["Dense_0"]["kernel"])
    np.testing.assert_array_equal(pex.actor.params["log_std"], 0.0)  # fresh policy
    direct = init_online_state(ALGORITHMS["direct"], key, DIMS, c, off)
    chex.assert_trees_all_equal(direct.actor.params, off.actor.params)
    chex.assert_trees_all_equal(direct.target_critic_params, off.critic.params)  # target := critic
    assert direct.offline_actor_params is None
    scratch = init_online_state(ALGORITHMS["scratch"], key, DIMS, c, None)
    assert not np.allclose(scratch.critic.params["VmapQNet_0"]["MLP_0"]["TorchDense_0"]["kernel"],
                           off.critic.params["VmapQNet_0"]["MLP_0"]["TorchDense_0"]["kernel"])


def test_replay_ring_buffer_overwrites_oldest_rows_and_tracks_size():
    buf = ReplayBuffer.create(2, 1, 1, 3)
    for t in range(5):
        x = jnp.full((2,), float(t))
        buf = buf.insert(Batch(x[:, None], x[:, None], x, x[:, None], x))
    assert int(buf.size) == 3 and int(buf.ptr) == 2
    np.testing.assert_array_equal(buf.data.rewards, [[3.0, 4.0, 2.0], [3.0, 4.0, 2.0]])
