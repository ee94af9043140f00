"""Hyperparameter grids on the vmapped axis: several settings of the traced hyperparameters in one process.

    python -m pex_jax.train --config=experiments/configs/antmaze.py:umaze-local --config.seeds=0-2 \
        --config.grid='inv_temperature=10,100;expectile=0.7,0.9' --config.run_dir=runs/grid

The grid's points (the product of the listed values, in the order given) become entries of the engine's
task axis: one device call per chunk (offline) or env step (online) trains points x seeds, and each point
keeps its own run directory, metrics, summary and W&B runs. The values are traced (`agents.iql.Hparams`),
not compiled in, so a point's run equals the separate run with those values up to float rounding
(tests/test_grid.py). Only those fields can vary: a field that sets a shape or the compiled program
(hidden_dims, batch_size, utd, offline_ratio, algo, ...) is refused, since one call cannot hold two of them.

Run directories, under the run's `run_dir` (`<task>/<algo>@<point>`, as `make antmaze` lays out tasks):
- `<task>/offline[@<offline point>]`: offline pre-training once per distinct value of the fields it reads
  (a grid over inv_temperature alone pre-trains once); `<offline point>` is the point's offline fields;
- `<task>/<algo>@<point>`: each point's online run, started from its offline run.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
from pathlib import Path

import ml_collections

from pex_jax.agents.algorithms import ALGORITHMS, TRACED_FIELDS
from pex_jax.config import RANGES, field_names
from pex_jax.errors import ConfigError

GRID_FIELDS = TRACED_FIELDS
# The traced fields the offline phase reads; the others (the policy set's) act online only.
OFFLINE_FIELDS = ("gamma", "expectile", "beta", "adv_clip", "tau", "lr")


def parse_grid(spec: str, config: ml_collections.ConfigDict | None = None) -> dict[str, list[float]]:
    """'inv_temperature=10,100;expectile=0.7,0.9' -> {'inv_temperature': [10.0, 100.0], 'expectile': [0.7, 0.9]}.

    Every problem is one ConfigError naming the field and the fix."""
    grid: dict[str, list[float]] = {}
    for part in (p.strip() for p in spec.split(";")):
        if not part:
            continue
        name, sep, values = part.partition("=")
        name = name.strip()
        if not sep or not values.strip():
            raise ConfigError(f"--config.grid: {part!r} is not <field>=<value>,<value>; e.g. "
                              f"--config.grid='inv_temperature=10,100;expectile=0.7,0.9'")
        if name not in GRID_FIELDS:
            known = field_names(config) if config is not None else []
            if name in known:
                raise ConfigError(f"--config.grid: {name} sets a shape or the compiled program, so one device call "
                                  f"cannot hold two values of it; run one process per value (a sweep parameter). "
                                  f"Grid fields: {', '.join(GRID_FIELDS)}")
            nearest = difflib.get_close_matches(name, GRID_FIELDS, n=1, cutoff=0.0)
            raise ConfigError(f"--config.grid: unknown field {name!r}; the nearest grid field is {nearest[0]} "
                              f"(grid fields: {', '.join(GRID_FIELDS)})")
        if name in grid:
            raise ConfigError(f"--config.grid: {name} is listed twice; give all its values once, comma-separated")
        try:
            parsed = [float(v) for v in values.split(",")]
        except ValueError:
            raise ConfigError(f"--config.grid: {name}'s values {values!r} are not numbers") from None
        if len(set(parsed)) != len(parsed):
            raise ConfigError(f"--config.grid: {name} repeats a value ({values}); list each value once")
        for v in parsed:
            if v not in RANGES[name]:
                raise ConfigError(f"--config.grid: {name} must be {RANGES[name]}, got {v:g}")
        grid[name] = parsed
    if not grid:
        raise ConfigError("--config.grid is empty; e.g. --config.grid='inv_temperature=10,100'")
    return grid


def label(values: dict[str, float]) -> str:
    """A point's name in directories, report rows and W&B groups: 'inv_temperature=10,expectile=0.7'."""
    return ",".join(f"{k}={v:g}" for k, v in values.items())


def grid_id(config: ml_collections.ConfigDict) -> str:
    """A short stable id of one grid run (its W&B tag): the grid with the task, algorithm and seeds."""
    key = f"{config.task}|{config.algo}|{config.seeds}|{config.grid}"
    return "grid-" + hashlib.sha1(key.encode()).hexdigest()[:8]


def offline_label(config: ml_collections.ConfigDict) -> str:
    """The point restricted to the fields the offline phase reads ('' when the grid varies none)."""
    if not config.get("grid"):
        return ""
    names = [n for n in parse_grid(config.grid) if n in OFFLINE_FIELDS]
    return label({n: float(config[n]) for n in names})


def suffix(point: str) -> str:
    return f"@{point}" if point else ""


def expand(config: ml_collections.ConfigDict) -> list[ml_collections.ConfigDict]:
    """One config per grid point (the product of the values, first field slowest), each with its values set,
    `grid_point` naming it and the grid's id among its W&B tags. The SAC backbone compiles its
    hyperparameters in, so its algorithms are refused."""
    grid = parse_grid(config.grid, config)
    if ALGORITHMS[config.algo].backbone != "iql":
        raise ConfigError(f"--config.grid needs an IQL-backbone algorithm (pex, direct, buffer, scratch, offline); "
                          f"{config.algo} compiles its hyperparameters in: run one process per value")
    tag = grid_id(config)
    points = []
    for values in itertools.product(*grid.values()):
        point = dict(zip(grid, values, strict=True))
        c = ml_collections.ConfigDict(config.to_dict())
        with c.unlocked():
            for name, v in point.items():
                c[name] = v
            c.grid_point = label(point)
            c.wandb.tags = tuple(dict.fromkeys([*c.wandb.tags, tag]))
        points.append(c)
    return points


def expand_tasks(configs: list[ml_collections.ConfigDict]) -> list[ml_collections.ConfigDict]:
    """Every task's grid points (the tasks as they are when no grid is set): the multi-task commands' entries."""
    return [point for c in configs for point in (expand(c) if c.get("grid") else [c])]


def offline_points(points: list[ml_collections.ConfigDict]) -> list[ml_collections.ConfigDict]:
    """The distinct offline runs the points need (by task and offline fields), as configs whose
    `grid_point` is the offline label; first-seen order."""
    seen: dict[tuple[str, str], ml_collections.ConfigDict] = {}
    for c in points:
        key = (c.task, offline_label(c))
        if key not in seen:
            o = ml_collections.ConfigDict(c.to_dict())
            with o.unlocked():
                o.grid_point = key[1]
            seen[key] = o
    return list(seen.values())


def entry_name(config: ml_collections.ConfigDict) -> str:
    """A task's (or grid point's) name among the entries of one multi-task command."""
    return config.task + suffix(config.get("grid_point", ""))


def group_name(prefix: str, names: list[str]) -> str:
    """The directory name of a call group's run-state checkpoints: the entries joined, or (when that gets too
    long for a file name) the first entry, the count and a hash of them all."""
    joined = "+".join(names)
    if len(prefix) + len(joined) <= 200:  # file names hold 255 bytes; every run before grids fits here
        return prefix + joined
    digest = hashlib.sha1(joined.encode()).hexdigest()[:8]
    return f"{prefix}{names[0][:60]}+{len(names) - 1}-more-{digest}"


def offline_dir(run_dir: Path, config: ml_collections.ConfigDict) -> Path:
    """`<run_dir>/<task>/offline`, or `offline@<point>` for a grid point's own pre-training."""
    return run_dir / config.task / ("offline" + suffix(config.get("grid_point", "")))
