"""The AntMaze suite's wall clock, projected from the components this run measured, for the online engine
and for the design it replaced, on a 16-core machine with one H100.

The suite: 6 AntMaze tasks x 10 seeds x (1M offline updates + 1M online env steps), evaluated at the
reference's cadence (every 10k updates or env steps; 100 episodes at the headline evaluations, 10 at the
others; an episode lasts about 0.8 of the time limit).

**Measured here** (best windows, one core of this machine each): one env step, one evaluation env step
(`Evaluator`, its policy calls included), the host's packing and episode bookkeeping per step, and the env
pool's time per step with `NullEnv` (its own overhead).

**Assumed** (`ASSUMPTIONS`, each a low-high range with its source): the GPU's device-call times, the
transfer time, the offline device time. Named in the code and the report, never measured here:
- the H100 machine's cores step envs and evaluations as fast as one core of this machine;
- 16 physical cores, one per process (no hyper-threading pairs sharing a core);
- the engine's defaults: `env_workers` = cores - 1, and an evaluation pool of cores - 1 processes, each
  task's round split by seeds into ceil(workers / tasks) jobs (6 x 10 on 15 workers: 18 jobs of 3-4 seeds);
  online, the evaluation processes share the cores the env workers leave;
- the env pool's overhead on 16 cores (15 workers of 4 envs) equals the one measured here at 60 envs
  with the most workers this machine has (fewer envs per worker, more messages: assumed to cancel);
- start-up, compiles and checkpoints are left out (minutes in a run of hours).

**The engine**: one process; per env step the envs step in the workers (the episode bookkeeping
overlaps), then pack + one upload + the device call + one download, serially. Interim evaluations (and
the headline one at online step 0) run in the background; the end-of-phase headline evaluation is a tail
nothing overlaps.

**Today's design** (before the engine): the six tasks' online phases one after another, each stepping its
10 envs serially in the trainer, about 7 transfers per step (5 replay leaves, the next observation, the
actions) and a 10-agent device call; every evaluation blocks the trainer on one core, in both phases.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from pex_jax.runner.evaluation import seed_chunks


@dataclass(frozen=True)
class Assumption:
    what: str
    low: float
    high: float
    unit: str
    source: str


ASSUMPTIONS: dict[str, Assumption] = {
    "device_ms_60": Assumption(
        "H100 device call for 60 agents (6 tasks x 10 seeds, 2x256, batch 256, UTD 1)", 1.5, 2.5, "ms",
        "shared/docs/online-engine.md section 4: about 53 GFLOP per call, kernel-launch bound; no GPU here"),
    "device_ms_10": Assumption(
        "H100 device call for 10 agents (one task's seeds, today's design)", 0.72, 1.2, "ms",
        "shared/docs/online-engine.md section 3: 1.2-2.0 h of online device calls over 6M calls"),
    "transfer_ms": Assumption(
        "one small host-device transfer on the H100, dispatch included", 0.05, 0.08, "ms",
        "shared/docs/online-engine.md section 3: 0.7-1.0 h of transfers and prep over 6M steps of about 7 "
        "transfers each"),
    "offline_device_h": Assumption(
        "offline device time: 1M updates of 60 agents, tasks x seeds in one call per chunk", 0.24, 0.63, "h",
        "shared/docs/online-engine.md section 3"),
}


@dataclass(frozen=True)
class Suite:
    """What is run, and on what."""

    tasks: int = 6
    seeds: int = 10
    time_limits: tuple[int, ...] = (700, 1000, 1000, 700, 1000, 1000)  # D4RL: umaze 700, medium and large 1000
    offline_updates: int = 1_000_000
    online_steps: int = 1_000_000
    eval_every: int = 10_000
    interim_episodes: int = 10
    headline_episodes: int = 100
    episode_fraction: float = 0.8  # of the time limit, per evaluation episode
    cores: int = 16
    today_transfers: int = 7  # per env step before the engine: 5 replay leaves, next obs, actions

    @property
    def agents(self) -> int:
        return self.tasks * self.seeds


@dataclass(frozen=True)
class Measured:
    """Per-step costs measured in this run (ms; one core of this machine)."""

    env_ms: float  # one D4RL AntMaze env step
    eval_ms: float  # one evaluation env step, policy calls included
    pack_ms: float  # pack_step for the suite's agents
    bookkeeping_ms: float  # EpisodeStats.step for the suite's agents
    pack_task_ms: float  # the same for one task's seeds (today's design)
    bookkeeping_task_ms: float
    pool_overhead_ms: float  # EnvPool, NullEnv, time per step at the suite's env count


def measured_inputs(components: dict) -> Measured:
    """The projection's measured inputs from `bench.json`'s components (best windows)."""
    host = components["host"]
    suite_key = max(host, key=lambda k: host[k]["agents"])
    task_key = min(host, key=lambda k: host[k]["agents"])
    null_rows = [r for r in components["pools"] if r["env"] == "null" and r["pool"].startswith("EnvPool")]
    widest = max(r["envs"] for r in null_rows)
    most = max((r for r in null_rows if r["envs"] == widest), key=lambda r: int(r["pool"][8:-1]))
    return Measured(env_ms=1e3 / components["env_step"]["steps_per_s"]["best"],
                    eval_ms=components["eval"]["ms_per_env_step"]["best"],
                    pack_ms=1e3 / host[suite_key]["pack_step"]["best"],
                    bookkeeping_ms=1e3 / host[suite_key]["bookkeeping"]["best"],
                    pack_task_ms=1e3 / host[task_key]["pack_step"]["best"],
                    bookkeeping_task_ms=1e3 / host[task_key]["bookkeeping"]["best"],
                    pool_overhead_ms=1e3 / most["steps_per_s"]["best"])


def eval_episodes(suite: Suite) -> dict[str, dict[str, int]]:
    """Evaluation episodes per seed: offline, an evaluation every `eval_every` updates, the last a headline one;
    online, a headline one at step 0, then every `eval_every` env steps, the last a headline one."""
    n_off, n_on = suite.offline_updates // suite.eval_every, suite.online_steps // suite.eval_every
    return {"offline": {"interim": (n_off - 1) * suite.interim_episodes, "end": suite.headline_episodes},
            "online": {"interim": (n_on - 1) * suite.interim_episodes + suite.headline_episodes,
                       "end": suite.headline_episodes}}


def eval_steps(suite: Suite, episodes_per_seed: float, time_limit: float | None = None) -> float:
    """Evaluation env steps of `episodes_per_seed` for every seed of every task (or of one task's time limit)."""
    limits = suite.time_limits if time_limit is None else (time_limit,)
    return suite.seeds * episodes_per_seed * suite.episode_fraction * sum(limits)


def hours(ms: float) -> float:
    return ms / 3.6e6


def engine_hours(suite: Suite, m: Measured, a: dict[str, float]) -> dict:
    """The engine's wall clock in hours, for one value of each assumption (`a`: name -> value).

    Evaluation: a pool of cores - 1 processes; each task's round split by seeds into jobs
    (`runner.evaluation.seed_chunks`), so a phase's evaluation takes the longer of all its work spread
    over the processes and the longest job's share. Online, the processes get the cores the env workers
    leave; offline, and for the headline evaluation at the end of each phase, every core but the trainer's."""
    env_workers = eval_workers = suite.cores - 1
    envs_per_worker = math.ceil(suite.agents / env_workers)
    env_phase = envs_per_worker * m.env_ms + m.pool_overhead_ms
    step_ms = max(env_phase, m.bookkeeping_ms) + m.pack_ms + 2 * a["transfer_ms"] + a["device_ms_60"]
    busy_env_cores = env_workers * env_phase / step_ms
    chunks = seed_chunks(suite.seeds, suite.tasks, eval_workers)
    chunk_seeds = max(c.stop - c.start for c in chunks)
    jobs = suite.tasks * len(chunks)
    procs_offline = min(eval_workers, jobs)
    procs_online = max(min(eval_workers, jobs, suite.cores - 1 - busy_env_cores), 1e-9)
    ep = eval_episodes(suite)
    longest = max(suite.time_limits)

    def spread(episodes: float, procs: float) -> float:
        total = hours(eval_steps(suite, episodes) * m.eval_ms)
        longest_job = hours(chunk_seeds * episodes * suite.episode_fraction * longest * m.eval_ms)
        return max(total / procs, longest_job)

    tail = spread(suite.headline_episodes, procs_offline)
    train = hours(suite.online_steps * step_ms)
    offline_eval = spread(ep["offline"]["interim"], procs_offline)
    online_eval = spread(ep["online"]["interim"], procs_online)
    offline = max(a["offline_device_h"], offline_eval) + tail
    online = max(train, online_eval) + tail
    return {"step_ms": step_ms, "env_phase_ms": env_phase, "env_workers": env_workers,
            "envs_per_worker": envs_per_worker, "eval_workers": eval_workers, "eval_jobs_per_task": len(chunks),
            "eval_chunk_seeds": chunk_seeds, "eval_procs_offline": procs_offline, "eval_procs_online": procs_online,
            "busy_env_cores": busy_env_cores,
            "offline_eval_h": offline_eval, "online_train_h": train, "online_eval_h": online_eval,
            "tail_h": tail, "offline_h": offline, "online_h": online, "total_h": offline + online}


def today_hours(suite: Suite, m: Measured, a: dict[str, float]) -> dict:
    """The design before the engine, in hours, for one value of each assumption."""
    ep = eval_episodes(suite)
    step_ms = (suite.seeds * m.env_ms + m.pack_task_ms + m.bookkeeping_task_ms
               + suite.today_transfers * a["transfer_ms"] + a["device_ms_10"])
    offline_eval = hours(eval_steps(suite, sum(ep["offline"].values())) * m.eval_ms)
    online_eval = hours(eval_steps(suite, sum(ep["online"].values())) * m.eval_ms)
    train = hours(suite.tasks * suite.online_steps * step_ms)
    offline = a["offline_device_h"] + offline_eval
    online = train + online_eval
    return {"step_ms": step_ms, "offline_eval_h": offline_eval, "online_train_h": train, "online_eval_h": online_eval,
            "offline_h": offline, "online_h": online, "total_h": offline + online}


def projection(components: dict, suite: Suite | None = None, assumptions: dict[str, Assumption] = ASSUMPTIONS
               ) -> dict:
    """Both designs at the low and the high end of every assumption, with the inputs that made them."""
    suite = suite or Suite()
    m = measured_inputs(components)
    bounds = {b: {k: getattr(v, b) for k, v in assumptions.items()} for b in ("low", "high")}
    return {
        "suite": {**asdict(suite), "agents": suite.agents, "eval_episodes_per_seed": eval_episodes(suite)},
        "measured": asdict(m),
        "assumptions": {k: asdict(v) for k, v in assumptions.items()},
        "engine": {b: engine_hours(suite, m, a) for b, a in bounds.items()},
        "today": {b: today_hours(suite, m, a) for b, a in bounds.items()},
    }
