"""Markdown tables and PNG learning curves from run directories (config.json + metrics.jsonl).

Usage: `python -m pex_jax.tools.report --runs runs/ [more dirs or globs] --out reports/`.
Task and algorithm come from each run's config.json, never from folder names, so runs can
live anywhere. Runs of the same task and algorithm are pooled by seed. Spread over seeds is
the population std (ddof=0), the same convention as summary.json. See docs/tracking.md.

Only finished runs are reported by default (`run_status`); `--include-unfinished` shows the others,
marked with their status and with their end-of-run cells labelled as the last evaluation.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pex_jax.errors import ConfigError, run_cli
from pex_jax.tools.tracking import CONFIG_FILE, METRICS_FILE, SUMMARY_FILE

SCORE = "eval/normalized_score"
SUCCESS = "eval/success_rate"
REGRET = "train/regret"
ALGO_ORDER = ("pex", "direct", "buffer", "scratch", "offline", "pex_sac", "sac")
DASH = "–"
SCALES = {"success": "100×success", "return": "norm. return"}
FINISHED = "finished"
LAST_EVAL = "last eval"  # prefix of a not-finished run's end-of-run cells: its last evaluation, not its final one


@dataclass(frozen=True)
class RunStatus:
    """How a run directory ended, read from its summary.json (see `run_status`)."""

    state: str  # finished | unfinished | diverged | failed | preempted (or whatever else summary.json says)
    seed: int | None = None  # diverged runs: where the divergence was caught
    step: int | None = None
    phase: str | None = None
    detail: str = ""

    @property
    def finished(self) -> bool:
        return self.state == FINISHED

    def __str__(self) -> str:
        if self.state == "diverged" and self.seed is not None and self.step is not None:
            return f"diverged (seed {self.seed}, {self.phase or '?'} step {self.step})"
        return f"{self.state} ({self.detail})" if self.detail else self.state


def run_status(run_dir: Path | str) -> RunStatus:
    """The one place that decides whether a run finished, so no tool reports a crashed or live run as final.

    summary.json is written when a run ends: absent means it crashed or is still running. A summary without
    a `status` key predates the key and is a finished run.
    """
    path = Path(run_dir) / SUMMARY_FILE
    if not path.is_file():
        return RunStatus("unfinished")
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return RunStatus("unfinished", detail="summary.json unreadable")
    if not isinstance(summary, dict):
        return RunStatus("unfinished", detail="summary.json unreadable")
    state = summary.get("status", FINISHED)
    state = state if isinstance(state, str) and state else str(state)
    where = summary.get("diverged")
    if state == "diverged" and isinstance(where, dict):
        seed, step, phase = where.get("seed"), where.get("step"), where.get("phase")
        return RunStatus(state, seed if isinstance(seed, int) else None, step if isinstance(step, int) else None,
                         phase if isinstance(phase, str) else None)
    return RunStatus(state)


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The metrics lines of a run dir and how many were unreadable (torn by a crash mid-write), skipped."""
    rows, bad = [], 0
    with (Path(path) / METRICS_FILE).open() as f:
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if isinstance(row, dict) and "seed" in row and row.get("phase") in ("offline", "online"):
                rows.append(row)
            else:
                bad += 1
    return rows, bad


@dataclass
class Run:
    """One run directory: its config and the parsed metrics.jsonl lines."""

    path: Path
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    bad_lines: int = 0
    status: RunStatus = RunStatus(FINISHED)

    @property
    def task(self) -> str:
        return str(self.config.get("task", "?"))

    @property
    def algo(self) -> str:
        """The configuration's label: the algorithm, and a grid point's values (`pex@inv_temperature=100`)."""
        algo = str(self.config.get("algo", "?"))
        point = self.config.get("grid_point")
        return f"{algo}@{point}" if point else algo

    @property
    def source(self) -> str:
        """Where the data came from: d4rl (original files), minari, or local (generated here)."""
        return str(self.config.get("data_source", "?"))

    @property
    def scale(self) -> str:
        """The headline score's scale: `100×success` (maze tasks, D4RL) or `norm. return`."""
        task = self.config.get("env_task") or {}
        return SCALES.get(task.get("score", "return"), "norm. return")


@dataclass
class SeedCurves:
    """Everything the report needs about one seed: (steps, values) per phase and metric."""

    source: Path
    offline: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    online: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    offline_from: Path | None = None  # set when the offline curve came from a reused checkpoint's run


@dataclass
class Cell:
    """Mean and population std over the seeds that have the value."""

    mean: float
    std: float
    n: int

    def fmt(self, digits: int, n_total: int) -> str:
        text = f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"
        return text if self.n == n_total else f"{text} (n={self.n})"


@dataclass
class Row:
    task: str
    algo: str
    seeds: list[int]
    offline_score: Cell | None
    online_score: Cell | None
    success: Cell | None
    regret: Cell | None
    step0_score: Cell | None = None  # the online policy (set) before any online update
    source: str = "?"
    scale: str = "?"
    status: str = FINISHED  # the not-finished statuses of the dirs its seeds came from, joined
    offline_complete: bool = True  # False when a not-finished row has a seed that never reached online

    @property
    def finished(self) -> bool:
        return self.status == FINISHED


# ---------------------------------------------------------------------------- loading
def find_run_dirs(paths: list[str]) -> list[Path]:
    """Every directory holding config.json + metrics.jsonl under the given dirs or glob patterns."""
    found: dict[Path, None] = {}
    for spec in paths:
        roots = [Path(p) for p in sorted(glob.glob(spec, recursive=True))] if glob.has_magic(spec) else [Path(spec)]
        for root in roots:
            if not root.is_dir():
                continue
            for dirpath, dirnames, filenames in os.walk(root):
                if CONFIG_FILE in filenames and METRICS_FILE in filenames:
                    found[Path(dirpath).resolve()] = None
                    dirnames[:] = []  # a run dir's subfolders are checkpoints and W&B files
                else:
                    dirnames[:] = sorted(d for d in dirnames if d != "wandb" and not d.startswith("."))
    return sorted(found)


def load_run(path: Path) -> Run:
    """Parse one run dir; a torn or corrupt line (crash mid-write) is skipped and counted."""
    config = json.loads((path / CONFIG_FILE).read_text())
    rows, bad = read_metrics(path)
    return Run(path, config, rows, bad, run_status(path))


def _series(rows: list[dict[str, Any]], seed: int, phase: str, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Finite values of `key` for one seed and phase against that phase's step counter.

    A step logged twice (a resumed run re-logging after its last checkpoint) keeps the later value.
    """
    step_key = "offline_step" if phase == "offline" else "online_step"
    by_step: dict[int, float] = {}
    for row in rows:
        if row["seed"] != seed or row["phase"] != phase:
            continue
        value = row.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            by_step[int(row.get(step_key, 0))] = float(value)
    if not by_step:
        return None
    steps = np.array(sorted(by_step))
    return steps, np.array([by_step[s] for s in steps])


def _curves(run: Run, seed: int, keys: tuple[str, ...]) -> SeedCurves:
    out = SeedCurves(source=run.path)
    for phase in ("offline", "online"):
        for key in keys:
            s = _series(run.rows, seed, phase, key)
            if s is not None:
                getattr(out, phase)[key] = s
    return out


def shown(path: Path | str) -> str:
    """A run path as reports print it: relative to the working directory when inside it, so that a report
    made from a clone reads the same on every machine."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def resolve_checkpoint_run(ckpt: str, run_dir: Path) -> Path | None:
    """The run dir behind `offline_checkpoint` (a run dir or a folder inside one), if it is readable."""
    p = Path(ckpt).expanduser()
    bases = [p] if p.is_absolute() else [Path.cwd() / p, *(a / p for a in run_dir.parents)]
    for base in bases:
        for cand in (base, base.parent, base.parent.parent):
            if (cand / CONFIG_FILE).is_file() and (cand / METRICS_FILE).is_file():
                return cand.resolve()
    return None


def pool_by_seed(runs: list[Run], keys: tuple[str, ...] = (SCORE, SUCCESS, REGRET)):
    """(task, algo) -> seed -> SeedCurves. A seed found in several dirs keeps the last dir in path order
    (default run dirs end in a timestamp, so that is the newest) and is reported in the returned notes."""
    groups: dict[tuple[str, str], dict[int, SeedCurves]] = defaultdict(dict)
    notes: list[str] = []
    ckpt_cache: dict[Path, Run | None] = {}
    for run in sorted(runs, key=lambda r: str(r.path)):
        for seed in sorted({int(r["seed"]) for r in run.rows}):
            curves = _curves(run, seed, keys)
            if SCORE not in curves.offline and run.config.get("offline_checkpoint"):
                ref_dir = resolve_checkpoint_run(str(run.config["offline_checkpoint"]), run.path)
                if ref_dir is not None and ref_dir != run.path:
                    if ref_dir not in ckpt_cache:
                        ckpt_cache[ref_dir] = load_run(ref_dir)
                    ref = ckpt_cache[ref_dir]
                    ref_curves = _curves(ref, seed, keys) if ref else None
                    if ref_curves and ref_curves.offline:
                        curves.offline = ref_curves.offline
                        curves.offline_from = ref_dir
            group = groups[(run.task, run.algo)]
            if seed in group:
                notes.append(
                    f"{run.task}/{run.algo} seed {seed} appears in {shown(group[seed].source)} and {shown(run.path)}; "
                    f"using the latter"
                )
            group[seed] = curves
    return dict(groups), notes


# ---------------------------------------------------------------------------- table
def _cell(values: list[float]) -> Cell | None:
    if not values:
        return None
    arr = np.asarray(values, dtype=np.float64)
    return Cell(float(arr.mean()), float(arr.std()), len(values))


def _last(curves: dict[str, tuple[np.ndarray, np.ndarray]], key: str) -> float | None:
    s = curves.get(key)
    return None if s is None else float(s[1][-1])


def _at_zero(curves: dict[str, tuple[np.ndarray, np.ndarray]], key: str) -> float | None:
    s = curves.get(key)
    if s is None or not len(s[0]) or s[0][0] != 0:
        return None
    return float(s[1][0])


def summarize(groups: dict[tuple[str, str], dict[int, SeedCurves]],
              meta: dict[tuple[str, str], tuple[str, str]] | None = None,
              statuses: dict[Path, RunStatus] | None = None) -> list[Row]:
    """One table row per (task, algo): end-of-offline and end-of-online scores over seeds.

    Success rate is taken at the run's final evaluation (online if there was an online phase).
    Regret is the last logged `train/regret` of each seed: the runner logs it as the failure
    fraction over all online training episodes so far, so its final value covers the whole run.
    A row whose seeds come from a not-finished dir (`statuses`) carries that status.
    """
    rows = []
    for (task, algo), seeds in groups.items():
        off, on, succ, reg, zero = [], [], [], [], []
        states = dict.fromkeys(str(st) for c in seeds.values()
                               if (st := (statuses or {}).get(c.source)) is not None and not st.finished)
        for c in seeds.values():
            if (v := _at_zero(c.online, SCORE)) is not None:
                zero.append(v)
            if (v := _last(c.offline, SCORE)) is not None:
                off.append(v)
            if (v := _last(c.online, SCORE)) is not None:
                on.append(v)
            v = _last(c.online, SUCCESS) if SUCCESS in c.online else _last(c.offline, SUCCESS)
            if v is not None:
                succ.append(v)
            if (v := _last(c.online, REGRET)) is not None:
                reg.append(v)
        source, scale = (meta or {}).get((task, algo), ("?", "?"))
        rows.append(Row(task, algo, sorted(seeds), _cell(off), _cell(on), _cell(succ), _cell(reg), _cell(zero),
                        source, scale, "; ".join(states) or FINISHED,
                        not states or all(SCORE in c.online for c in seeds.values())))
    return sorted(rows, key=lambda r: (r.task, algo_sort_key(r.algo)))


def algo_sort_key(algo: str, order: tuple[str, ...] = ALGO_ORDER) -> tuple:
    """Algorithms in `order`, then each algorithm's grid points by value: `inv_temperature=30` before `=100`."""
    base = algo.split("@", 1)[0]
    parts = re.split(r"(\d+(?:\.\d+)?(?:e-?\d+)?)", algo)
    natural = tuple((0, float(p), "") if i % 2 else (1, 0.0, p) for i, p in enumerate(parts))
    return (order.index(base) if base in order else len(order), base, natural)


def _fmt_cell(cell: Cell | None, digits: int, n: int, prefix: str = "") -> str:
    if cell is None:
        return DASH
    return f"{prefix} {cell.fmt(digits, n)}" if prefix else cell.fmt(digits, n)


def markdown_table(rows: list[Row]) -> str:
    """The headline table; a not-finished row gets a status column entry and `last eval` end-of-run cells."""
    show_success = any(r.success for r in rows)
    show_regret = any(r.regret for r in rows)
    show_status = any(not r.finished for r in rows)
    header = ["task", "source", "score", "algo", "seeds"] + ["status"] * show_status
    left = len(header)
    header += ["score after offline", "online step 0", "score after online"]
    header += ["success rate (final)"] * show_success + ["regret (end of online)"] * show_regret
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * left + "---:|" * (len(header) - left)]
    for r in rows:
        n = len(r.seeds)
        last = "" if r.finished else LAST_EVAL
        cells = [r.task, r.source, r.scale, r.algo, str(n)] + [r.status] * show_status
        cells += [_fmt_cell(r.offline_score, 1, n, "" if r.offline_complete else LAST_EVAL),
                  _fmt_cell(r.step0_score, 1, n), _fmt_cell(r.online_score, 1, n, last)]
        if show_success:
            cells.append(_fmt_cell(r.success, 2, n, last))
        if show_regret:
            cells.append(_fmt_cell(r.regret, 2, n, "" if r.finished else "last logged"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- curves
def _mean_std(series: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and population std at each step over the seeds that logged that step."""
    steps = np.array(sorted(set().union(*(s[0].tolist() for s in series))))
    mean, std = np.empty(len(steps)), np.empty(len(steps))
    for j, step in enumerate(steps):
        vals = [v[np.searchsorted(st, step)] for st, v in series if step in st]
        mean[j], std[j] = np.mean(vals), np.std(vals)
    return steps, mean, std


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "task"


def algo_colors(algos: set[str]) -> dict[str, tuple]:
    """Fixed colour per algorithm (known ones first) so every task's figure uses the same legend colours."""
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    ordered = list(ALGO_ORDER) + sorted(algos - set(ALGO_ORDER), key=algo_sort_key)
    return {a: palette[i % len(palette)] for i, a in enumerate(ordered)}


def plot_task(
    task: str,
    by_algo: dict[str, dict[int, SeedCurves]],
    out_path: Path,
    metric: str = SCORE,
    colors: dict[str, tuple] | None = None,
    status: dict[str, str] | None = None,
) -> None:
    """Two panels: offline phase (x = gradient updates) and online phase (x = env steps), shared y.

    `status` (algo -> status text) marks a not-finished algorithm in the legend, so its curve's end is not
    read as the end of training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = colors or algo_colors(set(by_algo))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True, constrained_layout=True)
    for ax, phase, xlabel in (
        (axes[0], "offline", "offline gradient updates"),
        (axes[1], "online", "online environment steps"),
    ):
        drawn = False
        for algo in sorted(by_algo, key=algo_sort_key):
            color = colors[algo]
            series = [getattr(c, phase)[metric] for c in by_algo[algo].values() if metric in getattr(c, phase)]
            if not series:
                continue
            steps, mean, std = _mean_std(series)
            state = (status or {}).get(algo, FINISHED)
            label = f"{algo} (n={len(series)})" if state == FINISHED else f"{algo} (n={len(series)}, {state})"
            ax.plot(steps, mean, color=color, label=label, lw=1.8, marker="o" if len(steps) < 3 else None)
            ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.2, lw=0)
            drawn = True
        ax.set_title(f"{phase} phase")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(loc="best", fontsize=9)
        else:
            ax.text(0.5, 0.5, f"no {phase} evaluations", ha="center", va="center", transform=ax.transAxes)
    label = "score (100×success or normalized return)" if metric == SCORE else metric
    axes[0].set_ylabel(f"{label}, mean ± std over seeds")
    fig.suptitle(task)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------- entry points
# ---------------------------------------------------------------------------- interval estimates
PEX_FAMILY = ("pex", "pex_sac")


def final_scores(groups: dict[tuple[str, str], dict[int, SeedCurves]]) -> dict[str, dict[str, dict[int, float]]]:
    """algo -> task -> seed -> final score (the last online evaluation, else the last offline one)."""
    out: dict[str, dict[str, dict[int, float]]] = defaultdict(dict)
    for (task, algo), seeds in groups.items():
        finals = {}
        for seed, c in seeds.items():
            value = _last(c.online, SCORE) if SCORE in c.online else _last(c.offline, SCORE)
            if value is not None:
                finals[seed] = value
        if finals:
            out[algo][task] = finals
    return dict(out)


def interval_section(finals: dict[str, dict[str, dict[int, float]]], out: Path, colors: dict[str, tuple],
                     png_name: str = "performance_profiles.png") -> list[str]:
    """Markdown of the statistics of `finals` (algo -> task -> seed -> final score; pex_jax/tools/stats.py): IQM and
    mean with 95% bootstrap intervals per task and over the tasks a configuration covers, P(PEX > baseline) per
    task and over tasks, and a performance profile PNG (`out/png_name`)."""
    from pex_jax.tools import stats

    tasks = list(dict.fromkeys(t for per in finals.values() for t in per))  # the caller's task order
    algos = sorted(finals, key=algo_sort_key)
    compared = [t for t in tasks if sum(t in per for per in finals.values()) > 1]  # tasks with a comparison
    md = ["## Interval estimates", "",
          f"Final scores; IQM and mean over seeds with 95% stratified-bootstrap intervals (rliable, "
          f"{stats.REPS} resamples, seed {stats.SEED}). `all tasks`: over the tasks of this report that have a "
          f"comparison ({', '.join(compared) or '-'}), for the configurations run on every one (runs resampled within "
          f"each task). P(X > Y): the probability that a "
          f"run of X scores above a run of Y (ties count half), averaged over tasks; an interval that contains "
          f"0.5 does not support a difference. With 3 seeds the intervals are coarse (few distinct resamples) and can "
          f"collapse to a point ([1.00, 1.00] when every run of X beats every run of Y).", "",
          "| task | configuration | seeds | IQM [95% CI] | mean [95% CI] |", "|---|---|---|---|---|"]
    blocks = [(t, [t]) for t in tasks] + ([("all tasks", compared)] if len(compared) > 1 else [])
    comparisons: list[str] = []
    for name, block in blocks:
        present = [a for a in algos if all(t in finals[a] for t in block)]
        matrices = {}
        for a in present:
            matrix, seeds = stats.score_matrix(finals[a], block)
            if len(seeds):
                matrices[a] = (matrix, seeds)
        if not matrices:
            continue
        est = stats.aggregate_intervals({a: m for a, (m, _) in matrices.items()})
        for a, (_, seeds) in matrices.items():
            md.append(f"| {name} | {a} | {len(seeds)} | {est[a]['iqm'].fmt()} | {est[a]['mean'].fmt()} |")
        for x in (a for a in matrices if a.split("@", 1)[0] in PEX_FAMILY):
            for y in (a for a in matrices if a.split("@", 1)[0] not in PEX_FAMILY):
                p = stats.improvement_probability(matrices[x][0], matrices[y][0])
                verdict = ("supports X > Y" if p.low > 0.5 else "supports X < Y" if p.high < 0.5
                           else "no difference supported")
                comparisons.append(f"| {name} | P({x} > {y}) | {p.fmt(2)} | {verdict} |")
    md.append("")
    if comparisons:
        md += ["| tasks | comparison | probability [95% CI] | reading |", "|---|---|---|---|", *comparisons, ""]
    profile_tasks = compared or tasks
    on_all = [a for a in algos if all(t in finals[a] for t in profile_tasks)]
    if on_all:
        matrices = {a: stats.score_matrix(finals[a], profile_tasks)[0] for a in on_all}
        if all(len(m) for m in matrices.values()):
            png = stats.performance_profiles_png(matrices, out / png_name,
                                                 {a: colors[a] for a in on_all})
            md += [f"![performance profiles]({png.name})", ""]
    return md


def left_out_line(path: Path | str, status: RunStatus) -> str:
    """The line every tool prints for a run it leaves out of its tables."""
    return f"left out {path}: {status} (not finished; --include-unfinished shows it)"


def make_report(paths: list[str], out_dir: Path | str, metric: str = SCORE,
                include_unfinished: bool = False) -> tuple[list[Row], Path]:
    """Find runs, write report.md and one PNG per task into out_dir; return the rows and report path.

    Runs that did not finish are left out (one printed line each) unless `include_unfinished`."""
    run_dirs = find_run_dirs(paths)
    if not run_dirs:
        raise ConfigError(
            f"no run directories (config.json + metrics.jsonl) found under {' '.join(paths)}; "
            "train first or pass --runs <dir>"
        )
    runs = [load_run(d) for d in run_dirs]
    left_out = [] if include_unfinished else [left_out_line(shown(r.path), r.status)
                                              for r in runs if not r.status.finished]
    for line in left_out:
        print(line)
    runs = runs if include_unfinished else [r for r in runs if r.status.finished]
    if not runs:
        raise ConfigError(
            f"no finished runs under {' '.join(paths)} ({len(left_out)} left out above); "
            "pass --include-unfinished to report them"
        )
    keys = tuple(dict.fromkeys((SCORE, SUCCESS, REGRET, metric)))
    groups, notes = pool_by_seed(runs, keys)
    rows = summarize(groups, {(r.task, r.algo): (r.source, r.scale) for r in runs}, {r.path: r.status for r in runs})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    images = []
    colors = algo_colors({a for _, a in groups})
    for task in sorted({t for t, _ in groups}):
        by_algo = {a: seeds for (t, a), seeds in groups.items() if t == task}
        png = out / f"curves_{_slug(task)}.png"
        plot_task(task, by_algo, png, metric, colors, {r.algo: r.status for r in rows if r.task == task})
        images.append((task, png))

    reused = sorted({shown(c.offline_from) for g in groups.values() for c in g.values() if c.offline_from})
    torn = [f"{shown(r.path)}: skipped {r.bad_lines} unreadable metrics line(s)" for r in runs if r.bad_lines]
    table = markdown_table(rows)
    md = [
        "# pex-jax results",
        "",
        f"{len(runs)} run dir(s); score: 100 x success rate for maze tasks (D4RL's AntMaze scale, the paper's), "
        "normalized return x100 otherwise (column `score`); `source`: d4rl = original D4RL files, "
        "minari = Minari's re-collection, local = generated here; "
        "± is the population std (ddof=0) over seeds; (n=k) marks cells with fewer seeds than the row.",
        "",
        table,
        "",
    ]
    md += interval_section(final_scores(groups), out, colors)
    for task, png in images:
        md += [f"## {task}", "", f"![{task} learning curves]({png.name})", ""]
    if reused or notes or torn or left_out:
        md += ["## Notes", ""]
        md += [f"- offline scores/curves taken from the reused checkpoint's run {p}" for p in reused]
        md += [f"- {n}" for n in notes + torn + left_out]
        md.append("")
    md += ["## Runs", ""] + [f"- `{shown(r.path)}` ({r.task}/{r.algo}{'' if r.status.finished else f', {r.status}'})"
                             for r in runs] + [""]
    report = out / "report.md"
    report.write_text("\n".join(md))
    print(table)
    print(f"\nwrote {report} and {len(images)} learning-curve PNG(s) to {out}")
    return rows, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pex-jax-report", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs",
        nargs="+",
        action="extend",
        metavar="DIR_OR_GLOB",
        help="run dirs, parent dirs or glob patterns (searched recursively; default: runs)",
    )
    parser.add_argument("--out", default="reports", help="output folder for report.md and PNGs")
    parser.add_argument("--metric", default=SCORE, help=f"metric for the learning curves (default {SCORE})")
    parser.add_argument("--include-unfinished", action="store_true",
                        help="also show runs without a finished summary.json, marked with their status")
    args = parser.parse_args(argv)
    make_report(args.runs or ["runs"], args.out, args.metric, args.include_unfinished)
    return 0


def run_main() -> None:
    run_cli(main)


if __name__ == "__main__":
    run_main()
