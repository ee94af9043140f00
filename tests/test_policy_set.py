"""The PEX policy set: selection frequencies, evaluation modes, and the actor's regression targets.

Expected values come from hand-set members and critics (plain numpy softmax of fixed Q values), never from
the selection code under test.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pex_jax.agents.algorithms import ALGORITHMS, Dims, init_offline_state, init_online_state, pex_update
from pex_jax.agents.iql import Batch, Hparams
from pex_jax.agents.policy_set import NEW, OFFLINE, policy_set_action
from pex_jax.config import default_config

DIMS = Dims(3, 2, (-1.0, -1.0), (1.0, 1.0))
OBS = jnp.array([0.3, -0.2, 0.5])
A1 = np.array([0.5, 0.5], np.float32)  # the hand-set offline policy's mode
NEW_MEAN, NEW_STD = np.array([-0.5, 0.0], np.float32), 0.1  # the hand-set new policy
N = 20_000


def _pex_state(key=0):
    c = default_config()
    c.hidden_dims = (16, 16)
    c.offline_steps = 10
    offline = init_offline_state(jax.random.PRNGKey(key), DIMS, c)
    return init_online_state(ALGORITHMS["pex"], jax.random.PRNGKey(key + 100), DIMS, c, offline), c


def _hand_set_state(q_offline: tuple[float, float], q_new: tuple[float, float]):
    """A PEX state with fixed members and critic: the offline mode is A1, the new policy N(NEW_MEAN, NEW_STD^2),
    and the twin critics give `q_offline` to A1 and `q_new` to every action the new policy can draw (those
    have a[0] < 0; a draw reaching a[0] > 0 is 5 standard deviations away)."""
    state, _ = _pex_state()

    def actor(variables, obs):
        mean = jnp.where(variables["params"]["is_new"] > 0.5, NEW_MEAN, A1)
        return mean, jnp.full(2, np.log(NEW_STD), jnp.float32)

    def critic(variables, observations, actions):
        offline_side = actions[..., 0] > 0  # (candidates,)
        return jnp.where(offline_side, jnp.array(q_offline)[:, None], jnp.array(q_new)[:, None])  # (twins, cands)

    return state.replace(actor=state.actor.replace(apply_fn=actor, params={"is_new": jnp.array(1.0)}),
                         offline_actor_params={"is_new": jnp.array(0.0)},
                         critic=state.critic.replace(apply_fn=critic))


def _choose(state, inv_temperature, epsilon, seed=0, n=N):
    keys = jax.random.split(jax.random.PRNGKey(seed), n)
    actions, choices = jax.vmap(lambda k: policy_set_action(state, k, OBS, inv_temperature, epsilon))(keys)
    return np.asarray(actions), np.asarray(choices)


def _p_new(q_offline, q_new, inv_temperature, epsilon) -> float:
    """P(choice = new): softmax(inv_temperature * min-twin Q) with probability epsilon, else the argmax."""
    q = np.array([min(q_offline), min(q_new)])
    logits = inv_temperature * q
    softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    return float(epsilon * softmax[1] + (1 - epsilon) * (q[1] > q[0]))


CASES = [
    # (q_offline twins, q_new twins, inv_temperature, epsilon); the twins differ so that only their minimum fits
    ((1.0, 3.0), (1.5, 1.6), 2.0, 1.0),  # training: min-Q softmax, P(new) = 0.731 (the twins' mean would give 0.289)
    ((1.0, 3.0), (1.5, 1.6), 2.0, 0.0),  # greedy: always the higher min-Q
    ((1.0, 3.0), (1.5, 1.6), 2.0, 0.3),  # evaluation: 0.3 x 0.731 + 0.7
    ((1.0, 3.0), (1.5, 1.6), 4.0, 1.0),  # a sharper softmax: 0.881
    ((2.0, 2.5), (0.5, 4.0), 1.0, 1.0),  # the offline policy preferred: 0.182
    ((2.0, 2.5), (0.5, 4.0), 1.0, 0.0),  # greedy: never the new policy
    ((2.0, 2.5), (0.5, 4.0), 0.0, 0.1),  # explored choices are coin flips at inv_temperature 0: 0.05
]


@pytest.mark.parametrize("q_offline, q_new, inv_temperature, epsilon", CASES)
def test_choice_frequencies_match_the_softmax_of_the_min_twin_q_mixed_with_the_argmax_by_epsilon(
        q_offline, q_new, inv_temperature, epsilon):
    state = _hand_set_state(q_offline, q_new)
    _, choices = _choose(state, inv_temperature, epsilon)
    expected = _p_new(q_offline, q_new, inv_temperature, epsilon)
    observed = choices.mean()
    if expected in (0.0, 1.0):
        assert observed == expected
    else:
        assert abs(observed - expected) < 4.5 * np.sqrt(expected * (1 - expected) / N), (observed, expected)


@pytest.mark.parametrize("epsilon", [0.0, 0.3, 1.0])
def test_the_action_is_the_chosen_member_and_the_new_one_is_sampled_with_probability_epsilon(epsilon):
    state = _hand_set_state((1.0, 3.0), (1.5, 1.6))
    actions, choices = _choose(state, 2.0, epsilon, seed=1)
    np.testing.assert_array_equal(actions[choices == OFFLINE], np.broadcast_to(A1, actions[choices == OFFLINE].shape))
    new = actions[choices == NEW]
    is_mode = np.all(new == NEW_MEAN, axis=1)
    se = np.sqrt(epsilon * (1 - epsilon) / len(new))
    assert abs((1 - is_mode.mean()) - epsilon) <= 4.5 * se, (is_mode.mean(), epsilon)
    if epsilon > 0:  # the explored ones are draws of N(NEW_MEAN, NEW_STD^2)
        drawn = new[~is_mode]
        np.testing.assert_allclose(drawn.mean(0), NEW_MEAN, atol=5 * NEW_STD / np.sqrt(len(drawn)))
        np.testing.assert_allclose(drawn.std(0), NEW_STD, rtol=0.05)


def test_greedy_evaluation_is_deterministic_given_the_state():
    state = _hand_set_state((2.0, 2.5), (3.0, 2.1))  # min 2.0 vs 2.1: the new policy, by a hair
    actions, choices = _choose(state, 10.0, 0.0, n=200)
    assert np.all(choices == NEW)
    np.testing.assert_array_equal(actions, np.broadcast_to(NEW_MEAN, actions.shape))


# --- The actor's regression targets ---


def _batch(n=32):
    k = jax.random.split(jax.random.PRNGKey(9), 3)
    return Batch(jax.random.normal(k[0], (n, 3)), jnp.full((n, 2), 0.77), -jnp.ones(n),
                 jax.random.normal(k[1], (n, 3)), jnp.zeros(n))


def _update_with_critic(monkeypatch, prefer_offline: bool):
    """pex_update with a critic that scores an action by its distance to the offline mode a1(s): -100 x distance
    (the offline policy wins every choice) or +100 x distance (the new policy does). Returns what the actor
    update was given, the states before and after, the batch and the metrics."""
    state, _ = _pex_state()
    offline_mode = state.actor.apply_fn

    def critic(variables, observations, actions):
        a1 = offline_mode({"params": state.offline_actor_params}, observations)[0]
        q = (-100.0 if prefer_offline else 100.0) * jnp.linalg.norm(actions - a1, axis=-1)
        return jnp.stack([q, q + 1.0])  # twins

    state = state.replace(critic=state.critic.replace(apply_fn=critic))
    seen = {}
    import pex_jax.agents.algorithms as agents

    real_actor_update = agents.actor_update

    def spy(state, observations, actions, adv, hp):
        seen["actions"], seen["adv"] = actions, adv
        return real_actor_update(state, observations, actions, adv, hp)

    monkeypatch.setattr(agents, "actor_update", spy)
    batch = _batch()
    new_state, metrics = pex_update(state, batch, jax.random.PRNGKey(5), Hparams(expectile=0.9, inv_temperature=10.0))
    return seen, state, new_state, batch, metrics


def test_pex_actor_regresses_toward_the_offline_mode_where_the_critic_prefers_it(monkeypatch):
    seen, state, new_state, batch, metrics = _update_with_critic(monkeypatch, prefer_offline=True)
    a1 = state.actor.apply_fn({"params": state.offline_actor_params}, batch.observations)[0]
    np.testing.assert_allclose(seen["actions"], a1, rtol=1e-6)  # not the dataset's 0.77
    assert float(metrics["actor_target_offline_rate"]) == 1.0
    # advantage = target Q of the chosen action (0 at a1, the lower twin) - V(s) after this step's V update
    v_after = new_state.value.apply_fn({"params": new_state.value.params}, batch.observations)
    np.testing.assert_allclose(seen["adv"], -v_after, rtol=1e-5, atol=1e-5)
    chex.assert_trees_all_equal(new_state.offline_actor_params, state.offline_actor_params)


def test_pex_actor_regresses_toward_new_policy_draws_where_the_critic_prefers_them(monkeypatch):
    seen, state, _, batch, metrics = _update_with_critic(monkeypatch, prefer_offline=False)
    a1 = np.asarray(state.actor.apply_fn({"params": state.offline_actor_params}, batch.observations)[0])
    mode = np.asarray(state.actor.apply_fn({"params": state.actor.params}, batch.observations)[0])
    targets = np.asarray(seen["actions"])
    assert float(metrics["actor_target_offline_rate"]) == 0.0
    # training draws the new policy's candidate (epsilon = 1): neither a1, its mode, nor the data action
    for other in (a1, mode, np.full_like(targets, 0.77)):
        assert not np.any(np.all(np.isclose(targets, other), axis=1))
