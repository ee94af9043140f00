"""User-facing errors: each one names the problem and the fix in a single line.

The CLI catches `PexError` and prints only its message (no traceback), then exits non-zero.
"""


import sys
from collections.abc import Callable


class PexError(Exception):
    """Base class for errors caused by user input or environment, not by bugs."""


class ConfigError(PexError):
    """Invalid configuration value (seed syntax, hyperparameter range, unknown algorithm...)."""


class DatasetError(PexError):
    """A dataset cannot be found, is corrupt, or does not match its environment."""


class DatasetNotFoundError(DatasetError):
    pass


class CorruptDatasetError(DatasetError):
    pass


class SpaceMismatchError(DatasetError):
    pass


class DatasetExistsError(DatasetError):
    """A generator was asked to make a dataset that is already there (without overwrite)."""


class CheckpointError(PexError):
    """A checkpoint is missing, unreadable, or could not be written."""


class DivergenceError(PexError):
    """Training produced non-finite losses or parameters."""


def run_cli(main: Callable[[], int | None]) -> None:
    """Console entry point: run `main`, print a PexError as one `error:` line and exit 1."""
    try:
        sys.exit(main())
    except PexError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 1))  # a stop on a signal exits 128 + signal
