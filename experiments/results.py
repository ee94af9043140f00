"""Every table file in docs/results and its figures, recomputed from the committed run directories in one command.

    python experiments/results.py                 # rewrite them (tables + PNGs) in docs/results
    python experiments/results.py --check         # recompute into a temporary folder; fail on any table that differs
    python experiments/results.py --list          # the command behind each table

`--check` is what keeps the result pages honest: a table that no longer follows from its run directories (a run
added or resumed without regenerating, a summarizer changed since) fails it, named with the command that rewrites
it. A study whose run directory is in use by a live process (its `.lock` held) is skipped with a note: its table is
fixed only when the run stops. Only the markdown tables are compared; PNGs are rewritten, not compared.

Not covered: the PointMaze page's results table (`experiments/study_summary.py` prints it for pasting; the
suite checks that every pasted row is still one it prints, tests/test_study_summary.py), `mujoco_fidelity.md`
(from simulator outputs that are not committed: `make mujoco-fidelity`) and the training curves of the expert
policies (written by the runs themselves).
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pex_jax.runner.run_dir import runs_in_use

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path("docs/results")
OUT = "{out}"  # replaced by the output folder


@dataclass(frozen=True)
class Result:
    """One table file: the command that writes it (run from the repository root) and the run directories it reads."""

    name: str
    table: str  # path under docs/results
    argv: tuple[str, ...]
    reads: tuple[str, ...]  # paths under docs/results
    copy: tuple[str, ...] = ()  # inputs the command reads from its output folder (paths under docs/results)

    def command(self, out: Path | str) -> list[str]:
        return [sys.executable, *(a.replace(OUT, str(out)) for a in self.argv)]

    def command_line(self) -> str:
        return "python " + " ".join(a.replace(OUT, str(RESULTS / Path(self.table).parent)) for a in self.argv)


def _study(name: str, table: str, root: str, *flags: str) -> Result:
    return Result(name, table, ("experiments/summarize_study.py", f"{RESULTS}/{root}", "--out", OUT, *flags), (root,))


TABLES: tuple[Result, ...] = (
    _study("antmaze", "antmaze_tables.md", "antmaze_runs", "--algos", "offline,pex,direct"),
    _study("antmaze-sac", "antmaze_tables-sac.md", "antmaze_runs", "--tasks", "umaze", "--algos", "pex,pex_sac,sac",
           "--tag", "sac"),
    _study("locomotion", "locomotion_tables.md", "locomotion_runs", "--domain", "locomotion", "--algos",
           "offline,pex,direct,buffer"),
    _study("temperature-umaze", "antmaze_tables-temperature.md", "temperature_runs/umaze",
           "--include-unfinished", "--tag", "temperature"),
    _study("temperature-medium-play", "antmaze_tables-temperature-medium-play.md",
           "temperature_runs/medium-play", "--include-unfinished", "--tag", "temperature-medium-play"),
    _study("temperature-hopper-medium", "locomotion_tables-temperature-hopper-medium.md",
           "temperature_runs/hopper-medium", "--include-unfinished", "--domain", "locomotion", "--tag",
           "temperature-hopper-medium"),
    _study("antmaze-paper", "antmaze_tables-paper.md", "antmaze_paper_runs", "--include-unfinished", "--critic",
           "--tag", "paper"),
    _study("antmaze-paper-superseded", "antmaze_tables-paper-superseded.md", "antmaze_superseded_runs",
           "--include-unfinished", "--tag", "paper-superseded"),
    *(Result(f"antmaze-mechanism-{t}", f"antmaze_mechanism/{t}.md",
             ("experiments/mechanism_antmaze.py", "--task", t, "--from-json", "--out", OUT),
             (f"antmaze_mechanism/{t}.json",), copy=(f"antmaze_mechanism/{t}.json",))
      for t in ("umaze", "medium-play")),
    Result("pointmaze-report", "report.md",
           ("-m", "pex_jax.tools.report", "--runs", f"{RESULTS}/pointmaze_runs", "--out", OUT),
           ("pointmaze_runs",)),
)


def run(result: Result, out: Path) -> None:
    """Write `result`'s table (and figures) into `out`, the folder standing for docs/results."""
    target = out / Path(result.table).parent
    target.mkdir(parents=True, exist_ok=True)
    for rel in result.copy:
        if (out / rel).resolve() != (ROOT / RESULTS / rel).resolve():
            shutil.copyfile(ROOT / RESULTS / rel, out / rel)
    env = {**os.environ, "WANDB_MODE": "disabled", "MPLBACKEND": "Agg"}
    proc = subprocess.run(result.command(target), cwd=ROOT, env=env, text=True, capture_output=True)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip().splitlines()[-5:]
        raise SystemExit(f"error: {result.name}: `{result.command_line()}` failed (exit {proc.returncode})"
                         + "".join(f"\n  {line}" for line in detail))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="recompute into a temporary folder and compare the tables")
    p.add_argument("--list", action="store_true", help="print each table with its command")
    p.add_argument("--only", default="", help="comma list of result names (see --list)")
    p.add_argument("--docs", default=str(ROOT / RESULTS),
                   help="the folder whose tables --check compares against (default docs/results)")
    args = p.parse_args(argv)
    names = {r.name for r in TABLES}
    only = [n for n in args.only.split(",") if n]
    unknown = sorted(set(only) - names)
    if unknown:
        print(f"error: unknown result(s) {', '.join(unknown)}; choose from {', '.join(sorted(names))}",
              file=sys.stderr)
        return 2
    chosen = [r for r in TABLES if not only or r.name in only]
    if args.list:
        for r in chosen:
            print(f"{r.name}: docs/results/{r.table}\n    {r.command_line()}")
        return 0
    if not args.check:
        for r in chosen:
            print(f"{r.name}: {r.command_line()}", flush=True)
            run(r, ROOT / RESULTS)
        print(f"rewrote {len(chosen)} table(s) and their figures in {RESULTS}")
        return 0

    stale, skipped = [], []
    with tempfile.TemporaryDirectory(prefix="pex-results-") as tmp:
        for r in chosen:
            live = [d for rel in r.reads for d in runs_in_use(ROOT / RESULTS / rel)]
            if live:
                skipped.append(f"{r.name}: skipped, {live[0].relative_to(ROOT)} is in use by a running process")
                continue
            run(r, Path(tmp))
            fresh, committed = Path(tmp) / r.table, Path(args.docs) / r.table
            if not committed.is_file() or not filecmp.cmp(fresh, committed, shallow=False):
                stale.append(r)
    for line in skipped:
        print(line)
    if stale:
        for r in stale:
            print(f"stale: docs/results/{r.table} does not follow from its run directories; rewrite it with "
                  f"`python experiments/results.py --only {r.name}` (= `{r.command_line()}`) and commit it",
                  file=sys.stderr)
        return 1
    print(f"{len(chosen) - len(skipped)} table(s) follow from their run directories")
    return 0


if __name__ == "__main__":
    sys.exit(main())
