"""`make study-antmaze`: the offline-to-online AntMaze study behind docs/results/antmaze.md.

Per task (local D4RL-recipe data, `pex/antmaze/<task>-v0`, generated if missing): one offline IQL pre-training
(seeds vmapped; the `offline` row: the offline policy, never fine-tuned), then pex and direct from that
checkpoint; optionally buffer (no pre-training) and the SAC-backbone pair pex_sac (from the same checkpoint)
and sac (no pre-training), docs/pex-sac.md. Skip/resume as in experiments/study_runs.py; pieces fit in a
session with `--tasks` and `--algos`.

Hyperparameters: the reference's AntMaze settings (experiments/configs/antmaze.py: expectile 0.9, beta 10,
inverse temperature 10, rewards r - 1, 2x256 networks, UTD 1, 5000 warm-up steps), fixed before any result was
seen. Scale (reduced for a 2-core CPU; the reference runs 1M offline updates + 1M online steps): OFFLINE_STEPS
and the flags in SCALE, stated again in docs/results/antmaze.md. Evaluation: online step 0 and every
`online_eval_every` steps, D4RL's score (100 x success).
"""

import argparse
import subprocess
import sys
from pathlib import Path

from pex_jax.tools.study_runs import ROOT, exit_with, run_task

TASKS = ("umaze", "medium-play", "large-play")
ALGOS = ("pex", "direct")
# Offline updates per task. 100k unless listed: large-play's offline policy scored 0 for all three seeds at every
# evaluation up to 100k updates (IQL's early low, which the offline length has to clear), so it gets 300k; decided
# from the offline evaluations alone, before any online run of the task (the 100k run is kept as large-play-100k).
OFFLINE_STEPS = {"large-play": 300_000}
SCALE = [
    "--config.offline_eval_every=10000",
    "--config.online_steps=50000", "--config.online_eval_every=5000",
    "--config.eval_episodes=30", "--config.interim_eval_episodes=10",
]
COMMON = ["--config.log_every=1000", "--config.checkpoint_every=10000", "--config.progress=False"]
# The long runs (`--scale=paper`): the reference's cadence (offline and online evaluations every 10k; headline
# evaluations keep 30 episodes, the reference: 100; interim ones 10) and, per task, (offline updates, online steps):
# medium-play at the reference's 1M + 1M; umaze at the study's 100k offline updates, then 300k online steps (far
# enough to see where PEX ends on the easiest maze; the reference's 1M + 1M for any other task). Run directories live
# in the repository (docs/results/antmaze_paper_runs, the newest checkpoint only), so the run goes on across machines:
# commit them, and the same command on a fresh clone resumes. Online checkpoints hold the replay buffer (umaze:
# 133 MB at 153k steps x 3 seeds) and stay out of git (.gitignore); their packed copies (the actions only, 1/8 of
# that: `python -m pex_jax.tools.pack_checkpoints docs/results/antmaze_paper_runs` after stopping) are committed,
# and a resume on a machine without the full checkpoint re-simulates the replay from them (checked bit for bit).
PAPER_LENGTH = {"medium-play": (1_000_000, 1_000_000), "umaze": (100_000, 300_000)}
PAPER_OUT = ROOT / "docs" / "results" / "antmaze_paper_runs"
PAPER_SCALE = [
    "--config.offline_eval_every=10000", "--config.online_eval_every=10000",
    "--config.eval_episodes=30", "--config.interim_eval_episodes=10", "--config.keep_checkpoints=1",
]


def lengths(task: str, paper: bool) -> list[str]:
    """The offline-updates and online-steps flags of `task` at the chosen scale."""
    if paper:
        offline, online = PAPER_LENGTH.get(task, (1_000_000, 1_000_000))
        return [f"--config.offline_steps={offline}", f"--config.online_steps={online}"]
    return [f"--config.offline_steps={OFFLINE_STEPS.get(task, 100_000)}"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--algos", default=",".join(ALGOS),
                   help="online algorithms, from pex,direct,buffer,pex_sac,sac; empty: the offline run only")
    p.add_argument("--seeds", default="0-2")
    p.add_argument("--scale", choices=("study", "paper"), default="study",
                   help="study: the reduced scale of docs/results/antmaze.md; paper: the long runs (PAPER_LENGTH)")
    p.add_argument("--out", help="run directories (default runs/study_antmaze, or docs/results/antmaze_paper_runs)")
    args, extra = p.parse_known_args(argv)
    paper = args.scale == "paper"
    out = Path(args.out or (PAPER_OUT if paper else ROOT / "runs" / "study_antmaze"))
    tasks = args.tasks.split(",")
    subprocess.run([sys.executable, "-m", "pex_jax.datagen.antmaze", f"--task={','.join(tasks)}", "--skip-existing"],
                   cwd=ROOT, check=True)
    for task in tasks:
        run_task(out / task, f"experiments/configs/antmaze.py:{task}-local", args.seeds, args.algos.split(","),
                 [*lengths(task, paper), *(PAPER_SCALE if paper else SCALE), *COMMON, *extra])
    return 0


if __name__ == "__main__":
    exit_with(main)
