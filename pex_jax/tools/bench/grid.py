"""The hyperparameter grid's figure: N grid points in one process against N processes of one point each, at the
same total seeds, through the real entry point (`python -m pex_jax.train`, a subprocess per run).

Both sides run PEX's online phase on a local AntMaze task from the same initial offline states (`offline_checkpoint`,
saved where a run would read it): the grid side with `--config.grid='inv_temperature=<N values>'`, the other with
one `--config.inv_temperature=<value>` per process, one after another (as one W&B agent runs its trials). Reported:
- **whole runs**: the wall clock of the one grid process against the sum of the N processes' (start-up, data,
  compilation, evaluation and training included: what a sweep of N trials costs on this machine);
- **the training loop**: env steps per second of the grid process's loop against one point's, from the engine's
  log rows between `engine_warmup` and the last step (compiles and the step-0 evaluation left out); N points'
  agent-steps/s in one loop against one point's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pex_jax import checkpoint
from pex_jax.agents.algorithms import Dims
from pex_jax.pretrain import task_configs
from pex_jax.runner.common import offline_meta
from pex_jax.tools.bench.antmaze import LocalAntMaze
from pex_jax.tools.bench.config import BenchConfig
from pex_jax.tools.bench.engine import CONFIG_FILE, EngineCase, _initial_offline, _overrides, cadence, window_rate
from pex_jax.tools.bench.harness import alternation, rate_stats
from pex_jax.tools.tracking import METRICS_FILE

ROOT = Path(__file__).resolve().parents[3]


def _flags(overrides: dict) -> list[str]:
    def value(v):
        return ",".join(map(str, v)) if isinstance(v, tuple) else str(v)

    return [f"--config.{k}={value(v)}" for k, v in overrides.items()]


def _run(task: str, flags: list[str], run_dir: Path, env: dict) -> float:
    """One `python -m pex_jax.train` process; its wall clock."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pex_jax.train", f"--config={CONFIG_FILE}:{task}",
                           *flags, f"--config.run_dir={run_dir}"], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"bench grid run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def _window(bc: BenchConfig, run: Path, seed: int) -> float:
    rows = [json.loads(line) for line in (run / METRICS_FILE).read_text().splitlines()]
    c = cadence(bc)
    return window_rate([r for r in rows if r.get("seed") == seed], c["warmup"], c["online_steps"])[1]


def bench_grid(bc: BenchConfig, data: LocalAntMaze, work: Path, log: Callable[[str], None] = print) -> dict:
    """The grid figure: `bc.grid_points` inverse temperatures x `bc.grid_seeds` seeds, one process vs one each."""
    task = data.names(1)[0]
    task_arg = f"{task}-local"
    values = [10.0 * 3 ** i for i in range(bc.grid_points)]
    case = EngineCase(f"{bc.grid_points} points x {bc.grid_seeds}", (task,), bc.grid_seeds, tuple(bc.engine_hidden))
    overrides = _overrides(bc, case, "workers", "pex")
    overrides.pop("algo")
    overrides.pop("wandb.enabled")
    config = task_configs(str(CONFIG_FILE), [task_arg], {k: v for k, v in overrides.items() if "." not in k})[0]
    seeds = list(range(bc.grid_seeds))
    dims = Dims(bc.obs_dim, bc.act_dim, (-1.0,) * bc.act_dim, (1.0,) * bc.act_dim)
    offline = work / "grid-offline"
    checkpoint.save_offline(offline / checkpoint.OFFLINE_DIR, _initial_offline(config, seeds, dims),
                            offline_meta(config, seeds, dims) | {"final_eval": None})
    base = [*_flags(overrides), "--config.algo=pex", "--config.wandb.enabled=False",
            f"--config.offline_checkpoint={offline}"]
    env = {**os.environ, "WANDB_MODE": "disabled", "MINARI_DATASETS_PATH": str(data.root)}
    runs = {"grid": [], "separate": []}
    for i, mode in enumerate(alternation(["grid", "separate"], bc.grid_reps)):
        if mode == "grid":
            run_dir = work / f"grid-{i}"
            grid = "--config.grid=inv_temperature=" + ",".join(f"{v:g}" for v in values)
            wall = _run(task_arg, [*base, grid], run_dir, env)
            point = next((run_dir / config.task).glob("pex@*"))
            rate = _window(bc, point, seeds[0])
            runs["grid"].append({"wall_s": wall, "steps_per_s": rate, "agent_steps_per_s": rate * case.agents
                                 * bc.grid_points})
            log(f"grid {case.label}: one process {wall:.1f} s, loop {rate:.1f} env-steps/s "
                f"({rate * case.agents * bc.grid_points:.0f} agent-steps/s)")
        else:
            walls, rates = [], []
            for j, v in enumerate(values):
                run_dir = work / f"separate-{i}-{j}"
                walls.append(_run(task_arg, [*base, f"--config.inv_temperature={v:g}"], run_dir, env))
                rates.append(_window(bc, run_dir, seeds[0]))
            rate = sum(rates) / len(rates)
            runs["separate"].append({"wall_s": sum(walls), "walls_s": walls, "steps_per_s": rate,
                                     "agent_steps_per_s": rate * case.agents})
            log(f"grid {case.label}: {len(values)} processes {sum(walls):.1f} s in all, loop {rate:.1f} env-steps/s "
                f"({rate * case.agents:.0f} agent-steps/s) each")
    out = {"task": task, "points": bc.grid_points, "seeds": bc.grid_seeds, "hidden": list(bc.engine_hidden),
           "values": values, "cadence": cadence(bc), "order": alternation(["grid", "separate"], bc.grid_reps),
           "runs": runs}
    for mode in runs:
        out[mode] = {"wall_s": rate_stats([-r["wall_s"] for r in runs[mode]]),  # best = shortest (negated)
                     "agent_steps_per_s": rate_stats([r["agent_steps_per_s"] for r in runs[mode]])}
    best = {m: -out[m]["wall_s"]["best"] for m in runs}
    out["speedup_wall"] = best["separate"] / best["grid"]
    out["speedup_loop"] = (out["grid"]["agent_steps_per_s"]["best"] / out["separate"]["agent_steps_per_s"]["best"])
    return out
