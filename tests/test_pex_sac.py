"""PEX with a SAC backbone (`pex_sac`) and the `sac` baseline: warm start, policy set, losses, runner, resume."""

import json
from functools import cache
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pex_jax.agents.algorithms import ALGORITHMS, Dims, init_offline_state, init_online_state, update_fn
from pex_jax.agents.iql import Batch
from pex_jax.agents.pex_sac import (
    PEXSACState,
    check_action_bounds,
    pex_sac_action,
    pex_sac_update,
    sac_hparams,
)
from pex_jax.agents.sac import SACState
from pex_jax.config import default_config
from pex_jax.errors import ConfigError
from pex_jax.train import run, validate_config
from tests.conftest import tiny_config

OBS, ACT = 3, 2
DIMS = Dims(OBS, ACT, (-1.0, -1.0), (1.0, 1.0))
GAMMA, ALPHA0 = 0.9, 0.5


@cache
def _setup():
    """Offline IQL state (target != critic, so the warm start can tell them apart) and the pex_sac state
    built from it. Cached: every state built separately has its own treedef, so sharing one lets the
    jitted update below compile once."""
    c = default_config()
    c.hidden_dims, c.offline_steps, c.lr, c.gamma, c.tau = (16, 16), 10, 1e-3, GAMMA, 0.1
    c.init_temperature = ALPHA0
    offline = init_offline_state(jax.random.PRNGKey(0), DIMS, c)
    offline = offline.replace(target_critic_params=jax.tree.map(lambda x: x + 0.05, offline.critic.params))
    state = init_online_state(ALGORITHMS["pex_sac"], jax.random.PRNGKey(100), DIMS, c, offline)
    return offline, state, c


_update = jax.jit(pex_sac_update, static_argnames=("hp", "inv_temperature", "backup"))


def _batch(n=8, seed=1):
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    return Batch(
        observations=jax.random.normal(k[0], (n, OBS)),
        actions=jax.random.uniform(k[1], (n, ACT), minval=-1, maxval=1),
        rewards=jnp.linspace(-1.0, 0.0, n),
        next_observations=jax.random.normal(k[2], (n, OBS)),
        terminals=jnp.array([0.0, 1.0] * (n // 2)),
    )


def _q(state: PEXSACState, params, obs, act) -> np.ndarray:
    """min over twins, float64."""
    qs = state.sac.critic.apply_fn({"params": params}, jnp.asarray(obs), jnp.asarray(act, jnp.float32))
    return np.asarray(qs, np.float64).min(0)


def _np_tanh_gaussian(mean, log_std, eps):
    """Sample and log-prob in float64 with the naive change of variables, from given standard-normal noise."""
    mean, log_std, eps = (np.asarray(x, np.float64) for x in (mean, log_std, eps))
    u = mean + np.exp(log_std) * eps
    gauss = -0.5 * ((u - mean) / np.exp(log_std)) ** 2 - log_std - 0.5 * np.log(2 * np.pi)
    return np.tanh(u), np.sum(gauss - np.log(1 - np.tanh(u) ** 2), -1)


# --- Warm start ---


def test_online_critic_and_target_start_as_the_offline_ones_and_the_new_policy_is_fresh():
    offline, state, _ = _setup()
    assert isinstance(state, PEXSACState) and isinstance(state.sac, SACState)
    chex.assert_trees_all_equal(state.sac.critic.params, offline.critic.params)
    chex.assert_trees_all_equal(state.sac.target_critic_params, offline.target_critic_params)
    chex.assert_trees_all_equal(state.offline_actor_params, offline.actor.params)
    assert int(state.sac.critic.step) == 0  # fresh Adam on the transferred weights
    chex.assert_trees_all_equal(state.sac.critic.opt_state[0].mu,
                                jax.tree.map(jnp.zeros_like, offline.critic.params))
    # The new member is a tanh-Gaussian with a state-dependent log-std head: not the IQL actor's tree.
    assert set(state.sac.actor.params) == {"MLP_0", "Dense_0", "Dense_1"}
    assert "log_std" in offline.actor.params
    np.testing.assert_allclose(float(jnp.exp(state.sac.temperature.params["log_alpha"])), ALPHA0, rtol=1e-6)


def test_sac_baseline_starts_from_scratch_with_target_equal_to_critic():
    _, _, c = _setup()
    state = init_online_state(ALGORITHMS["sac"], jax.random.PRNGKey(3), DIMS, c, None)
    assert isinstance(state, SACState)
    chex.assert_trees_all_equal(state.target_critic_params, state.critic.params)
    chex.assert_shape(state.actor.params["Dense_0"]["kernel"], (16, ACT))


# --- Policy set over the SAC new policy ---


def test_selection_picks_the_higher_q_candidate_at_high_inverse_temperature():
    _, state, _ = _setup()
    obs = jnp.array([0.3, -0.2, 0.5])
    n = 400
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    actions, choices = jax.jit(jax.vmap(lambda k: pex_sac_action(state, k, obs, 1e4, 1.0)))(keys)
    chex.assert_shape([actions, choices], [(n, ACT), (n,)])
    # Independently: a1 = offline mode, a2 = tanh(mean + std * eps) with the sampler's key, then argmax Q.
    a1, _ = state.offline_apply_fn({"params": state.offline_actor_params}, obs)
    mean, log_std = state.sac.actor.apply_fn({"params": state.sac.actor.params}, obs)
    eps = jax.vmap(lambda k: jax.random.normal(jax.random.split(k, 4)[0], mean.shape))(keys)
    a2, _ = _np_tanh_gaussian(mean, log_std, eps)
    q1 = _q(state, state.sac.critic.params, obs[None], np.asarray(a1)[None])[0]
    q2 = _q(state, state.sac.critic.params, np.broadcast_to(obs, (n, OBS)), a2)
    clear = np.abs(q2 - q1) > 1e-4
    expected = (q2 > q1).astype(int)
    np.testing.assert_array_equal(np.asarray(choices)[clear], expected[clear])
    assert 0 < expected.mean() < 1  # both members win somewhere, so the check above sees both outcomes
    chosen = np.where(expected[:, None] == 1, a2, np.asarray(a1)[None])
    np.testing.assert_allclose(np.asarray(actions)[clear], chosen[clear], rtol=1e-5, atol=1e-6)

    # Greedy (epsilon 0): a2 is tanh(mean), and the higher-Q candidate is taken every time.
    greedy_actions, greedy = jax.vmap(lambda k: pex_sac_action(state, k, obs, 10.0, 0.0))(keys[:20])
    q_mode = _q(state, state.sac.critic.params, obs[None], np.tanh(np.asarray(mean))[None])[0]
    assert np.all(np.asarray(greedy) == int(q_mode > q1))
    assert np.unique(np.asarray(greedy_actions), axis=0).shape[0] == 1


@pytest.mark.parametrize("backup", ["policy_set", "new"])
def test_frozen_offline_parameters_stay_bit_identical_while_the_learner_moves(backup):
    _, state, c = _setup()
    hp = sac_hparams(c)
    new = state
    for i in range(4):
        new, metrics = _update(new, _batch(seed=i), jax.random.PRNGKey(i), hp=hp, inv_temperature=10.0,
                               backup=backup)
    chex.assert_trees_all_equal(new.offline_actor_params, state.offline_actor_params)  # bit-identical
    for before, after in ((state.sac.actor.params, new.sac.actor.params),
                          (state.sac.critic.params, new.sac.critic.params),
                          (state.sac.target_critic_params, new.sac.target_critic_params),
                          (state.sac.temperature.params, new.sac.temperature.params)):
        assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after),
                                                             strict=True))
    assert int(new.sac.actor.step) == int(new.sac.critic.step) == int(new.sac.temperature.step) == 4
    expected = {"critic_loss", "q_mean", "actor_loss", "entropy", "temperature_loss", "alpha"}
    assert set(metrics) == expected | ({"backup_offline_rate"} if backup == "policy_set" else set())
    chex.assert_rank(list(metrics.values()), 0)
    assert all(np.isfinite(float(v)) for v in metrics.values())


# --- Losses in the policy-set setting ---


def test_critic_target_backs_up_the_policy_set_action_with_the_target_critic_and_no_entropy():
    _, state, c = _setup()
    batch, key = _batch(), jax.random.PRNGKey(7)
    inv_temperature = 1e4  # the sampled choice is then the argmax: computable by hand
    new, metrics = _update(state, batch, key, hp=sac_hparams(c), inv_temperature=inv_temperature,
                           backup="policy_set")
    k_critic, _ = jax.random.split(key)
    keys = jax.random.split(k_critic, batch.rewards.shape[0])
    s_next = np.asarray(batch.next_observations)
    a1, _ = state.offline_apply_fn({"params": state.offline_actor_params}, batch.next_observations)
    mean, log_std = state.sac.actor.apply_fn({"params": state.sac.actor.params}, batch.next_observations)
    eps = jax.vmap(lambda k, m: jax.random.normal(jax.random.split(k, 4)[0], m.shape))(keys, mean)
    a2, _ = _np_tanh_gaussian(mean, log_std, eps)
    q1 = _q(state, state.sac.critic.params, s_next, a1)  # the online critic chooses ...
    q2 = _q(state, state.sac.critic.params, s_next, a2)
    a_next = np.where((q2 > q1)[:, None], a2, np.asarray(a1, np.float64))
    next_q = _q(state, state.sac.target_critic_params, s_next, a_next)  # ... the target critic scores
    r, d = np.asarray(batch.rewards, np.float64), np.asarray(batch.terminals, np.float64)
    y = r + GAMMA * (1 - d) * next_q  # no -alpha log pi term
    qs = np.asarray(state.sac.critic.apply_fn({"params": state.sac.critic.params}, batch.observations,
                                              batch.actions), np.float64)
    np.testing.assert_allclose(metrics["critic_loss"], np.mean(np.sum((qs - y) ** 2, 0)), rtol=1e-5)
    np.testing.assert_allclose(metrics["backup_offline_rate"], np.mean(q2 <= q1), atol=1e-6)


def test_new_policy_actor_loss_matches_numpy_against_the_updated_critic():
    _, state, c = _setup()
    batch, key = _batch(), jax.random.PRNGKey(11)
    new, metrics = _update(state, batch, key, hp=sac_hparams(c), inv_temperature=10.0, backup="policy_set")
    _, k_actor = jax.random.split(key)
    mean, log_std = state.sac.actor.apply_fn({"params": state.sac.actor.params}, batch.observations)
    a, logp = _np_tanh_gaussian(mean, log_std, jax.random.normal(k_actor, mean.shape))
    # The actor step runs after the critic step: Q is the updated critic (unchanged by the actor and
    # temperature steps, so the returned state's critic is the one it saw); alpha is the initial one.
    q = _q(new, new.sac.critic.params, batch.observations, a)
    np.testing.assert_allclose(metrics["actor_loss"], np.mean(ALPHA0 * logp - q), rtol=1e-5)
    np.testing.assert_allclose(metrics["entropy"], -np.mean(logp), rtol=1e-4)
    np.testing.assert_allclose(metrics["alpha"], ALPHA0, rtol=1e-6)
    # Temperature: -log_alpha (log pi + target entropy), target entropy = -|A|.
    np.testing.assert_allclose(metrics["temperature_loss"], -np.log(ALPHA0) * np.mean(logp - ACT), rtol=1e-4)


# --- Configuration ---


def test_entropy_backup_through_the_policy_set_and_unknown_backups_are_rejected(tmp_path):
    c = tiny_config(tmp_path, algo="pex_sac", sac_backup_entropy=True)
    with pytest.raises(ConfigError, match="pex_sac_backup=new"):
        validate_config(c)
    c.pex_sac_backup = "new"
    validate_config(c)
    c.pex_sac_backup = "mean"
    with pytest.raises(ConfigError, match="pex_sac_backup"):
        validate_config(c)
    with pytest.raises(ConfigError, match="init_temperature"):
        validate_config(tiny_config(tmp_path, algo="sac", init_temperature=0.0))
    with pytest.raises(ConfigError, match=r"\[-1, 1\]"):
        check_action_bounds((-2.0,), (2.0,))


def test_update_fn_routes_sac_algorithms_to_the_sac_backbone(monkeypatch):
    import pex_jax.agents.algorithms as algorithms

    _, _, c = _setup()
    calls = []
    monkeypatch.setattr(algorithms, "pex_sac_update", lambda *a, **kw: calls.append(("pex_sac", kw)))
    monkeypatch.setattr(algorithms, "sac_update", lambda *a, **kw: calls.append(("sac", kw)))
    update_fn(ALGORITHMS["pex_sac"], c)("state", "batch", "key", "traced hp (ignored)")
    update_fn(ALGORITHMS["sac"], c)("state", "batch", "key", "traced hp (ignored)")
    assert [name for name, _ in calls] == ["pex_sac", "sac"]
    assert calls[0][1]["inv_temperature"] == c.inv_temperature and calls[0][1]["hp"] == sac_hparams(c)
    assert ALGORITHMS["sac"].offline_ratio == ALGORITHMS["pex_sac"].offline_ratio == 0.5
    assert not ALGORITHMS["sac"].offline_phase and ALGORITHMS["pex_sac"].offline_phase


# --- Through the runner ---


def _metrics(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def _evals(run_dir):
    return [(r["seed"], r["phase"], r["offline_step"], r["online_step"], r["eval/normalized_score"],
             r["eval/return"]) for r in _metrics(run_dir) if "eval/normalized_score" in r]


@pytest.fixture(scope="module")
def pex_sac_run(tiny_minari_root, tmp_path_factory):
    """pex_sac end to end on the tiny dataset (its own offline phase), 2 seeds."""
    tmp = tmp_path_factory.mktemp("pex_sac")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(tiny_minari_root))
        mp.setenv("WANDB_MODE", "disabled")
        summary = run(tiny_config(tmp, algo="pex_sac", seeds="0-1"))
    return tmp / "run", summary


@pytest.mark.parametrize("algo", ["pex_sac", "sac"])
def test_sac_algorithms_run_end_to_end_through_the_runner(algo, pex_sac_run, tiny_env, tmp_path):
    if algo == "pex_sac":
        run_dir, summary = pex_sac_run
        assert (run_dir / "offline_ckpt" / "state.msgpack").exists()
        assert len(summary["offline/normalized_score"]) == 2
    else:
        summary = run(tiny_config(tmp_path, algo="sac", seeds="0-1"))
        run_dir = tmp_path / "run"
        assert not (run_dir / "offline_ckpt").exists()
    rows = _metrics(run_dir)
    evals = [r for r in rows if r["phase"] == "online" and "eval/normalized_score" in r]
    assert sorted({r["online_step"] for r in evals}) == [0, 150, 300]
    train = [r for r in rows if r["phase"] == "online" and "train/critic_loss" in r]
    assert train and all(np.isfinite(r["train/critic_loss"]) and np.isfinite(r["train/alpha"]) for r in train)
    assert all("train/entropy" in r and "train/temperature_loss" in r for r in train)
    policy_set = algo == "pex_sac"
    assert ("train/offline_choice_rate" in train[-1]) == policy_set
    assert ("train/backup_offline_rate" in train[-1]) == policy_set
    assert ("eval/offline_choice_rate" in evals[-1]) == policy_set
    assert len(summary["online/normalized_score"]) == 2 and len(summary["online_step0/normalized_score"]) == 2
    assert json.loads((run_dir / "config.json").read_text())["algo"] == algo


class _Killed(Exception):
    pass


def test_pex_sac_resumed_after_an_interruption_matches_an_uninterrupted_run(pex_sac_run, tiny_env, tmp_path,
                                                                             monkeypatch):
    from pex_jax import checkpoint

    offline_dir, _ = pex_sac_run
    overrides = {"algo": "pex_sac", "seeds": "0-1", "offline_checkpoint": str(offline_dir), "checkpoint_every": 100}
    ref = run(tiny_config(tmp_path / "ref", **overrides))

    real_save = checkpoint.save_run_state

    def save_then_die(run_dir, phase, step, *args, **kwargs):
        path = real_save(run_dir, phase, step, *args, **kwargs)
        if step == 200:
            raise _Killed
        return path

    monkeypatch.setattr(checkpoint, "save_run_state", save_then_die)
    with pytest.raises(_Killed):
        run(tiny_config(tmp_path / "killed", **overrides))
    monkeypatch.setattr(checkpoint, "save_run_state", real_save)
    assert json.loads((tmp_path / "killed" / "run" / "summary.json").read_text())["status"] == "failed"

    resumed = run(tiny_config(tmp_path / "killed", resume="auto", **overrides))
    assert resumed["final/normalized_score"] == ref["final/normalized_score"]
    assert _evals(tmp_path / "killed" / "run") == _evals(tmp_path / "ref" / "run")  # every value, bit-equal
    train_keys = ("train/critic_loss", "train/actor_loss", "train/alpha", "train/backup_offline_rate")

    def train_rows(run_dir):
        return [(r["seed"], r["online_step"], *(r[k] for k in train_keys)) for r in _metrics(run_dir)
                if "train/critic_loss" in r]

    assert train_rows(tmp_path / "killed" / "run") == train_rows(tmp_path / "ref" / "run")
