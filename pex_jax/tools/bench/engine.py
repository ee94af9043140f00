"""The online engine's whole online phase, timed through the real entry point: `pex_jax.finetune.finetune`
on local AntMaze datasets (the D4RL AntMaze env), with workers off and on, in alternating runs.

- **Workers off** (the baseline, the loop before the engine): `--config.env_workers=0 --config.eval_workers=0
  --config.pipeline_lanes=1`, the envs stepped in the trainer, every evaluation blocking it, nothing overlapped.
- **Workers on**: the engine's defaults (`-1`: all cores but one; its default pipeline lanes), envs in
  `EnvPool` worker processes and evaluation in a background pool.

Each run starts from offline states saved where `python -m pex_jax.pretrain` saves them, at initialisation
(speed does not depend on the values; with untrained policies every episode runs to the time limit).

**The window.** The engine logs `train/env_steps_per_s` = steps / seconds since its loop started every
`log_every` steps, so the log row at step k gives the loop's clock at k. The rate is taken between the rows
at `warmup` and at the last step: it leaves out the compiles, the start of the worker processes and the
step-0 evaluation, and holds `cycles` evaluation intervals, each with one evaluation submitted and one
collected (in-process: run and waited for).

**The cadence, scaled down.** The reference evaluates every 10k env steps, 10 episodes (100 at the headline
evaluations) of about 0.8 of the time limit T: 10 x 0.8 T / 10k = 0.0008 T evaluation env steps per seed and
training env step. Here every evaluation runs `engine_eval_episodes` episodes of T steps (untrained
policies), every `engine_eval_every` env steps: with 1 episode every 1250 steps the ratio is the same,
T / 1250 = 0.0008 T. The headline evaluations get the same count here; the projection adds their 100
episodes back.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax

from pex_jax import checkpoint
from pex_jax.agents.algorithms import Dims, init_offline_state
from pex_jax.config import default_config
from pex_jax.finetune import finetune
from pex_jax.pretrain import task_configs
from pex_jax.runner.cli import validate_config
from pex_jax.runner.common import INIT_STREAM, offline_meta, seed_keys
from pex_jax.runner.online import default_lanes
from pex_jax.runner.workers import default_workers
from pex_jax.tools.bench.antmaze import LocalAntMaze
from pex_jax.tools.bench.config import BenchConfig, parse_size
from pex_jax.tools.bench.harness import alternation, rate_stats, usable_cores
from pex_jax.tools.bench.problem import fast_jit
from pex_jax.tools.tracking import METRICS_FILE, SUMMARY_FILE

CONFIG_FILE = Path(__file__).resolve().parents[3] / "experiments" / "configs" / "antmaze.py"
MODES = ("baseline", "workers")
REFERENCE_CADENCE = {"eval_every": 10_000, "interim_episodes": 10, "headline_episodes": 100,
                     "episode_fraction": 0.8}


@dataclass(frozen=True)
class EngineCase:
    """One figure: these tasks x `seeds` seeds with these networks, workers off and on."""

    label: str
    tasks: tuple[str, ...]
    seeds: int
    hidden: tuple[int, ...]

    @property
    def agents(self) -> int:
        return len(self.tasks) * self.seeds


def cadence(bc: BenchConfig) -> dict:
    """The runs' evaluation cadence and timed window, and the reference's for comparison."""
    total = bc.engine_warmup + bc.engine_cycles * bc.engine_eval_every
    return {"eval_every": bc.engine_eval_every, "episodes": bc.engine_eval_episodes, "log_every": bc.engine_log_every,
            "warmup": bc.engine_warmup, "cycles": bc.engine_cycles, "online_steps": total,
            "window_steps": total - bc.engine_warmup,
            # evaluation env steps per seed and training env step, as a multiple of the time limit T
            "eval_steps_per_step_in_T": bc.engine_eval_episodes / bc.engine_eval_every,
            "reference": {**REFERENCE_CADENCE, "eval_steps_per_step_in_T": REFERENCE_CADENCE["interim_episodes"]
                          * REFERENCE_CADENCE["episode_fraction"] / REFERENCE_CADENCE["eval_every"]}}


def check_cadence(bc: BenchConfig) -> None:
    """The window's ends must fall on log rows."""
    every, log_every = bc.engine_eval_every, bc.engine_log_every
    if every % log_every or bc.engine_warmup % log_every or bc.engine_warmup < log_every:
        raise ValueError(f"--engine-eval-every ({every}) and --engine-warmup ({bc.engine_warmup}) must be "
                         f"positive multiples of --engine-log-every ({log_every})")


def window_rate(rows: list[dict], start: int, end: int) -> tuple[float, float]:
    """(seconds, env steps/s) between the log rows at `start` and `end` env steps.

    Each row's `train/env_steps_per_s` is steps / seconds since the loop started, so the clock at step k
    is k / rate(k)."""
    clock = {int(r["online_step"]): r["online_step"] / r["train/env_steps_per_s"] for r in rows
             if r.get("phase") == "online" and "train/env_steps_per_s" in r}
    missing = [k for k in (start, end) if k not in clock]
    if missing:
        raise ValueError(f"no engine log row at env step(s) {missing}; rows at {sorted(clock)}")
    seconds = clock[end] - clock[start]
    return seconds, (end - start) / seconds


def _overrides(bc: BenchConfig, case: EngineCase, mode: str, algo: str) -> dict:
    c = cadence(bc)
    workers = (0, 0) if mode == "baseline" else (bc.engine_env_workers, bc.engine_eval_workers)
    out = {"seeds": f"0-{case.seeds - 1}", "algo": algo, "hidden_dims": tuple(case.hidden),
           "batch_size": bc.batch_size, "online_steps": c["online_steps"], "online_eval_every": c["eval_every"],
           "log_every": c["log_every"], "learning_starts": 0, "eval_episodes": c["episodes"],
           "interim_eval_episodes": c["episodes"], "eval_parallel_envs": c["episodes"], "checkpoint_every": 0,
           "progress": False, "wandb.enabled": False, "env_workers": workers[0], "eval_workers": workers[1]}
    if "pipeline_lanes" in default_config():  # the engine's overlap of one share of seeds' envs with another's updates
        if mode == "baseline":
            out["pipeline_lanes"] = 1
        elif bc.engine_lanes:
            out["pipeline_lanes"] = bc.engine_lanes
    return out


def run_once(bc: BenchConfig, case: EngineCase, mode: str, run_dir: Path, algo: str = "pex") -> dict:
    """One `finetune` of the case with workers off ("baseline") or on ("workers"); its window and timing."""
    configs = task_configs(str(CONFIG_FILE), [f"{t}-local" for t in case.tasks], _overrides(bc, case, mode, algo))
    seeds = validate_config(configs[0])
    dims = Dims(bc.obs_dim, bc.act_dim, (-1.0,) * bc.act_dim, (1.0,) * bc.act_dim)  # the D4RL AntMaze env's
    states = _initial_offline(configs[0], seeds, dims)
    for c in configs:  # where `pretrain` leaves them
        checkpoint.save_offline(run_dir / c.task / "offline" / checkpoint.OFFLINE_DIR, states,
                                offline_meta(c, seeds, dims) | {"final_eval": None})
    printed = io.StringIO()
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(printed):
            finetune(configs, run_dir)
    except BaseException:
        print(printed.getvalue()[-3000:])
        raise
    wall = time.perf_counter() - t0
    task_dir = run_dir / configs[0].task / algo
    rows = [json.loads(line) for line in (task_dir / METRICS_FILE).read_text().splitlines()]
    rows = [r for r in rows if r.get("seed") == seeds[0]]
    c = cadence(bc)
    seconds, rate = window_rate(rows, c["warmup"], c["online_steps"])
    timing = json.loads((task_dir / SUMMARY_FILE).read_text())["timing"]
    env_workers = 0 if mode == "baseline" else default_workers(bc.engine_env_workers, case.agents)
    return {"mode": mode, "env_workers": env_workers, "eval_workers": timing["eval_workers"],
            "pipeline_lanes": default_lanes(int(configs[0].get("pipeline_lanes", 1))),
            "window_s": seconds, "steps_per_s": rate, "agent_steps_per_s": rate * case.agents,
            "finetune_s": wall, "online_wall_s": timing["wall_s"], "eval_s": timing["eval_s"],
            "eval_blocking_s": timing["eval_blocking_s"], "eval_env_steps": timing["eval_env_steps"],
            # evaluation rounds of equal size: step 0, every `eval_every` steps and the last step
            "eval_rounds": 1 + c["online_steps"] // c["eval_every"] + bool(c["online_steps"] % c["eval_every"]),
            "eval_every": c["eval_every"]}


_OFFLINE: dict[tuple, object] = {}


def _initial_offline(config, seeds: list[int], dims: Dims):
    """Seed-stacked offline states at initialisation, as the runner's template (one per network size)."""
    key = (tuple(config.hidden_dims), tuple(seeds))
    if key not in _OFFLINE:
        init = fast_jit(jax.vmap(lambda k: init_offline_state(k, dims, config)))
        _OFFLINE[key] = jax.device_get(init(seed_keys(seeds, INIT_STREAM)))
    return _OFFLINE[key]


def bench_case(bc: BenchConfig, case: EngineCase, work: Path, log: Callable[[str], None] = print,
               algo: str = "pex") -> dict:
    """The case's runs, workers off and on alternating (A B B A ...); best and median window rates."""
    order = alternation(MODES, bc.engine_reps)
    runs = []
    for i, mode in enumerate(order):
        run_dir = work / f"{case.label}-{mode}-{i}"
        r = run_once(bc, case, mode, run_dir, algo)
        shutil.rmtree(run_dir, ignore_errors=True)
        runs.append(r)
        log(f"engine {case.label} ({'x'.join(map(str, case.hidden))} nets) {mode}: {r['steps_per_s']:.1f} env-steps/s "
            f"({r['agent_steps_per_s']:.0f} agent-steps/s), window {r['window_s']:.1f} s, evaluation blocked "
            f"{r['eval_blocking_s']:.1f} s of {r['online_wall_s']:.1f} s")
    out = {"label": case.label, "tasks": list(case.tasks), "seeds": case.seeds, "agents": case.agents,
           "hidden": list(case.hidden), "algo": algo, "order": order, "runs": runs}
    for mode in MODES:
        out[mode] = rate_stats([r["steps_per_s"] for r in runs if r["mode"] == mode])
    return out


def engine_cases(bc: BenchConfig, data: LocalAntMaze) -> tuple[list[EngineCase], EngineCase | None]:
    """The sizes' cases and the acceptance case (None when not asked for)."""
    def case(text: str, hidden: tuple[int, ...]) -> EngineCase:
        tasks, seeds = parse_size(text)
        return EngineCase(text, tuple(data.names(tasks)), seeds, tuple(hidden))

    sizes = [case(s, bc.engine_hidden) for s in bc.engine_sizes]
    return sizes, (case(bc.acceptance, bc.acceptance_hidden) if bc.acceptance else None)


def bench_engine(bc: BenchConfig, data: LocalAntMaze, work: Path, log: Callable[[str], None] = print) -> dict:
    """Every size and the acceptance figure. The acceptance case reuses a size's runs when it is the same case."""
    check_cadence(bc)
    sizes, acceptance = engine_cases(bc, data)
    algo = bc.algos[0]
    done = {c: bench_case(bc, c, work, log, algo) for c in sizes}
    result: dict = {"cadence": cadence(bc), "cases": [done[c] for c in sizes], "cores": usable_cores(),
                    "workers_requested": {"env_workers": bc.engine_env_workers,
                                          "eval_workers": bc.engine_eval_workers,
                                          "pipeline_lanes": bc.engine_lanes or "default"}}
    if acceptance is not None:
        measured = done.get(acceptance) or bench_case(bc, acceptance, work, log, algo)
        result["acceptance"] = {**measured, "target": bc.acceptance_target,
                                "reused": acceptance in done}
    return result
