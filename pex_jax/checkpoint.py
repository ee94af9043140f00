"""Checkpoints: the offline phase's states (shared by pex and direct) and full run states for resume.

Files are flax msgpack (`flax.serialization`) plus a small JSON of metadata, written to a temporary
directory and renamed into place, so a crash never leaves a half-written checkpoint behind.
"""

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


def _atomic_write_dir(target: Path, files: dict[str, bytes]) -> None:
    """Write `files` into `target` atomically (tmp dir + rename); raise CheckpointError on failure."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, data in files.items():
            with open(tmp / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        if target.exists():
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(
            f"could not write checkpoint {target}: {e.strerror or e}; free disk space or choose another "
            f"--config.run_dir (earlier checkpoints are kept)"
        ) from None


def save_offline(path: Path, states: Any, meta: dict) -> None:
    """Save seed-stacked offline IQL states (params, target, optimizer states) and their metadata."""
    payload = serialization.to_bytes(jax.device_get(states))
    _atomic_write_dir(Path(path), {"state.msgpack": payload, "meta.json": json.dumps(meta, indent=2).encode()})


def resolve_offline_path(path: str | Path) -> Path:
    """Accept either the checkpoint dir itself or the run dir that contains `offline_ckpt/`."""
    p = Path(path).expanduser()
    if (p / OFFLINE_DIR / "meta.json").exists():
        p = p / OFFLINE_DIR
    if not (p / "meta.json").exists() or not (p / "state.msgpack").exists():
        raise CheckpointError(
            f"no offline checkpoint at {path} (expected meta.json and state.msgpack); run the offline phase "
            f"first (e.g. --config.algo=offline) or drop --config.offline_checkpoint to pre-train in this run"
        )
    return p


def offline_final_scores(path: str | Path, seeds: list[int]) -> dict | None:
    """The pre-training's last evaluation (normalized score, success rate) for `seeds`, if recorded."""
    meta = json.loads((resolve_offline_path(path) / "meta.json").read_text())
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
    p = resolve_offline_path(path)
    meta = json.loads((p / "meta.json").read_text())
    for key, value in expect.items():
        if key in meta and _normalise(meta[key]) != _normalise(value):
            raise CheckpointError(
                f"offline checkpoint {p} has {key}={meta[key]!r} but this run uses {value!r}; "
                f"pre-train with matching settings or point --config.offline_checkpoint elsewhere"
            )
    missing = [s for s in seeds if s not in meta["seeds"]]
    if missing:
        raise CheckpointError(
            f"offline checkpoint {p} holds seeds {meta['seeds']} but seeds {missing} were requested; "
            f"pre-train those seeds or change --config.seeds"
        )
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


def save_run_state(run_dir: Path, phase: str, step: int, device_state: Any, host_state: dict, keep: int) -> Path:
    """Checkpoint everything needed to continue bit-identically: train states with optimizer states
    and targets, PRNG keys, replay rows, step counters and the host-side logger bookkeeping.

    Written atomically as `<run_dir>/checkpoints/<phase>-<step:012d>/`; only the newest `keep` remain.
    """
    root = Path(run_dir) / RUN_DIR
    target = root / f"{phase}-{step:012d}"
    payload = serialization.msgpack_serialize(serialization.to_state_dict(jax.device_get(device_state)))
    host = {"phase": phase, "step": step, **host_state}
    _atomic_write_dir(target, {"state.msgpack": payload, "host.json": json.dumps(_jsonable(host)).encode()})
    done = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for old in done[: max(len(done) - max(keep, 1), 0)]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def latest_run_state(run_dir: Path) -> Path | None:
    """The newest complete checkpoint (temporary dirs of interrupted writes are ignored)."""
    root = Path(run_dir) / RUN_DIR
    if not root.exists():
        return None
    done = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and (p / "host.json").exists() and (p / "state.msgpack").exists())
    return done[-1] if done else None


def load_run_state(path: Path) -> tuple[dict, dict]:
    """(raw device-state dict of numpy arrays, host dict); restore pytrees with `restore_into`."""
    try:
        raw = serialization.msgpack_restore((Path(path) / "state.msgpack").read_bytes())
        host = json.loads((Path(path) / "host.json").read_text())
    except Exception as e:
        msg = f"checkpoint {path} is unreadable ({type(e).__name__}); delete it to resume from the one before"
        raise CheckpointError(msg) from None
    return raw, host


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
