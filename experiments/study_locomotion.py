"""`make study-locomotion`: the offline-to-online locomotion study behind docs/results/locomotion.md.

Per task (local D4RL-recipe data `pex/mujoco/<env>/medium-v0`, generated from the committed SAC policy files if
missing; `make mujoco-experts` makes those): one offline IQL pre-training (seeds vmapped; the `offline` row), then
pex and direct from that checkpoint. Skip/resume as in pex_jax/tools/study_runs.py; pieces fit in a session with
`--tasks` and `--algos`.

Hyperparameters: the reference's locomotion settings (experiments/configs/locomotion.py: expectile 0.7, beta 10,
inverse temperature 10, raw rewards, 2x256 networks, UTD 1, 5000 warm-up steps), fixed before any result was seen.
Scale (reduced for a 2-core CPU; the reference runs 1M offline updates + 1M online steps): SCALE below.
Evaluation: online step 0 and every `online_eval_every` steps, D4RL's normalized return.
"""

import argparse
import subprocess
import sys
from pathlib import Path

from pex_jax.tools.study_runs import ROOT, exit_with, run_task

TASKS = ("hopper-medium", "halfcheetah-medium")
ALGOS = ("pex", "direct")
SCALE = [
    "--config.offline_steps=100000", "--config.offline_eval_every=10000",
    "--config.online_steps=50000", "--config.online_eval_every=5000",
    "--config.eval_episodes=10", "--config.interim_eval_episodes=5",
]
COMMON = ["--config.log_every=1000", "--config.checkpoint_every=10000", "--config.progress=False"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default=",".join(TASKS), help="comma list of <env>-<level> (local data)")
    p.add_argument("--algos", default=",".join(ALGOS), help="online algorithms, e.g. pex,direct,buffer,pex_sac,sac")
    p.add_argument("--seeds", default="0-2")
    p.add_argument("--out", default=str(ROOT / "runs" / "study_locomotion"))
    args, extra = p.parse_known_args(argv)
    out = Path(args.out)
    for task in args.tasks.split(","):
        env, _, level = task.partition("-")
        subprocess.run([sys.executable, "-m", "pex_jax.datagen.locomotion", "generate", f"--env={env}",
                        f"--level={level}", "--skip-existing"], cwd=ROOT, check=True)
        run_task(out / task, f"experiments/configs/locomotion.py:{task}-local", args.seeds, args.algos.split(","),
                 [*SCALE, *COMMON, *extra])
    return 0


if __name__ == "__main__":
    exit_with(main)
