"""One maker per local dataset at a time.

Two processes that need the same generated dataset (two study runs started side by side on a fresh machine,
parallel sweep agents) would otherwise both collect it, and the one that finishes second would fail on the
first's directory and, cleaning up after itself, delete it. The slot is an exclusive lock per dataset id, held
for the whole of collection and writing: the second maker waits, then finds the dataset made and stops with
`DatasetExistsError` (the `--skip-existing` CLIs report it as skipped). Inside the slot the directory belongs to
this process, so removing it on failure can only remove this process's own half-written files.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from pex_jax.data.minari import dataset_dir, datasets_root
from pex_jax.errors import DatasetExistsError

LOCK_DIR = ".pex-locks"  # hidden: Minari's listing skips hidden directories


def lock_path(dataset_id: str) -> Path:
    return datasets_root() / LOCK_DIR / (dataset_id.replace("/", "--") + ".lock")


@contextlib.contextmanager
def _exclusive(path: Path, dataset_id: str) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"{dataset_id}: another process is making this dataset; waiting for it to finish (lock {path})",
                  file=sys.stderr, flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        except OSError:  # a file system without flock: no mutual exclusion, the checks below still apply
            pass
        yield  # closing the file releases the lock


@contextlib.contextmanager
def dataset_slot(dataset_id: str, overwrite: bool = False) -> Iterator[Path]:
    """Hold `dataset_id` while it is made; yields its (absent) directory.

    Raises DatasetExistsError if the dataset is there (made earlier, or by the process this one waited for)
    and `overwrite` is false. A directory without `data/` is the leftover of an interrupted run and is
    replaced. If the body raises, the directory is removed.
    """
    path = dataset_dir(dataset_id)
    with _exclusive(lock_path(dataset_id), dataset_id):
        if (path / "data").exists() and not overwrite:
            raise DatasetExistsError(f"dataset {dataset_id!r} already exists at {path}; pass --overwrite "
                                     "(overwrite=True) to replace it")
        if path.exists():
            shutil.rmtree(path)
        try:
            yield path
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)  # never leave a half-written dataset behind
            raise
