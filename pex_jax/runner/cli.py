"""What every command line of the engine shares: flag parsing with one-line errors, and the checks
of a config's values before any expensive work (`python -m pex_jax.train`, `.pretrain`, `.finetune`)."""

import sys
from collections.abc import Callable
from typing import Any

import ml_collections

from pex_jax.agents.algorithms import ALGORITHMS
from pex_jax.agents.pex_sac import BACKUPS
from pex_jax.config import ALGOS, RANGES, unknown_override
from pex_jax.device import announce as announce_device
from pex_jax.device import configure_runtime
from pex_jax.errors import ConfigError, PexError
from pex_jax.seeds import parse_seeds


def validate_config(config: ml_collections.ConfigDict) -> list[int]:
    """Check every user-facing value before any expensive work; returns the parsed seeds."""
    seeds = parse_seeds(config.seeds)
    if config.algo not in ALGOS:
        raise ConfigError(f"unknown algorithm {config.algo!r}; choose one of {', '.join(ALGOS)} (--config.algo)")
    for name, valid in RANGES.items():
        if config[name] not in valid:
            raise ConfigError(f"{name} must be {valid}, got {config[name]} (--config.{name})")
    dims = config.hidden_dims
    if not (isinstance(dims, (tuple, list)) and dims
            and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims)):
        raise ConfigError(f"hidden_dims must be a non-empty list of positive layer widths such as '(256, 256)', "
                          f"got {dims!r} (--config.hidden_dims)")
    if config.buffer_capacity < config.batch_size:
        raise ConfigError(f"buffer_capacity must be >= batch_size ({config.batch_size}), got "
                          f"{config.buffer_capacity} (--config.buffer_capacity)")
    if config.pex_sac_backup not in BACKUPS:
        raise ConfigError(f"pex_sac_backup must be one of {', '.join(BACKUPS)}, got {config.pex_sac_backup!r} "
                          f"(--config.pex_sac_backup)")
    if config.algo == "pex_sac" and config.pex_sac_backup == "policy_set" and config.sac_backup_entropy:
        raise ConfigError("sac_backup_entropy=True needs --config.pex_sac_backup=new: the policy set's backup "
                          "action can be the offline policy's mode, which has no log-probability")
    if config.resume not in ("", "auto"):
        raise ConfigError(f"resume must be '' or 'auto', got {config.resume!r} (--config.resume)")
    spec = ALGORITHMS[config.algo]
    if config.algo == "offline" and config.offline_steps == 0 and not config.offline_checkpoint:
        raise ConfigError("algo=offline with offline_steps=0 trains nothing; set --config.offline_steps")
    if spec.warm_start != "none" and config.offline_steps == 0 and not config.offline_checkpoint:
        raise ConfigError(
            f"algo={config.algo} starts from an offline run: set --config.offline_steps > 0 or "
            f"--config.offline_checkpoint=<run dir>"
        )
    return seeds


def absl_main(argv: list[str] | None, body: Callable[[Any], None]) -> int:
    """Parse absl flags, then run `body(FLAGS)`. A flag error exits 2 and a PexError exits 1, each
    printed as one `error:` line. Shared by the `train`, `pretrain` and `finetune` CLIs."""
    from absl import flags

    argv = sys.argv if argv is None else argv
    try:
        flags.FLAGS(argv)
        config = flags.FLAGS["config"].value if "config" in flags.FLAGS else None
        if config is not None:
            config.get("seeds")  # a config file that did not load raises on first access: here, not mid-run
    except flags.Error as e:  # a bad value (--config.batch_size=abc), an unknown flag, a bad --config task
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]  # a config file's error: a traceback
        print(f"error: {' '.join(lines[:1] + lines[1:][-1:])}", file=sys.stderr, flush=True)
        return 2
    except (AttributeError, KeyError):  # ml_collections: an override that names no field of the config
        message = unknown_override(argv, flags.FLAGS["config"].parser.parse)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr, flush=True)
        return 2
    except OSError as e:  # ml_collections defers a missing or unreadable config file to first access
        reason = [line.strip() for line in str(e).splitlines() if line.strip()][-1]
        print(f"error: cannot load the config file (--config): {reason}", file=sys.stderr, flush=True)
        return 2
    configure_runtime("runner")  # before JAX starts: memory sharing and matmul precision
    announce_device()  # first line of a run: the device JAX found (and a warning if it isn't the one asked for)
    try:
        body(flags.FLAGS)
    except PexError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return getattr(e, "exit_code", 1)  # a stop on a signal exits 128 + signal
    return 0


def tasks_main(argv: list[str] | None, body: Callable[[list, Any, bool], Any], default_dir: str) -> int:
    """CLI of the multi-task commands: `--config=<file> --tasks=a,b` plus `--config.x=v` overrides applied
    to every task's config, each expanded into its points under `--config.grid`; calls
    `body(configs, run_dir, resume)`."""
    import time
    from pathlib import Path

    from absl import flags
    from ml_collections import config_flags

    from pex_jax.pretrain import task_configs

    if "tasks" not in flags.FLAGS:
        flags.DEFINE_string("tasks", None, "comma-separated tasks of the config file, e.g. umaze,medium-play")

    def run(flag_values) -> None:
        if flag_values.config is None or not flag_values.tasks:
            raise ConfigError("pass --config=experiments/configs/<domain>.py and --tasks=<task>,<task>,...")
        overrides = dict(config_flags.get_override_values(flag_values["config"]))
        run_dir = Path(overrides.pop("run_dir", "") or Path("runs") / default_dir / time.strftime("%Y%m%d-%H%M%S"))
        configs = task_configs(config_flags.get_config_filename(flag_values["config"]),
                               [t for t in flag_values.tasks.split(",") if t], overrides)
        from pex_jax.grid import expand_tasks

        configs = expand_tasks(configs)  # every task's grid points on the engine's task axis (pex_jax/grid.py)
        body(configs, run_dir, configs[0].resume == "auto")

    return absl_main(argv, run)


def define_config_flag() -> None:
    """`--config=<file>[:<task>]` with `--config.<field>=<value>` overrides, once per process."""
    from absl import flags
    from ml_collections import config_flags

    if "config" not in flags.FLAGS:
        config_flags.DEFINE_config_file(
            "config", None, "experiment config, e.g. experiments/configs/antmaze.py:umaze", lock_config=True
        )


define_config_flag()
