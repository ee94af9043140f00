"""Run tracking: the run directory files (config.json, metrics.jsonl, summary.json) and W&B.

All seeds of a run train in one process (vmap axis), but each seed gets its own W&B run so
that W&B's grouping computes mean/std across seeds the same way it does for separate
processes. Under a W&B sweep agent there is exactly one run per trial instead, which reports
the seed-mean as the sweep metric. The local files are the source of truth for
`pex_jax.tools.report`; W&B is optional and never blocks or prompts. See docs/tracking.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import netrc
import os
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from pex_jax.errors import ConfigError

PHASES = ("offline", "online")
STEP_KEYS = ("offline_step", "online_step")
SWEEP_METRIC = "eval/normalized_score_mean"
"""Metric a sweep optimises: the seed-mean normalized score (the sweep YAMLs name it)."""
SWEEP_SOURCES = ("eval/normalized_score", "final/normalized_score")
"""Summary keys (first found) whose seed-mean becomes the sweep run's final SWEEP_METRIC."""

CONFIG_FILE = "config.json"
DROPPED_FILE = "metrics.dropped.jsonl"  # lines a resume replaced
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
WANDB_IDS_FILE = "wandb_ids.json"

Metrics = Mapping[str, Any]


# A sweep trial that runs a grid (`--config.grid`) logs every point into the trial's one W&B run: the run, how many
# loggers hold it, and each point's final seed-mean score (the trial reports the best as SWEEP_METRIC).
_TRIAL: dict[str, Any] = {"run": None, "users": 0, "finals": {}, "step": 0}


@contextlib.contextmanager
def trial_scope():
    """Hold a sweep trial's shared run open across several loggers that open and close one after another (a grid's
    offline runs, then its online runs), so the run is finished once, at the end."""
    _TRIAL["users"] += 1
    exit_code = 1
    try:
        yield
        exit_code = None
    finally:
        _TRIAL["users"] -= 1
        if _TRIAL["users"] == 0:
            run = _TRIAL["run"]
            _TRIAL.update(run=None, users=0, finals={}, step=0)
            if run is not None:
                run.finish(exit_code=exit_code)


def in_sweep() -> bool:
    """True when started by `wandb agent` (it exports WANDB_SWEEP_ID to the trial process)."""
    return bool(os.environ.get("WANDB_SWEEP_ID"))


def seed_stats(values: np.ndarray) -> tuple[float, float]:
    """Mean and population std (ddof=0) over seeds, the convention used in every report."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std())


def sweep_metric(metrics: Metrics, n_seeds: int) -> dict[str, float]:
    """Seed aggregates `<key>_mean` / `<key>_std` for every per-seed metric.

    For an evaluation this includes `eval/normalized_score_mean` (`SWEEP_METRIC`), the single
    number a sweep trial must report although it trains several seeds.
    """
    out: dict[str, float] = {}
    for key, value in _per_seed(metrics, n_seeds).items():
        if value is None:
            continue
        mean, std = seed_stats(value)
        out[f"{key}_mean"] = mean
        out[f"{key}_std"] = std
    return out


def _per_seed(metrics: Metrics, n_seeds: int) -> dict[str, np.ndarray | None]:
    """Per-seed arrays for array-valued metrics, None for shared scalars; checks shapes."""
    out: dict[str, np.ndarray | None] = {}
    for key, value in metrics.items():
        arr = np.asarray(value)
        if arr.ndim == 0:
            out[key] = None
        elif arr.shape == (n_seeds,):
            out[key] = arr.astype(np.float64)
        else:
            raise ValueError(f"metric {key!r} has shape {arr.shape}; expected () or ({n_seeds},)")
    return out


def _json_number(value: Any) -> float | int | bool | None:
    """Plain JSON number; NaN/inf become null so every line stays strict JSON."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    x = float(value)
    return x if math.isfinite(x) else None


def _to_jsonable(obj: Any) -> Any:
    """Config values (tuples, ConfigDicts, numpy scalars) as plain JSON types."""
    if hasattr(obj, "to_dict"):
        obj = obj.to_dict()
    if isinstance(obj, Mapping):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def _write_json_atomic(path: Path, data: Any) -> None:
    """Write via a temp file and rename so a crash never leaves half a JSON file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def _has_api_key() -> bool:
    """Whether W&B could authenticate without prompting: WANDB_API_KEY or a netrc entry."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    candidates = [os.environ["NETRC"]] if os.environ.get("NETRC") else []
    candidates += [str(Path.home() / ".netrc"), str(Path.home() / "_netrc")]
    for path in candidates:
        try:
            auth = netrc.netrc(path).authenticators(host)
        except (OSError, netrc.NetrcParseError):
            continue
        if auth and auth[2]:
            return True
    return False


def resolve_wandb_mode(enabled: bool = True) -> str:
    """'disabled', 'offline' or 'online' from the config switch and WANDB_MODE.

    Online without credentials would make wandb prompt for a login (or fail), so it falls
    back to offline with a one-line notice; `wandb sync` uploads the files later.
    """
    if not enabled or os.environ.get("WANDB_DISABLED", "").lower() in ("true", "1", "yes"):
        return "disabled"
    mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if mode == "disabled":
        return "disabled"
    if mode in ("offline", "dryrun"):
        return "offline"
    if not _has_api_key():
        print(
            "wandb: no API key (WANDB_API_KEY or `wandb login`): logging offline, upload with `wandb sync`",
            file=sys.stderr,
        )
        return "offline"
    return "online"


def _stable_id(run_dir: Path, seed: int, nonce: str) -> str:
    """W&B run id from run dir + seed (+ a per-creation nonce so a re-created dir gets new runs)."""
    digest = hashlib.sha256(f"{run_dir.resolve()}|{nonce}|{seed}".encode()).hexdigest()[:12]
    return f"{digest}-s{seed}"


class RunLogger:
    """Writes the run directory contract and mirrors every log call to W&B.

    `metrics` values are per-seed arrays of shape (n_seeds,) in `seeds` order, or scalars
    shared by all seeds.
    """

    def __init__(
        self,
        run_dir: Path | str,
        config: Mapping[str, Any],
        seeds: list[int],
        use_wandb: bool = True,
        resume: bool = False,
        resume_keep: Callable[[dict], bool] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.seeds = [int(s) for s in seeds]
        self.n_seeds = len(self.seeds)
        if self.n_seeds == 0:
            raise ConfigError("RunLogger needs at least one seed")
        self.config = _to_jsonable(config)
        self.config["seeds"] = list(self.seeds)
        self.resume = resume
        self._closed = False
        self._runs: list[Any] = []  # one per seed, or one sweep run
        self._defined: list[set[str]] = []
        self.sweep = False
        point = self.config.get("grid_point") or ""
        self._point = f"{point}/" if point else ""  # a grid point's keys in a shared sweep trial run

        self.run_dir.mkdir(parents=True, exist_ok=True)
        config_path = self.run_dir / CONFIG_FILE
        if config_path.exists() and not resume:
            raise ConfigError(
                f"{self.run_dir} already holds a run ({CONFIG_FILE}); pass --config.resume=auto to "
                "continue it or choose another --config.run_dir"
            )
        if not config_path.exists():  # a resume keeps the record of the settings the run started with
            _write_json_atomic(config_path, self.config)
        self._summarized = False
        if resume:  # running again: the summary of the attempt that stopped no longer describes the run
            _drop_unfinished_summary(self.run_dir / SUMMARY_FILE)

        metrics_path = self.run_dir / METRICS_FILE
        # W&B step = index of the log call. On resume, `resume_keep` drops the lines logged after the
        # checkpoint; the replayed calls get their old step numbers back and, being bit-identical to
        # what W&B already holds, are not sent again (`_wandb_floor`), so W&B has every step once.
        self._step, self._wandb_floor = self._resume_metrics(metrics_path, resume_keep) if resume else (0, 0)
        self._fd = os.open(metrics_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

        wandb_cfg = self.config.get("wandb") or {}
        enabled = use_wandb and bool(wandb_cfg.get("enabled", True))
        self.wandb_mode = resolve_wandb_mode(enabled)
        if self.wandb_mode != "disabled":
            try:
                self._init_wandb(wandb_cfg)
            except Exception as exc:  # tracking must never kill a training run
                msg = f"wandb: init failed ({type(exc).__name__}: {exc}); continuing without W&B"
                print(msg, file=sys.stderr)
                self._finish_runs(exit_code=1)
                self.wandb_mode = "disabled"

    # ------------------------------------------------------------------ local files
    def _resume_metrics(self, path: Path, keep: Callable[[dict], bool] | None) -> tuple[int, int]:
        """Drop a torn last line left by a crash and the lines `keep` rejects (logged after the
        checkpoint we resume from); return (log calls kept, log calls W&B has already seen)."""
        if not path.exists():
            return 0, 0
        lines = path.read_bytes().split(b"\n")[:-1]  # a torn (unterminated) last line is dropped
        seen = len(lines) // self.n_seeds
        if keep is not None:
            kept, dropped = [], []
            for line in lines:
                try:
                    (kept if keep(json.loads(line)) else dropped).append(line)
                except json.JSONDecodeError:
                    continue
            lines = kept
            if dropped:  # logged after the checkpoint (or with none): set aside, never silently lost
                aside = path.with_name(DROPPED_FILE)
                with aside.open("ab") as f:
                    f.write(b"".join(line + b"\n" for line in dropped))
                print(f"resume: {len(dropped) // self.n_seeds} log call(s) of {self.run_dir} came after the "
                      f"checkpoint it resumes from; they will be logged again, the old lines are kept in {aside}",
                      flush=True)
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_bytes(b"".join(line + b"\n" for line in lines))
        tmp.replace(path)
        return len(lines) // self.n_seeds, seen

    def _write_lines(self, lines: list[str]) -> None:
        """One write() per call so a crash leaves whole lines (a torn tail is repaired on resume)."""
        buf = "".join(line + "\n" for line in lines).encode()
        view = memoryview(buf)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]

    # ------------------------------------------------------------------ W&B
    def _init_wandb(self, wandb_cfg: Mapping[str, Any]) -> None:
        import wandb

        task = str(self.config.get("task", "task"))
        algo = str(self.config.get("algo", "algo"))
        if self.config.get("grid_point"):  # a grid point is its own configuration: its own group
            algo = f"{algo}@{self.config['grid_point']}"
        tags: list[str] = []
        for tag in [*list(wandb_cfg.get("tags") or ()), task, algo, str(self.config.get("dataset_id", ""))]:
            if tag and tag not in tags:
                tags.append(str(tag)[:64])  # W&B rejects tags longer than 64 characters
        common = dict(
            project=wandb_cfg.get("project") or "pex-jax",
            entity=wandb_cfg.get("entity") or None,
            group=f"{task}/{algo}",
            tags=tags,
            mode=self.wandb_mode,
            dir=os.environ.get("WANDB_DIR") or str(self.run_dir),
            reinit="create_new",
        )
        ids = self._load_ids()
        if in_sweep():
            # The agent fixes the run id (WANDB_RUN_ID) and the project; one run per trial.
            self.sweep = True
            settings = wandb.Settings(silent=True, x_save_requirements=False)
            if _TRIAL["run"] is None:  # the first logger of the trial opens its run; grid points share it
                _TRIAL["run"] = wandb.init(
                    name=f"{task}-{algo}-seeds{_seed_label(self.seeds)}",
                    config={**self.config, "seeds": self.seeds},
                    settings=settings,
                    **{k: v for k, v in common.items() if k not in ("project", "entity")},
                )
            _TRIAL["users"] += 1
            run = _TRIAL["run"]
            ids["sweep_run"] = run.id
            self._runs = [run]
        else:
            for i, seed in enumerate(self.seeds):
                key = str(seed)
                if key not in ids["seeds"]:
                    ids["seeds"][key] = _stable_id(self.run_dir, seed, ids["nonce"])
                # Console capture and system stats once per process, not once per seed.
                settings = wandb.Settings(
                    silent=True,
                    console="wrap" if i == 0 else "off",
                    x_disable_stats=i > 0,
                    x_save_requirements=i == 0,
                )
                run = wandb.init(
                    id=ids["seeds"][key],
                    resume="allow" if self.resume else None,
                    name=f"{task}-{algo}-seed{seed}",
                    config={**self.config, "seed": seed},
                    settings=settings,
                    **common,
                )
                self._runs.append(run)
        self._defined = [set() for _ in self._runs]
        for run in self._runs:
            for step_key in STEP_KEYS:
                run.define_metric(step_key)
        _write_json_atomic(self.run_dir / WANDB_IDS_FILE, ids)

    def _load_ids(self) -> dict[str, Any]:
        path = self.run_dir / WANDB_IDS_FILE
        if self.resume and path.exists():
            try:
                data = json.loads(path.read_text())
                data.setdefault("seeds", {})
                data.setdefault("nonce", secrets.token_hex(4))
                return data
            except (OSError, json.JSONDecodeError):
                pass
        return {"nonce": secrets.token_hex(4), "created": time.time(), "seeds": {}}

    def _wandb_log(self, run_index: int, row: dict[str, Any], phase: str) -> None:
        """Log one row, declaring each new key against its phase's step axis on first use."""
        run = self._runs[run_index]
        defined = self._defined[run_index]
        step_key = "offline_step" if phase == "offline" else "online_step"
        for key in row:
            if key not in defined and key not in STEP_KEYS:
                run.define_metric(key, step_metric=step_key)
                defined.add(key)
        if self.sweep and self._point:  # grid points share the trial's run: one step counter for all of them
            _TRIAL["step"] = max(_TRIAL.get("step", 0), self._step)
            run.log(row, step=_TRIAL["step"], commit=True)
            _TRIAL["step"] += 1
            return
        run.log(row, step=self._step, commit=True)

    @property
    def wandb_runs(self) -> list[Any]:
        """The live W&B Run objects (empty when W&B is disabled)."""
        return list(self._runs)

    # ------------------------------------------------------------------ public API
    def log(self, metrics: Metrics, *, phase: str, offline_step: int, online_step: int) -> None:
        """Append one line per seed to metrics.jsonl and log the same values to W&B."""
        if self._closed:
            raise RuntimeError("RunLogger.log called after close()")
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
        per_seed = _per_seed(metrics, self.n_seeds)
        steps = {"offline_step": int(offline_step), "online_step": int(online_step)}
        lines = []
        for i, seed in enumerate(self.seeds):
            row: dict[str, Any] = {"seed": seed, "phase": phase, **steps}
            for key, arr in per_seed.items():
                row[key] = _json_number(metrics[key] if arr is None else arr[i])
            lines.append(json.dumps(row, allow_nan=False))
        self._write_lines(lines)

        if self._runs and self._step >= self._wandb_floor:
            prefix = "offline/" if phase == "offline" else ""
            if self.sweep:
                row, prefix = dict(steps), self._point + prefix
                for key, arr in per_seed.items():
                    if arr is None:
                        row[prefix + key] = float(np.asarray(metrics[key]))
                    else:
                        for i, seed in enumerate(self.seeds):
                            row[f"{self._point}seed{seed}/{prefix[len(self._point):]}{key}"] = float(arr[i])
                row.update({prefix + k: v for k, v in sweep_metric(metrics, self.n_seeds).items()})
                self._wandb_log(0, row, phase)
            else:
                for i in range(self.n_seeds):
                    row = dict(steps)
                    for key, arr in per_seed.items():
                        row[prefix + key] = float(np.asarray(metrics[key]) if arr is None else arr[i])
                    self._wandb_log(i, row, phase)
        self._step += 1

    def summary(self, values: Metrics, info: dict[str, Any] | None = None) -> None:
        """Final per-seed values -> summary.json (per seed, mean, population std) and W&B summaries.

        `info`: run-level facts (score scale, data source, timing) stored beside them in summary.json."""
        per_seed = _per_seed(values, self.n_seeds)
        arrays = {
            k: (np.full(self.n_seeds, float(np.asarray(values[k]))) if a is None else a) for k, a in per_seed.items()
        }
        stats = {k: seed_stats(a) for k, a in arrays.items()}
        data = {
            "seeds": self.seeds,
            "per_seed": {
                str(seed): {k: _json_number(a[i]) for k, a in arrays.items()} for i, seed in enumerate(self.seeds)
            },
            "mean": {k: _json_number(m) for k, (m, _) in stats.items()},
            "std": {k: _json_number(s) for k, (_, s) in stats.items()},
            "std_convention": "population (ddof=0) over seeds",
            **(info or {}),
            "status": "finished",
        }
        _write_json_atomic(self.run_dir / SUMMARY_FILE, data)
        self._summarized = True
        if self.sweep:
            run, point = self._runs[0], self._point
            for k, a in arrays.items():
                mean, std = stats[k]
                run.summary[f"{point}{k}_mean"] = mean
                run.summary[f"{point}{k}_std"] = std
                for i, seed in enumerate(self.seeds):
                    run.summary[f"{point}seed{seed}/{k}"] = float(a[i])
            # The final score decides the trial, also for `offline` runs that never log online evals; a trial
            # that runs a grid reports each point's under its name and its best point as the trial's.
            source = next((k for k in SWEEP_SOURCES if k in arrays), None)
            if source is not None:
                if point:
                    run.summary[f"{point}{SWEEP_METRIC}"] = stats[source][0]
                    _TRIAL["finals"][point[:-1]] = stats[source][0]
                    best = max(_TRIAL["finals"], key=_TRIAL["finals"].get)
                    run.summary[SWEEP_METRIC], run.summary["grid/best_point"] = _TRIAL["finals"][best], best
                else:
                    run.summary[SWEEP_METRIC] = stats[source][0]
        else:
            for i, run in enumerate(self._runs):
                for k, a in arrays.items():
                    run.summary[k] = float(a[i])

    def _finish_runs(self, exit_code: int | None = None) -> None:
        runs, self._runs = self._runs, []
        if self.sweep and runs:  # the trial's shared run ends with its last logger
            _TRIAL["users"] -= 1
            if _TRIAL["users"] > 0:
                return
            _TRIAL.update(run=None, users=0, finals={}, step=0)
        for run in runs:
            try:
                run.finish(exit_code=exit_code)
            except Exception as exc:  # a failed upload must not mask the result
                print(f"wandb: finish failed ({exc})", file=sys.stderr)

    def close(self, exit_code: int | None = None, status: str | None = None,
              detail: Mapping[str, Any] | None = None) -> None:
        """Finish the W&B runs and close metrics.jsonl; safe to call twice.

        `status` "failed", "preempted" or "diverged" (a run that did not complete): summary.json becomes
        `{"status": status, "seeds": ..., **detail}`, so nothing reads the run as finished, and W&B gets
        exit code 1 (a preempted run is also marked preempting, which W&B shows as preempted and a sweep
        requeues). Once `summary` has been written the run did complete, and the status is ignored."""
        if self._closed:
            return
        self._closed = True
        if status not in (None, "finished") and not self._summarized:
            exit_code = 1 if exit_code is None else exit_code
            data = {"status": status, "seeds": self.seeds, **_to_jsonable(dict(detail or {}))}
            _write_json_atomic(self.run_dir / SUMMARY_FILE, data)
            for run in self._runs:
                try:
                    run.summary["status"] = status
                    if status == "preempted":
                        run.mark_preempting()
                except Exception as exc:  # tracking must never mask the run's own error
                    print(f"wandb: could not record status {status} ({exc})", file=sys.stderr)
        self._finish_runs(exit_code)
        os.close(self._fd)

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.close(exit_code=1, status="failed", detail={"error": exc_type.__name__})


def _drop_unfinished_summary(path: Path) -> None:
    try:
        status = json.loads(path.read_text()).get("status", "finished")
    except FileNotFoundError:
        return
    except (OSError, ValueError, AttributeError):
        status = None
    if status != "finished":
        path.unlink(missing_ok=True)


def _seed_label(seeds: list[int]) -> str:
    """Compact seed list for run names: 0-4 for a contiguous range, else 0_3_7."""
    if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 1:
        return f"{seeds[0]}-{seeds[-1]}"
    return "_".join(str(s) for s in seeds)
