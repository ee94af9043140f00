"""The original D4RL hdf5 files as a data source: the AntMaze v2 files (`d4rl:antmaze-umaze-v2`) and the MuJoCo
locomotion -v2 files (`d4rl:hopper-medium-v2`, `pex_jax.data.d4rl_locomotion`).

Why: numbers comparable with the PEX paper (and every table since IQL) need D4RL's own data, evaluated in the
closest physics. Minari's D4RL/antmaze/*-v1 datasets were re-collected in Gymnasium-Robotics with a different
ant (gear 150, 0.05 s steps) and a different controller, and its mujoco/* datasets in Gymnasium's v5 envs, so
they are other benchmarks.

The files are read with `d4rl.qlearning_dataset` semantics (terminate_on_end=False): row i becomes the
transition (obs[i], act[i], r[i], obs[i+1], terminal[i]) unless `timeouts[i]` is set, in which case
obs[i+1] belongs to the next episode and the row is dropped. Rewards stay raw (AntMaze 0/1: the runner
applies r - 1).
Files are looked up in $D4RL_DATASET_DIR (default ~/.d4rl/datasets, as D4RL does) and downloaded from
D4RL's public location when missing (resumable, validated before the atomic rename into place).

Verification: each file's size and sha256 are recorded in `<dir>/pex-jax-manifest.json` when it first passes
validation, and later loads must match that record; the sha256 is also compared with the one published for
every D4RL file (`PUBLISHED`), so another task's file under this task's name is refused; an AntMaze file under
a play name holding diverse data (or the reverse) is refused too.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import math
import os
import socket
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np

from pex_jax.data import d4rl_locomotion as loco
from pex_jax.data.minari import DatasetInfo, Transitions
from pex_jax.envs.d4rl_antmaze import ACT_DIM, CELL_SIZE, OBS_DIM, TASKS, free_space_fraction
from pex_jax.errors import ConfigError, CorruptDatasetError, DatasetError, DatasetNotFoundError

# Basenames of the six v2 files, as registered in D4RL's d4rl/locomotion/__init__.py (`dataset_url`).
D4RL_ANTMAZE_FILES: dict[str, str] = {
    "antmaze-umaze-v2": "Ant_maze_u-maze_noisy_multistart_False_multigoal_False_sparse_fixed.hdf5",
    "antmaze-umaze-diverse-v2": "Ant_maze_u-maze_noisy_multistart_True_multigoal_True_sparse_fixed.hdf5",
    "antmaze-medium-play-v2": "Ant_maze_big-maze_noisy_multistart_True_multigoal_False_sparse_fixed.hdf5",
    "antmaze-medium-diverse-v2": "Ant_maze_big-maze_noisy_multistart_True_multigoal_True_sparse_fixed.hdf5",
    "antmaze-large-play-v2": "Ant_maze_hardest-maze_noisy_multistart_True_multigoal_False_sparse_fixed.hdf5",
    "antmaze-large-diverse-v2": "Ant_maze_hardest-maze_noisy_multistart_True_multigoal_True_sparse_fixed.hdf5",
}
# (size in bytes, sha256) of D4RL's six v2 files, as recorded by TensorFlow Datasets' download checksums for
# these URLs (tensorflow/datasets, tensorflow_datasets/d4rl/d4rl_antmaze/checksums.tsv); docs/data.md says more.
D4RL_PUBLISHED: dict[str, tuple[int, str]] = {
    "antmaze-umaze-v2": (232532949, "5ef15257771c50ef4d23c7de001750e96c8bb5d9b6a5e4a821dcfb3065fbd130"),
    "antmaze-umaze-diverse-v2": (230854272, "c771dd63963cd7d9f55f24a6d809064f6b82250a6aeac4c9d13f9a1d06e8c932"),
    "antmaze-medium-play-v2": (231110764, "c9fec1c1daad97c71d61bd47f4ccc9f74faa855b8a2d2e8107d5378018827e5b"),
    "antmaze-medium-diverse-v2": (231095166, "ad9dcbac05d1f8744a7a216083f513662f43f64f28a4a5eb225e9811902dfae7"),
    "antmaze-large-play-v2": (230880653, "6d353df2457829925d7f9d4b0215587469908bd57478ea76f16417cfa944f471"),
    "antmaze-large-diverse-v2": (231183710, "84f775eb7956ea9cc766704710dc520a8ab357adc7522ade47f556f0e335e284"),
}
# D4RL's `dataset_url` prefix for all six v2 tasks (Farama-Foundation/D4RL, d4rl/locomotion/__init__.py).
D4RL_URL_BASE = "http://rail.eecs.berkeley.edu/datasets/offline_rl/ant_maze_v2/"
# Every file this source knows, by D4RL task id: AntMaze and locomotion.
FILES: dict[str, str] = {**D4RL_ANTMAZE_FILES, **loco.FILES}
PUBLISHED: dict[str, tuple[int, str]] = {**D4RL_PUBLISHED, **loco.PUBLISHED}

PREFIX = "d4rl:"
MIN_FREE_FRACTION = 0.98
ACTION_SLACK = 1e-6
_CHUNK = 1 << 20
_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")
GOAL_KEY = "infos/goal"  # optional: each row's commanded collection goal, read for the play/diverse check
MANIFEST_NAME = "pex-jax-manifest.json"
# What h5py raises on a damaged file (OSError: bad superblock or chunk, KeyError/RuntimeError: bad object header,
# ValueError/TypeError: invalid object or datatype).
_H5_ERRORS = (OSError, KeyError, RuntimeError, ValueError, TypeError)
# Play/diverse check: verdicts need this many episodes; a maze cell counts when it holds >= max(2, 0.5 %) of them.
MIN_EPISODES_FOR_KIND = 20
_CELL_SHARE = 0.005
# Hand-picked goal cells of D4RL's generation maps (U_MAZE / BIG_MAZE / HARDEST_MAZE 'G' cells): play data's goals.
PLAY_GOAL_CELLS = {"umaze": 1, "medium": 3, "large": 7}
_FILE_TO_TASK = {name: task for task, name in FILES.items()}


def d4rl_dataset_dir() -> Path:
    """Where D4RL files are looked up and downloaded to: $D4RL_DATASET_DIR, default ~/.d4rl/datasets."""
    env = os.environ.get("D4RL_DATASET_DIR")
    return Path(env).expanduser() if env else Path.home() / ".d4rl" / "datasets"


def is_d4rl_id(dataset_id: str) -> bool:
    return dataset_id.startswith(PREFIX)


def is_antmaze(task: str) -> bool:
    return task in D4RL_ANTMAZE_FILES


def _minari_id(task: str) -> str:
    if not is_antmaze(task):
        return loco.minari_id(task)
    return "D4RL/antmaze/" + task[len("antmaze-") : -len("-v2")] + "-v1"


def _file_url(task: str, base_url: str | None = None) -> str:
    """Where D4RL publishes `task`'s file; `base_url` or $D4RL_URL_BASE (a mirror of the files under their D4RL
    names) replaces D4RL's location."""
    base = base_url or os.environ.get("D4RL_URL_BASE") or (D4RL_URL_BASE if is_antmaze(task) else loco.URL_BASE)
    return (base if base.endswith("/") else base + "/") + FILES[task]


def resolve_d4rl(dataset_id: str) -> tuple[str, Path]:
    """`d4rl:<task id>` -> (task, D4RL_DATASET_DIR/<D4RL file name>); `d4rl:<path>` -> (task from its name, path)."""
    rest = dataset_id[len(PREFIX) :] if is_d4rl_id(dataset_id) else dataset_id
    tasks = ", ".join(FILES)
    if rest in FILES:
        return rest, d4rl_dataset_dir() / FILES[rest]
    looks_like_path = "/" in rest or os.sep in rest or rest.startswith(("~", ".")) or rest.endswith((".hdf5", ".h5"))
    if not looks_like_path:
        raise ConfigError(
            f"unknown D4RL task {rest!r} in dataset id {dataset_id!r}; fix: use d4rl:<task> with one of {tasks}"
        )
    path = Path(rest).expanduser()
    task = _FILE_TO_TASK.get(path.name)
    if task is None:
        raise ConfigError(
            f"cannot tell which D4RL task {path} belongs to: {path.name!r} is not one of D4RL's v2 file names; "
            f"fix: use d4rl:<task id> (one of {tasks}) with the file placed in D4RL_DATASET_DIR "
            f"({d4rl_dataset_dir()}) under its D4RL name, or rename it to its D4RL name "
            f"(e.g. {D4RL_ANTMAZE_FILES['antmaze-umaze-v2']})"
        )
    return task, path


# ----------------------------------------------------------------------------------------------- fetch


def _dir_label(directory: Path) -> str:
    env = os.environ.get("D4RL_DATASET_DIR")
    if env and Path(env).expanduser() == directory:
        return f"{directory} (from $D4RL_DATASET_DIR)"
    if not env and directory == d4rl_dataset_dir():
        return f"{directory} ($D4RL_DATASET_DIR unset, the default)"
    return f"{directory} (given directory; $D4RL_DATASET_DIR={env or 'unset'})"


def _other_sources(task: str) -> str:
    what = "re-collected in other physics" if is_antmaze(task) else "other data, collected in Gymnasium's v5 envs"
    return (f"or use another source: SOURCE=minari (Minari {_minari_id(task)}, {what}) "
            "or SOURCE=local (datasets generated here)")


def _missing(task: str, directory: Path, url: str, reason: str | None) -> DatasetNotFoundError:
    name = FILES[task]
    if reason is None:
        what = f"and download is off; fix: download {url} into that directory (or set D4RL_DATASET_DIR), "
    else:
        what = f"and the download from {url} failed ({reason}); fix: copy the file there (or set D4RL_DATASET_DIR), "
    return DatasetNotFoundError(f"D4RL file {name} not found in {_dir_label(directory)} {what}{_other_sources(task)}")


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {_one_line(exc.reason, 80)}"
    if isinstance(exc, urllib.error.URLError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
        if isinstance(exc, str):
            return _one_line(exc)
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, OSError) and exc.strerror:
        return _one_line(exc.strerror)
    return _one_line(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


class _Interrupted(Exception):
    """The transfer stopped early; the partial file and its meta are kept for the next call to resume."""


class _NotData(Exception):
    """The server answered with something that is not the file (an HTML page); nothing is kept."""


_RESTART = object()  # _download_once: the partial file cannot be continued, start again from byte 0


def _content_range(headers) -> tuple[int | None, int | None]:
    """(start, total) from `Content-Range: bytes start-end/total` (or `bytes */total`)."""
    value = (headers.get("Content-Range") or "").strip()
    if not value.startswith("bytes "):
        return None, None
    span, _, total = value[len("bytes ") :].partition("/")
    start = int(span.split("-")[0]) if span and span[0].isdigit() else None
    return start, int(total) if total.isdigit() else None


def _validator(headers) -> str | None:
    """What If-Range may carry: a strong ETag, else Last-Modified (a weak ETag may not be used for ranges)."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified") or None


def _part_paths(directory: Path, name: str, pid: int | None = None) -> tuple[Path, Path]:
    """This process's partial download and its meta: per-pid names, so concurrent downloads never share bytes."""
    part = directory / f"{name}.{os.getpid() if pid is None else pid}.part"
    return part, part.with_name(part.name + ".meta")


def _read_meta(meta: Path) -> dict:
    try:
        value = json.loads(meta.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _write_meta(meta: Path, url: str, validator: str | None) -> None:
    meta.write_text(json.dumps({"url": url, "validator": validator, "host": socket.gethostname(),
                                "pid": os.getpid()}))


def _discard(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _dead_parts(directory: Path, name: str, url: str | None = None) -> Iterator[tuple[Path, Path]]:
    """Partial downloads of `name` left by processes of this host that have ended (matching `url` if given)."""
    host = socket.gethostname()
    for part in sorted(directory.glob(f"{name}.*.part")):
        pid = part.name[len(name) + 1 : -len(".part")]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        meta = part.with_name(part.name + ".meta")
        info = _read_meta(meta)
        if info.get("host") != host or _pid_alive(int(pid)) or (url is not None and info.get("url") != url):
            continue
        yield part, meta


def _adopt_dead_part(directory: Path, name: str, url: str, part: Path, meta: Path) -> None:
    """Continue a partial download whose process ended, if it has a validator for If-Range; never a live one's."""
    if part.exists():
        return  # this process's own earlier attempt
    for other, other_meta in _dead_parts(directory, name, url):
        if not _read_meta(other_meta).get("validator"):
            continue
        try:
            os.replace(other_meta, meta)  # fails if another process adopted it first
            os.replace(other, part)
        except OSError:
            _discard(meta)
            continue
        return


def _download_once(url: str, part: Path, meta: Path, progress: bool, timeout: float) -> int | None | object:
    """One request: resume `part` with Range + If-Range when its meta holds a validator, else start at byte 0.

    Returns the total size (None when the server did not say) or `_RESTART`.
    """
    from tqdm.auto import tqdm

    info = _read_meta(meta) if part.exists() else {}
    validator = info.get("validator") if info.get("url") == url else None
    offset = part.stat().st_size if validator else 0
    request = urllib.request.Request(url, headers={"User-Agent": "pex-jax"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
        request.add_header("If-Range", validator)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not offset:
            raise
        total = _content_range(exc.headers)[1]
        return total if total == offset else _RESTART  # complete already, or the .part is longer than the file
    with response:
        if response.status == 206:
            start, total = _content_range(response.headers)
            fresh = _validator(response.headers)
            if not offset or start != offset or (fresh is not None and fresh != validator):
                return _RESTART  # not the range asked for, or another version of the file
            mode = "ab"
        else:  # 200: no range asked, or the file changed (If-Range), or the server ignores ranges
            if response.headers.get_content_type() == "text/html":
                raise _NotData("the server sent an HTML page (Content-Type text/html), not the hdf5 file")
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            _discard(meta)  # the old bytes go first, then the new validator: a crash never pairs them
        received = offset
        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=part.name.split(".", 1)[0], disable=not progress, leave=False)
        with bar, open(part, mode) as out:
            if mode == "wb":
                _write_meta(meta, url, _validator(response.headers))
            while chunk := response.read(_CHUNK):
                if received == 0 and chunk.lstrip()[:1] == b"<":
                    raise _NotData("the server sent a page starting with '<' (HTML or XML), not the hdf5 file")
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received < total:
        raise _Interrupted(f"connection closed after {received} of {total} bytes; the next call resumes from {part}")
    return total


def _download(url: str, part: Path, meta: Path, progress: bool, timeout: float) -> int | None:
    """Download `url` into `part`, resuming it when possible. Raises on any failure (a resumable `part` is kept)."""
    for _ in range(3):
        total = _download_once(url, part, meta, progress, timeout)
        if total is not _RESTART:
            return total
        _discard(part, meta)
    raise _Interrupted("the server kept answering with another byte range than the one asked for")


_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _path_lock(path: Path) -> threading.Lock:
    """Threads of one process share a pid, hence a partial file: they download one file one at a time."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(path, threading.Lock())


def _fetch(task: str, directory: Path, base_url: str | None, progress: bool, timeout: float
           ) -> tuple[Path, dict[str, np.ndarray] | None]:
    """Download `task`'s file and validate it before it takes its final name; returns (path, arrays read)."""
    name = FILES[task]
    path = directory / name
    with _path_lock(path):
        if path.exists():  # another thread of this process finished it meanwhile
            return path, None
        url = _file_url(task, base_url)
        part, meta = _part_paths(directory, name)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            _adopt_dead_part(directory, name, url, part, meta)
            total = _download(url, part, meta, progress, timeout)
        except _NotData as exc:
            _discard(part, meta)
            raise _missing(task, directory, url, str(exc)) from None
        except _Interrupted as exc:
            raise _missing(task, directory, url, str(exc)) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            raise _missing(task, directory, url, _reason(exc, timeout)) from None
        cut = "" if total is not None else " (sent without Content-Length, so a cut connection shows only here)"
        label = f"the file downloaded from {url}{cut}"
        fix = (f"run again to download it anew ({name} was not created and the download was deleted), or copy "
               f"D4RL's {name} into {directory} by hand")
        try:
            data = _read_arrays(part, task, fix, label)
            _validate(part, task, data, fix, label)
        except DatasetError:
            _discard(part, meta)
            raise
        os.replace(part, path)
        _discard(meta)
        for old, old_meta in _dead_parts(directory, name):
            _discard(old, old_meta)
        _discard(directory / (name + ".part"))  # the single-name partial file of earlier versions
    return path, data


def fetch_d4rl_file(
    task: str,
    directory: Path | None = None,
    base_url: str | None = None,
    progress: bool = True,
    timeout: float = 10.0,
) -> Path:
    """Path of `task`'s D4RL file in `directory` (default `d4rl_dataset_dir()`), downloading it if missing.

    The download goes to `<file>.<pid>.part` (resumed with Range + If-Range from the first response's ETag or
    Last-Modified, kept in `<file>.<pid>.part.meta`), must open as hdf5 and pass validation, and only then is
    renamed to the final name. Network failure or an HTML reply -> one-line `DatasetNotFoundError`; content
    that fails validation -> one-line `DatasetError` (the download is deleted).
    """
    if task not in FILES:
        raise ConfigError(f"unknown D4RL task {task!r}; fix: use one of {', '.join(FILES)}")
    directory = Path(directory).expanduser() if directory is not None else d4rl_dataset_dir()
    path = directory / FILES[task]
    if path.exists():
        return path
    return _fetch(task, directory, base_url, progress, timeout)[0]


# -------------------------------------------------------------------------------------------- manifest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _entry_ok(entry: object) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("size"), int) and isinstance(entry.get("mtime_ns"), int)
            and isinstance(entry.get("sha256"), str) and len(entry["sha256"]) == 64)


def read_manifest(directory: Path) -> dict[str, dict]:
    """The entries of `directory`'s manifest by file name: {} when there is none, one-line error when unreadable."""
    path = Path(directory) / MANIFEST_NAME
    fix = ("fix: delete it (each file is recorded again when it next passes validation), or restore it from a "
           "backup")
    try:
        files = json.loads(path.read_text())["files"]
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorruptDatasetError(f"D4RL manifest {path} cannot be read ({_one_line(exc, 120)}); {fix}") from None
    bad = [name for name, entry in files.items() if not _entry_ok(entry)] if isinstance(files, dict) else ["files"]
    if bad:
        raise CorruptDatasetError(f"D4RL manifest {path} has malformed entries ({', '.join(bad)}): expected size, "
                                  f"mtime_ns and a 64-digit sha256 each; {fix}")
    return files


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Exclusive flock on the directory, so processes recording different files do not drop each other's entries."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # a file system without flock: still atomic, just not merged
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _record(path: Path, sha: str, published: bool) -> None:
    """Write `path`'s entry into its directory's manifest (merge, then atomic rename); warn if that is impossible."""
    manifest = path.parent / MANIFEST_NAME
    tmp = path.parent / f".{MANIFEST_NAME}.{os.getpid()}-{threading.get_ident()}.tmp"
    stat = path.stat()
    entry = {"size": stat.st_size, "sha256": sha, "mtime_ns": stat.st_mtime_ns, "published": published}
    try:
        with _locked(path.parent):
            files = read_manifest(path.parent)
            files[path.name] = entry
            with open(tmp, "w") as f:
                json.dump({"version": 1, "files": files}, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, manifest)
    except OSError as exc:
        _discard(tmp)
        print(f"warning: cannot record {path.name} in {manifest} ({_reason(exc, 0)}); later loads cannot be checked "
              "against this one", file=sys.stderr)


def _check_recorded(path: Path, entry: dict, fix: str) -> tuple[str, bool]:
    """(sha256, whether the entry needs rewriting). Size and mtime unchanged -> the recorded sha256, no hashing."""
    stat = path.stat()
    if stat.st_size == entry["size"] and stat.st_mtime_ns == entry["mtime_ns"]:
        return entry["sha256"], False
    sha = _sha256(path)
    if stat.st_size != entry["size"] or sha != entry["sha256"]:
        manifest = path.parent / MANIFEST_NAME
        raise CorruptDatasetError(
            f"D4RL file {path} is not the file first validated here: {manifest} recorded {entry['size']} bytes, "
            f"sha256 {entry['sha256']}; found {stat.st_size} bytes, sha256 {sha}; fix: {fix}, or if you replaced "
            f"it on purpose, delete the entry \"{path.name}\" from {manifest}"
        )
    return sha, True  # same bytes, new mtime (copied or touched): record the new mtime


def _published_as(size: int, sha: str) -> str | None:
    """The task whose published D4RL file has exactly this size and sha256, if any."""
    return next((t for t, (s, h) in PUBLISHED.items() if s == size and h == sha), None)


# ------------------------------------------------------------------------------------------------ load


def _read_arrays(path: Path, task: str, fix: str, label: str | None = None) -> dict[str, np.ndarray]:
    """The five D4RL arrays (plus `infos/goal` when present and well formed); every h5py failure -> one line."""
    import h5py

    label = label or f"D4RL file {path}"

    def corrupt(what: str) -> CorruptDatasetError:
        return CorruptDatasetError(f"{label} {what}; fix: {fix}")

    try:
        file = h5py.File(path, "r")
    except _H5_ERRORS as exc:
        raise corrupt(f"is not an hdf5 file ({_one_line(exc, 120)})") from None
    try:
        with file:
            return _read_open(file, task, corrupt)
    except _H5_ERRORS as exc:  # a damaged object header, group or chunk
        raise corrupt(f"cannot be read: the hdf5 structure is damaged ({type(exc).__name__}: "
                      f"{_one_line(exc, 120)})") from None


def _read_open(file, task: str, corrupt) -> dict[str, np.ndarray]:
    import h5py

    missing = [k for k in _KEYS if k not in file or not isinstance(file[k], h5py.Dataset)]
    if missing:
        raise corrupt(f"lacks the key(s) {', '.join(missing)}: expected {', '.join(_KEYS)}, found "
                      f"{', '.join(sorted(file.keys())) or 'none'}")
    meta = {k: (file[k].shape, file[k].dtype) for k in _KEYS}
    n = meta["observations"][0][0] if meta["observations"][0] else None
    # locomotion widths are checked by validation, which can name the env the data belong to
    if is_antmaze(task):
        obs_dim, act_dim = OBS_DIM, ACT_DIM
    else:
        obs_dim, act_dim = (meta[k][0][1] if len(meta[k][0]) == 2 else -1 for k in ("observations", "actions"))
    expected = {"observations": (n, obs_dim), "actions": (n, act_dim), "rewards": (n,), "terminals": (n,),
                "timeouts": (n,)}
    for key in ("rewards", "terminals", "timeouts"):  # some files store them as (N, 1)
        if meta[key][0] == (n, 1):
            meta[key] = ((n,), meta[key][1])
    for key in _KEYS:
        shape, dtype = meta[key]
        if shape != expected[key] or (len(shape) == 2 and not shape[1]):
            want = f"(N, {expected[key][1] if expected[key][1] != -1 else 'k'})" if len(expected[key]) == 2 else "(N,)"
            rows = "" if key == "observations" else f" with N = {n} rows as in observations"
            raise corrupt(f"has {key} of shape {shape}: expected {want}{rows}")
        if not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
            raise corrupt(f"has {key} of dtype {dtype}: expected a numeric dtype")
    if n < 2:
        raise corrupt(f"has {n} row(s): expected at least 2 to form a transition")
    data = {k: file[k][()].reshape(meta[k][0]) for k in _KEYS}
    goal = file.get(GOAL_KEY)
    if isinstance(goal, h5py.Dataset) and goal.shape == (n, 2) and np.issubdtype(goal.dtype, np.number):
        data[GOAL_KEY] = goal[()]
    return data


def _validate(path: Path, task: str, data: dict[str, np.ndarray], fix: str, label: str | None = None) -> None:
    label = label or f"D4RL file {path}"

    def corrupt(what: str) -> CorruptDatasetError:
        return CorruptDatasetError(f"{label} {what}; fix: {fix}")

    if not is_antmaze(task):
        found = loco.problems(task, data)
        if found and "-d observations and" in found[0]:
            raise DatasetError(f"{label} {found[0]}: it belongs to another env; fix: use the matching task's id "
                               f"(d4rl:<env>-<level>-v2), or replace it with D4RL's {FILES[task]}")
        if found:
            raise corrupt(found[0])
        return

    for key in _KEYS:
        arr = data[key]
        if arr.dtype != np.bool_:
            bad = ~np.isfinite(arr)
            if bad.any():
                rows = np.flatnonzero(bad.reshape(len(arr), -1).any(axis=1))
                raise corrupt(f"has non-finite values in {key}: expected all finite, found {len(rows)} row(s), "
                              f"first at row {rows[0]}")
    rewards, terminals = data["rewards"], data["terminals"]
    not_binary = ~((rewards == 0) | (rewards == 1))
    if not_binary.any():
        values = np.unique(rewards[not_binary])[:5]
        raise corrupt(f"has rewards outside {{0, 1}} ({int(not_binary.sum())} row(s), e.g. {values.tolist()}): "
                      "expected D4RL AntMaze's sparse 0/1 rewards")
    disagree = int((terminals.astype(np.float64) != rewards.astype(np.float64)).sum())
    if disagree:
        raise corrupt(f"has terminals that differ from rewards in {disagree} of {len(rewards)} rows: expected "
                      "equal (D4RL relabels both from the same goal test)")
    max_abs = float(np.abs(data["actions"]).max())
    if max_abs > 1.0 + ACTION_SLACK:
        raise corrupt(f"has actions outside [-1, 1]: expected D4RL's normalised actions, found max |a| = {max_abs:.6g}")

    xy = np.asarray(data["observations"][:, :2], np.float64)
    fraction = float(free_space_fraction(TASKS[task].maze, xy))
    if fraction < MIN_FREE_FRACTION:
        fits = [
            t for t in D4RL_ANTMAZE_FILES
            if TASKS[t].maze != TASKS[task].maze and float(free_space_fraction(TASKS[t].maze, xy)) >= MIN_FREE_FRACTION
        ]
        hint = f" ({' or '.join(fits)})" if fits else ""
        raise DatasetError(
            f"{label}: the data's positions do not fit the {TASKS[task].maze} maze of {task} (only "
            f"{100 * fraction:.1f}% on free cells, expected >= {100 * MIN_FREE_FRACTION:.0f}%): it belongs to another "
            f"maze; fix: use the matching task{hint}"
        )


def _occupied_cells(xy: np.ndarray) -> int:
    """Maze cells (nearest cell centre, as `free_space_fraction`) holding at least max(2, 0.5 %) of the points."""
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    xy = xy[np.isfinite(xy).all(axis=1) & (np.abs(xy) < 1e6).all(axis=1)]
    if not len(xy):
        return 0
    _, counts = np.unique(np.floor(xy / CELL_SIZE + 0.5).astype(np.int64), axis=0, return_counts=True)
    return int((counts >= max(2, math.ceil(_CELL_SHARE * len(xy)))).sum())


def data_kind(task: str, data: dict[str, np.ndarray]) -> tuple[str | None, str]:
    """Which of the maze's two tasks the data look like (None: no verdict) and the evidence, in words.

    umaze vs umaze-diverse: D4RL collected umaze from the fixed start cell (multistart False), umaze-diverse
    from random start cells, so the episodes' first positions fill 1 cell vs several. medium/large play vs
    diverse: play goals are the generation map's few hand-picked G cells, diverse goals lie anywhere, so the
    episodes' `infos/goal` fill at most that many cells vs many (no verdict without `infos/goal`).
    """
    maze = TASKS[task].maze
    diverse = next(t for t in D4RL_ANTMAZE_FILES if TASKS[t].maze == maze and "diverse" in t)
    play = next(t for t in D4RL_ANTMAZE_FILES if TASKS[t].maze == maze and t != diverse)
    timeouts = np.asarray(data["timeouts"]).astype(bool)
    starts = np.concatenate([[0], np.flatnonzero(timeouts[:-1]) + 1])
    if len(starts) < MIN_EPISODES_FOR_KIND:
        return None, f"{len(starts)} episodes, fewer than the {MIN_EPISODES_FOR_KIND} a verdict needs"
    if maze == "umaze":
        cells = _occupied_cells(data["observations"][starts, :2])
        evidence = (f"its {len(starts)} episodes start in {cells} maze cell(s), where {play} starts every episode in "
                    f"its start cell and {diverse} anywhere (3 or more cells)")
        return (play if cells == 1 else diverse if cells >= 3 else None), evidence
    if GOAL_KEY not in data:
        return None, f"no {GOAL_KEY} in the file"
    cells = _occupied_cells(data[GOAL_KEY][starts])
    picked = PLAY_GOAL_CELLS[maze]
    evidence = (f"its {len(starts)} episodes' goals ({GOAL_KEY}) lie in {cells} maze cell(s), where {play}'s lie in "
                f"at most the {picked} hand-picked goal cells and {diverse}'s anywhere (more than {2 * picked} cells)")
    return (play if cells <= picked else diverse if cells > 2 * picked else None), evidence


def _check_kind(path: Path, task: str, data: dict[str, np.ndarray], url: str) -> None:
    looks_like, evidence = data_kind(task, data)
    if looks_like is not None and looks_like != task:
        raise DatasetError(
            f"D4RL file {path} holds {looks_like} data, not {task}'s: {evidence}; fix: rename it to "
            f"{D4RL_ANTMAZE_FILES[looks_like]} and use d4rl:{looks_like}, or replace it with D4RL's original "
            f"{D4RL_ANTMAZE_FILES[task]} (from {url})"
        )


def qlearning_transitions(data: dict[str, np.ndarray]) -> Transitions:
    """D4RL's `qlearning_dataset(terminate_on_end=False)`, vectorised, plus `episode_ends`."""
    timeouts = np.asarray(data["timeouts"]).astype(bool)
    idx = np.flatnonzero(~timeouts[:-1])
    obs = np.asarray(data["observations"], np.float32)
    ends = timeouts[idx + 1].astype(np.float32)  # the next row is dropped: this transition closes its episode
    if len(idx):
        ends[-1] = 1.0
    return Transitions(
        observations=obs[idx],
        actions=np.clip(np.asarray(data["actions"], np.float32)[idx], -1.0, 1.0),
        rewards=np.asarray(data["rewards"], np.float32)[idx],
        next_observations=obs[idx + 1],
        terminals=np.asarray(data["terminals"], np.float32)[idx],
        episode_ends=ends,
    )


def _verified_arrays(task: str, path: Path, data: dict[str, np.ndarray] | None, fix: str, url: str
                     ) -> tuple[dict[str, np.ndarray], dict]:
    """Check `path` against its manifest entry, validate it, check its sha256 and kind, record it on first success.

    Returns the arrays and the `info.files` entry {"path", "size", "sha256", "published"}.
    """
    entry = read_manifest(path.parent).get(path.name)
    sha, rewrite = _check_recorded(path, entry, fix) if entry is not None else (None, True)
    if data is None:
        data = _read_arrays(path, task, fix)
        _validate(path, task, data, fix)
    size = path.stat().st_size
    sha = sha or _sha256(path)
    published_as = _published_as(size, sha)
    if published_as is not None and published_as != task:
        raise DatasetError(
            f"D4RL file {path} is D4RL's published {published_as} file ({FILES[published_as]}, sha256 "
            f"{sha}), not {task}'s; fix: rename it to {FILES[published_as]} and use "
            f"d4rl:{published_as}, or replace it with D4RL's {FILES[task]} (from {url})"
        )
    published = published_as == task
    if not published and is_antmaze(task):  # D4RL's own bytes need no statistic; others must look like the task's
        _check_kind(path, task, data, url)
    if rewrite:
        _record(path, sha, published)
    if not published:
        want_size, want_sha = PUBLISHED[task]
        print(f"warning: D4RL file {path} ({size} bytes, sha256 {sha}) is not D4RL's published "
              f"{FILES[task]} ({want_size} bytes, sha256 {want_sha}): scores on it are not comparable "
              "with D4RL results", file=sys.stderr)
    return data, {"path": str(path), "size": size, "sha256": sha, "published": published}


def load_d4rl(dataset_id: str, download: bool = True, progress: bool = True) -> tuple[Transitions, DatasetInfo]:
    """Load a D4RL file (`d4rl:<task id>` or `d4rl:<path>`) as transitions plus its `DatasetInfo`.

    Failures are one-line errors: `DatasetNotFoundError` (missing file, download failed), `CorruptDatasetError`
    (not hdf5, damaged, wrong keys/shapes/values, differs from its manifest entry) or `DatasetError` (data from
    another maze or env, another task's file or data).
    """
    task, path = resolve_d4rl(dataset_id)
    by_id = dataset_id.removeprefix(PREFIX) in FILES
    name = FILES[task]
    url = _file_url(task)
    data = None
    if not path.exists():
        if not by_id:
            raise DatasetNotFoundError(
                f"D4RL file {path} does not exist; fix: correct the path, or place D4RL's {name} (from {url}) in "
                f"D4RL_DATASET_DIR and use d4rl:{task}, {_other_sources(task)}"
            )
        if not download:
            raise _missing(task, path.parent, url, None)
        path, data = _fetch(task, path.parent, None, progress, 10.0)
    if by_id:
        fix = f"delete {path} and run again to re-download it from {url}, or use d4rl:<path> for another file"
    else:
        fix = f"replace it with D4RL's original {name} (from {url}), or use d4rl:<task id> with the matching task"

    data, file_entry = _verified_arrays(task, path, data, fix, url)
    transitions = qlearning_transitions(data)
    if len(transitions) == 0:
        raise CorruptDatasetError(f"D4RL file {path} has no transitions left after dropping timeout rows; fix: {fix}")
    if is_antmaze(task):
        obs_dim, act_dim, refs, limit = OBS_DIM, ACT_DIM, (0.0, 1.0), TASKS[task].max_episode_steps
        domain, transform = "maze", "minus_one"
    else:
        (obs_dim, act_dim), refs = loco.DIMS[loco.env_of(task)], loco.reference_scores(task)
        limit, domain, transform = loco.MAX_EPISODE_STEPS, "locomotion", "identity"

    info = DatasetInfo(
        dataset_id=dataset_id,
        obs_dim=obs_dim,
        act_dim=act_dim,
        observation_space=gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
        action_space=gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32),
        action_low=-np.ones(act_dim, np.float32),
        action_high=np.ones(act_dim, np.float32),
        ref_min_score=refs[0],
        ref_max_score=refs[1],
        score_source="d4rl",
        env_spec=None,
        eval_env_spec=None,
        max_episode_steps=limit,
        total_steps=len(transitions),
        total_episodes=int(transitions.episode_ends.sum()),
        domain=domain,
        default_reward_transform=transform,
        source="d4rl",
        task_hint=task,
        files=(file_entry,),
    )
    return transitions, info
