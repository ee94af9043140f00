"""Numbers for docs/results/pointmaze.md from the study's run directories.

    python experiments/study_summary.py runs/study

Per task and algorithm (mean ± std over seeds, population std): the last offline evaluation, the first
online evaluation (the "dip" check), the minimum over online evaluations, the final online
evaluation, the final success rate, the offline-policy choice rate at the first and last online
evaluations (PEX).
"""

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def _fmt(v) -> str:
    v = np.asarray(v, float)
    return "–" if v.size == 0 or np.all(np.isnan(v)) else f"{np.nanmean(v):.1f} ± {np.nanstd(v):.1f}"


def main(root: str) -> int:
    rows = []
    for cfg_path in sorted(Path(root).glob("*/*/config.json")):
        run = cfg_path.parent
        cfg = json.loads(cfg_path.read_text())
        lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        by_seed = defaultdict(list)
        for r in lines:
            if "eval/normalized_score" in r:
                by_seed[r["seed"]].append(r)
        off_dir = Path(cfg["offline_checkpoint"]) if cfg.get("offline_checkpoint") else run
        off_lines = [json.loads(x) for x in (off_dir / "metrics.jsonl").read_text().splitlines()]
        last_off = {}
        for r in off_lines:
            if r["phase"] == "offline" and "eval/normalized_score" in r:
                last_off[r["seed"]] = r["eval/normalized_score"]
        online = {s: [r for r in v if r["phase"] == "online"] for s, v in by_seed.items()}
        seeds = sorted(online)
        first = [online[s][0]["eval/normalized_score"] for s in seeds if online[s]]
        worst = [min(r["eval/normalized_score"] for r in online[s]) for s in seeds if online[s]]
        final = [online[s][-1]["eval/normalized_score"] for s in seeds if online[s]]
        succ = [online[s][-1]["eval/success_rate"] for s in seeds if online[s]]
        ch0 = [online[s][0].get("eval/offline_choice_rate", np.nan) for s in seeds if online[s]]
        ch1 = [online[s][-1].get("eval/offline_choice_rate", np.nan) for s in seeds if online[s]]
        rows.append((cfg["task"], cfg["algo"], len(seeds), _fmt([last_off.get(s, np.nan) for s in seeds]),
                     _fmt(first), _fmt(worst), _fmt(final), _fmt(succ), _fmt(ch0), _fmt(ch1)))
    print("| task | algo | seeds | last offline | first online (10k) | worst online | final online (100k) | "
          "final success | offline pick, first → last eval |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(str(x) for x in r[:8]) + f" | {r[8]} → {r[9]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "runs/study"))
