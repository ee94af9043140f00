"""Every number and figure of docs/results/{antmaze,locomotion}.md, recomputed from a study's run directories.

    python experiments/summarize_study.py docs/results/antmaze_runs --out docs/results
    python experiments/summarize_study.py docs/results/locomotion_runs --out docs/results --domain locomotion

Writes `<domain>_tables.md` (headline table, per-seed table, offline-pick rates, mean curves, compute) and one PNG
per task, `curves_<domain>-<task>.png`: offline and online phases on one x-axis (online steps are placed after
the offline updates; a dashed line marks the switch), mean ± std over seeds per algorithm, and below it the share
of PEX's evaluation actions that came from the offline policy.

`--tasks umaze --algos pex,pex_sac,sac --tag sac` restricts both to those tasks and algorithms (plus the offline
row) and names the outputs `antmaze_tables-sac.md` and `curves_antmaze-<task>-sac.png` (the SAC-backbone
comparison, docs/results/pex_sac.md).

Scores are D4RL's normalized scores: 100 x success rate on AntMaze, 100 x (return - random) / (expert - random) on
locomotion. "online step 0" is the evaluation of the online agent before any online update (for PEX: the policy
set with its untrained new policy); "first online" is the first evaluation after it.

Runs that did not finish (`pex_jax.tools.report.run_status`) are left out with one printed line each;
`--include-unfinished` shows them with their status after the algorithm and "last eval" in front of their
"final" cells, which are then their last evaluation so far.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from pex_jax import checkpoint
from pex_jax.tools.report import (
    LAST_EVAL,
    algo_colors,
    algo_sort_key,
    interval_section,
    left_out_line,
    read_metrics,
    run_status,
)
from pex_jax.tools.study_runs import FROM_OFFLINE
from pex_jax.tools.tracking import METRICS_FILE, SUMMARY_FILE

SCORE, PICK, Q_MEAN = "eval/normalized_score", "eval/offline_choice_rate", "train/q_mean"
SUCCESS = "train/is_success"
ORDER = ("offline", "pex", "direct", "buffer", "pex_sac", "sac")
# domain -> (task order, y-axis label, y-limits or None for automatic)
DOMAINS = {
    "antmaze": (("umaze", "medium", "large"), "score (100 x success)", (-5, 105)),
    "locomotion": (("hopper", "halfcheetah", "walker2d"), "D4RL normalized return", None),
}


def _task_key(task: str, order: tuple[str, ...] = DOMAINS["antmaze"][0]) -> tuple[int, str]:
    """The domain's order (D4RL's: umaze, medium, large), then anything else by name."""
    return next((i for i, m in enumerate(order) if task.startswith(m)), len(order)), task


def _lines(run: Path) -> list[dict]:
    """Metrics lines; a torn last line (a crashed run, shown with --include-unfinished) is skipped."""
    return read_metrics(run)[0]


def _evals(lines: list[dict], phase: str) -> dict[int, list[tuple[int, dict]]]:
    """seed -> [(step, line)] of the evaluation lines of one phase, in step order."""
    out = defaultdict(list)
    key = "offline_step" if phase == "offline" else "online_step"
    for r in lines:
        if r.get("phase") == phase and SCORE in r:
            out[r["seed"]].append((int(r[key]), r))
    return {s: sorted(v, key=lambda x: x[0]) for s, v in out.items()}


def _critic(lines: list[dict]) -> dict[str, dict[int, list[tuple[int, float]]]]:
    """phase -> seed -> [(step, mean Q of the training batch)], from the training lines, in step order."""
    out: dict[str, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for r in lines:
        if Q_MEAN in r and r.get("phase") in ("offline", "online"):
            step = r["offline_step" if r["phase"] == "offline" else "online_step"]
            out[r["phase"]][r["seed"]].append((int(step), float(r[Q_MEAN])))
    return {ph: {s: sorted(v) for s, v in seeds.items()} for ph, seeds in out.items()}


def _training_success(lines: list[dict]) -> dict[int, list[tuple[int, float]]]:
    """seed -> [(online step, share of the training episodes ended since the last log that reached the goal)];
    logs with no episode ended (the value None) are left out."""
    out: dict[int, list] = defaultdict(list)
    for r in lines:
        if r.get("phase") == "online" and r.get(SUCCESS) is not None:
            out[r["seed"]].append((int(r["online_step"]), float(r[SUCCESS])))
    return {s: sorted(v) for s, v in out.items()}


def load_study(root: Path, algos: set[str] | None = None, tasks: set[str] | None = None,
               domain: str = "antmaze", include_unfinished: bool = False,
               left_out: list[str] | None = None) -> dict[str, dict[str, dict]]:
    """task -> algo -> {"config", "summary", "status", "offline": evals, "online": evals, "critic": training Q,
    "training_success": the training episodes' success}
    for every finished run (only `tasks`, and only `algos` plus the offline row, when given). A run that did not
    finish is left out, with a line appended to `left_out`, unless `include_unfinished`."""
    study: dict[str, dict[str, dict]] = defaultdict(dict)
    for cfg_path in sorted(root.glob("*/*/config.json")):
        run = cfg_path.parent
        if (algos and run.name not in algos | {"offline"}) or (tasks and run.parent.name not in tasks):
            continue
        status = run_status(run)
        if not status.finished and not include_unfinished:
            if left_out is not None:
                left_out.append(left_out_line(run, status))
            continue
        cfg = json.loads(cfg_path.read_text())
        lines = _lines(run) if (run / METRICS_FILE).is_file() else []
        try:
            summary = json.loads((run / SUMMARY_FILE).read_text())
        except (OSError, ValueError):  # an unfinished run shown on request has none
            summary = {}
        summary = summary if isinstance(summary, dict) else {}
        study[run.parent.name][run.name] = {"config": cfg, "summary": summary, "status": status,
                                            "compute": run_compute(run, summary),
                                            "offline": _evals(lines, "offline"), "online": _evals(lines, "online"),
                                            "critic": _critic(lines), "training_success": _training_success(lines)}
    return {task: study[task] for task in sorted(study, key=lambda t: _task_key(t, DOMAINS[domain][0]))}


def run_compute(run: Path, summary: dict) -> dict:
    """What a run has cost in wall clock: summary.json's `compute_s` (all its processes) once it finished,
    else its newest checkpoint's (the work a resume keeps); a summary from before runs carried a clock gives
    its last process only (`wall_s`). Keys: seconds (None: untimed), counted_from (a checkpoint's
    {"phase", "step"}, "last process", or None: since the start), shared_by (runs of the same process)."""
    t = summary.get("timing", {}) if isinstance(summary.get("timing"), dict) else {}
    out = {"seconds": None, "counted_from": None, "shared_by": t.get("shared_by")}
    if "compute_s" in t:
        return out | {"seconds": float(t["compute_s"]), "counted_from": t.get("compute_counted_from")}
    newest = checkpoint.latest_run_state(run)
    try:
        host = json.loads((newest / "host.json").read_text()) if newest else {}
    except (OSError, ValueError):
        host = {}
    if "compute_s" in host:
        return out | {"seconds": float(host["compute_s"]), "counted_from": host.get("compute_counted_from")}
    if t.get("wall_s"):
        return out | {"seconds": float(t["wall_s"]), "counted_from": "last process"}
    return out


def compute_line(study: dict) -> list[str]:
    """The compute paragraph: the wall clock of every run over all its processes, a process shared by
    several runs (a grid's points, tasks trained together) counted once, and which runs are partly counted."""
    processes: dict[tuple, float | None] = {}
    partly, last_only = [], 0
    for task, algos in study.items():
        for algo, run in algos.items():
            c = run["compute"]
            grid = run["config"].get("grid")
            key = (("shared", *c["shared_by"]) if c["shared_by"] else
                   (task, algo.split("@", 1)[0], grid) if grid else (task, algo))
            if c["seconds"] is None:
                processes.setdefault(key, None)
                continue
            processes[key] = max(processes.get(key) or 0.0, c["seconds"])
            if c["counted_from"] == "last process":
                last_only += 1
            elif c["counted_from"]:
                partly.append(f"{task} / {algo} from {c['counted_from']['phase']} step {c['counted_from']['step']:,}")
    total = sum(w for w in processes.values() if w)
    untimed = sum(1 for w in processes.values() if w is None)
    runs = sum(len(algos) for algos in study.values())
    text = (f"Compute: {total / 3600:.2f} h of wall clock over {runs} runs in {len(processes)} process group(s) "
            "(`timing.compute_s` in summary.json, or in the newest checkpoint of a run that has not finished: the "
            "wall clock of all of a run's processes, carried from checkpoint to checkpoint; a process shared by "
            "several runs counted once).")
    if partly:
        text += (" Counted from a checkpoint written before runs carried a clock, so without the processes before "
                 f"it: {'; '.join(partly)}.")
    if last_only:
        text += (f" {last_only} run(s) ended before runs carried this clock: their time is their last process "
                 "only (`timing.wall_s`), without any process before a resume.")
    if untimed:
        text += f" {untimed} process group(s) have no timing and are not counted."
    return [text]


def _stat(values) -> str:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    return "–" if v.size == 0 else f"{v.mean():.1f} ± {v.std():.1f}"


def _seeds(values) -> str:
    return " / ".join("–" if v is None else f"{v:.0f}" for v in values)


def _last_eval(text: str, finished: bool) -> str:
    """A not-finished run's "final" cell is its last evaluation so far, and says so."""
    return text if finished or set(text) <= set("–/ ") else f"{LAST_EVAL} {text}"


def _label(algo: str, status) -> str:
    """The algorithm cell of a run: an unfinished one carries its status."""
    return algo if not status or status.finished else f"{algo} [{status}]"


def headline_rows(study: dict) -> list[dict]:
    rows = []
    for task, algos in study.items():
        pre = algos.get("offline")
        last_off = {s: ev[-1][1][SCORE] for s, ev in pre["offline"].items()} if pre else {}
        for algo in sorted(algos, key=lambda a: algo_sort_key(a, ORDER)):
            run = algos[algo]
            seeds = sorted(set(run["online"]) | set(run["offline"]))
            on = run["online"]

            def pick(fn, seeds=seeds, on=on):
                return [fn(on[s]) if on.get(s) else None for s in seeds]

            step0 = pick(lambda ev: ev[0][1][SCORE] if ev[0][0] == 0 else None)
            first = pick(lambda ev: next((r[SCORE] for t, r in ev if t > 0), None))
            worst = pick(lambda ev: min(r[SCORE] for t, r in ev if t > 0) if any(t > 0 for t, _ in ev) else None)
            final = pick(lambda ev: ev[-1][1][SCORE])
            if algo == "offline":  # the offline policy, never fine-tuned: its last offline evaluation throughout
                final = [last_off.get(s) for s in seeds]
                step0 = first = worst = [None] * len(seeds)
            status = run.get("status")
            rows.append({"task": task, "algo": algo, "label": _label(algo, status), "seeds": seeds,
                         "status": str(status) if status else "finished", "finished": not status or status.finished,
                         "last_offline": [last_off.get(s) for s in seeds]
                         if algo == "offline" or algo in FROM_OFFLINE else [None] * len(seeds),
                         "step0": step0, "first": first, "worst": worst, "final": final,
                         "first_step": next((t for ev in on.values() for t, _ in ev if t > 0), None),
                         "final_step": max((ev[-1][0] for ev in on.values() if ev), default=None),
                         "pick": {s: [(t, r.get(PICK)) for t, r in on.get(s, []) if r.get(PICK) is not None]
                                  for s in seeds},
                         "curve": {s: [(t, r[SCORE]) for t, r in on.get(s, [])] for s in seeds}})
    return rows


def _means_by_step(per_seed: dict[int, list[tuple[int, float]]]) -> dict[int, float]:
    """seed -> [(step, value)] to step -> mean over the seeds evaluated at that step, in step order."""
    by_step = defaultdict(list)
    for series in per_seed.values():
        for t, x in series:
            by_step[t].append(x)
    return {t: float(np.mean(v)) for t, v in sorted(by_step.items())}


def tables(study: dict, left_out: list[str] | None = None, critic: bool = False) -> str:
    """The tables file; `left_out` (the runs load_study left out) is listed at its end; `critic` adds the
    training batches' mean Q (critic_table) and the online training episodes' success (training_success_table)."""
    rows = headline_rows(study)
    out = ["| task | algo | seeds | last offline | online step 0 | first online | worst online | final |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['task']} | {r['label']} | {len(r['seeds'])} | {_stat(r['last_offline'])} "
                   f"| {_stat(r['step0'])} | {_stat(r['first'])} | {_stat(r['worst'])} "
                   f"| {_last_eval(_stat(r['final']), r['finished'])} |")
    seed_list = ", ".join(sorted({str(s) for r in rows for s in r["seeds"]}))
    out += ["", f"Per seed (seeds in order {seed_list}):", "",
            "| task | algo | last offline | online step 0 | first online | worst online | final |",
            "|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['task']} | {r['label']} | {_seeds(r['last_offline'])} | {_seeds(r['step0'])} "
                   f"| {_seeds(r['first'])} | {_seeds(r['worst'])} | {_last_eval(_seeds(r['final']), r['finished'])} |")
    picks = [r for r in rows if any(r["pick"].values())]
    if picks:
        out += ["", "Offline-pick rate of the policy set (share of evaluation actions from the offline policy), "
                "mean over seeds at each evaluation:", "", "| task | algo | online step: rate |", "|---|---|---|"]
        for r in picks:
            cells = [f"{t // 1000}k: {m:.2f}" for t, m in _means_by_step(r["pick"]).items()]
            out.append(f"| {r['task']} | {r['label']} | {', '.join(cells)} |")
    curves = {(r["task"], r["label"]): _means_by_step(r["curve"]) for r in rows}  # the offline row has none
    curves = {k: c for k, c in curves.items() if c}
    if curves:
        steps = sorted({t for c in curves.values() for t in c})
        out += ["", "Mean over seeds at every online evaluation (online step):", "",
                "| task | algo | " + " | ".join(f"{t // 1000}k" for t in steps) + " |",
                "|---|---|" + "---|" * len(steps)]
        for (task, algo), c in curves.items():
            out.append(f"| {task} | {algo} | " + " | ".join(f"{c[t]:.1f}" if t in c else "–" for t in steps) + " |")
    if critic and (q := critic_table(study)):
        out += ["", *q]
    if critic and (w := training_success_table(study)):
        out += ["", *w]
    out += ["", *compute_line(study)]
    if left_out:
        out += ["", *(f"- {line}" for line in left_out)]
    return "\n".join(out) + "\n"


CRITIC_STRIDES = (1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000)


def critic_rows(study: dict, cells: int = 20) -> list[tuple[str, str, str, list[tuple[int, float, list]]]]:
    """(task, algo, phase, [(step, mean over seeds, per seed)]) of the training batches' mean Q: the offline run's
    pre-training, every other run's online phase. Steps: the first logged one, every multiple of the smallest
    stride that gives at most `cells` of them, and the last one; only steps every seed logged."""
    rows = []
    for task, algos in study.items():
        for algo in sorted(algos, key=lambda a: algo_sort_key(a, ORDER)):
            run = algos[algo]
            phase = "offline" if algo == "offline" else "online"
            per_seed = {s: dict(v) for s, v in run.get("critic", {}).get(phase, {}).items()}
            if not per_seed:
                continue
            common = sorted(set.intersection(*(set(v) for v in per_seed.values())))
            if not common:
                continue
            stride = next((k for k in CRITIC_STRIDES if common[-1] // k <= cells), CRITIC_STRIDES[-1])
            steps = sorted({common[0], common[-1], *(t for t in common if t % stride == 0)})
            seeds = sorted(per_seed)
            rows.append((task, _label(algo, run.get("status")), phase,
                         [(t, float(np.mean([per_seed[s][t] for s in seeds])), [per_seed[s][t] for s in seeds])
                          for t in steps]))
    return rows


def critic_table(study: dict) -> list[str]:
    """Where the critic's values sit during training: with AntMaze's r - 1 rewards every true value is at most 0,
    so a batch mean above 0 is over-estimation the data cannot support."""
    rows = critic_rows(study)
    if not rows:
        return []
    out = ["Critic on its training batches (`train/q_mean`, the mean Q over a sampled batch): mean over seeds "
           "(per seed in order of seed) at the first logged step, every stride and the last logged step. On AntMaze, "
           "whose rewards are r - 1 (0 at the goal, -1 elsewhere), every true value is at most 0. Online, part of each "
           "batch comes from the agent's own rows, so the mean moves with where the agent has been as well as "
           "with the critic (on fixed samples: `experiments/diagnose_online_critic.py`).", "",
           "| task | algo | phase | step: mean Q (per seed) |", "|---|---|---|---|"]
    for task, algo, phase, cells in rows:
        text = ", ".join(f"{t / 1000:g}k: {m:.1f} ({' / '.join(f'{x:.0f}' for x in per)})" for t, m, per in cells)
        out.append(f"| {task} | {algo} | {phase} | {text} |")
    return out


def training_success_rows(study: dict, cells: int = 20) -> list[tuple[str, str, list[tuple[int, int, float, list]]]]:
    """(task, algo, [(lo, hi, mean over seeds, per seed)]) of the online training episodes' success: the mean of
    the logged values at steps in (lo, hi], windows of the smallest stride giving at most `cells` of them; a seed
    with no value in a window is NaN there and left out of the mean."""
    rows = []
    for task, algos in study.items():
        for algo in sorted(algos, key=lambda a: algo_sort_key(a, ORDER)):
            run = algos[algo]
            per_seed = run.get("training_success") or {}
            if not per_seed:
                continue
            last = max(t for v in per_seed.values() for t, _ in v)
            width = next((k for k in CRITIC_STRIDES if -(-last // k) <= cells), CRITIC_STRIDES[-1])
            seeds = sorted(per_seed)
            windows = []
            for lo in range(0, last, width):
                per = [float(np.mean(v)) if (v := [x for t, x in per_seed[s] if lo < t <= lo + width]) else np.nan
                       for s in seeds]
                mean = float(np.nanmean(per)) if not np.all(np.isnan(per)) else np.nan
                windows.append((lo, min(lo + width, last), mean, per))
            rows.append((task, _label(algo, run.get("status")), windows))
    return rows


def training_success_table(study: dict) -> list[str]:
    """How often the online agent's own episodes reach the goal: the goal transitions the online half of each
    batch can hold, which the evaluation score (the evaluation policy's) does not show."""
    rows = training_success_rows(study)
    if not rows:
        return []

    def num(x: float) -> str:
        return "–" if np.isnan(x) else f"{x:.2f}"

    out = ["Online training episodes that reached the goal (`train/is_success`, logged every `log_every` env steps "
           "over the episodes ended since the last log; training episodes act with the exploring policy, for PEX "
           "the sampled policy set): mean of the logged values in each window of online steps, mean over seeds "
           "(per seed in order of seed).", "",
           "| task | algo | online steps: success (per seed) |", "|---|---|---|"]
    for task, algo, windows in rows:
        text = ", ".join(f"{lo / 1000:g}-{hi / 1000:g}k: {num(m)} ({' / '.join(num(x) for x in per)})"
                         for lo, hi, m, per in windows)
        out.append(f"| {task} | {algo} | {text} |")
    return out


def plot(study: dict, out_dir: Path, tag: str = "", domain: str = "antmaze") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, ylabel, ylim = DOMAINS[domain]
    paths = []
    for task, algos in study.items():
        pre = algos.get("offline")
        n_off = int(pre["config"]["offline_steps"]) if pre else 0
        fig, (ax, ax_pick) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, height_ratios=(3, 1))
        offline_final, online_end = None, n_off
        for k, algo in enumerate(sorted(algos, key=lambda a: algo_sort_key(a, ORDER))):
            run = algos[algo]
            series = run["offline"] if algo == "offline" else run["online"]
            offset = 0 if algo == "offline" else n_off
            steps = sorted({t for ev in series.values() for t, _ in ev})
            if not steps:
                continue
            mat = np.array([[dict(ev).get(t, {}).get(SCORE, np.nan) for t in steps] for ev in series.values()], float)
            x = np.asarray(steps) + offset
            mean, std = np.nanmean(mat, axis=0), np.nanstd(mat, axis=0)
            color = f"C{k}"
            status = run.get("status")
            state = "" if not status or status.finished else f", {status}"
            ax.plot(x, mean, marker="o", ms=3, color=color, label=f"{algo} ({mat.shape[0]} seeds{state})")
            ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.15)
            # each seed, thin: with 3 seeds a band alone hides which seed does what (more than 3 curves: clutter)
            for row in mat if len(algos) <= 3 else ():
                ax.plot(x, row, color=color, lw=0.6, alpha=0.35)
            if algo == "offline":
                offline_final = (mean[-1], color)
            else:
                online_end = max(online_end, x[-1])
            pick = np.array([[dict(ev).get(t, {}).get(PICK, np.nan) for t in steps] for ev in series.values()],
                            float)
            if np.isfinite(pick).any():  # policy-set runs (pex, pex_sac) log the offline-pick rate
                ax_pick.plot(x, np.nanmean(pick, axis=0), marker="o", ms=3, color=color, label=algo)
        if offline_final and online_end > n_off and np.isfinite(offline_final[0]):
            # the offline policy is never fine-tuned: its last score is the line an online run has to beat
            ax.hlines(offline_final[0], n_off, online_end, color=offline_final[1], ls=":", lw=1.2,
                      label="offline policy, not fine-tuned")
        for a in (ax, ax_pick):
            a.axvline(n_off, color="k", ls="--", lw=1)
            a.grid(alpha=0.3)
        ax.set(ylabel=ylabel, title=f"{domain} {task} (local data): offline | online")
        if ylim:
            ax.set_ylim(*ylim)
        ax.legend(loc="best", fontsize=8)
        ax_pick.set(xlabel="offline updates, then online env steps", ylabel="offline pick")
        ax_pick.set_ylim(-0.05, 1.05)
        fig.tight_layout()
        path = out_dir / f"curves_{domain}-{task}{tag}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def intervals(study: dict[str, dict[str, dict]], out: Path, png_name: str) -> list[str]:
    """The interval estimates of `make report` (pex_jax/tools/stats.py) over the finished runs' final scores."""
    finals: dict[str, dict[str, dict[int, float]]] = defaultdict(dict)
    for task, runs in study.items():
        for algo, run in runs.items():
            per_seed = run["summary"].get("per_seed") or {}
            scores = {int(s): v["final/normalized_score"] for s, v in per_seed.items()
                      if isinstance(v, dict) and v.get("final/normalized_score") is not None}
            if run["status"].finished and scores:
                finals[algo][task] = scores
    return interval_section(dict(finals), out, algo_colors(set(finals)), png_name) if finals else []


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("root", type=Path)
    p.add_argument("--out", type=Path, default=Path("docs/results"))
    p.add_argument("--algos", default="", help="comma list: only these algorithms (+ offline)")
    p.add_argument("--tasks", default="", help="comma list: only these tasks")
    p.add_argument("--tag", default="", help="output name suffix, e.g. sac -> antmaze_tables-sac.md")
    p.add_argument("--domain", default="antmaze", choices=sorted(DOMAINS), help="output names, task order, y-axis")
    p.add_argument("--include-unfinished", action="store_true",
                   help="also show runs that did not finish, marked with their status")
    p.add_argument("--critic", action="store_true",
                   help="also tabulate the critic's mean Q on its training batches (train/q_mean) along each run")
    args = p.parse_args(argv)
    tag = f"-{args.tag}" if args.tag else ""
    left_out: list[str] = []
    study = load_study(args.root, set(args.algos.split(",")) if args.algos else None,
                       set(args.tasks.split(",")) if args.tasks else None, args.domain, args.include_unfinished,
                       left_out)
    if not study:
        for line in left_out:  # otherwise they close the tables printed below
            print(line)
        print(f"error: no finished runs (config.json + summary.json) under {args.root}/<task>/<algo>/", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    text = (tables(study, left_out, args.critic) + "\n"
            + "\n".join(intervals(study, args.out, f"profiles_{args.domain}{tag}.png")))
    (args.out / f"{args.domain}_tables{tag}.md").write_text(text)
    print(text)
    for path in plot(study, args.out, tag, args.domain):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
