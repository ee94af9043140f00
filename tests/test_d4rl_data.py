"""D4RL AntMaze hdf5 source: qlearning_dataset semantics, validation errors, path resolution, verification
(manifest, published checksums, play/diverse). Downloads are tested in test_d4rl_download.py.

Nothing here leaves the machine: D4RL_URL_BASE points at a closed loopback port and D4RL_DATASET_DIR at a
temporary directory.
"""

import hashlib
import json
import os
import socket

import h5py
import numpy as np
import pytest

from pex_jax.data import d4rl
from pex_jax.data.d4rl import (
    D4RL_ANTMAZE_FILES,
    D4RL_PUBLISHED,
    MANIFEST_NAME,
    PLAY_GOAL_CELLS,
    PUBLISHED,
    d4rl_dataset_dir,
    is_d4rl_id,
    load_d4rl,
    read_manifest,
    resolve_d4rl,
)
from pex_jax.envs.d4rl_antmaze import MAPS, cell_to_xy
from pex_jax.errors import ConfigError, CorruptDatasetError, DatasetError

UMAZE = "antmaze-umaze-v2"
UMAZE_FILE = D4RL_ANTMAZE_FILES[UMAZE]
GOAL = np.array([0.75, 8.75])

# D4RL's HARDEST_MAZE_TEST (1 = wall); cell (i, j) is centred at D4RL-frame xy = (4j - 4, 4i - 4).
_HARD = ["111111111111", "100001000001", "101101010101", "100000010001", "101111011101", "100101000001",
         "110101010111", "100100010001", "111111111111"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """D4RL_DATASET_DIR in tmp and D4RL_URL_BASE at a closed loopback port, so no test can reach the network."""
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "d4rl"))
    monkeypatch.setenv("D4RL_URL_BASE", f"http://127.0.0.1:{_closed_port()}/")


def _closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def _umaze_arrays(n: int = 2000, seed: int = 0) -> dict:
    """A plausible antmaze-umaze trajectory: sweeps along the U corridor, timeouts every 100 rows."""
    rng = np.random.default_rng(seed)
    corners = np.array([[0, 0], [8, 0], [8, 8], [0, 8]], float)  # along the free cells of U_MAZE_TEST
    t = np.arange(n)
    s = (t % 100) / 99 * 24 + rng.normal(0, 0.3, n)  # arc length along the 24 m centre line
    s = np.where((t // 100) % 2 == 1, 24 - s, s).clip(0, 24)
    seg = np.minimum((s // 8).astype(int), 2)
    start, end = corners[seg], corners[seg + 1]
    direction = (end - start) / 8
    normal = direction[:, ::-1] * np.array([1, -1])
    xy = start + direction * (s - 8 * seg)[:, None] + normal * rng.uniform(-1.5, 1.5, (n, 1))
    obs = rng.normal(0, 0.3, (n, 29)).astype(np.float32)
    obs[:, :2] = xy
    reward = (np.linalg.norm(xy - GOAL, axis=1) <= 0.5).astype(np.float32)
    assert reward.sum() > 0
    return {
        "observations": obs,
        "actions": rng.uniform(-1, 1, (n, 8)).astype(np.float32),
        "rewards": reward,
        "terminals": reward.copy(),
        "timeouts": (t % 100 == 99),
    }


def _large_arrays(n: int = 2000, seed: int = 0) -> dict:
    """Positions spread over the free cells of the large maze (HARDEST_MAZE_TEST)."""
    data = _umaze_arrays(n, seed)
    free = np.argwhere(np.array([[c == "0" for c in row] for row in _HARD]))
    cells = free[np.random.default_rng(seed).integers(0, len(free), n)]
    data["observations"][:, :2] = cells[:, ::-1] * 4.0 - 4.0 + np.random.default_rng(1).uniform(-1.5, 1.5, (n, 2))
    data["rewards"][:] = 0
    data["terminals"][:] = 0
    return data


def _write(path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for key, value in data.items():
            f.create_dataset(key, data=value)


def _d4rl_reference(data: dict) -> dict:
    """D4RL's qlearning_dataset(terminate_on_end=False) loop, written out row by row."""
    out = {k: [] for k in ("observations", "actions", "rewards", "next_observations", "terminals")}
    for i in range(len(data["rewards"]) - 1):
        if data["timeouts"][i]:
            continue
        out["observations"].append(data["observations"][i])
        out["actions"].append(data["actions"][i])
        out["rewards"].append(data["rewards"][i])
        out["next_observations"].append(data["observations"][i + 1])
        out["terminals"].append(bool(data["terminals"][i]))
    return {k: np.array(v) for k, v in out.items()}


def _one_line_error(exc_info, *parts):
    msg = str(exc_info.value)
    assert "\n" not in msg, msg
    for part in parts:
        assert str(part) in msg, (part, msg)
    return msg


# ------------------------------------------------------------------------------------ semantics


def test_qlearning_semantics_on_hand_built_file_drop_timeouts_and_mark_episode_ends(tmp_path):
    n = 10
    obs = np.zeros((n, 29), np.float32)
    obs[:, 2] = np.arange(n)  # row id
    timeouts = np.zeros(n, bool)
    timeouts[[3, 7]] = True
    rewards = np.zeros(n, np.float32)
    rewards[[3, 5]] = 1.0
    actions = np.tile(np.linspace(-1, 1, n, dtype=np.float32)[:, None], (1, 8))
    data = {"observations": obs, "actions": actions, "rewards": rewards, "terminals": rewards.copy(),
            "timeouts": timeouts}
    path = tmp_path / UMAZE_FILE
    _write(path, data)

    tr, info = load_d4rl(f"d4rl:{path}")

    kept = [0, 1, 2, 4, 5, 6, 8]  # rows 3 and 7 are timeouts; row 9 has no next row
    np.testing.assert_array_equal(tr.observations[:, 2], kept)
    np.testing.assert_array_equal(tr.next_observations[:, 2], [k + 1 for k in kept])
    np.testing.assert_array_equal(tr.actions, actions[kept])
    np.testing.assert_array_equal(tr.rewards, [0, 0, 0, 0, 1, 0, 0])  # raw 0/1; row 3's reward goes with it
    np.testing.assert_array_equal(tr.terminals, [0, 0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(tr.episode_ends, [0, 0, 1, 0, 0, 1, 1])  # rows 2, 6 (before timeouts), 8 (last)
    assert all(a.dtype == np.float32 for a in (tr.observations, tr.rewards, tr.terminals, tr.episode_ends))
    assert (len(tr), info.total_steps, info.total_episodes) == (7, 7, 3)


def test_vectorised_loader_equals_d4rl_row_loop_and_fills_dataset_info(tmp_path):
    data = _umaze_arrays()
    path = tmp_path / UMAZE_FILE
    _write(path, data)
    tr, info = load_d4rl(f"d4rl:{path}", download=False)
    ref = _d4rl_reference(data)
    for key in ref:
        np.testing.assert_array_equal(getattr(tr, key), ref[key].astype(np.float32), err_msg=key)
    assert len(tr) == 2000 - 20  # 20 timeout rows (the last one is row N-1, which is never a transition start)
    assert tr.rewards.sum() > 0 and set(np.unique(tr.rewards)) <= {0.0, 1.0}
    assert info.total_episodes == 20 and tr.episode_ends.sum() == 20
    assert (info.obs_dim, info.act_dim, info.max_episode_steps) == (29, 8, 700)
    assert (info.source, info.task_hint, info.score_source, info.domain) == ("d4rl", UMAZE, "d4rl", "maze")
    assert (info.ref_min_score, info.ref_max_score, info.default_reward_transform) == (0.0, 1.0, "minus_one")
    assert info.env_spec is None and info.eval_env_spec is None
    assert info.action_space.shape == (8,) and np.all(info.action_high == 1) and np.all(info.action_low == -1)
    assert info.observation_space.shape == (29,) and info.observation_space.dtype == np.float32


def test_dataset_info_files_records_size_and_sha256(tmp_path):
    path = tmp_path / UMAZE_FILE
    _write(path, _umaze_arrays())
    _, info = load_d4rl(f"d4rl:{path}")
    raw = path.read_bytes()
    assert info.files == ({"path": str(path), "size": len(raw), "sha256": hashlib.sha256(raw).hexdigest(),
                            "published": False},)


# ----------------------------------------------------------------------------------- validation


def _drop(key):
    return lambda d: {k: v for k, v in d.items() if k != key}


def _set(key, index, value):
    def edit(d):
        d[key][index] = value
        return d

    return edit


def _replace(key, value_fn):
    def edit(d):
        d[key] = value_fn(d)
        return d

    return edit


VALIDATION_CASES = {
    "missing_key": (_drop("timeouts"), CorruptDatasetError, ["timeouts", "expected observations, actions"]),
    "wrong_obs_width": (_replace("observations", lambda d: d["observations"][:, :27]), CorruptDatasetError,
                        ["observations of shape (2000, 27)", "expected (N, 29)"]),
    "too_few_rows": (lambda d: {k: v[:1] for k, v in d.items()}, CorruptDatasetError, ["1 row(s)", "at least 2"]),
    "string_dtype": (_replace("rewards", lambda d: np.array(["a"] * 2000, dtype="S1")), CorruptDatasetError,
                     ["rewards of dtype |S1", "numeric"]),
    "not_hdf5": (None, CorruptDatasetError, ["is not an hdf5 file"]),
    "nan": (_set("observations", (17, 5), np.nan), CorruptDatasetError,
            ["non-finite values in observations", "1 row(s), first at row 17"]),
    "rewards_not_binary": (lambda d: _set("terminals", 4, 0.5)(_set("rewards", 4, 0.5)(d)), CorruptDatasetError,
                           ["rewards outside {0, 1}", "[0.5]"]),
    "terminals_differ": (_set("terminals", [10, 20, 30], 1.0), CorruptDatasetError,
                         ["terminals that differ from rewards in 3 of 2000 rows"]),
    "action_out_of_range": (_set("actions", (5, 2), 1.5), CorruptDatasetError,
                            ["actions outside [-1, 1]", "max |a| = 1.5"]),
    "other_maze": (lambda d: _large_arrays(), DatasetError,
                   ["do not fit the umaze maze of antmaze-umaze-v2", "on free cells",
                    "use the matching task (antmaze-large-play-v2 or antmaze-large-diverse-v2)"]),
}


@pytest.mark.parametrize("case", list(VALIDATION_CASES))
def test_each_validation_failure_is_one_line_naming_file_expected_and_found(tmp_path, case):
    edit, error, parts = VALIDATION_CASES[case]
    path = tmp_path / UMAZE_FILE
    if edit is None:
        path.write_bytes(b"this is not hdf5\n" * 100)
    else:
        _write(path, edit(_umaze_arrays()))
    with pytest.raises(error) as exc_info:
        load_d4rl(f"d4rl:{path}")
    _one_line_error(exc_info, path, "fix:", *parts)
    if case == "other_maze":
        assert not isinstance(exc_info.value, CorruptDatasetError)


def test_actions_within_float_slack_are_accepted_and_clipped(tmp_path):
    data = _umaze_arrays()
    data["actions"][3, 0] = 1.0 + 5e-7
    path = tmp_path / UMAZE_FILE
    _write(path, data)
    tr, _ = load_d4rl(f"d4rl:{path}")
    assert np.abs(tr.actions).max() == 1.0


# ---------------------------------------------------------------------------------- resolution


def test_resolve_id_form_uses_d4rl_dataset_dir_and_d4rl_file_name(tmp_path, monkeypatch):
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "data"))
    assert d4rl_dataset_dir() == tmp_path / "data"
    assert is_d4rl_id("d4rl:antmaze-large-play-v2") and not is_d4rl_id("D4RL/antmaze/umaze-v1")
    task, path = resolve_d4rl("d4rl:antmaze-large-play-v2")
    assert task == "antmaze-large-play-v2"
    assert path == tmp_path / "data" / "Ant_maze_hardest-maze_noisy_multistart_True_multigoal_False_sparse_fixed.hdf5"
    monkeypatch.delenv("D4RL_DATASET_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert d4rl_dataset_dir() == tmp_path / ".d4rl" / "datasets"


def test_resolve_path_form_infers_task_from_basename(tmp_path, monkeypatch):
    name = D4RL_ANTMAZE_FILES["antmaze-medium-diverse-v2"]
    assert resolve_d4rl(f"d4rl:{tmp_path}/{name}") == ("antmaze-medium-diverse-v2", tmp_path / name)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_d4rl(f"d4rl:~/x/{name}") == ("antmaze-medium-diverse-v2", tmp_path / "x" / name)
    assert resolve_d4rl(f"d4rl:{name}")[1].name == name  # relative path


def test_resolve_unknown_basename_tells_how_to_name_the_file(tmp_path):
    with pytest.raises(ConfigError) as exc_info:
        resolve_d4rl(f"d4rl:{tmp_path}/my_antmaze.hdf5")
    _one_line_error(exc_info, "my_antmaze.hdf5", "d4rl:<task id>", "D4RL_DATASET_DIR", "rename it")


def test_resolve_unknown_task_id_lists_the_six_tasks():
    with pytest.raises(ConfigError) as exc_info:
        resolve_d4rl("d4rl:antmaze-umaze-v0")
    _one_line_error(exc_info, "antmaze-umaze-v0", *D4RL_ANTMAZE_FILES)


# ------------------------------------------------------------------------------------ manifest


def _manifest(directory) -> dict:
    return json.loads((directory / MANIFEST_NAME).read_text())["files"]


def test_first_successful_load_records_size_sha256_and_mtime_in_the_manifest_beside_the_file(tmp_path):
    path = tmp_path / UMAZE_FILE
    _write(path, _umaze_arrays())
    load_d4rl(f"d4rl:{path}")
    raw = path.read_bytes()
    entry = _manifest(tmp_path)[UMAZE_FILE]
    assert entry == {"size": len(raw), "sha256": hashlib.sha256(raw).hexdigest(),
                     "mtime_ns": path.stat().st_mtime_ns, "published": False}
    assert read_manifest(tmp_path) == {UMAZE_FILE: entry}
    assert {p.name for p in tmp_path.iterdir()} == {UMAZE_FILE, MANIFEST_NAME}  # no temporary file left


def test_a_file_failing_validation_is_not_recorded(tmp_path):
    path = tmp_path / UMAZE_FILE
    _write(path, _set("actions", (5, 2), 1.5)(_umaze_arrays()))
    with pytest.raises(CorruptDatasetError):
        load_d4rl(f"d4rl:{path}")
    assert not (tmp_path / MANIFEST_NAME).exists()


def test_file_replaced_after_recording_stops_with_one_line_naming_recorded_and_found_size_and_sha(tmp_path):
    path = tmp_path / UMAZE_FILE
    _write(path, _umaze_arrays(seed=0))
    load_d4rl(f"d4rl:{path}")
    recorded = _manifest(tmp_path)[UMAZE_FILE]
    _write(path, _umaze_arrays(n=2100, seed=1))
    raw = path.read_bytes()
    with pytest.raises(CorruptDatasetError) as exc_info:
        load_d4rl(f"d4rl:{path}")
    _one_line_error(exc_info, path, tmp_path / MANIFEST_NAME, f"recorded {recorded['size']} bytes",
                    recorded["sha256"], f"found {len(raw)} bytes", hashlib.sha256(raw).hexdigest(),
                    "fix: replace it", f'delete the entry "{UMAZE_FILE}"')
    assert _manifest(tmp_path)[UMAZE_FILE] == recorded  # the record is never overwritten by a mismatch


def test_same_size_edit_with_a_new_mtime_is_rehashed_and_refused_and_by_id_fix_says_delete_to_redownload(
        tmp_path):
    path = tmp_path / "d4rl" / UMAZE_FILE
    _write(path, _umaze_arrays())
    load_d4rl(f"d4rl:{UMAZE}")
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF  # same size, other bytes
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    with pytest.raises(CorruptDatasetError) as exc_info:
        load_d4rl(f"d4rl:{UMAZE}")
    _one_line_error(exc_info, "not the file first validated here", hashlib.sha256(raw).hexdigest(),
                    f"fix: delete {path} and run again to re-download it")


def test_unchanged_size_and_mtime_skip_rehashing_and_a_touched_identical_file_is_rehashed_and_accepted(
        tmp_path, monkeypatch):
    path = tmp_path / UMAZE_FILE
    _write(path, _umaze_arrays())
    calls = []
    real = d4rl._sha256
    monkeypatch.setattr(d4rl, "_sha256", lambda p: calls.append(p) or real(p))
    _, first = load_d4rl(f"d4rl:{path}")
    _, second = load_d4rl(f"d4rl:{path}")
    assert len(calls) == 1 and second.files == first.files

    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    _, third = load_d4rl(f"d4rl:{path}")
    assert len(calls) == 2 and third.files == first.files
    assert _manifest(tmp_path)[UMAZE_FILE]["mtime_ns"] == path.stat().st_mtime_ns  # the new mtime is recorded


def test_unreadable_manifest_gives_one_line_naming_it_and_the_fix(tmp_path):
    path = tmp_path / UMAZE_FILE
    _write(path, _umaze_arrays())
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(CorruptDatasetError) as exc_info:
        load_d4rl(f"d4rl:{path}")
    _one_line_error(exc_info, tmp_path / MANIFEST_NAME, "cannot be read", "fix: delete it")
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"files": {UMAZE_FILE: {"size": "big"}}}))
    with pytest.raises(CorruptDatasetError) as exc_info:
        load_d4rl(f"d4rl:{path}")
    _one_line_error(exc_info, "malformed entries", UMAZE_FILE, "fix: delete it")


def test_manifest_write_failure_warns_one_line_and_still_loads(tmp_path, monkeypatch, capsys):
    path = tmp_path / UMAZE_FILE
    _write(path, _umaze_arrays())

    def no_space(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(d4rl.os, "replace", no_space)
    tr, _ = load_d4rl(f"d4rl:{path}")
    warning = [line for line in capsys.readouterr().err.splitlines() if MANIFEST_NAME in line]
    assert len(tr) > 0 and len(warning) == 1 and "No space left on device" in warning[0]
    assert {p.name for p in tmp_path.iterdir()} == {UMAZE_FILE}  # the temporary manifest is cleaned up


# ------------------------------------------------------------------------------- h5py failures


def test_corrupt_object_header_gives_one_corrupt_dataset_line(tmp_path):
    path = tmp_path / UMAZE_FILE
    _write(path, _umaze_arrays())
    with h5py.File(path, "r") as f:
        header = h5py.h5o.get_info(f["rewards"].id).addr
    raw = bytearray(path.read_bytes())
    raw[header : header + 40] = b"\xff" * 40
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptDatasetError) as exc_info:
        load_d4rl(f"d4rl:{path}")
    _one_line_error(exc_info, path, "cannot be read: the hdf5 structure is damaged", "KeyError", "fix: replace it")


@pytest.mark.parametrize("stage", ["open", "read"])
@pytest.mark.parametrize("error", [OSError, KeyError, RuntimeError, ValueError])
def test_any_h5py_error_while_opening_or_reading_is_one_corrupt_dataset_line(tmp_path, monkeypatch, stage, error):
    import h5py as real_h5py

    path = tmp_path / UMAZE_FILE
    _write(path, _umaze_arrays())

    def boom(*args, **kwargs):
        raise error("synthetic h5py failure")

    if stage == "open":
        monkeypatch.setattr(real_h5py, "File", boom)
    else:
        monkeypatch.setattr(d4rl, "_read_open", boom)
    with pytest.raises(CorruptDatasetError) as exc_info:
        load_d4rl(f"d4rl:{path}")
    _one_line_error(exc_info, path, "synthetic h5py failure", "fix:")
    assert not (tmp_path / MANIFEST_NAME).exists()


# -------------------------------------------------------------------------------- play / diverse


def _free(maze: str) -> list[tuple[int, int]]:
    return [(i, j) for i, row in enumerate(MAPS[maze]) for j, c in enumerate(row) if c != 1]


def _maze_arrays(maze: str, goal_cells, start_cells=None, episodes: int = 60, length: int = 10, seed: int = 0,
                 goals: bool = True) -> dict:
    """Episodes in `maze`: positions spread over free cells, each episode starting in one of `start_cells` (any
    free cell if None) and commanded to one of `goal_cells` (`infos/goal`, D4RL's centre + U(0, 1.5) noise)."""
    rng = np.random.default_rng(seed)
    free = _free(maze)
    n = episodes * length
    cells = [free[k] for k in rng.integers(0, len(free), n)]
    xy = np.array([cell_to_xy(*c) for c in cells]) + rng.uniform(-1.5, 1.5, (n, 2))
    goal = np.zeros((n, 2))
    for e in range(episodes):
        start = (start_cells or free)[e % len(start_cells or free)]
        xy[e * length] = np.array(cell_to_xy(*start)) + rng.uniform(0, 1, 2)
        goal_cell = goal_cells[e % len(goal_cells)]
        goal[e * length : (e + 1) * length] = np.array(cell_to_xy(*goal_cell)) + rng.uniform(0, 1.5, 2)
    obs = rng.normal(0, 0.3, (n, 29)).astype(np.float32)
    obs[:, :2] = xy
    data = {"observations": obs, "actions": rng.uniform(-1, 1, (n, 8)).astype(np.float32),
            "rewards": np.zeros(n, np.float32), "terminals": np.zeros(n, np.float32),
            "timeouts": np.arange(n) % length == length - 1}
    if goals:
        data["infos/goal"] = goal
    return data


_G = {"umaze": [(3, 1)], "medium": [(2, 6), (5, 1), (6, 5)],
      "large": [(1, 6), (3, 5), (3, 10), (5, 2), (7, 4), (7, 6), (7, 9)]}
_MULTISTART_UMAZE = [c for c in _free("umaze") if c != (3, 1)]

KIND_SWAPS = {  # file name's task, data written, the task the data look like, words in the evidence
    "umaze_holds_diverse": ("antmaze-umaze-v2", lambda: _maze_arrays("umaze", _free("umaze"), _MULTISTART_UMAZE),
                            "antmaze-umaze-diverse-v2", "start in 6 maze cell(s)"),
    "umaze_diverse_holds_umaze": ("antmaze-umaze-diverse-v2", lambda: _maze_arrays("umaze", [(3, 1)], [(1, 1)]),
                                  "antmaze-umaze-v2", "start in 1 maze cell(s)"),
    "medium_play_holds_diverse": ("antmaze-medium-play-v2", lambda: _maze_arrays("medium", _free("medium")),
                                  "antmaze-medium-diverse-v2", "goals (infos/goal) lie in 26 maze cell(s)"),
    "medium_diverse_holds_play": ("antmaze-medium-diverse-v2", lambda: _maze_arrays("medium", _G["medium"]),
                                  "antmaze-medium-play-v2", "lie in 3 maze cell(s)"),
    "large_play_holds_diverse": ("antmaze-large-play-v2", lambda: _maze_arrays("large", _free("large"), episodes=100),
                                 "antmaze-large-diverse-v2", "lie in 46 maze cell(s)"),
    "large_diverse_holds_play": ("antmaze-large-diverse-v2", lambda: _maze_arrays("large", _G["large"]),
                                 "antmaze-large-play-v2", "lie in 7 maze cell(s)"),
}


@pytest.mark.parametrize("case", list(KIND_SWAPS))
def test_play_and_diverse_swapped_under_each_others_name_are_refused_with_one_line(tmp_path, case):
    task, make, looks_like, evidence = KIND_SWAPS[case]
    path = tmp_path / D4RL_ANTMAZE_FILES[task]
    _write(path, make())
    with pytest.raises(DatasetError) as exc_info:
        load_d4rl(f"d4rl:{path}")
    _one_line_error(exc_info, path, f"holds {looks_like} data, not {task}'s", evidence,
                    f"fix: rename it to {D4RL_ANTMAZE_FILES[looks_like]} and use d4rl:{looks_like}")
    assert not isinstance(exc_info.value, CorruptDatasetError) and not (tmp_path / MANIFEST_NAME).exists()
    # the same data under its own name loads
    right = tmp_path / "right" / D4RL_ANTMAZE_FILES[looks_like]
    _write(right, make())
    assert len(load_d4rl(f"d4rl:{right}")[0]) > 0


def test_no_play_diverse_verdict_without_goals_few_episodes_or_in_the_gap(tmp_path):
    cases = [
        ("antmaze-medium-diverse-v2", _maze_arrays("medium", _G["medium"], goals=False)),  # no infos/goal
        ("antmaze-medium-diverse-v2", _maze_arrays("medium", _G["medium"], episodes=19)),  # too few episodes
        ("antmaze-medium-play-v2", _maze_arrays("medium", _free("medium")[:5])),  # 5 cells: between 3 and 7
        ("antmaze-umaze-diverse-v2", _maze_arrays("umaze", [(3, 1)], [(1, 1), (3, 3)])),  # 2 start cells
    ]
    for k, (task, data) in enumerate(cases):
        path = tmp_path / str(k) / D4RL_ANTMAZE_FILES[task]
        _write(path, data)
        assert d4rl.data_kind(task, d4rl._read_arrays(path, task, "-"))[0] is None, k
        assert len(load_d4rl(f"d4rl:{path}")[0]) > 0


def test_play_goal_cell_counts_match_the_generation_maps_g_cells():
    from pex_jax.datagen.antmaze import G_CELLS

    assert PLAY_GOAL_CELLS == {maze: len(cells) for maze, cells in G_CELLS.items()} == \
        {maze: len(cells) for maze, cells in _G.items()}


# ---------------------------------------------------------------------------- published sha256


def test_published_table_has_the_six_v2_files_with_plausible_sizes_and_distinct_sha256():
    assert set(D4RL_PUBLISHED) == set(D4RL_ANTMAZE_FILES)
    assert all(200e6 < size < 260e6 and len(sha) == 64 for size, sha in D4RL_PUBLISHED.values())
    assert len({sha for _, sha in D4RL_PUBLISHED.values()}) == 6


def test_a_file_with_another_tasks_published_sha256_is_refused_naming_that_task(tmp_path, monkeypatch):
    path = tmp_path / UMAZE_FILE
    _write(path, _umaze_arrays())
    raw = path.read_bytes()
    monkeypatch.setitem(PUBLISHED, "antmaze-umaze-diverse-v2", (len(raw), hashlib.sha256(raw).hexdigest()))
    with pytest.raises(DatasetError) as exc_info:
        load_d4rl(f"d4rl:{path}")
    _one_line_error(exc_info, path, "is D4RL's published antmaze-umaze-diverse-v2 file", "not antmaze-umaze-v2's",
                    f"rename it to {D4RL_ANTMAZE_FILES['antmaze-umaze-diverse-v2']}")


def test_a_file_matching_its_published_sha256_is_marked_published_skips_the_kind_statistic_and_no_warning(
        tmp_path, monkeypatch, capsys):
    task = "antmaze-umaze-diverse-v2"
    path = tmp_path / D4RL_ANTMAZE_FILES[task]
    _write(path, _maze_arrays("umaze", [(3, 1)], [(1, 1)]))  # fixed-start data: refused unless published
    raw = path.read_bytes()
    monkeypatch.setitem(PUBLISHED, task, (len(raw), hashlib.sha256(raw).hexdigest()))
    _, info = load_d4rl(f"d4rl:{path}")
    assert info.files[0]["published"] is True and _manifest(tmp_path)[path.name]["published"] is True
    assert "warning" not in capsys.readouterr().err


def test_an_unpublished_file_loads_with_one_warning_line_naming_the_published_sha256(tmp_path, capsys):
    path = tmp_path / UMAZE_FILE
    _write(path, _umaze_arrays())
    load_d4rl(f"d4rl:{path}")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1 and str(path) in lines[0] and D4RL_PUBLISHED[UMAZE][1] in lines[0]
    assert "not comparable" in lines[0]
