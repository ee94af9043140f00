"""`make sweep SWEEP=experiments/sweeps/x.yaml`: create a W&B sweep when logged in, else print the commands.

W&B sweeps need the W&B server (an API key and network): `wandb sweep` registers the sweep and
`wandb agent` pulls trials from it. Without credentials this prints the exact commands instead.
"""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0]:
        print("error: pass a sweep file, e.g. make sweep SWEEP=experiments/sweeps/pex_antmaze_invtemp_expectile.yaml",
              file=sys.stderr)
        return 2
    path = Path(argv[0])
    if not path.exists():
        sweeps = ", ".join(sorted(p.name for p in (ROOT / "experiments" / "sweeps").glob("*.yaml")))
        print(f"error: no sweep file {path}; available: {sweeps}", file=sys.stderr)
        return 2
    from pex_jax.tools.tracking import _has_api_key

    wandb = shutil.which("wandb") or str(Path(sys.executable).parent / "wandb")
    if not _has_api_key():
        print("W&B is not logged in here (no WANDB_API_KEY / `wandb login`). With network access, run:\n")
        print("  source .venv/bin/activate        # sweeps call `python`, which must be this venv's")
        print(f"  wandb sweep {path}               # prints the sweep id ENTITY/PROJECT/ID")
        print("  wandb agent ENTITY/PROJECT/ID    # on every machine/GPU that should run trials")
        print("\nEach trial runs all its seeds vmapped and reports eval/normalized_score_mean (seed mean).")
        return 0
    proc = subprocess.run([wandb, "sweep", str(path)], cwd=ROOT, capture_output=True, text=True)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        return proc.returncode
    print("\nStart agents with the `wandb agent ...` command above (one per machine or GPU), from this repo with")
    print("the venv active (`source .venv/bin/activate`).")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
