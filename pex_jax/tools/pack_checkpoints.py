"""Pack the newest online checkpoint of run directories, so a long online phase can go on on another machine.

    python -m pex_jax.tools.pack_checkpoints RUN_DIR [RUN_DIR ...]

Every `checkpoints/` folder under the given directories whose newest checkpoint is a full online one gets
its packed copy, `online-<step>-packed` (the replay reduced to its actions, `pex_jax.checkpoint.pack_run_state`);
it takes over the action chunks of the older packed copy there and replaces it. Commit the packed copies with
the run directories: `resume=auto` on a machine without the full checkpoint re-simulates the replay from them
and checks it bit for bit.
"""

import argparse
import shutil
import sys
from pathlib import Path

from pex_jax import checkpoint
from pex_jax.errors import PexError


def pack_newest(ckpt_root: Path) -> Path | None:
    """Pack the newest checkpoint of one `checkpoints/` folder if it is a full online one; None otherwise."""
    newest = checkpoint.latest_run_state(ckpt_root.parent)
    if newest is None or not newest.name.startswith("online-") or newest.name.endswith(checkpoint.PACKED_SUFFIX):
        return None
    earlier = sorted(ckpt_root.glob(f"online-*{checkpoint.PACKED_SUFFIX}"))
    packed = checkpoint.pack_run_state(newest, previous=earlier[-1] if earlier else None)
    for old in earlier:
        if old != packed:
            shutil.rmtree(old)
    return packed


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", type=Path)
    args = p.parse_args(argv)
    missing = [str(d) for d in args.run_dirs if not d.is_dir()]
    if missing:
        print(f"pack_checkpoints: no such directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    roots = sorted({r for d in args.run_dirs for r in [d / checkpoint.RUN_DIR, *d.rglob(checkpoint.RUN_DIR)]
                    if r.is_dir()})
    packed_any = False
    for root in roots:
        try:
            packed = pack_newest(root)
        except PexError as e:
            print(f"pack_checkpoints: {e}", file=sys.stderr)
            return 1
        if packed is not None:
            full = packed.with_name(packed.name.removesuffix(checkpoint.PACKED_SUFFIX))
            print(f"{packed}: {_size(packed) / 2**20:.1f} MiB (the full checkpoint: {_size(full) / 2**20:.1f} MiB)")
            packed_any = True
    if not packed_any:
        print("pack_checkpoints: no full online checkpoint to pack under " + ", ".join(map(str, args.run_dirs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
