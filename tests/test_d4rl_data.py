"""D4RL AntMaze hdf5 source: qlearning_dataset semantics, validation errors, path resolution, loopback download.

Nothing here leaves the machine: every test points D4RL_URL_BASE at 127.0.0.1 (a server started in the test,
or a closed port) and D4RL_DATASET_DIR at a temporary directory.
"""

import hashlib
import http.server
import os
import socket
import threading
import types

import h5py
import numpy as np
import pytest

from pex_jax.data.d4rl import (
    D4RL_ANTMAZE_FILES,
    d4rl_dataset_dir,
    fetch_d4rl_file,
    is_d4rl_id,
    load_d4rl_antmaze,
    resolve_d4rl,
)
from pex_jax.errors import ConfigError, CorruptDatasetError, DatasetError, DatasetNotFoundError

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

    tr, info = load_d4rl_antmaze(f"d4rl:{path}")

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
    tr, info = load_d4rl_antmaze(f"d4rl:{path}", download=False)
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
    _, info = load_d4rl_antmaze(f"d4rl:{path}")
    raw = path.read_bytes()
    assert info.files == ({"path": str(path), "size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()},)


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
        load_d4rl_antmaze(f"d4rl:{path}")
    _one_line_error(exc_info, path, "fix:", *parts)
    if case == "other_maze":
        assert not isinstance(exc_info.value, CorruptDatasetError)


def test_actions_within_float_slack_are_accepted_and_clipped(tmp_path):
    data = _umaze_arrays()
    data["actions"][3, 0] = 1.0 + 5e-7
    path = tmp_path / UMAZE_FILE
    _write(path, data)
    tr, _ = load_d4rl_antmaze(f"d4rl:{path}")
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


# ------------------------------------------------------------------------------------ download


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves `state.payload` at /<UMAZE_FILE> with Range support; can cut the body after `state.cut_after` bytes."""

    def do_GET(self):  # noqa: N802
        state = self.server.state
        state.hits += 1
        state.ranges.append(self.headers.get("Range"))
        if self.path.lstrip("/") != UMAZE_FILE:
            self.send_error(404)
            return
        payload, start = state.payload, 0
        rng = self.headers.get("Range")
        if rng and not state.ignore_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(payload):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(payload)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
        else:
            self.send_response(200)
        body = payload[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if state.cut_after is not None:
            body, state.cut_after = body[: state.cut_after], None
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = types.SimpleNamespace(payload=b"", hits=0, ranges=[], cut_after=None, ignore_range=False)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("D4RL_URL_BASE", f"http://127.0.0.1:{httpd.server_address[1]}")
    yield httpd.state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def umaze_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("served") / UMAZE_FILE
    _write(path, _umaze_arrays())
    return path.read_bytes()


def test_download_into_d4rl_dir_then_second_load_uses_local_file(server, umaze_bytes, tmp_path):
    server.payload = umaze_bytes
    tr, info = load_d4rl_antmaze(f"d4rl:{UMAZE}", progress=False)
    local = tmp_path / "d4rl" / UMAZE_FILE
    assert server.hits == 1 and local.read_bytes() == umaze_bytes
    assert not (tmp_path / "d4rl" / (UMAZE_FILE + ".part")).exists()
    assert info.files[0]["path"] == str(local) and info.files[0]["sha256"] == hashlib.sha256(umaze_bytes).hexdigest()
    tr2, _ = load_d4rl_antmaze(f"d4rl:{UMAZE}", progress=False)
    assert server.hits == 1
    np.testing.assert_array_equal(tr.observations, tr2.observations)


def test_interrupted_download_keeps_part_and_next_call_resumes_with_range(server, umaze_bytes, tmp_path):
    server.payload, server.cut_after = umaze_bytes, 5000
    part = tmp_path / "d4rl" / (UMAZE_FILE + ".part")
    with pytest.raises(DatasetNotFoundError) as exc_info:
        load_d4rl_antmaze(f"d4rl:{UMAZE}", progress=False)
    _one_line_error(exc_info, UMAZE_FILE, f"connection closed after 5000 of {len(umaze_bytes)} bytes")
    assert part.stat().st_size == 5000 and not (tmp_path / "d4rl" / UMAZE_FILE).exists()

    _, info = load_d4rl_antmaze(f"d4rl:{UMAZE}", progress=False)
    assert server.ranges == [None, "bytes=5000-"]
    assert info.files[0]["sha256"] == hashlib.sha256(umaze_bytes).hexdigest() and not part.exists()


def test_resume_restarts_when_server_ignores_range_and_finishes_on_416(server, umaze_bytes, tmp_path):
    server.payload, server.ignore_range = umaze_bytes, True
    directory = tmp_path / "dl"
    directory.mkdir()
    (directory / (UMAZE_FILE + ".part")).write_bytes(b"x" * 1234)  # stale bytes that must not survive
    path = fetch_d4rl_file(UMAZE, directory, progress=False)
    assert path.read_bytes() == umaze_bytes and server.ranges == ["bytes=1234-"]

    server.ignore_range = False
    path.rename(directory / (UMAZE_FILE + ".part"))  # a complete .part: the server answers 416
    assert fetch_d4rl_file(UMAZE, directory, progress=False).read_bytes() == umaze_bytes
    assert server.ranges[-1] == f"bytes={len(umaze_bytes)}-"


def test_corrupt_served_file_is_rejected_with_clear_error(server, tmp_path):
    server.payload = b"<html>not the dataset</html>" * 50
    with pytest.raises(CorruptDatasetError) as exc_info:
        load_d4rl_antmaze(f"d4rl:{UMAZE}", progress=False)
    _one_line_error(exc_info, tmp_path / "d4rl" / UMAZE_FILE, "is not an hdf5 file", "re-download")


def test_unreachable_server_gives_one_line_error_naming_file_dir_url_and_other_sources(tmp_path):
    url = os.environ["D4RL_URL_BASE"] + UMAZE_FILE  # a closed loopback port (autouse fixture)
    with pytest.raises(DatasetNotFoundError) as exc_info:
        load_d4rl_antmaze(f"d4rl:{UMAZE}", progress=False)
    msg = _one_line_error(exc_info, UMAZE_FILE, tmp_path / "d4rl", "$D4RL_DATASET_DIR", url, "failed (",
                          "SOURCE=minari", "D4RL/antmaze/umaze-v1", "SOURCE=local")
    assert "refused" in msg.lower() or "timed out" in msg

    with pytest.raises(DatasetNotFoundError) as exc_info:
        load_d4rl_antmaze(f"d4rl:{UMAZE}", download=False)
    msg = _one_line_error(exc_info, UMAZE_FILE, tmp_path / "d4rl", url, "SOURCE=minari", "SOURCE=local")
    assert "failed" not in msg


def test_missing_explicit_path_is_not_downloaded(server, tmp_path):
    path = tmp_path / "elsewhere" / UMAZE_FILE
    with pytest.raises(DatasetNotFoundError) as exc_info:
        load_d4rl_antmaze(f"d4rl:{path}")
    _one_line_error(exc_info, path, "does not exist")
    assert server.hits == 0
