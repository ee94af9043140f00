"""The run loop every study (experiments/study*.py) shares: offline IQL once per task, then each online algorithm.

A finished run (summary.json present, status finished) is skipped and an interrupted one resumes
(`--config.resume=auto`, with the study's `checkpoint_every`), so re-running a study continues it; one run per
process, so pieces fit in a session.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pex_jax.runner.run_dir import finished

ROOT = Path(__file__).resolve().parents[2]  # the repository: configs and run dirs are relative to it
FROM_OFFLINE = ("pex", "direct", "pex_sac")  # online algorithms that start from the offline checkpoint


def run_task(task_dir: Path, config: str, seeds: str, algos: Sequence[str], flags: Sequence[str]) -> None:
    """`offline`, then `algos` (empty names skipped: `--algos=` runs the offline part only), each in
    `task_dir/<algo>`, with `pex_jax.train --config=<config>` and `flags`."""
    base = [sys.executable, "-m", "pex_jax.train", f"--config={config}", f"--config.seeds={seeds}", *flags]
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "disabled")}
    for algo in ("offline", *filter(None, algos)):
        run_dir = task_dir / algo
        if finished(run_dir):  # a preempted or failed run's summary.json says so: it resumes
            print(f"study: {task_dir.name}/{algo} done, skipping", flush=True)
            continue
        cmd = [*base, f"--config.algo={algo}", f"--config.run_dir={run_dir}"]
        if run_dir.exists():
            cmd.append("--config.resume=auto")
        if algo in FROM_OFFLINE:
            cmd.append(f"--config.offline_checkpoint={task_dir / 'offline'}")
        print("study:", " ".join(cmd[1:]), flush=True)
        run_forwarding_sigterm(cmd, cwd=ROOT, env=env)


def run_forwarding_sigterm(cmd: Sequence[str], cwd: Path, env: dict[str, str]) -> None:
    """Run `cmd`, passing a SIGTERM sent to this process on to it: stopping a study then stops its training run
    with a checkpoint (the run's own SIGTERM handling) instead of leaving it running on the run directory.
    Ctrl-C needs no forwarding (the terminal signals the whole process group). Raises CalledProcessError on failure."""
    proc = subprocess.Popen(list(cmd), cwd=cwd, env=env)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signum))
    try:
        code = proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if code:
        raise subprocess.CalledProcessError(code, list(cmd))


def exit_with(main: Callable[[], int]) -> None:
    """A study script's entry point: a failing step (data generation, a run) has printed its own `error:` line,
    so the study exits with that step's code instead of adding a traceback."""
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as e:
        sys.exit(e.returncode)
