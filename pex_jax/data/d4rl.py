"""The original D4RL AntMaze v2 hdf5 files as a data source (`dataset_id = "d4rl:antmaze-umaze-v2"`).

Why: numbers comparable with the PEX paper (and every AntMaze table since IQL) need D4RL's own data, evaluated
in D4RL's physics. Minari's D4RL/antmaze/*-v1 datasets were re-collected in Gymnasium-Robotics with a
different ant (gear 150, 0.05 s steps) and a different controller, so they are a different benchmark.

The files are read with `d4rl.qlearning_dataset` semantics (terminate_on_end=False): row i becomes the
transition (obs[i], act[i], r[i], obs[i+1], terminal[i]) unless `timeouts[i]` is set, in which case
obs[i+1] belongs to the next episode and the row is dropped. Rewards stay raw 0/1; the runner applies r - 1.
Files are looked up in $D4RL_DATASET_DIR (default ~/.d4rl/datasets, as D4RL does) and downloaded from
D4RL's public location when missing (resumable, atomic rename at the end).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

import gymnasium as gym
import numpy as np

from pex_jax.data.minari import DatasetInfo, Transitions
from pex_jax.envs.d4rl_antmaze import ACT_DIM, OBS_DIM, TASKS, free_space_fraction
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
# D4RL's `dataset_url` prefix for all six v2 tasks (Farama-Foundation/D4RL, d4rl/locomotion/__init__.py).
D4RL_URL_BASE = "http://rail.eecs.berkeley.edu/datasets/offline_rl/ant_maze_v2/"

PREFIX = "d4rl:"
MIN_FREE_FRACTION = 0.98
ACTION_SLACK = 1e-6
_CHUNK = 1 << 20
_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")
_FILE_TO_TASK = {name: task for task, name in D4RL_ANTMAZE_FILES.items()}


def d4rl_dataset_dir() -> Path:
    """Where D4RL files are looked up and downloaded to: $D4RL_DATASET_DIR, default ~/.d4rl/datasets."""
    env = os.environ.get("D4RL_DATASET_DIR")
    return Path(env).expanduser() if env else Path.home() / ".d4rl" / "datasets"


def is_d4rl_id(dataset_id: str) -> bool:
    return dataset_id.startswith(PREFIX)


def _minari_id(task: str) -> str:
    return "D4RL/antmaze/" + task[len("antmaze-") : -len("-v2")] + "-v1"


def _file_url(name: str, base_url: str | None = None) -> str:
    base = base_url or os.environ.get("D4RL_URL_BASE") or D4RL_URL_BASE
    return (base if base.endswith("/") else base + "/") + name


def resolve_d4rl(dataset_id: str) -> tuple[str, Path]:
    """`d4rl:<task id>` -> (task, D4RL_DATASET_DIR/<D4RL file name>); `d4rl:<path>` -> (task from its name, path)."""
    rest = dataset_id[len(PREFIX) :] if is_d4rl_id(dataset_id) else dataset_id
    tasks = ", ".join(D4RL_ANTMAZE_FILES)
    if rest in D4RL_ANTMAZE_FILES:
        return rest, d4rl_dataset_dir() / D4RL_ANTMAZE_FILES[rest]
    looks_like_path = "/" in rest or os.sep in rest or rest.startswith(("~", ".")) or rest.endswith((".hdf5", ".h5"))
    if not looks_like_path:
        raise ConfigError(
            f"unknown D4RL task {rest!r} in dataset id {dataset_id!r}; fix: use d4rl:<task> with one of {tasks}"
        )
    path = Path(rest).expanduser()
    task = _FILE_TO_TASK.get(path.name)
    if task is None:
        raise ConfigError(
            f"cannot tell which AntMaze task {path} belongs to: {path.name!r} is not one of D4RL's six v2 file names; "
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
    return (
        f"or use another source: SOURCE=minari (Minari {_minari_id(task)}, re-collected in other physics) "
        "or SOURCE=local (datasets generated here)"
    )


def _missing(task: str, directory: Path, url: str, reason: str | None) -> DatasetNotFoundError:
    name = D4RL_ANTMAZE_FILES[task]
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
    pass


def _content_range(headers) -> tuple[int | None, int | None]:
    """(start, total) from `Content-Range: bytes start-end/total` (or `bytes */total`)."""
    value = (headers.get("Content-Range") or "").strip()
    if not value.startswith("bytes "):
        return None, None
    span, _, total = value[len("bytes ") :].partition("/")
    start = int(span.split("-")[0]) if span and span[0].isdigit() else None
    return start, int(total) if total.isdigit() else None


def _download(url: str, part: Path, progress: bool, timeout: float) -> None:
    """Download `url` into `part`, resuming from its current size. Raises on any failure (the .part is kept)."""
    from tqdm.auto import tqdm

    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "pex-jax"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or not offset:
            raise
        _, total = _content_range(exc.headers)
        if total is not None and total != offset:  # the .part is longer than the file: start over
            part.unlink()
            return _download(url, part, progress, timeout)
        return  # the .part already holds the whole file
    if response.status == 206 and _content_range(response.headers)[0] != offset:  # not the range asked for
        response.close()
        part.unlink()
        return _download(url, part, progress, timeout)
    with response:
        if response.status == 206:
            total = _content_range(response.headers)[1]
            mode = "ab"
        else:  # 200: the server ignored the range (or there was none): restart from byte 0
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        received = offset
        bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=part.name[: -len(".part")], disable=not progress, leave=False)
        with bar, open(part, mode) as out:
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received < total:
        raise _Interrupted(f"connection closed after {received} of {total} bytes; the next call resumes from {part}")


def fetch_d4rl_file(
    task: str,
    directory: Path | None = None,
    base_url: str | None = None,
    progress: bool = True,
    timeout: float = 10.0,
) -> Path:
    """Path of `task`'s D4RL file in `directory` (default `d4rl_dataset_dir()`), downloading it if missing.

    The download goes to `<file>.part` (resumed with an HTTP Range request when one exists) and is renamed
    to the final name only when complete. Any network failure -> one-line `DatasetNotFoundError`.
    """
    if task not in D4RL_ANTMAZE_FILES:
        raise ConfigError(f"unknown D4RL task {task!r}; fix: use one of {', '.join(D4RL_ANTMAZE_FILES)}")
    name = D4RL_ANTMAZE_FILES[task]
    directory = Path(directory).expanduser() if directory is not None else d4rl_dataset_dir()
    path = directory / name
    if path.exists():
        return path
    url = _file_url(name, base_url)
    part = directory / (name + ".part")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _download(url, part, progress, timeout)
    except _Interrupted as exc:
        raise _missing(task, directory, url, str(exc)) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        raise _missing(task, directory, url, _reason(exc, timeout)) from None
    os.replace(part, path)
    return path


# ------------------------------------------------------------------------------------------------ load


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _read_arrays(path: Path, fix: str) -> dict[str, np.ndarray]:
    import h5py

    def corrupt(what: str) -> CorruptDatasetError:
        return CorruptDatasetError(f"D4RL file {path} {what}; fix: {fix}")

    try:
        file = h5py.File(path, "r")
    except OSError as exc:
        raise corrupt(f"is not an hdf5 file ({_one_line(exc, 120)})") from None
    with file:
        missing = [k for k in _KEYS if k not in file or not isinstance(file[k], h5py.Dataset)]
        if missing:
            raise corrupt(f"lacks the key(s) {', '.join(missing)}: expected {', '.join(_KEYS)}, found "
                          f"{', '.join(sorted(file.keys())) or 'none'}")
        meta = {k: (file[k].shape, file[k].dtype) for k in _KEYS}
        n = meta["observations"][0][0] if meta["observations"][0] else None
        expected = {"observations": (n, OBS_DIM), "actions": (n, ACT_DIM), "rewards": (n,), "terminals": (n,),
                    "timeouts": (n,)}
        for key in _KEYS:
            shape, dtype = meta[key]
            if shape != expected[key]:
                want = f"(N, {expected[key][1]})" if len(expected[key]) == 2 else "(N,)"
                rows = "" if key == "observations" else f" with N = {n} rows as in observations"
                raise corrupt(f"has {key} of shape {shape}: expected {want}{rows}")
            if not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
                raise corrupt(f"has {key} of dtype {dtype}: expected a numeric dtype")
        if n < 2:
            raise corrupt(f"has {n} row(s): expected at least 2 to form a transition")
        try:
            return {k: file[k][()] for k in _KEYS}
        except OSError as exc:  # truncated file, bad chunk
            raise corrupt(f"cannot be read ({_one_line(exc, 120)})") from None


def _validate(path: Path, task: str, data: dict[str, np.ndarray], fix: str) -> None:
    def corrupt(what: str) -> CorruptDatasetError:
        return CorruptDatasetError(f"D4RL file {path} {what}; fix: {fix}")

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
            f"D4RL file {path}: the data's positions do not fit the {TASKS[task].maze} maze of {task} (only "
            f"{100 * fraction:.1f}% on free cells, expected >= {100 * MIN_FREE_FRACTION:.0f}%): it belongs to another "
            f"maze; fix: use the matching task{hint}"
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


def load_d4rl_antmaze(dataset_id: str, download: bool = True, progress: bool = True) -> tuple[Transitions, DatasetInfo]:
    """Load a D4RL AntMaze v2 file (`d4rl:<task id>` or `d4rl:<path>`) as transitions plus its `DatasetInfo`.

    Failures are one-line errors: `DatasetNotFoundError` (missing file, download failed), `CorruptDatasetError`
    (not hdf5, wrong keys/shapes/values) or `DatasetError` (data from another maze).
    """
    task, path = resolve_d4rl(dataset_id)
    by_id = dataset_id.removeprefix(PREFIX) in D4RL_ANTMAZE_FILES
    name = D4RL_ANTMAZE_FILES[task]
    url = _file_url(name)
    if not path.exists():
        if not by_id:
            raise DatasetNotFoundError(
                f"D4RL file {path} does not exist; fix: correct the path, or place D4RL's {name} (from {url}) in "
                f"D4RL_DATASET_DIR and use d4rl:{task}, {_other_sources(task)}"
            )
        if not download:
            raise _missing(task, path.parent, url, None)
        path = fetch_d4rl_file(task, path.parent, progress=progress)
    if by_id:
        fix = f"delete {path} and run again to re-download it from {url}, or use d4rl:<path> for another file"
    else:
        fix = f"replace it with D4RL's original {name} (from {url}), or use d4rl:<task id> with the matching task"

    data = _read_arrays(path, fix)
    _validate(path, task, data, fix)
    transitions = qlearning_transitions(data)
    if len(transitions) == 0:
        raise CorruptDatasetError(f"D4RL file {path} has no transitions left after dropping timeout rows; fix: {fix}")

    info = DatasetInfo(
        dataset_id=dataset_id,
        obs_dim=OBS_DIM,
        act_dim=ACT_DIM,
        observation_space=gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32),
        action_space=gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32),
        action_low=-np.ones(ACT_DIM, np.float32),
        action_high=np.ones(ACT_DIM, np.float32),
        ref_min_score=0.0,
        ref_max_score=1.0,
        score_source="d4rl",
        env_spec=None,
        eval_env_spec=None,
        max_episode_steps=TASKS[task].max_episode_steps,
        total_steps=len(transitions),
        total_episodes=int(transitions.episode_ends.sum()),
        domain="maze",
        default_reward_transform="minus_one",
        source="d4rl",
        task_hint=task,
        files=({"path": str(path), "size": path.stat().st_size, "sha256": _sha256(path)},),
    )
    return transitions, info
