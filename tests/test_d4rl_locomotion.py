"""D4RL's locomotion -v2 files as a source: small files in their layout, written here (no network).

The D4RL AntMaze path (download, manifest, published checksums) is tested in test_d4rl_data.py; here what
differs for locomotion: shapes per env, qlearning semantics, the Gymnasium env it is evaluated in, grouping of
tasks of other shapes, and `make locomotion` end to end on a file from the separate -v2-layout generator.
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from pex_jax.data import d4rl
from pex_jax.data import d4rl_locomotion as loco
from pex_jax.data.d4rl import load_d4rl
from pex_jax.envs.task import check_task, make_env, task_for_dataset
from pex_jax.errors import CorruptDatasetError, DatasetError, DatasetNotFoundError
from pex_jax.runner.common import call_groups
from tests.test_d4rl_data import _closed_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    """D4RL_DATASET_DIR in tmp and D4RL_URL_BASE at a closed loopback port: no test can reach the network."""
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "d4rl"))
    monkeypatch.setenv("D4RL_URL_BASE", f"http://127.0.0.1:{_closed_port()}/")


def _rows(env: str, episodes: list[tuple[int, bool]], seed: int = 0) -> dict[str, np.ndarray]:
    """D4RL's row layout: each (length, terminated) episode back to back; its last row is a terminal or a
    timeout. Observations carry their row number in column 0 so tests can follow them."""
    obs_dim, act_dim = loco.DIMS[env]
    rng = np.random.default_rng(seed)
    n = sum(length for length, _ in episodes)
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    obs[:, 0] = np.arange(n)
    terminals, timeouts = np.zeros(n, bool), np.zeros(n, bool)
    end = 0
    for length, terminated in episodes:
        end += length
        (terminals if terminated else timeouts)[end - 1] = True
    return {"observations": obs, "next_observations": obs + 0.5, "actions": rng.uniform(-1, 1, (n, act_dim)).astype(
        np.float32), "rewards": rng.normal(size=n).astype(np.float32), "terminals": terminals, "timeouts": timeouts}


def _write(path: Path, data: dict[str, np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for k, v in data.items():
            f.create_dataset(k, data=v)
    return path


def _file(task: str) -> Path:
    return Path(os.environ["D4RL_DATASET_DIR"]) / loco.FILES[task]


def test_file_names_and_urls_follow_d4rls_registration():
    assert loco.FILES["hopper-medium-replay-v2"] == "hopper_medium_replay-v2.hdf5"
    assert len(loco.FILES) == 15 and set(loco.FILES) == set(loco.PUBLISHED)
    os.environ.pop("D4RL_URL_BASE")
    assert d4rl._file_url("walker2d-expert-v2") == (
        "http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2/walker2d_expert-v2.hdf5")
    assert d4rl._file_url("antmaze-umaze-v2").startswith("http://rail.eecs.berkeley.edu/datasets/offline_rl/ant_maze_v2/")


def test_a_v2_file_loads_with_qlearning_semantics_and_d4rl_reference_scores():
    data = _rows("hopper", [(40, True), (50, False), (30, False)])
    _write(_file("hopper-medium-v2"), data)
    tr, info = load_d4rl("d4rl:hopper-medium-v2")
    # every row but the timeouts and the file's last row; the next observation is the file's next row
    assert len(tr) == 120 - 2
    kept = tr.observations[:, 0].astype(int)
    assert 89 not in kept and 119 not in kept and 39 in kept  # timeouts dropped, the terminal kept
    np.testing.assert_array_equal(tr.next_observations[:, 0], kept + 1)
    assert tr.terminals[kept == 39] == 1.0 and tr.terminals.sum() == 1.0
    np.testing.assert_array_equal(tr.rewards, data["rewards"][kept])  # raw rewards
    assert (info.obs_dim, info.act_dim, info.domain, info.default_reward_transform) == (11, 3, "locomotion",
                                                                                        "identity")
    assert (info.ref_min_score, info.ref_max_score) == (-20.272305, 3234.3)
    assert info.files[0]["published"] is False and len(info.files[0]["sha256"]) == 64


def test_a_file_of_another_env_is_refused_naming_the_env_it_belongs_to():
    _write(_file("hopper-medium-v2"), _rows("halfcheetah", [(30, False), (30, False)]))
    with pytest.raises(DatasetError, match=r"17-d observations and 6-d actions \(those of halfcheetah or walker2d\): "
                                           r"hopper's are 11-d and 3-d") as e:
        load_d4rl("d4rl:hopper-medium-v2")
    assert "\n" not in str(e.value)


def test_another_tasks_published_file_is_refused_by_its_checksum(monkeypatch):
    path = _write(_file("walker2d-medium-v2"), _rows("walker2d", [(30, True), (30, False)]))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setitem(d4rl.PUBLISHED, "walker2d-expert-v2", (path.stat().st_size, sha))
    with pytest.raises(DatasetError, match="is D4RL's published walker2d-expert-v2 file"):
        load_d4rl("d4rl:walker2d-medium-v2")


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["rewards"].__setitem__(3, np.nan), "non-finite values in rewards"),
    (lambda d: d["actions"].__setitem__((2, 0), 1.5), "actions outside"),
    (lambda d: d["timeouts"].__setitem__(29, True), "both terminal and timeout"),
])
def test_damaged_contents_are_one_line_errors(change, message):
    data = _rows("hopper", [(30, True), (30, False)])
    change(data)
    _write(_file("hopper-random-v2"), data)
    with pytest.raises(CorruptDatasetError, match=message) as e:
        load_d4rl("d4rl:hopper-random-v2")
    assert "\n" not in str(e.value)


def test_a_missing_file_without_network_names_file_directory_url_and_other_sources():
    with pytest.raises(DatasetNotFoundError) as e:
        load_d4rl("d4rl:halfcheetah-medium-replay-v2", progress=False)
    line = str(e.value)
    assert "halfcheetah_medium_replay-v2.hdf5" in line and os.environ["D4RL_DATASET_DIR"] in line
    assert os.environ["D4RL_URL_BASE"] in line and "SOURCE=minari" in line and "SOURCE=local" in line
    assert "mujoco/halfcheetah/medium-replay-v0" in line and "\n" not in line


def test_evaluation_env_is_gymnasium_v4_with_actions_clipped_as_d4rls_wrapper():
    _write(_file("hopper-medium-v2"), _rows("hopper", [(30, False), (30, False)]))
    _, info = load_d4rl("d4rl:hopper-medium-v2")
    task = task_for_dataset(info)
    assert (task.kind, task.env_id, task.max_episode_steps, task.clip_actions) == ("gym", "Hopper-v4", 1000, True)
    check_task(task, info)
    rewards = []
    for action in (np.full(3, 3.0), np.ones(3)):  # out of range: stepped as its clipped value
        env = make_env(task, seed=0)
        rewards.append(env.step(action)[1])
        env.close()
    assert rewards[0] == rewards[1]


def test_tasks_of_other_shapes_form_separate_call_groups_and_traced_settings_share_one():
    from experiments.configs.locomotion import get_config

    names = ["hopper-medium-d4rl", "walker2d-medium-d4rl", "halfcheetah-random-d4rl", "halfcheetah-medium-d4rl",
             "hopper-random-d4rl"]
    configs = [get_config(n) for n in names]
    assert configs[0].dataset_id == "d4rl:hopper-medium-v2" and configs[0].expectile == 0.7
    assert configs[2].expectile == 0.9  # the reference README's halfcheetah-random setting
    dims = [loco.DIMS[n.split("-")[0]] for n in names]
    # hopper's shapes differ; halfcheetah-random's expectile is traced, so it shares walker2d's and halfcheetah's call
    assert call_groups(configs, dims) == [[0, 4], [1, 2, 3]]


@pytest.mark.slow
def test_make_locomotion_runs_a_v2_layout_file_from_the_separate_generator_end_to_end(tmp_path):
    d4rl_dir = Path(os.environ["D4RL_DATASET_DIR"])
    env = {**os.environ, "WANDB_MODE": "disabled", "JAX_PLATFORMS": "cpu"}
    gen = subprocess.run([sys.executable, "-m", "pex_jax.datagen.locomotion", "d4rl-file", "--env=hopper",
                          "--level=medium", "--steps=3000", f"--out={d4rl_dir}"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert gen.returncode == 0, gen.stderr[-2000:]
    with h5py.File(d4rl_dir / "hopper_medium-v2.hdf5") as f:  # D4RL's layout
        assert {"observations", "next_observations", "actions", "rewards", "terminals", "timeouts"} <= set(f)
        assert f["observations"].shape == (3000, 11) and f["terminals"].dtype == bool
    tiny = ("--config.hidden_dims='(32, 32)' --config.batch_size=64 --config.offline_steps=200 "
            "--config.offline_eval_every=100 --config.updates_per_call=100 --config.online_steps=300 "
            "--config.learning_starts=100 --config.online_eval_every=150 --config.log_every=100 "
            "--config.eval_episodes=2 --config.interim_eval_episodes=1 --config.eval_parallel_envs=2 "
            "--config.buffer_capacity=1000 --config.progress=False --config.wandb.enabled=False")
    run = tmp_path / "run"
    proc = subprocess.run(["make", "--no-print-directory", "locomotion", "TASK=hopper-medium", "SOURCE=d4rl",
                           "SEED=0-1", f"RUN={run}", f"ARGS={tiny}"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "not D4RL's published hopper_medium-v2.hdf5" in proc.stderr  # made here: said so
    summary = json.loads((run / "hopper-medium-d4rl" / "pex" / "summary.json").read_text())
    assert summary["data_source"] == "d4rl"
    assert set(summary["per_seed"]["1"]) >= {"online_step0/normalized_score", "final/normalized_score"}
    config = json.loads((run / "hopper-medium-d4rl" / "pex" / "config.json").read_text())
    assert config["env_task"]["env_id"] == "Hopper-v4" and config["env_task"]["clip_actions"] is True
    assert "| hopper-medium-d4rl | d4rl |" in (run / "report" / "report.md").read_text()


def test_make_locomotion_without_the_file_names_file_dir_url_and_other_sources(tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(["make", "--no-print-directory", "locomotion", "TASK=hopper-medium", "SOURCE=d4rl",
                           f"RUN={tmp_path / 'r'}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    line = errors[0]
    assert "hopper_medium-v2.hdf5" in line and os.environ["D4RL_DATASET_DIR"] in line
    assert os.environ["D4RL_URL_BASE"] in line and "SOURCE=minari" in line and "SOURCE=local" in line
