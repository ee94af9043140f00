"""Dataset layer: flattening, terminal handling, scores, env construction and clear errors.

Every test runs against a temporary MINARI_DATASETS_PATH with tiny datasets.
"""

from __future__ import annotations

import dataclasses
import json

import gymnasium as gym
import gymnasium_robotics
import jax
import jax.numpy as jnp
import minari
import numpy as np
import pytest
from minari.data_collector import EpisodeBuffer

from pex_jax.data import (
    DatasetInfo,
    Transitions,
    check_spaces,
    flatten_observation,
    load_dataset,
    normalized_score,
    to_device,
    transform_rewards,
)
from pex_jax.data import minari as minari_data
from pex_jax.data.observations import flat_dim
from pex_jax.datagen.pointmaze import generate_pointmaze, planner_success_rate
from pex_jax.envs.task import make_env, make_vector_env, task_for_dataset
from pex_jax.errors import (
    ConfigError,
    CorruptDatasetError,
    DatasetError,
    DatasetNotFoundError,
    SpaceMismatchError,
)

GEN_STEPS = 3000
gym.register_envs(gymnasium_robotics)


@pytest.fixture(autouse=True)
def _minari_root(tmp_path, monkeypatch):
    """Each test gets its own empty dataset root (minari reads the variable at call time)."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))


@pytest.fixture(scope="module")
def umaze(tmp_path_factory):
    """One tiny generated PointMaze dataset shared by the read-only tests of this module."""
    root = tmp_path_factory.mktemp("shared_datasets")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        dataset_id = generate_pointmaze("umaze", steps=GEN_STEPS, seed=7, ref_episodes=2, progress=False)
        transitions, info = load_dataset(dataset_id, download=False)
    return root, transitions, info


def make_toy_dataset(dataset_id: str, episodes=((3, "terminated"), (4, "truncated")), refs=True) -> None:
    """Pendulum-shaped dataset with hand-written episodes, so expected arrays are known exactly."""
    buffers = []
    for k, (length, end) in enumerate(episodes):
        obs = np.stack([np.full(3, 0.01 * (100 * k + t), np.float32) for t in range(length + 1)])
        buffers.append(
            EpisodeBuffer(
                observations=obs,
                actions=np.full((length, 1), 0.5 * (k + 1), np.float32),
                rewards=[float(10 * k + t) for t in range(length)],
                terminations=[end == "terminated" and t == length - 1 for t in range(length)],
                truncations=[end == "truncated" and t == length - 1 for t in range(length)],
            )
        )
    kwargs = {"ref_min_score": -1000.0, "ref_max_score": 0.0} if refs else {}
    with pytest.warns(UserWarning):
        minari.create_dataset_from_buffers(
            dataset_id, buffers, env="Pendulum-v1", eval_env="Pendulum-v1", author="t", algorithm_name="t",
            description="toy", **kwargs,
        )


# --- observations -------------------------------------------------------------------------------


def test_flatten_dict_uses_sorted_keys_like_gymnasium_flatten():
    env = gym.make("PointMaze_UMaze-v3")
    obs, _ = env.reset(seed=3)
    obs, *_ = env.step(env.action_space.sample())
    flat = flatten_observation(obs)
    np.testing.assert_array_equal(flat, gym.spaces.flatten(env.observation_space, obs).astype(np.float32))
    np.testing.assert_array_equal(flat[:2], obs["achieved_goal"].astype(np.float32))
    np.testing.assert_array_equal(flat[2:4], obs["desired_goal"].astype(np.float32))
    np.testing.assert_array_equal(flat[4:], obs["observation"].astype(np.float32))
    assert flat.dtype == np.float32 and flat.shape == (flat_dim(env.observation_space),) == (8,)


def test_flatten_keeps_leading_batch_dims_and_key_order_is_insertion_independent():
    batch = {"observation": np.ones((5, 4)), "desired_goal": np.zeros((5, 2)), "achieved_goal": 2 * np.ones((5, 2))}
    flat = flatten_observation(batch)
    assert flat.shape == (5, 8) and flat.dtype == np.float32
    np.testing.assert_array_equal(flat[0], [2, 2, 0, 0, 1, 1, 1, 1])
    reordered = dict(reversed(list(batch.items())))
    np.testing.assert_array_equal(flatten_observation(reordered), flat)


def test_flatten_plain_array_only_casts_to_float32():
    obs = np.arange(6, dtype=np.float64).reshape(2, 3)
    out = flatten_observation(obs)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, obs)


# --- rewards and scores -------------------------------------------------------------------------


def test_reward_transforms_on_numpy_and_jitted_jax():
    r = np.array([0.0, 1.0, 0.0], np.float32)
    np.testing.assert_array_equal(transform_rewards(r, "identity"), r)
    np.testing.assert_array_equal(transform_rewards(r, "minus_one"), [-1.0, 0.0, -1.0])
    jitted = jax.jit(lambda x: transform_rewards(x, "minus_one"))(jnp.asarray(r))
    np.testing.assert_array_equal(np.asarray(jitted), [-1.0, 0.0, -1.0])


def test_unknown_reward_transform_lists_valid_names():
    with pytest.raises(ConfigError, match="identity, minus_one"):
        transform_rewards(np.zeros(2), "scale")


def test_normalized_score_uses_metadata_refs_times_100():
    make_toy_dataset("toy/pendulum/refs-v0")
    _, info = load_dataset("toy/pendulum/refs-v0", download=False)
    assert info.score_source == "metadata"
    np.testing.assert_allclose(normalized_score(np.array([-1000.0, -500.0, 0.0]), info), [0.0, 50.0, 100.0])


def test_normalized_score_falls_back_to_d4rl_constants_for_locomotion_ids():
    make_toy_dataset("mujoco/hopper/toy-v0", refs=False)
    _, info = load_dataset("mujoco/hopper/toy-v0", download=False)
    assert (info.score_source, info.ref_min_score, info.ref_max_score) == ("d4rl", -20.272305, 3234.3)
    assert info.domain == "locomotion" and info.default_reward_transform == "identity"
    np.testing.assert_allclose(normalized_score(3234.3, info), 100.0)
    np.testing.assert_allclose(normalized_score((3234.3 - 20.272305) / 2, info), 50.0)


def test_normalized_score_without_any_reference_raises():
    make_toy_dataset("toy/pendulum/norefs-v0", refs=False)
    _, info = load_dataset("toy/pendulum/norefs-v0", download=False)
    assert info.score_source == "none"
    with pytest.raises(DatasetError, match="toy/pendulum/norefs-v0.*no ref_min_score"):
        normalized_score(1.0, info)


# --- flattening a dataset -----------------------------------------------------------------------


def test_terminations_are_terminal_but_truncations_only_end_episodes():
    make_toy_dataset("toy/pendulum/mixed-v0")
    tr, info = load_dataset("toy/pendulum/mixed-v0", download=False)
    assert len(tr) == 7 == info.total_steps and info.total_episodes == 2
    np.testing.assert_array_equal(tr.terminals, [0, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(tr.episode_ends, [0, 0, 1, 0, 0, 0, 1])
    np.testing.assert_array_equal(tr.rewards, [0, 1, 2, 10, 11, 12, 13])
    # T+1 observations per episode -> obs[:-1] / obs[1:], never crossing into the next episode.
    np.testing.assert_allclose(tr.observations[:, 0], [0, 0.01, 0.02, 1.0, 1.01, 1.02, 1.03], atol=1e-6)
    np.testing.assert_allclose(tr.next_observations[:, 0], [0.01, 0.02, 0.03, 1.01, 1.02, 1.03, 1.04], atol=1e-6)
    np.testing.assert_array_equal(tr.actions[:, 0], [0.5] * 3 + [1.0] * 4)
    for leaf in jax.tree.leaves(tr):
        assert leaf.dtype == np.float32 and leaf.shape[0] == 7
    assert (info.obs_dim, info.act_dim) == (3, 1)
    np.testing.assert_array_equal(info.action_low, [-2.0])
    assert info.domain == "other" and info.default_reward_transform == "identity"


@pytest.mark.parametrize("which", ["toy", "pointmaze"])
def test_fast_hdf5_reader_matches_minari_generic_reader(umaze, monkeypatch, which):
    import pex_jax.data.minari as data_minari

    if which == "toy":
        make_toy_dataset("toy/pendulum/fast-v0", episodes=[(5, "terminated"), (7, "truncated"), (1, "truncated")])
        dataset_id = "toy/pendulum/fast-v0"
    else:
        monkeypatch.setenv("MINARI_DATASETS_PATH", str(umaze[0]))
        dataset_id = umaze[2].dataset_id
    fast, _ = load_dataset(dataset_id)
    monkeypatch.setattr(data_minari, "FAST_HDF5_READER", False)
    generic, _ = load_dataset(dataset_id)
    for x, y in zip(jax.tree.leaves(fast), jax.tree.leaves(generic), strict=True):
        np.testing.assert_array_equal(x, y)


def test_to_device_gives_a_jax_pytree_usable_under_jit():
    make_toy_dataset("toy/pendulum/dev-v0")
    tr, _ = load_dataset("toy/pendulum/dev-v0", download=False)
    dev = to_device(tr)
    assert isinstance(dev, Transitions) and len(dev) == len(tr)
    assert all(isinstance(x, jax.Array) and x.dtype == jnp.float32 for x in jax.tree.leaves(dev))
    total = jax.jit(lambda t: t.rewards.sum() + t.terminals.sum())(dev)
    assert float(total) == pytest.approx(tr.rewards.sum() + 1.0)


# --- generated PointMaze ------------------------------------------------------------------------


def test_generated_pointmaze_round_trip_splits_episodes_at_success(umaze):
    _, tr, info = umaze
    n = len(tr)
    assert n == GEN_STEPS and tr.observations.shape == (n, 8) and tr.actions.shape == (n, 2)
    assert info.domain == "maze" and info.default_reward_transform == "minus_one"
    assert info.score_source == "metadata" and info.ref_max_score > info.ref_min_score
    assert info.source == "local"  # pex/ namespace: generated here, named so in every report row
    assert info.max_episode_steps == 300  # eval env keeps the registered UMaze limit
    ends = np.flatnonzero(tr.episode_ends)
    assert len(ends) == info.total_episodes > 10
    assert tr.terminals.sum() == 0  # continuing task: successes and the time limit are truncations
    np.testing.assert_array_equal(tr.rewards[ends[:-1]], 1.0)  # every split but the last is a success
    assert np.all(np.abs(tr.actions) <= 1.0)
    # One env run: each episode starts where the previous one stopped ...
    np.testing.assert_array_equal(tr.next_observations[:-1], tr.observations[1:])
    # ... and the new goal (desired_goal, columns 2:4) shows up one step after the split.
    assert not np.allclose(tr.observations[ends[0] + 2, 2:4], tr.observations[ends[0], 2:4])


def test_dataset_layout_matches_live_env_flattening(umaze):
    root, tr, info = umaze
    env = gym.make(info.env_spec)  # the collection env, as the generator built it
    obs, _ = env.reset(seed=7)  # the generator resets once with its seed
    np.testing.assert_array_equal(flatten_observation(obs), tr.observations[0])
    for t in range(5):
        obs, *_ = env.step(tr.actions[t])
        np.testing.assert_allclose(flatten_observation(obs), tr.next_observations[t], atol=1e-5)


def test_generation_is_deterministic_per_seed():
    a = load_dataset(generate_pointmaze("umaze", steps=800, seed=3, dataset_id="tt/a-v0", ref_episodes=1,
                                        progress=False))[0]
    b = load_dataset(generate_pointmaze("umaze", steps=800, seed=3, dataset_id="tt/b-v0", ref_episodes=1,
                                        progress=False))[0]
    c = load_dataset(generate_pointmaze("umaze", steps=800, seed=4, dataset_id="tt/c-v0", ref_episodes=1,
                                        progress=False))[0]
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.actions, c.actions)


def test_compaction_keeps_data_and_shrinks_file(tmp_path):
    ids = [generate_pointmaze("umaze", steps=1500, seed=1, dataset_id=f"tt/c{int(c)}-v0", ref_episodes=1,
                              progress=False, compact=c) for c in (False, True)]
    (loose, _), (compact, info) = (load_dataset(i) for i in ids)
    for x, y in zip(jax.tree.leaves(loose), jax.tree.leaves(compact), strict=True):
        np.testing.assert_array_equal(x, y)
    sizes = [(tmp_path / "datasets" / i / "data" / "main_data.hdf5").stat().st_size for i in ids]
    assert sizes[1] < sizes[0] / 2
    assert minari.load_dataset(ids[1]).storage.metadata["dataset_size"] == pytest.approx(sizes[1] / 1e6, abs=0.1)


def test_generate_refuses_to_overwrite_unless_asked(tmp_path):
    (tmp_path / "datasets" / "tt" / "o-v0").mkdir(parents=True)  # leftover of an interrupted run
    generate_pointmaze("umaze", steps=300, dataset_id="tt/o-v0", ref_episodes=1, progress=False)
    with pytest.raises(DatasetError, match="already exists.*overwrite"):
        generate_pointmaze("umaze", steps=300, dataset_id="tt/o-v0", ref_episodes=1, progress=False)
    generate_pointmaze("umaze", steps=400, dataset_id="tt/o-v0", ref_episodes=1, progress=False, overwrite=True)
    assert len(load_dataset("tt/o-v0")[0]) == 400


def test_generate_rejects_malformed_id_and_unknown_maze_before_collecting():
    with pytest.raises(ConfigError, match="malformed dataset id 'x/y'"):
        generate_pointmaze("umaze", steps=10, dataset_id="x/y", progress=False)
    with pytest.raises(ConfigError, match="umaze, medium, large"):
        generate_pointmaze("open", steps=10, progress=False)


@pytest.mark.parametrize("maze", ["umaze", "medium", "large"])
def test_noiseless_planner_reaches_goal_within_eval_limit(maze):
    assert planner_success_rate(maze, episodes=20, seed=0, eval_map=True) >= 0.95
    assert planner_success_rate(maze, episodes=20, seed=100, eval_map=False) >= 0.95


# --- envs -------------------------------------------------------------------------------------------


def test_training_and_evaluation_share_one_fixed_cell_task_that_ends_at_the_goal(umaze):
    _, _, info = umaze
    task = task_for_dataset(info)
    assert task.kind == "goal_maze" and task.score == "success"
    assert task.describe()["reset_cell"] == (3, 1) and task.describe()["goal_cell"] == (1, 1)
    env = make_env(task, seed=0)
    assert env.unwrapped.reset_target is False and env.spec.max_episode_steps == 300


def test_task_time_limit_is_the_eval_limit_not_the_million_step_collection_episode(umaze):
    _, _, info = umaze
    one_episode = dataclasses.replace(info, env_spec=dataclasses.replace(info.env_spec, max_episode_steps=1_000_000))
    task = task_for_dataset(one_episode)
    assert make_env(task).spec.max_episode_steps == 300
    assert make_env(task, max_episode_steps=50).spec.max_episode_steps == 50


def test_task_without_a_usable_time_limit_takes_the_registered_one(umaze):
    _, _, info = umaze
    no_limit = dataclasses.replace(info, eval_env_spec=dataclasses.replace(info.eval_env_spec,
                                                                          max_episode_steps=1_000_000))
    assert task_for_dataset(no_limit).max_episode_steps == gym.spec("PointMaze_UMaze-v3").max_episode_steps == 300


def test_vector_env_same_step_autoreset_exposes_final_obs():
    make_toy_dataset("toy/pendulum/vec-v0")
    _, info = load_dataset("toy/pendulum/vec-v0")
    vec = make_vector_env(task_for_dataset(info), 2, seeds=[0, 1], max_episode_steps=3)
    obs, _ = vec.reset(seed=[0, 1])
    assert flatten_observation(obs).shape == (2, 3)
    for _ in range(3):
        obs, _, term, trunc, step_info = vec.step(np.zeros((2, 1), np.float32))
    assert trunc.all() and not term.any()
    assert step_info["final_obs"].shape == (2,) and step_info["final_obs"][0].shape == (3,)
    assert not np.allclose(np.stack(step_info["final_obs"]), obs)  # obs already holds the reset state
    with pytest.raises(ConfigError, match="one seed per env"):
        make_vector_env(task_for_dataset(info), 2, seeds=[0])


def test_vector_env_dict_obs_flatten_like_single_env(umaze):
    _, _, info = umaze
    vec = make_vector_env(task_for_dataset(info), 2, seeds=[5, 6])
    obs, _ = vec.reset(seed=[5, 6])
    single = make_env(task_for_dataset(info))
    first, _ = single.reset(seed=5)
    np.testing.assert_array_equal(flatten_observation(obs)[0], flatten_observation(first))


def test_space_mismatch_names_both_dims_and_the_fix():
    make_toy_dataset("toy/pendulum/space-v0")
    _, info = load_dataset("toy/pendulum/space-v0")
    check_spaces(gym.make("Pendulum-v1"), info)  # matching env passes
    with pytest.raises(SpaceMismatchError) as err:
        check_spaces(gym.make("MountainCarContinuous-v0"), info)
    msg = str(err.value)
    assert "obs_dim 3 vs 2" in msg and "action bounds" in msg and "fix:" in msg and "\n" not in msg


def test_antmaze_v5_env_for_v1_dataset_suggests_v4(umaze):
    _, _, info = umaze
    ant_info = dataclasses.replace(
        info, dataset_id="D4RL/antmaze/umaze-v1", obs_dim=31, act_dim=8,
        action_low=-np.ones(8, np.float32), action_high=np.ones(8, np.float32),
        observation_space=gym.spaces.Dict({k: gym.spaces.Box(-np.inf, np.inf, (d,)) for k, d in
                                           [("achieved_goal", 2), ("desired_goal", 2), ("observation", 27)]}),
    )
    with pytest.raises(SpaceMismatchError, match=r"obs_dim 31 vs 109.*use the -v4 env"):
        check_spaces(gym.make("AntMaze_UMaze-v5"), ant_info)


# --- errors -------------------------------------------------------------------------------------


def test_missing_local_id_names_id_path_and_generate_command(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("pex/pointmaze/medium-v0", download=False)
    msg = str(err.value)
    assert "pex/pointmaze/medium-v0" in msg and str(tmp_path / "datasets") in msg
    assert "python -m pex_jax.datagen.pointmaze --maze=medium" in msg and "make data" in msg
    assert "\n" not in msg


def test_missing_remote_id_offline_suggests_minari_download(monkeypatch):
    def offline(dataset_id):
        raise ConnectionError("Max retries exceeded\nwith url: https://huggingface.co/...")

    monkeypatch.setattr(minari, "download_dataset", offline)
    monkeypatch.setattr(minari_data, "_hub_unreachable", lambda: None)  # the hub answers, the download fails
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("D4RL/antmaze/umaze-v1", download=True)
    msg = str(err.value)
    assert "minari download D4RL/antmaze/umaze-v1" in msg and "download failed" in msg and "\n" not in msg
    assert err.value.__cause__ is None and err.value.__suppress_context__


@pytest.mark.parametrize("how", ["HF_HUB_OFFLINE", "unreachable_hub"])
def test_no_network_fails_fast_without_attempting_the_download(monkeypatch, how):
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    if how == "HF_HUB_OFFLINE":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        def unreachable(address, timeout=None):
            assert address == ("hub.example", 443)  # HF_ENDPOINT's host is the one probed
            raise OSError(101, "Network is unreachable")

        monkeypatch.setenv("HF_ENDPOINT", "https://hub.example")
        monkeypatch.setattr(minari_data.socket, "create_connection", unreachable)
    monkeypatch.setattr(minari, "download_dataset", lambda i: pytest.fail("must not try to download"))
    with pytest.raises(DatasetNotFoundError, match="no local copy and no network") as err:
        load_dataset("D4RL/antmaze/umaze-v1", download=True)
    assert "minari download D4RL/antmaze/umaze-v1" in str(err.value)


def test_default_download_is_off_without_huggingface_hub(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "huggingface_hub" else real(n, *a))
    monkeypatch.setattr(minari, "download_dataset", lambda i: pytest.fail("must not try to download"))
    with pytest.raises(DatasetNotFoundError, match="download is off"):
        load_dataset("D4RL/pointmaze/umaze-v2")


@pytest.mark.parametrize("damage", ["delete_metadata", "garble_metadata", "delete_hdf5", "truncate_hdf5"])
def test_corrupt_dataset_dir_gives_one_line_error_with_path(tmp_path, damage):
    make_toy_dataset("toy/pendulum/broken-v0", episodes=[(50, "truncated")] * 20)
    data = tmp_path / "datasets" / "toy/pendulum/broken-v0" / "data"
    if damage == "delete_metadata":
        (data / "metadata.json").unlink()
    elif damage == "garble_metadata":
        (data / "metadata.json").write_text(json.dumps({"total_steps": 1})[:-3])
    elif damage == "delete_hdf5":
        (data / "main_data.hdf5").unlink()
    else:
        h5 = data / "main_data.hdf5"
        h5.write_bytes(h5.read_bytes()[: h5.stat().st_size // 2])
    with pytest.raises(CorruptDatasetError) as err:
        load_dataset("toy/pendulum/broken-v0", download=False)
    msg = str(err.value)
    assert str(data) in msg and "minari delete toy/pendulum/broken-v0" in msg and "\n" not in msg


def test_cli_refuses_existing_dataset_with_one_line_error(capsys, monkeypatch):
    from pex_jax.datagen import pointmaze as generate

    assert generate.main(["--maze=umaze", "--steps=300", "--ref-episodes=1", "--no-progress"]) == 0
    assert "pex/pointmaze/umaze-v0: 300 steps" in capsys.readouterr().out
    monkeypatch.setattr("sys.argv", ["generate", "--maze=umaze", "--steps=300"])
    with pytest.raises(SystemExit) as exit_info:
        generate.run_main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: dataset 'pex/pointmaze/umaze-v0' already exists") and "\n" not in err


def test_dataset_info_is_exported_type(umaze):
    assert isinstance(umaze[2], DatasetInfo)
