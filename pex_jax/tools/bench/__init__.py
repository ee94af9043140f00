"""Throughput benchmark: offline IQL updates/s, the online engine's whole online phase with workers off and on,
what one engine step is made of, action selection, several tasks in one call, compile times and memory,
and a projection of the AntMaze suite's wall clock from the measured parts. Writes `bench.json` and
`bench.md`.

    python -m pex_jax.tools.bench --out bench_out/ [--quick]   # or: make bench

Three kinds of figure, and no ratio uses a number from outside the run:
- **in-run baselines**: each figure next to its baseline, in alternating windows or runs (A B B A ...),
  reported as a ratio: the offline scan against one call per update, seeds looped against vmapped, several
  tasks in one call against one call per task, the engine with workers on against workers off;
- **fraction of the ceiling**: every run measures XLA's matmul throughput on this device; a rate's
  fraction = rate x FLOPs each (XLA's cost analysis) / peak;
- **the reference side by side** (`--reference PYTHON`, `make bench-reference`): the reference PyTorch
  PEX's own classes, timed in windows that alternate with pex-jax's.

Modules: `harness` (windows, stats, machine), `ceiling`, `config`, `problem` (shapes and states),
the workloads `offline`, `engine` (on local AntMaze data, `antmaze`), `components` (env pools: `envs`),
`act`, `multitask`, `reference`; `projection` (the suite's hours from the components), `report` (the
Markdown, rebuilt from the JSON), `cli`.

This package's `__init__` imports nothing heavy: `AsyncVectorEnv` children import `envs` through it and
must not load JAX.
"""

from __future__ import annotations

_PROBLEM = ("box_dims", "init_offline_states", "init_online_states", "synthetic_dataset")


def __getattr__(name: str):
    """The problem set-up other tests build on (`from pex_jax.tools.bench import synthetic_dataset`), loaded
    on first use."""
    if name in _PROBLEM:
        from pex_jax.tools.bench import problem

        return getattr(problem, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
