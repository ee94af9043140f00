"""D4RL file download: resume with Range + If-Range, restart on 200, per-process partial files, and nothing
that is not a valid D4RL file (HTML, cut short, failing validation) ever takes the final name.

Nothing here leaves the machine: a loopback HTTP server started in the test serves the bytes, and
D4RL_DATASET_DIR is a temporary directory.
"""

import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest

from pex_jax.data import d4rl
from pex_jax.data.d4rl import D4RL_ANTMAZE_FILES, MANIFEST_NAME, fetch_d4rl_file, load_d4rl
from pex_jax.errors import CorruptDatasetError, DatasetError, DatasetNotFoundError
from tests.test_d4rl_data import _closed_port, _large_arrays, _one_line_error, _umaze_arrays, _write

UMAZE = "antmaze-umaze-v2"
UMAZE_FILE = D4RL_ANTMAZE_FILES[UMAZE]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "d4rl"))
    monkeypatch.setenv("D4RL_URL_BASE", f"http://127.0.0.1:{_closed_port()}/")


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves `state.payload` at /<UMAZE_FILE>: Range and If-Range as a server does (a range only while If-Range
    equals the current ETag), plus switches for the faults under test."""

    def do_GET(self):  # noqa: N802
        state = self.server.state
        state.requests.append({k: self.headers.get(k) for k in ("Range", "If-Range")})
        if self.path.lstrip("/") != (state.name or UMAZE_FILE):
            self.send_error(404)
            return
        payload, start = state.payload, 0
        rng, if_range = self.headers.get("Range"), self.headers.get("If-Range")
        validator = state.etag or state.last_modified
        if rng and not state.ignore_range and (if_range in (None, validator) or state.ignore_if_range):
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
        self.send_header("Content-Type", state.content_type)
        if state.etag:
            self.send_header("ETag", state.etag)
        if state.last_modified:
            self.send_header("Last-Modified", state.last_modified)
        if state.send_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if state.cut_after is not None:
            body, state.cut_after = body[: state.cut_after], None
            self.close_connection = True
        if state.pause is not None:  # send half, wait for the pause hook, then the rest
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            state.pause()
            body = body[len(body) // 2 :]
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = types.SimpleNamespace(payload=b"", requests=[], cut_after=None, ignore_range=False,
                                        etag='"v1"', last_modified=None, send_length=True,
                                        content_type="application/octet-stream", pause=None, ignore_if_range=False,
                                        name=None)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    monkeypatch.setenv("D4RL_URL_BASE", url)
    httpd.state.url = url
    yield httpd.state
    httpd.shutdown()
    httpd.server_close()


def _bytes_of(data: dict, tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("served") / UMAZE_FILE
    _write(path, data)
    return path.read_bytes()


@pytest.fixture(scope="module")
def umaze_bytes(tmp_path_factory) -> bytes:
    return _bytes_of(_umaze_arrays(), tmp_path_factory)


@pytest.fixture(scope="module")
def other_umaze_bytes(tmp_path_factory) -> bytes:
    return _bytes_of(_umaze_arrays(n=2100, seed=1), tmp_path_factory)


def _leftovers(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()} - {UMAZE_FILE, MANIFEST_NAME} if directory.exists() else set()


def _own_part(directory: Path) -> tuple[Path, Path]:
    part = directory / f"{UMAZE_FILE}.{os.getpid()}.part"
    return part, part.with_name(part.name + ".meta")


def test_download_validates_records_and_second_load_uses_the_local_file(server, umaze_bytes, tmp_path):
    server.payload = umaze_bytes
    tr, info = load_d4rl(f"d4rl:{UMAZE}", progress=False)
    directory = tmp_path / "d4rl"
    local = directory / UMAZE_FILE
    sha = hashlib.sha256(umaze_bytes).hexdigest()
    assert len(server.requests) == 1 and local.read_bytes() == umaze_bytes and not _leftovers(directory)
    assert info.files[0]["path"] == str(local) and info.files[0]["sha256"] == sha
    assert json.loads((directory / MANIFEST_NAME).read_text())["files"][UMAZE_FILE]["sha256"] == sha
    tr2, _ = load_d4rl(f"d4rl:{UMAZE}", progress=False)
    assert len(server.requests) == 1
    np.testing.assert_array_equal(tr.observations, tr2.observations)


def test_interrupted_download_keeps_its_pid_part_and_resume_sends_range_with_if_range_etag(
        server, umaze_bytes, tmp_path):
    server.payload, server.cut_after = umaze_bytes, 5000
    directory = tmp_path / "d4rl"
    part, meta = _own_part(directory)
    with pytest.raises(DatasetNotFoundError) as exc_info:
        load_d4rl(f"d4rl:{UMAZE}", progress=False)
    _one_line_error(exc_info, UMAZE_FILE, f"connection closed after 5000 of {len(umaze_bytes)} bytes", part)
    assert part.stat().st_size == 5000 and json.loads(meta.read_text())["validator"] == '"v1"'
    assert not (directory / UMAZE_FILE).exists()

    _, info = load_d4rl(f"d4rl:{UMAZE}", progress=False)
    assert server.requests == [{"Range": None, "If-Range": None}, {"Range": "bytes=5000-", "If-Range": '"v1"'}]
    assert info.files[0]["sha256"] == hashlib.sha256(umaze_bytes).hexdigest() and not _leftovers(directory)


def test_resume_uses_last_modified_for_if_range_when_there_is_no_strong_etag(server, umaze_bytes, tmp_path):
    server.payload, server.cut_after = umaze_bytes, 5000
    server.etag, server.last_modified = 'W/"weak"', "Fri, 05 Nov 2021 00:00:00 GMT"
    directory = tmp_path / "dl"
    with pytest.raises(DatasetNotFoundError):
        fetch_d4rl_file(UMAZE, directory, progress=False)
    server.etag = None
    assert fetch_d4rl_file(UMAZE, directory, progress=False).read_bytes() == umaze_bytes
    assert server.requests[-1] == {"Range": "bytes=5000-", "If-Range": "Fri, 05 Nov 2021 00:00:00 GMT"}


def test_file_changed_on_the_server_answers_200_to_the_range_and_the_download_restarts_from_zero(
        server, umaze_bytes, other_umaze_bytes, tmp_path):
    server.payload, server.cut_after = umaze_bytes, 5000
    directory = tmp_path / "dl"
    with pytest.raises(DatasetNotFoundError):
        fetch_d4rl_file(UMAZE, directory, progress=False)
    server.payload, server.etag = other_umaze_bytes, '"v2"'  # If-Range "v1" no longer matches: full 200
    path = fetch_d4rl_file(UMAZE, directory, progress=False)
    assert server.requests[-1] == {"Range": "bytes=5000-", "If-Range": '"v1"'}
    assert path.read_bytes() == other_umaze_bytes and not _leftovers(directory)


def test_a_206_carrying_another_etag_than_the_partial_files_restarts_from_zero(
        server, umaze_bytes, other_umaze_bytes, tmp_path):
    server.payload, server.cut_after = umaze_bytes, 5000
    directory = tmp_path / "dl"
    with pytest.raises(DatasetNotFoundError):
        fetch_d4rl_file(UMAZE, directory, progress=False)
    server.payload, server.etag, server.ignore_if_range = other_umaze_bytes, '"v2"', True  # honours Range anyway
    path = fetch_d4rl_file(UMAZE, directory, progress=False)
    assert [r["Range"] for r in server.requests] == [None, "bytes=5000-", None]  # the 206 of "v2" was not appended
    assert path.read_bytes() == other_umaze_bytes and not _leftovers(directory)


def test_server_ignoring_range_restarts_from_zero_and_a_complete_part_finishes_on_416(server, umaze_bytes, tmp_path):
    server.payload, server.ignore_range = umaze_bytes, True
    directory = tmp_path / "dl"
    directory.mkdir()
    part, meta = _own_part(directory)
    part.write_bytes(b"x" * 1234)  # stale bytes that must not survive
    meta.write_text(json.dumps({"url": f"{server.url}/{UMAZE_FILE}", "validator": '"v1"'}))
    path = fetch_d4rl_file(UMAZE, directory, progress=False)
    assert path.read_bytes() == umaze_bytes and server.requests == [{"Range": "bytes=1234-", "If-Range": '"v1"'}]

    server.ignore_range = False
    path.rename(part)  # a complete part: the server answers 416
    meta.write_text(json.dumps({"url": f"{server.url}/{UMAZE_FILE}", "validator": '"v1"'}))
    assert fetch_d4rl_file(UMAZE, directory, progress=False).read_bytes() == umaze_bytes
    assert server.requests[-1]["Range"] == f"bytes={len(umaze_bytes)}-" and not _leftovers(directory)


def test_a_part_without_a_validator_is_never_resumed(server, umaze_bytes, tmp_path):
    server.payload = umaze_bytes
    directory = tmp_path / "dl"
    directory.mkdir()
    part, _ = _own_part(directory)
    part.write_bytes(umaze_bytes[:5000])  # no meta: the bytes may belong to another version of the file
    assert fetch_d4rl_file(UMAZE, directory, progress=False).read_bytes() == umaze_bytes
    assert server.requests == [{"Range": None, "If-Range": None}]


def test_concurrent_downloads_in_two_processes_write_different_partial_files(server, umaze_bytes, tmp_path):
    server.payload = umaze_bytes
    directory = tmp_path / "dl"
    seen: list[set[str]] = []
    both = threading.Barrier(2, timeout=60)

    def pause():  # both transfers are half way: record the partial files that exist side by side
        both.wait()
        deadline = time.monotonic() + 10
        while len(parts := {p.name for p in directory.glob("*.part")}) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        seen.append(parts)

    server.pause = pause
    code = (f"from pex_jax.data.d4rl import fetch_d4rl_file; "
            f"print(fetch_d4rl_file({UMAZE!r}, {str(directory)!r}, progress=False, timeout=60))")
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not server.requests:  # the child's request first, then ours
            assert child.poll() is None, child.communicate()
            time.sleep(0.05)
        path = fetch_d4rl_file(UMAZE, directory, progress=False, timeout=60)  # a loaded machine is slow
        out, err = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 0, err
    names = seen[0]
    assert names == {f"{UMAZE_FILE}.{child.pid}.part", f"{UMAZE_FILE}.{os.getpid()}.part"}, seen
    assert out.strip() == str(path) and path.read_bytes() == umaze_bytes and not _leftovers(directory)


def test_a_live_processes_part_is_left_alone_and_a_dead_processes_part_with_meta_is_resumed(
        server, umaze_bytes, tmp_path):
    server.payload = umaze_bytes
    directory = tmp_path / "dl"
    directory.mkdir()
    url = f"{server.url}/{UMAZE_FILE}"
    meta = {"url": url, "validator": '"v1"', "host": socket.gethostname()}
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        live_part, live_meta = d4rl._part_paths(directory, UMAZE_FILE, live.pid)
        live_part.write_bytes(umaze_bytes[:3000])
        live_meta.write_text(json.dumps(meta))
        dead_part, dead_meta = d4rl._part_paths(directory, UMAZE_FILE, dead.pid)
        dead_part.write_bytes(umaze_bytes[:5000])
        dead_meta.write_text(json.dumps(meta))
        assert live_part != dead_part != _own_part(directory)[0]

        assert fetch_d4rl_file(UMAZE, directory, progress=False).read_bytes() == umaze_bytes
        assert server.requests == [{"Range": "bytes=5000-", "If-Range": '"v1"'}]  # the dead one's bytes, resumed
        assert live_part.read_bytes() == umaze_bytes[:3000] and live_meta.exists()  # untouched
        assert _leftovers(directory) == {live_part.name, live_meta.name}
    finally:
        live.kill()
        live.wait()


@pytest.mark.parametrize("reply", ["content_type", "angle_bracket"])
def test_html_reply_never_takes_the_final_name(server, tmp_path, reply):
    if reply == "content_type":  # a page that does not start with '<': only the header tells
        server.payload, server.content_type = b"Service moved, see the new address.\n" * 40, "text/html; charset=utf-8"
    else:  # a page served as binary: only its first byte tells
        server.payload = b"\n  <!DOCTYPE html><html><body>Moved</body></html>" * 40
    directory = tmp_path / "d4rl"
    with pytest.raises(DatasetNotFoundError) as exc_info:
        load_d4rl(f"d4rl:{UMAZE}", progress=False)
    evidence = "Content-Type text/html" if reply == "content_type" else "starting with '<'"
    _one_line_error(exc_info, UMAZE_FILE, "failed (the server sent a", evidence, "not the hdf5 file", "fix:")
    assert not _leftovers(directory)
    assert not (directory / UMAZE_FILE).exists()


def test_truncated_200_without_content_length_never_takes_the_final_name(server, umaze_bytes, tmp_path):
    server.payload, server.send_length, server.cut_after = umaze_bytes, False, len(umaze_bytes) // 2
    directory = tmp_path / "d4rl"
    with pytest.raises(CorruptDatasetError) as exc_info:
        load_d4rl(f"d4rl:{UMAZE}", progress=False)
    _one_line_error(exc_info, f"{server.url}/{UMAZE_FILE}", "without Content-Length", "is not an hdf5 file",
                    "fix: run again to download it anew")
    assert not (directory / UMAZE_FILE).exists() and not _leftovers(directory)

    load_d4rl(f"d4rl:{UMAZE}", progress=False)  # the next call starts over and succeeds
    assert (directory / UMAZE_FILE).read_bytes() == umaze_bytes and server.requests[-1]["Range"] is None


def test_served_file_failing_validation_is_deleted_and_never_takes_the_final_name(server, tmp_path_factory,
                                                                                   tmp_path):
    server.payload = _bytes_of(_large_arrays(), tmp_path_factory)  # another maze's data under umaze's name
    directory = tmp_path / "d4rl"
    with pytest.raises(DatasetError) as exc_info:
        load_d4rl(f"d4rl:{UMAZE}", progress=False)
    _one_line_error(exc_info, f"the file downloaded from {server.url}/{UMAZE_FILE}", "do not fit the umaze maze")
    assert not (directory / UMAZE_FILE).exists() and not _leftovers(directory)


def test_unreachable_server_gives_one_line_error_naming_file_dir_url_and_other_sources(tmp_path):
    url = os.environ["D4RL_URL_BASE"] + UMAZE_FILE  # a closed loopback port (autouse fixture)
    with pytest.raises(DatasetNotFoundError) as exc_info:
        load_d4rl(f"d4rl:{UMAZE}", progress=False)
    msg = _one_line_error(exc_info, UMAZE_FILE, tmp_path / "d4rl", "$D4RL_DATASET_DIR", url, "failed (",
                          "SOURCE=minari", "D4RL/antmaze/umaze-v1", "SOURCE=local")
    assert "refused" in msg.lower() or "timed out" in msg

    with pytest.raises(DatasetNotFoundError) as exc_info:
        load_d4rl(f"d4rl:{UMAZE}", download=False)
    msg = _one_line_error(exc_info, UMAZE_FILE, tmp_path / "d4rl", url, "SOURCE=minari", "SOURCE=local")
    assert "failed" not in msg


def test_missing_explicit_path_is_not_downloaded(server, tmp_path):
    path = tmp_path / "elsewhere" / UMAZE_FILE
    with pytest.raises(DatasetNotFoundError) as exc_info:
        load_d4rl(f"d4rl:{path}")
    _one_line_error(exc_info, path, "does not exist")
    assert not server.requests


def _locomotion_bytes(env: str, tmp_path_factory) -> bytes:
    from tests.test_d4rl_locomotion import _rows

    path = tmp_path_factory.mktemp("served_loco") / "file.hdf5"
    _write(path, _rows(env, [(40, True), (60, False)]))
    return path.read_bytes()


def test_a_locomotion_file_downloads_through_the_same_verified_path(server, tmp_path, tmp_path_factory):
    server.name, server.payload = "hopper_medium-v2.hdf5", _locomotion_bytes("hopper", tmp_path_factory)
    tr, info = load_d4rl("d4rl:hopper-medium-v2", progress=False)
    directory = tmp_path / "d4rl"
    assert (directory / "hopper_medium-v2.hdf5").read_bytes() == server.payload
    assert len(tr) == 100 - 1 and (info.obs_dim, info.act_dim) == (11, 3)  # the last row is the timeout
    sha = hashlib.sha256(server.payload).hexdigest()
    assert json.loads((directory / MANIFEST_NAME).read_text())["files"]["hopper_medium-v2.hdf5"]["sha256"] == sha


def test_a_served_file_of_another_env_is_deleted_and_never_takes_the_final_name(server, tmp_path, tmp_path_factory):
    server.name, server.payload = "hopper_medium-v2.hdf5", _locomotion_bytes("walker2d", tmp_path_factory)
    with pytest.raises(DatasetError, match="17-d observations and 6-d actions"):
        load_d4rl("d4rl:hopper-medium-v2", progress=False)
    directory = tmp_path / "d4rl"
    assert not directory.exists() or not any(directory.iterdir())
