"""Numbers for docs/results/pointmaze.md from the study's run directories.

    python experiments/study_summary.py runs/study [--include-unfinished]

Per task and algorithm (mean ± std over seeds, population std): the last offline evaluation, the evaluation at
online step 0 (before any online update; a column only when the runs logged one), the first online evaluation
after it (the "dip" check), the minimum over the online evaluations after step 0, the final online evaluation,
the final success rate, the offline-policy choice rate at the first and last online evaluations (PEX). The steps
in the column names are read from the runs, so a study with another evaluation schedule is labelled correctly.

Runs that did not finish (`pex_jax.tools.report.run_status`) are left out with one printed line each;
`--include-unfinished` shows them with their status after the algorithm and "last eval" in front of their
final cells, which are then their last evaluation so far.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from pex_jax.tools.report import LAST_EVAL, left_out_line, read_metrics, resolve_checkpoint_run, run_status
from pex_jax.tools.tracking import METRICS_FILE

SCORE, SUCCESS, PICK = "eval/normalized_score", "eval/success_rate", "eval/offline_choice_rate"


def _fmt(v) -> str:
    v = np.asarray(v, float)
    return "–" if v.size == 0 or np.all(np.isnan(v)) else f"{np.nanmean(v):.1f} ± {np.nanstd(v):.1f}"


def _k(step: int) -> str:
    return f"{step / 1000:g}k"


def _last_eval(text: str, finished: bool) -> str:
    """A not-finished run's final cell is its last evaluation so far, and says so."""
    return text if finished or text == "–" else f"{LAST_EVAL} {text}"


def _steps_label(steps: set[int]) -> str:
    """" (10k)", or " (5k–10k)" when runs disagree, or "" when no run got there."""
    if not steps:
        return ""
    lo, hi = min(steps), max(steps)
    return f" ({_k(lo)})" if lo == hi else f" ({_k(lo)}–{_k(hi)})"


def _offline_source(run: Path, cfg: dict) -> Path | None:
    """The run dir whose offline evaluations are this run's "last offline": itself, or its checkpoint's run.

    A checkpoint path that no longer exists (a study moved into docs/results) falls back to the `offline` run
    of the same task folder, and says so on stderr.
    """
    ckpt = cfg.get("offline_checkpoint")
    if not ckpt:
        return run
    found = resolve_checkpoint_run(str(ckpt), run)
    if found is not None:
        return found
    sibling = run.parent / "offline"
    if (sibling / METRICS_FILE).is_file():
        print(f"note: {run}: offline checkpoint {ckpt} not found; last offline score from {sibling}", file=sys.stderr)
        return sibling
    return None


def _online_evals(rows: list[dict]) -> dict[int, list[tuple[int, dict]]]:
    """seed -> [(online step, line)] of the online evaluations, in step order; a re-logged step keeps the last."""
    by_seed: dict[int, dict[int, dict]] = defaultdict(dict)
    for r in rows:
        if r["phase"] == "online" and SCORE in r:
            by_seed[r["seed"]][int(r.get("online_step", 0))] = r
    return {s: sorted(v.items()) for s, v in by_seed.items()}


def summarize(root: Path | str, include_unfinished: bool = False) -> tuple[str, list[str]]:
    """The markdown table and the lines naming the runs left out because they did not finish."""
    rows, left_out = [], []
    first_steps, final_steps = set(), set()
    for cfg_path in sorted(Path(root).glob("*/*/config.json")):
        run = cfg_path.parent
        status = run_status(run)
        if not status.finished and not include_unfinished:
            left_out.append(left_out_line(run, status))
            continue
        cfg = json.loads(cfg_path.read_text())
        lines = read_metrics(run)[0] if (run / METRICS_FILE).is_file() else []
        seeds = sorted({r["seed"] for r in lines if SCORE in r})
        off_dir = _offline_source(run, cfg)
        last_off = {}
        for r in (read_metrics(off_dir)[0] if off_dir else []):
            if r["phase"] == "offline" and SCORE in r:
                last_off[r["seed"]] = r[SCORE]
        online = _online_evals(lines)
        step0, first, worst, final, succ, ch0, ch1 = ([] for _ in range(7))
        for s in seeds:
            ev = online.get(s, [])
            if not ev:
                continue
            after = [(t, r) for t, r in ev if t > 0]
            step0.append(ev[0][1][SCORE] if ev[0][0] == 0 else np.nan)
            first.append(after[0][1][SCORE] if after else np.nan)
            worst.append(min(r[SCORE] for _, r in after) if after else np.nan)
            final.append(ev[-1][1][SCORE])
            succ.append(ev[-1][1].get(SUCCESS, np.nan))
            ch0.append(after[0][1].get(PICK, np.nan) if after else np.nan)
            ch1.append(ev[-1][1].get(PICK, np.nan))
            if after:
                first_steps.add(after[0][0])
            if status.finished:
                final_steps.add(ev[-1][0])
        rows.append({"cells": [cfg["task"], cfg["algo"] if status.finished else f"{cfg['algo']} [{status}]",
                               len(seeds), _fmt([last_off.get(s, np.nan) for s in seeds])],
                     "step0": _fmt(step0),
                     "rest": [_fmt(first), _fmt(worst), _last_eval(_fmt(final), status.finished),
                              _last_eval(_fmt(succ), status.finished)],
                     "pick": f"{_fmt(ch0)} → {_fmt(ch1)}"})
    show_step0 = any(r["step0"] != "–" for r in rows)
    header = ["task", "algo", "seeds", "last offline"] + ["online step 0"] * show_step0 + [
        f"first online{_steps_label(first_steps)}", "worst online", f"final online{_steps_label(final_steps)}",
        "final success", "offline pick, first → last eval"]
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = r["cells"] + [r["step0"]] * show_step0 + r["rest"]
        out.append("| " + " | ".join(str(x) for x in cells) + f" | {r['pick']} |")
    return ("\n".join(out) if rows else ""), left_out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", nargs="?", default="runs/study", help="the study folder, <task>/<algo>/ run dirs")
    p.add_argument("--include-unfinished", action="store_true",
                   help="also show runs that did not finish, marked with their status")
    args = p.parse_args(argv)
    table, left_out = summarize(args.root, args.include_unfinished)
    for line in left_out:
        print(line)
    if not table:
        print(f"error: no finished runs (config.json + summary.json) under {args.root}/<task>/<algo>/", file=sys.stderr)
        return 1
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
