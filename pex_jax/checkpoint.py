"""Checkpoints: the offline phase's states (shared by pex and direct) and full run states for resume.

Files are flax msgpack (`flax.serialization`) plus a small JSON of metadata, written to a temporary
directory and renamed into place, so a crash never leaves a half-written checkpoint behind. Replacing a
checkpoint renames the old one away first; until the new one is in place readers (and `recover`, after
a crash in between) use the renamed one, so a complete checkpoint exists at every instant.
"""

import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

from pex_jax.errors import CheckpointError

OFFLINE_DIR = "offline_ckpt"


TMP_TAG, OLD_TAG = ".tmp-", ".old-"  # `.<name>.tmp-<pid>`: being written; `.<name>.old-<pid>`: being replaced


def _fsync_dir(path: Path) -> None:
    """Make the renames inside `path` durable (a power cut must not undo them)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write_dir(target: Path, files: dict[str, bytes]) -> None:
    """Write `files` into `target` atomically (tmp dir + rename); raise CheckpointError on failure.

    An existing `target` is renamed to `.<name>.old-<pid>` before the new one takes its name and
    deleted after; a crash in between leaves it there for readers and `recover`."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}{TMP_TAG}{os.getpid()}")
    old = target.with_name(f".{target.name}{OLD_TAG}{os.getpid()}")
    moved = False
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, data in files.items():
            with open(tmp / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        _fsync_dir(tmp)
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            moved = True
        tmp.rename(target)
        moved = False
        _fsync_dir(target.parent)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if moved and not target.exists():
            old.rename(target)  # the new one never arrived: the old one is the checkpoint again
        raise CheckpointError(
            f"could not write checkpoint {target}: {e.strerror or e}; free disk space or choose another "
            f"--config.run_dir (earlier checkpoints are kept)"
        ) from None


def save_offline(path: Path, states: Any, meta: dict) -> None:
    """Save seed-stacked offline IQL states (params, target, optimizer states) and their metadata."""
    payload = serialization.to_bytes(jax.device_get(states))
    _atomic_write_dir(Path(path), {"state.msgpack": payload, "meta.json": json.dumps(meta, indent=2).encode()})


def _complete(d: Path) -> bool:
    return (d / "meta.json").exists() and (d / "state.msgpack").exists()


def _renamed_away(target: Path) -> Path | None:
    """The complete `.<name>.old-<pid>` a replacement left while `target` itself is missing."""
    if target.exists() or not target.parent.is_dir():
        return None
    olds = sorted(p for p in target.parent.glob(f".{target.name}{OLD_TAG}*") if _complete(p))
    return olds[-1] if olds else None


def resolve_offline_path(path: str | Path) -> Path:
    """Accept either the checkpoint dir itself or the run dir that contains `offline_ckpt/` (or, while
    that is being replaced, the previous one renamed away)."""
    p = Path(path).expanduser()
    if _complete(p / OFFLINE_DIR):
        p = p / OFFLINE_DIR
    elif not _complete(p):
        p = _renamed_away(p / OFFLINE_DIR) or _renamed_away(p) or p
    if not _complete(p):
        raise CheckpointError(
            f"no offline checkpoint at {path} (expected meta.json and state.msgpack); run the offline phase "
            f"first (e.g. --config.algo=offline) or drop --config.offline_checkpoint to pre-train in this run"
        )
    return p


def _read_meta(p: Path) -> dict:
    try:
        return json.loads((p / "meta.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"offline checkpoint {p} has an unreadable meta.json ({e}); re-run pre-training "
                              f"or point --config.offline_checkpoint elsewhere") from None


def check_offline(path: str | Path, expect: dict, seeds: list[int]) -> tuple[Path, dict]:
    """(checkpoint dir, its metadata) after checking that it fits this run: every key of `expect` the
    metadata holds is equal and every seed of `seeds` is in it. Cheap, so runs call it before loading data."""
    p = resolve_offline_path(path)
    meta = _read_meta(p)
    problems = [f"{key}={_normalise(meta[key])!r} where this run has {_normalise(value)!r}"
                for key, value in expect.items() if key in meta and _normalise(meta[key]) != _normalise(value)]
    missing = [s for s in seeds if s not in meta.get("seeds", [])]
    if missing:
        problems.append(f"seeds {meta.get('seeds')} without the requested {missing}")
    if problems:
        raise CheckpointError(
            f"offline checkpoint {p} does not fit this run: it has {'; '.join(problems)}; pre-train with this "
            f"run's dataset, hidden_dims and seeds, change --config.seeds, or point --config.offline_checkpoint "
            f"elsewhere"
        )
    return p, meta


def offline_meta(path: str | Path) -> dict:
    """An offline checkpoint's metadata (seeds, dataset, networks, final evaluation, run clock)."""
    return _read_meta(resolve_offline_path(path))


def offline_final_scores(path: str | Path, seeds: list[int]) -> dict | None:
    """The pre-training's last evaluation (normalized score, success rate) for `seeds`, if recorded."""
    meta = offline_meta(path)
    final = meta.get("final_eval")
    if not final or any(s not in meta["seeds"] for s in seeds):
        return None
    rows = [meta["seeds"].index(s) for s in seeds]
    return {k: [v[i] for i in rows] for k, v in final.items()}


def load_offline(path: str | Path, template: Any, seeds: list[int], expect: dict) -> Any:
    """Load offline states for `seeds` (a subset of the checkpoint's seeds) into `template`'s structure.

    `template` is a seed-stacked state for the requested seeds (e.g. freshly initialised);
    `expect` holds metadata that must match (dataset id, dims, network sizes).
    """
    p, meta = check_offline(path, expect, seeds)
    rows = np.array([meta["seeds"].index(s) for s in seeds])
    full_template = jax.tree.map(lambda x: np.zeros((len(meta["seeds"]),) + x.shape[1:], x.dtype), template)
    try:
        full = serialization.from_bytes(full_template, (p / "state.msgpack").read_bytes())
    except Exception as e:  # msgpack/structure errors: report, don't dump internals
        msg = f"offline checkpoint {p} is unreadable ({type(e).__name__}: {e}); re-run pre-training"
        raise CheckpointError(msg) from None
    return jax.tree.map(lambda x: x[rows], full)


def _normalise(v):
    return json.loads(json.dumps(v))


# --- Full run state (resume after interruption) ---

RUN_DIR = "checkpoints"
PACKED_SUFFIX = "-packed"  # `online-<step>-packed`: `pack_run_state`


def save_run_state(run_dir: Path, phase: str, step: int, device_state: Any, host_state: dict, keep: int) -> Path:
    """Checkpoint everything needed to continue bit-identically: train states with optimizer states
    and targets, PRNG keys, replay rows, step counters and the host-side logger bookkeeping.

    Written atomically as `<run_dir>/checkpoints/<phase>-<step:012d>/`; only the newest `keep` remain. Packed
    copies are left alone: the next `pack_run_state` takes over their action chunks (so git stores each action
    once) and `pex_jax.tools.pack_checkpoints` replaces them.
    """
    root = Path(run_dir) / RUN_DIR
    target = root / f"{phase}-{step:012d}"
    payload = serialization.msgpack_serialize(serialization.to_state_dict(jax.device_get(device_state)))
    host = {"phase": phase, "step": step, **host_state}
    _atomic_write_dir(target, {"state.msgpack": payload, "host.json": json.dumps(_jsonable(host)).encode()})
    done = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                   and not p.name.endswith(PACKED_SUFFIX)), key=_by_step)
    for old in done[: max(len(done) - max(keep, 1), 0)]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _by_step(p: Path) -> tuple[str, bool]:
    """Sort key of checkpoint dirs: by name, and at equal steps the full checkpoint after its packed copy."""
    return (p.name.removesuffix(PACKED_SUFFIX), not p.name.endswith(PACKED_SUFFIX))


def latest_run_state(run_dir: Path) -> Path | None:
    """The newest complete checkpoint (temporary dirs of interrupted writes are ignored); of a full
    checkpoint and its packed copy, the full one (nothing to re-simulate)."""
    root = Path(run_dir) / RUN_DIR
    if not root.exists():
        return None
    done = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                   and (p / "host.json").exists() and (p / "state.msgpack").exists()), key=_by_step)
    return done[-1] if done else None


# --- Packed online checkpoints (committable; the replay rows are re-simulated on resume) ---


def arrays_sha256(arrays: dict) -> str:
    """sha256 of named arrays in the given order (names, dtypes and shapes included)."""
    h = hashlib.sha256()
    for name, value in arrays.items():
        a = np.ascontiguousarray(value)
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def rows_digest(rows: dict) -> str:
    """sha256 of the replay rows (a state dict of arrays): what a re-simulation has to reproduce exactly."""
    return arrays_sha256({name: rows[name] for name in sorted(rows)})


def _chunk_name(lo: int, hi: int) -> str:
    return f"actions-{lo:012d}-{hi:012d}.npy"


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def pack_run_state(path: Path, previous: Path | None = None) -> Path:
    """Write `<checkpoint>-packed` beside an online checkpoint: the same state with the replay rows
    reduced to their actions, plus the rows' digest.

    An online checkpoint is mostly its replay buffer (AntMaze: 66 float32 per env step and seed), which
    only lives on the machine that wrote it. Every transition follows from the actions, the env seeds and
    the reset steps (checkpoints are episode boundaries, recorded in `host`; `pex_jax.runner.online`), so
    a packed checkpoint (8 float32 per step) can be committed with the run, and a resume elsewhere
    re-simulates the rows and checks them against the digest before going on.

    The actions go in chunk files by step range. The chunks of `previous` (an earlier packed copy of the
    same phase) are written again byte for byte where they still hold this replay's actions, so committing
    each packed copy stores every action in git once, not once per commit.
    """
    path = Path(path)
    raw, host = load_run_state(path)
    buffer = raw.get("buffer", {})
    if host.get("phase") != "online" or "rows" not in buffer:
        raise CheckpointError(f"{path} is not a full online checkpoint (packed: {'packed' in host}); only the "
                              f"online phase's replay is packed, and only once")
    size, step = int(buffer["size"]), int(host["step"])
    if size != step:
        raise CheckpointError(f"{path}: the replay holds {size} of {step} online steps (it wrapped around), so "
                              f"the actions of the dropped steps are gone; packing needs "
                              f"--config.buffer_capacity >= --config.online_steps")
    actions = np.asarray(buffer["rows"]["actions"])
    files, chunks = {}, []
    if previous is not None:
        old_host = json.loads((Path(previous) / "host.json").read_text())  # its chunks are read one by one below
        for lo, hi in old_host["packed"]["chunks"]:
            data = (Path(previous) / _chunk_name(lo, hi)).read_bytes()
            if hi > step or data != _npy(actions[:, :, lo:hi]):
                break
            files[_chunk_name(lo, hi)], chunks = data, [*chunks, [lo, hi]]
    done = chunks[-1][1] if chunks else 0
    if done < step:
        files[_chunk_name(done, step)], chunks = _npy(actions[:, :, done:step]), [*chunks, [done, step]]
    packed_raw = {**raw, "buffer": {"size": buffer["size"], "ptr": buffer["ptr"]}}
    packed_host = {**host, "packed": {"digest": rows_digest(buffer["rows"]), "from": path.name, "chunks": chunks}}
    files["state.msgpack"] = serialization.msgpack_serialize(packed_raw)
    files["host.json"] = json.dumps(_jsonable(packed_host)).encode()
    target = path.with_name(path.name + PACKED_SUFFIX)
    _atomic_write_dir(target, files)
    return target


def load_run_state(path: Path) -> tuple[dict, dict]:
    """(raw device-state dict of numpy arrays, host dict); restore pytrees with `restore_into`."""
    try:
        raw = serialization.msgpack_restore((Path(path) / "state.msgpack").read_bytes())
        host = json.loads((Path(path) / "host.json").read_text())
        if "packed" in host:  # the replay's actions, for `pex_jax.runner.online` to re-simulate the rows from
            raw["buffer"]["actions"] = np.concatenate(
                [np.load(Path(path) / _chunk_name(lo, hi), allow_pickle=False) for lo, hi in host["packed"]["chunks"]],
                axis=2)
    except Exception as e:
        msg = f"checkpoint {path} is unreadable ({type(e).__name__}); delete it to resume from the one before"
        raise CheckpointError(msg) from None
    return raw, host


def recover(run_dir: Path) -> list[str]:
    """Clean up after a writer that was killed: give a checkpoint renamed away for a replacement that
    never arrived its name back, and delete temporary and renamed-away directories.

    Only safe while no other process writes `run_dir` (hold `runner.run_dir.lock_run_dir`); call it
    before looking for the checkpoint to resume from. Returns what was done, one entry per directory.
    """
    done = []
    for root in (Path(run_dir), Path(run_dir) / RUN_DIR):
        if not root.is_dir():
            continue
        for p in sorted(root.iterdir()):
            if not (p.is_dir() and p.name.startswith(".") and (TMP_TAG in p.name or OLD_TAG in p.name)):
                continue
            name, tag, _ = p.name[1:].rpartition(OLD_TAG if OLD_TAG in p.name else TMP_TAG)
            target = root / name
            if tag == OLD_TAG and not target.exists() and (p / "state.msgpack").exists():
                p.rename(target)
                done.append(f"restored {target}")
            else:
                shutil.rmtree(p, ignore_errors=True)
                done.append(f"removed {p}")
        if done:
            _fsync_dir(root)
    return done


def restore_into(template: Any, raw: Any) -> Any:
    return serialization.from_state_dict(template, raw)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    return obj
