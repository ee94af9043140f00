"""Locally generated D4RL-recipe locomotion data: medium selection, seeded SAC prefix, policy files, datasets, CLI."""

import json

import jax
import numpy as np
import pytest

from pex_jax.datagen import ant_controller
from pex_jax.datagen import locomotion as loco
from pex_jax.errors import ConfigError

TINY = loco.SACConfig(hidden_dims=(16, 16), batch_size=32, random_steps=40)


def test_medium_is_the_snapshot_closest_to_a_third_of_the_best_return_and_expert_the_best():
    assert loco.select_snapshots([10.0, 95.0, 110.0, 300.0, 290.0]) == (1, 3)  # 95 is 5 from 100, 110 is 10
    assert loco.select_snapshots([0.0, 90.0, 110.0, 300.0]) == (1, 3)  # 90 and 110 tie: the earlier one
    assert loco.select_snapshots([5.0, 300.0, 300.0, 99.0]) == (3, 1)  # expert tie: earlier; medium may be later
    assert loco.select_snapshots([0.0, 40.0, 100.0], fraction=0.5) == (1, 2)


def test_seeded_training_prefix_is_reproducible_and_unaffected_by_evaluations():
    """A run stopped at 90 steps (no evaluations) repeats the first 90 transitions of a full run that evaluated."""
    full = loco.train_sac("hopper", steps=120, seed=3, cfg=TINY, snapshot_every=40, eval_episodes=1,
                          log=lambda line: None)
    cut = loco.train_sac("hopper", steps=120, seed=3, cfg=TINY, stop_at=90, log=lambda line: None)
    assert [s[0] for s in full.snapshots] == [40, 80, 120] and cut.snapshots == []
    assert len(cut.replay["rewards"]) == 90 and set(cut.replay) == set(full.replay)
    for name, arr in cut.replay.items():
        np.testing.assert_array_equal(arr, full.replay[name][:90], err_msg=name)
    # the warm-up is uniform random actions from the seeded numpy stream
    warm = np.random.default_rng(3).uniform(-1.0, 1.0, (40, 3)).astype(np.float32)
    np.testing.assert_array_equal(full.replay["actions"][:40], warm)
    assert not np.array_equal(full.replay["actions"][40:80], np.random.default_rng(3).uniform(-1, 1, (80, 3))[40:])
    # terminal only on true terminations, always at an episode end
    r = full.replay
    assert np.all(r["ends"][r["terminals"] > 0]) and r["terminals"].sum() > 0


def _hopper_healthy(obs: np.ndarray) -> np.ndarray:
    """Hopper-v5's termination rule on the observation (z, angle first; current x excluded)."""
    z, angle = obs[:, 0], obs[:, 1]
    return (np.abs(obs[:, 1:]) < 100).all(axis=1) & (z > 0.7) & (np.abs(angle) < 0.2)


def test_tiny_pipeline_round_trips_through_the_loader_and_regenerates_medium_replay(tmp_path, monkeypatch):
    import minari

    from pex_jax.data import normalized_score
    from pex_jax.data.sources import load_transitions
    from pex_jax.envs.task import check_task, task_for_dataset

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    pol = tmp_path / "pol"
    out = loco.train_experts("hopper", steps=160, seed=0, cfg=TINY, snapshot_every=40, eval_episodes=1,
                             policy_dir=pol, curve=tmp_path / "curve.csv", log=lambda line: None)
    assert (tmp_path / "curve.png").is_file() and len((tmp_path / "curve.csv").read_text().splitlines()) == 5
    medium, expert = loco.load_policy("hopper", "medium", pol), loco.load_policy("hopper", "expert", pol)
    assert medium.header["env_steps"] == out["medium"][0] == medium.header["medium_step"]
    assert expert.header["env_steps"] == out["expert"][0] == medium.header["expert_step"]
    returns = [float(line.split(",")[2]) for line in (tmp_path / "curve.csv").read_text().splitlines()[1:]]
    assert expert.header["eval_return"] == pytest.approx(max(returns), abs=0.01)
    assert medium.header["sac"]["random_steps"] == 40 and medium.header["obs_dim"] == 11

    written, _ = load_transitions("pex/mujoco/hopper/medium-replay-v0")
    assert len(written) == out["medium"][0] == out["medium-replay"]["steps"]
    s = loco.generate_locomotion("hopper", "medium-replay", overwrite=True, policy_dir=pol)
    again, _ = load_transitions("pex/mujoco/hopper/medium-replay-v0")
    np.testing.assert_array_equal(again.observations, written.observations)  # re-run training = same prefix
    np.testing.assert_array_equal(again.actions, written.actions)
    assert s["steps"] == len(written)

    s = loco.generate_locomotion("hopper", "expert", steps=300, seed=1, policy_dir=pol, parallel=3, progress=False)
    data, info = load_transitions("pex/mujoco/hopper/expert-v0")
    assert (info.obs_dim, info.act_dim, info.source, info.domain) == (11, 3, "local", "locomotion")
    assert len(data) == 300 == s["steps"] and data.observations.dtype == np.float32
    assert np.all(np.abs(data.actions) <= 1) and data.actions.std() > 0.05  # sampled, not the deterministic mode
    # terminal exactly where Hopper's own rule ends the episode; the cut last episode is not terminal
    np.testing.assert_array_equal(data.terminals, (~_hopper_healthy(data.next_observations)).astype(np.float32))
    ends = np.flatnonzero(data.episode_ends)
    assert ends[-1] == 299 and data.terminals[299] == 0 and np.all(data.terminals[ends[:-1]] == 1)
    assert s["episodes"] == len(ends) and s["complete_episodes"] == len(ends) - 1
    # D4RL's scale: the dataset carries D4RL's hopper references
    np.testing.assert_allclose(normalized_score([3234.3, -20.272305], info), [100.0, 0.0])
    eps = minari.load_dataset("pex/mujoco/hopper/expert-v0").iterate_episodes()
    complete = [ep.rewards.sum() for ep in eps if ep.terminations[-1]]
    assert s["mean_return"] == pytest.approx(np.mean(complete), rel=1e-5)
    assert s["mean_normalized"] == pytest.approx(100 * (np.mean(complete) + 20.272305) / (3234.3 + 20.272305),
                                                 rel=1e-5)
    # evaluated in the env it was collected in
    task = task_for_dataset(info)
    assert (task.kind, task.env_id, task.max_episode_steps) == ("gym", "Hopper-v5", 1000)
    check_task(task, info)


def _policy_file(path, env, **header):
    from pex_jax.agents.sac import create_sac_state

    obs_dim, act_dim = loco.env_dims(env)
    state = create_sac_state(jax.random.PRNGKey(0), obs_dim, act_dim, hidden_dims=(16, 16))
    base = {"env_id": loco.ENVS[env], "obs_dim": obs_dim, "act_dim": act_dim, "hidden_dims": [16, 16], "seed": 0,
            "env_steps": 10, "eval_return": 1.0, "sac": {"random_steps": 5}, "train_steps": 10, "snapshot_every": 5,
            "medium_fraction": 1 / 3, "medium_step": 10}
    ant_controller.save_controller(path, state.actor.params, {**base, **header}, fmt=loco.FORMAT)
    return path


def test_halfcheetah_episodes_are_truncated_at_the_time_limit_and_the_budget_not_terminated(tmp_path, monkeypatch):
    import minari

    from pex_jax.data.sources import load_transitions

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    _policy_file(tmp_path / "halfcheetah_medium.npz", "halfcheetah")
    s = loco.generate_locomotion("halfcheetah", "medium", steps=1500, policy_dir=tmp_path, parallel=2,
                                 progress=False)
    assert (s["steps"], s["episodes"], s["complete_episodes"]) == (1500, 2, 1)
    data, info = load_transitions("pex/mujoco/halfcheetah/medium-v0")
    assert (info.obs_dim, info.act_dim) == (17, 6) and data.terminals.sum() == 0
    np.testing.assert_array_equal(np.flatnonzero(data.episode_ends), [999, 1499])
    eps = list(minari.load_dataset("pex/mujoco/halfcheetah/medium-v0").iterate_episodes())
    assert [len(ep.actions) for ep in eps] == [1000, 500]
    assert all(ep.truncations[-1] and not ep.truncations[:-1].any() and not ep.terminations.any() for ep in eps)


def test_policy_file_problems_are_one_config_error_naming_file_and_fix(tmp_path):
    with pytest.raises(ConfigError, match=r"hopper_expert\.npz does not exist.*make mujoco-experts"):
        loco.load_policy("hopper", "expert", tmp_path)
    (tmp_path / "hopper_medium.npz").write_bytes(b"not a zip file")
    with pytest.raises(ConfigError, match=r"hopper_medium\.npz is unreadable.*make mujoco-experts"):
        loco.load_policy("hopper", "medium", tmp_path)
    _policy_file(tmp_path / "hopper_expert.npz", "hopper", obs_dim=17)
    with pytest.raises(ConfigError, match=r"hopper_expert\.npz is for Hopper-v5 with obs/act dims 17/3, but "
                                          r"Hopper-v5 has 11/3.*make mujoco-experts"):
        loco.load_policy("hopper", "expert", tmp_path)
    _policy_file(tmp_path / "hopper_expert.npz", "halfcheetah")  # another env's file under hopper's name
    with pytest.raises(ConfigError, match=r"is for HalfCheetah-v5 .*make mujoco-experts"):
        loco.load_policy("hopper", "expert", tmp_path)
    ok = _policy_file(tmp_path / "hopper_medium.npz", "hopper")
    header = json.loads(str(np.load(ok)["header"]))
    assert loco.load_policy("hopper", "medium", tmp_path).header == header


@pytest.mark.parametrize("argv, message", [
    (["generate", "--env=hopperr"], "unknown locomotion env 'hopperr'; valid: hopper, halfcheetah, all"),
    (["generate", "--env=hopper", "--level=mediumm"], "unknown locomotion level 'mediumm'"),
    (["generate", "--env=hopper", "--steps=0"], "--steps (0)"),
    (["generate", "--env=hopper", "--level=medium-replay"], "hopper_medium.npz does not exist"),
    (["train", "--env=walker2d"], "unknown locomotion env 'walker2d'"),
    (["train", "--env=hopper", "--steps=0"], "--steps (0)"),
])
def test_cli_bad_input_is_one_error_line_and_exit_2_before_any_work(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    dirs = [f"--policy-dir={tmp_path / 'pol'}"] + ([f"--curve={tmp_path / 'c.csv'}"] if argv[0] == "train" else [])
    assert loco.main(argv + dirs) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    if "does not exist" in message:
        assert "make mujoco-experts" in err
    assert not any(tmp_path.iterdir())  # nothing written


def test_missing_local_locomotion_dataset_names_the_generation_command(tmp_path, monkeypatch):
    from pex_jax.data.sources import load_transitions
    from pex_jax.errors import DatasetNotFoundError

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=r"make data-mujoco.*--env=halfcheetah --level=medium-replay"):
        load_transitions("pex/mujoco/halfcheetah/medium-replay-v0", download=False)
