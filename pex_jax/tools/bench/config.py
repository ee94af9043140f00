"""What the bench measures and at which size; `--quick` shrinks everything to test size.

Figures measured outside a run stay in `CONTEXT`: printed as labelled context, never a denominator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pex_jax.tools import ref_pex

# Figures measured outside this run, kept only as labelled context: never a denominator.
CONTEXT = [
    {"figure": "reference PyTorch PEX, offline IQL updates/s, 2 threads", "value": 190.0,
     "measured": "before 2026-11-27, machine and load not recorded"},
    {"figure": "reference PyTorch PEX, offline IQL updates/s, 1 thread", "value": 130.0,
     "measured": "before 2026-11-27, machine and load not recorded"},
    {"figure": "reference PyTorch PEX, online PEX updates/s", "value": 100.0,
     "measured": "before 2026-11-27, machine and load not recorded"},
    {"figure": "reference PyTorch PEX, action selections/s", "value": 3400.0,
     "measured": "before 2026-11-27, machine and load not recorded"},
    {"figure": "reference PyTorch PEX, offline IQL updates/s, 2 threads, side by side", "value": "46-57",
     "measured": "side by side on the project's 2-core dev VM (shared), before 2026-11-30"},
    {"figure": "XLA large-matmul peak, GFLOP/s", "value": "110",
     "measured": "side by side on the project's 2-core dev VM (shared), before 2026-11-30"},
]

PARTS = ("offline", "online", "components", "act", "multitask", "grid", "reference")


@dataclass
class BenchConfig:
    """What to measure and at which size; `--quick` shrinks everything to test size."""

    out: str = "bench_out"
    seeds: list[int] = field(default_factory=lambda: [1, 4, 16])  # offline seed counts
    algos: list[str] = field(default_factory=lambda: ["pex"])  # the engine runs and action selection use the first
    obs_dim: int = 29
    act_dim: int = 8
    hidden_dims: tuple[int, ...] = (256, 256)
    batch_size: int = 256
    dataset_size: int = 1_000_000
    buffer_capacity: int = 1_000_000
    buffer_bytes_limit: int = 2 << 30  # device-side replay buffers are capped at this many bytes in total
    updates: int = 100  # offline updates per window for one seed (scaled down with more seeds)
    reps: int = 3
    tasks: int = 3  # multitask: tasks in one call (0 skips)
    shard: bool = False  # split seeds over local devices when possible
    skip: list[str] = field(default_factory=list)  # any of PARTS
    quick: bool = False
    check_scaling: float = 0.0  # > 0: exit 1 unless total(S) >= check_scaling * S * total(1), offline
    ceiling_window_s: float = 1.0  # seconds per matmul-throughput window
    large_matmul: int = 0  # side of the large square matmul (0: 2048 on CPU, 8192 on accelerators)
    # The online engine, whole online phase (`finetune` on local AntMaze datasets), workers off vs on.
    engine_sizes: list[str] = field(default_factory=lambda: ["1x3", "3x3", "6x10"])  # tasks x seeds
    engine_hidden: tuple[int, ...] = (64, 64)
    acceptance: str = "1x10"  # tasks x seeds of the acceptance figure ("" skips it)
    acceptance_hidden: tuple[int, ...] = (64, 64)
    acceptance_target: float = 1.5  # workers on / off, whole-phase env-steps/s
    engine_eval_every: int = 1250  # env steps between evaluations (see `engine.cadence`)
    engine_eval_episodes: int = 1  # episodes per evaluation, headline ones included
    engine_log_every: int = 250  # env steps between the engine's log rows (the window's clock)
    engine_warmup: int = 500  # env steps before the timed window (compiles, worker start-up, step-0 evaluation)
    engine_cycles: int = 1  # evaluation intervals in the timed window
    engine_reps: int = 2  # runs per mode, alternating (A B B A)
    engine_env_workers: int = -1  # "workers on": the engine's --config.env_workers (-1 = all cores but one)
    engine_eval_workers: int = -1  # "workers on": --config.eval_workers
    engine_lanes: int = 0  # "workers on": --config.pipeline_lanes (0: the engine's default)
    engine_data_steps: int = 10_000  # rows of each generated local AntMaze dataset
    engine_data_episode_steps: int = 1_000
    # The hyperparameter grid: N points in one process vs N processes (`pex_jax.tools.bench.grid`).
    grid_points: int = 4
    grid_seeds: int = 3
    grid_reps: int = 1  # runs per side, alternating
    # Per-component costs at the suite's shapes (6 AntMaze tasks x 10 seeds).
    suite_tasks: int = 6
    suite_seeds: int = 10
    pool_envs: list[int] = field(default_factory=lambda: [6, 30, 60])
    pool_workers: list[int] = field(default_factory=list)  # EnvPool sizes (default: 1, cores - 1, cores)
    component_window_s: float = 0.5
    eval_component_seeds: int = 10
    eval_component_episodes: int = 10  # per seed, all at once: the suite's evaluation round (eval_parallel_envs)
    # The reference side by side (off unless `reference` names the Python of a venv with torch).
    reference: str = ""  # path to that Python, "auto" (.venv-ref/bin/python when it has torch), or ""
    reference_src: str = ""  # a clone, bare git dir or source tree of the reference (default: git clone)
    reference_commit: str = ref_pex.REF_COMMIT
    reference_dir: str = ""  # where the code at that commit is put (default .ref/PEX-<commit>)
    reference_threads: list[int] = field(default_factory=list)  # torch threads tried (default 1 and the cores)
    reference_window_s: float = 3.0  # seconds per side-by-side window
    reference_reps: int = 4  # windows per side and figure, alternating (A B B A)
    reference_buffer_rows: int = 100_000  # transitions in the reference's online ReplayMemory

    @classmethod
    def quick_config(cls, **overrides) -> BenchConfig:
        base = dict(seeds=[1, 2], hidden_dims=(32, 32), batch_size=32, dataset_size=2_000, buffer_capacity=1_000,
                    updates=4, reps=2, tasks=2, quick=True, ceiling_window_s=0.02, large_matmul=256,
                    engine_sizes=["1x2"], engine_hidden=(32, 32), acceptance="1x2", acceptance_hidden=(32, 32),
                    engine_eval_every=40, engine_log_every=20, engine_warmup=20, engine_cycles=1, engine_reps=1,
                    engine_data_steps=200, engine_data_episode_steps=100, suite_tasks=2, suite_seeds=2,
                    pool_envs=[2], pool_workers=[1], component_window_s=0.05, eval_component_seeds=1,
                    eval_component_episodes=1, grid_points=2, grid_seeds=1,
                    reference_window_s=0.2, reference_reps=2, reference_buffer_rows=1_000)
        base.update(overrides)
        return cls(**base)


def parse_size(text: str) -> tuple[int, int]:
    """'6x10' -> (6 tasks, 10 seeds)."""
    try:
        tasks, seeds = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"expected TASKSxSEEDS such as 6x10, got {text!r}") from None
    if tasks < 1 or seeds < 1:
        raise ValueError(f"expected positive task and seed counts, got {text!r}")
    return tasks, seeds
