"""One run directory, one writer, one configuration.

- `lock_run_dir`: a second process on the same run directory stops at once instead of interleaving
  its metrics and checkpoints with the first one's.
- `check_resume`: a resumed run continues under the settings it started with, or not at all; networks
  trained with one lr (or seeds 0-2) must not carry on under another (or under the labels 3-5).
- `stop_on_signals`: SIGTERM / SIGINT (a preemption, Ctrl-C) stop a training loop at the end of its
  current chunk, after a checkpoint, with the run recorded as preempted rather than finished.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pex_jax.errors import ConfigError, DivergenceError, PexError
from pex_jax.seeds import parse_seeds
from pex_jax.tools.tracking import CONFIG_FILE, SUMMARY_FILE, _to_jsonable

LOCK_FILE = ".lock"

# How a run ended, as summary.json's "status" (and W&B's state) records it.
FINISHED, FAILED, PREEMPTED, DIVERGED = "finished", "failed", "preempted", "diverged"

RESUME_MAY_CHANGE = frozenset({
    "resume",  # that is how one resumes
    "run_dir",  # the same directory, however it is spelt
    "download",  # the data's identity is checked through data_files / dataset_id
    "progress",  # a progress bar
    "keep_checkpoints",  # disk use only
    "env_workers", "worker_timeout",  # where the training envs step: the same transitions either way
    "wandb.enabled", "wandb.project", "wandb.entity", "wandb.tags",  # where a copy of the metrics goes
    "env_task.notes",  # explanatory text printed at start
})
"""config.json fields a resume may change: none of them changes a trained number or a logged metric.

Everything else may: `checkpoint_every` resets the online envs at every checkpoint, `log_every` sets
the windows of the train metrics, `updates_per_call` which chunk means are logged,
`eval_parallel_envs` / `eval_episodes` the evaluation episodes' seeds and count, and `eval_workers`
0 vs > 0 whether evaluation runs on the accelerator or on the CPU."""

RESUME_MAY_CHANGE_OFFLINE = RESUME_MAY_CHANGE | {"checkpoint_every", "pipeline_lanes"}
"""An `offline` run has no online envs, so there `checkpoint_every` only switches checkpoints on or off, and
`pipeline_lanes` (how the online engine splits its seeds) is never read."""


class RunDirLocked(PexError):
    """Another live process writes this run directory."""


class Preempted(PexError):
    """Training stopped on a signal; rerunning with --config.resume=auto continues it."""

    def __init__(self, signum: int, phase: str | None = None, step: int | None = None,
                 checkpoint: Path | None = None) -> None:
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum  # the shell's convention for "ended by this signal"
        self.phase, self.step, self.checkpoint = phase, step, checkpoint
        where = f" in the {phase} phase at step {step}" if phase is not None else ""
        if checkpoint is not None:
            saved = f"checkpoint {checkpoint.name} written"
        elif phase is not None:
            saved = "no checkpoint written (--config.checkpoint_every=0)"
        else:
            saved = "nothing new to checkpoint"
        super().__init__(f"stopped by {self.signal_name}{where}, {saved}; rerun the same command with "
                         f"--config.resume=auto to continue from the last checkpoint")


# --- One writer ---


@contextlib.contextmanager
def lock_run_dir(run_dir: Path | str) -> Iterator[Path]:
    """Hold `<run_dir>/.lock` (flock, so a killed holder's lock vanishes with it) while the block runs.

    Creates the directory; if the block leaves nothing in it but the lock, the created directories
    are removed again, so a run that fails before writing anything leaves no empty run directory.
    """
    run_dir = Path(run_dir)
    created = []
    for d in (run_dir, *run_dir.parents):
        if d.exists():
            break
        created.append(d)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunDirLocked(
            f"{run_dir} is in use by process {holder} (it holds {path}); wait for that run to end or stop it, "
            f"or choose another --config.run_dir"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield run_dir
    finally:
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        if created and os.listdir(run_dir) == [LOCK_FILE]:
            with contextlib.suppress(OSError):
                path.unlink()
                for d in created:
                    d.rmdir()


def runs_in_use(root: Path | str) -> list[Path]:
    """Run directories under `root` whose lock a live process holds: their files are still being written."""
    held = []
    root = Path(root)
    for path in sorted(root.rglob(LOCK_FILE)) if root.is_dir() else []:
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:
            held.append(path.parent)
        finally:
            os.close(fd)
    return held


# --- Resume under the same settings ---


def _comparable(record: Mapping[str, Any]) -> dict[str, Any]:
    """A config record as flat, JSON-normalised `dotted.key -> value` pairs."""
    data = json.loads(json.dumps(_to_jsonable(record)))
    if isinstance(data.get("seeds"), (str, int)):
        data["seeds"] = parse_seeds(data["seeds"])
    if isinstance(data.get("data_files"), list):  # the files' content, wherever they lie now
        data["data_files"] = [f.get("sha256") if isinstance(f, dict) else f for f in data["data_files"]]
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            flat[prefix] = node

    walk("", data)
    return flat


def resume_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, old, new) for every field both records hold whose change could change the results.

    A field only one record holds (written by a version with another set of flags) is not compared.
    """
    a, b = _comparable(old), _comparable(new)
    allowed = RESUME_MAY_CHANGE_OFFLINE if a.get("algo") == "offline" == b.get("algo") else RESUME_MAY_CHANGE
    return [(k, a[k], b[k]) for k in sorted(a.keys() & b.keys()) if k not in allowed and a[k] != b[k]]


def _show(value: Any, limit: int = 60) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _flag(key: str, value: Any) -> str | None:
    if key.split(".")[0] in ("env_task", "data_files", "data_source", "data_sha256"):
        return None  # follows from the dataset, not a flag of its own
    if key == "seeds":
        value = ",".join(str(s) for s in value)
    elif isinstance(value, list):
        value = "(" + ", ".join(json.dumps(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    elif not isinstance(value, str):
        value = json.dumps(value)
    return f"--config.{key}={value}"


def check_resume(run_dir: Path | str, new_record: Mapping[str, Any]) -> None:
    """Stop a resume whose settings differ from the run's config.json in anything but RESUME_MAY_CHANGE.

    `new_record` is what config.json would hold for this process (its flags, seeds as given or parsed,
    and, once the data is loaded, env_task / data_files). Nothing happens without a config.json.
    """
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read {path} ({e}); restore it or start a new run with another "
                          f"--config.run_dir") from None
    changes = resume_changes(old, new_record)
    if not changes:
        return
    if [k for k, _, _ in changes] == ["data_sha256"]:
        raise ConfigError(
            f"{run_dir} was trained on other data under the same dataset id {new_record.get('dataset_id')!r} "
            f"(transitions sha256 {str(old['data_sha256'])[:12]}... then, {str(new_record['data_sha256'])[:12]}... "
            f"now; a dataset generated here again on another machine can differ, docs/data.md); a resume must "
            f"not continue its networks on other data: resume where that dataset is, or start a new run with "
            f"another --config.run_dir")
    shown = ", ".join(f"{k} {_show(a)} → {_show(b)}" for k, a, b in changes)
    flags = [f for f in (_flag(k, a) for k, a, _ in changes) if f]
    fix = f"rerun with the old values ({' '.join(flags)})" if flags else "rerun with the run's old dataset"
    raise ConfigError(f"{run_dir} was started with other settings: {shown}; a resume must not continue its "
                      f"networks under new ones: {fix} or start a new run with another --config.run_dir")


# --- Stopping on a signal ---


class StopRequest:
    """A stop asked for by SIGTERM or SIGINT.

    Inside `polled()` a signal only sets `requested`; the loop checks it where a checkpoint can be
    written, saves one and raises `preempted(...)`. Anywhere else (data loading, set-up) there is
    nothing to save, so the signal raises `Preempted` at once. A second signal exits immediately.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._polled = 0

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def request(self, signum: int = signal.SIGTERM) -> None:
        """What the handler does; tests and callers may ask for a stop directly."""
        if self.signum is not None:
            os.write(2, f"{signal.Signals(signum).name} again: exiting now without a checkpoint\n".encode())
            os._exit(128 + signum)
        self.signum = signum
        if not self._polled:
            raise Preempted(signum)
        os.write(2, f"{signal.Signals(signum).name}: stopping at the end of the current chunk, with a checkpoint "
                    f"if they are on (send it again to exit at once)\n".encode())

    def preempted(self, phase: str, step: int, checkpoint: Path | None) -> Preempted:
        """The error a loop raises once it has written its stop checkpoint (`checkpoint`, None if off)."""
        return Preempted(self.signum or signal.SIGTERM, phase, step, checkpoint)

    @contextlib.contextmanager
    def polled(self) -> Iterator[StopRequest]:
        """Mark a loop that polls `requested`; a request still pending when it ends stops the run there."""
        self._polled += 1
        try:
            yield self
        finally:
            self._polled -= 1
        if self.requested and not self._polled:
            raise Preempted(self.signum)


_ACTIVE: StopRequest | None = None


@contextlib.contextmanager
def stop_on_signals(signums: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> Iterator[StopRequest]:
    """Route `signums` to a StopRequest while the block runs; the previous handlers come back after.

    Nested use yields the StopRequest already installed. Off the main thread, where Python cannot
    install handlers, the signals keep their usual effect and `requested` stays False.
    """
    global _ACTIVE
    if _ACTIVE is not None:
        yield _ACTIVE
        return
    stop = StopRequest()
    previous = {}
    try:
        for s in signums:
            previous[s] = signal.signal(s, lambda signum, _frame: stop.request(signum))
    except ValueError:  # not the main thread
        pass
    _ACTIVE = stop if previous else None
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _ACTIVE = None


# --- How a run ended ---


def end_status(exc: BaseException | None) -> tuple[str, dict[str, Any]]:
    """(status, details for summary.json) of a run that ended with `exc` (None: it completed)."""
    if exc is None:
        return FINISHED, {}
    message = " ".join(str(exc).split())[:500]
    if isinstance(exc, Preempted):
        return PREEMPTED, {"preempted": {"signal": exc.signal_name, "phase": exc.phase, "step": exc.step,
                                         "checkpoint": exc.checkpoint.name if exc.checkpoint else None},
                           "error": message}
    if isinstance(exc, DivergenceError):  # `runner.common.check_finite` says where
        where = {k: getattr(exc, k, None) for k in ("seed", "step", "phase")}
        return DIVERGED, {"diverged": where, "error": message}
    return FAILED, {"error": f"{type(exc).__name__}: {message}" if not isinstance(exc, PexError) else message}


def finished(run_dir: Path | str) -> bool:
    """Whether the run completed: its summary.json exists and does not record another status
    (summaries written before statuses existed have none and count as finished)."""
    path = Path(run_dir) / SUMMARY_FILE
    try:
        return json.loads(path.read_text()).get("status", FINISHED) == FINISHED
    except (OSError, json.JSONDecodeError, AttributeError):
        return False
