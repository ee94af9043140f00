"""`make study`: the offline-to-online PointMaze study behind docs/results/pointmaze.md.

For each dataset: one offline IQL pre-training (3 seeds, vmapped), then 100k online env steps for
pex, direct (both from that checkpoint), buffer and scratch; then a report (table + PNG curves).
Finished runs (summary.json present) are skipped, so re-running continues an interrupted study.

Scale, chosen for a 2-core CPU (see docs/results/pointmaze.md): 64x64 networks (the reference uses
256x256), 50k offline updates (reference 1M), 100k online env steps (reference 1M), everything else
at the reference defaults (expectile 0.9, beta 10, inverse temperature 10, UTD 1, 5000 warm-up steps).
"""

import argparse
import subprocess
import sys
from pathlib import Path

from pex_jax.tools.study_runs import ROOT, exit_with, run_task

DATASETS = {
    # task name: generate_pointmaze kwargs (the first is the published recipe at 1M steps)
    "umaze": dict(maze="umaze", steps=1_000_000, noise=0.5, seed=123),
    "umaze-weak": dict(maze="umaze", steps=100_000, noise=1.5, seed=321),
    "medium": dict(maze="medium", steps=1_000_000, noise=0.5, seed=123),
    "large": dict(maze="large", steps=1_000_000, noise=0.5, seed=123),
}
ALGOS = ("pex", "direct", "buffer", "scratch")
COMMON = [
    "--config.hidden_dims=(64, 64)", "--config.offline_steps=50000", "--config.offline_eval_every=5000",
    "--config.online_steps=100000", "--config.online_eval_every=10000", "--config.eval_episodes=10",
    "--config.log_every=2000", "--config.checkpoint_every=30000", "--config.progress=False",
]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="umaze,umaze-weak,medium,large", help=f"comma list from {list(DATASETS)}")
    p.add_argument("--algos", default=",".join(ALGOS))
    p.add_argument("--seeds", default="0-2")
    p.add_argument("--out", default=str(ROOT / "runs" / "study"))
    p.add_argument("--report", default=str(ROOT / "docs" / "results"))
    args, extra = p.parse_known_args(argv)
    py = sys.executable
    out = Path(args.out)
    for task in args.tasks.split(","):
        spec = DATASETS[task]
        dataset_id = f"pex/pointmaze/{task}-v0"
        subprocess.run([py, "-m", "pex_jax.datagen.pointmaze", f"--maze={spec['maze']}", f"--steps={spec['steps']}",
                        f"--noise={spec['noise']}", f"--seed={spec['seed']}", f"--dataset-id={dataset_id}",
                        "--skip-existing", "--no-progress"], cwd=ROOT, check=True)
        run_task(out / task, f"experiments/configs/pointmaze.py:{task}", args.seeds, args.algos.split(","),
                 [*COMMON, *extra])
    subprocess.run([py, "-m", "pex_jax.tools.report", "--runs", str(out), "--out", args.report], cwd=ROOT, check=True)
    return 0


if __name__ == "__main__":
    exit_with(main)
