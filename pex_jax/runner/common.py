"""Pieces every phase of the engine shares: PRNG streams, device datasets, divergence checks,
host-side metrics, the evaluation scores and the run clock kept in checkpoints."""

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from pex_jax.agents.algorithms import ALGORITHMS, TRACED_FIELDS
from pex_jax.agents.iql import Batch
from pex_jax.data import to_device, transform_rewards
from pex_jax.data.minari import DatasetInfo
from pex_jax.envs.task import Task
from pex_jax.errors import DivergenceError
from pex_jax.rollout import goal_terminals
from pex_jax.runner.evaluation import EvalResult, EvalScheduler

# Independent PRNG streams per seed.
INIT_STREAM, OFFLINE_STREAM, ONLINE_INIT_STREAM, ONLINE_STREAM = 1, 2, 3, 4


def eval_episodes(config, final: bool) -> int:
    """Episodes of one evaluation: `eval_episodes` for the headline ones (end of each phase and online
    step 0), at most `interim_eval_episodes` for the others, so evaluation stays a small share of a run."""
    return int(config.eval_episodes) if final else min(int(config.interim_eval_episodes), int(config.eval_episodes))


def dataset_batch(transitions, info: DatasetInfo, reward_transform: str, terminal_on_success: bool = False) -> Batch:
    """Device-resident offline data with the domain's reward transform applied once."""
    terminals = goal_terminals(transitions.terminals, transitions.rewards, terminal_on_success)
    dev = to_device(transitions)
    return Batch(
        observations=dev.observations,
        actions=dev.actions,
        rewards=transform_rewards(dev.rewards, reward_transform),
        next_observations=dev.next_observations,
        terminals=jnp.asarray(terminals, jnp.float32),
    )


def load_datasets(configs) -> list:
    """`load_transitions` for every config, each dataset id loaded once (grid points of a task share it)."""
    from pex_jax.data.sources import load_transitions

    loaded: dict[str, tuple] = {}
    for c in configs:
        if c.dataset_id not in loaded:
            loaded[c.dataset_id] = load_transitions(c.dataset_id, download=bool(c.download), progress=bool(c.progress))
    return [loaded[c.dataset_id] for c in configs]


def shared_dataset_batches(configs, loaded) -> list[Batch]:
    """`dataset_batch` per config, one device copy per (data, reward transform, terminal rule): entries that
    agree share the same object, which `multitask.unique_datasets` then stacks once."""
    made: dict[tuple, Batch] = {}
    out = []
    for c, (transitions, info) in zip(configs, loaded, strict=True):
        transform = c.reward_transform or info.default_reward_transform
        key = (id(transitions), transform, bool(c.terminal_on_success))
        if key not in made:
            made[key] = dataset_batch(transitions, info, transform, bool(c.terminal_on_success))
        out.append(made[key])
    return out


def unalias(tree):
    """Fresh buffers for every leaf: init can return one buffer twice (target == critic), which
    buffer donation rejects."""
    return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)


def check_finite(metrics: dict, seeds: list[int], phase: str, step: int) -> None:
    """Raise `DivergenceError` naming the first non-finite seed, its losses and the fix."""
    finite = np.asarray(metrics["finite"])
    if finite.all():
        return
    bad = [s for s, ok in zip(seeds, finite, strict=True) if not ok]
    i = seeds.index(bad[0])
    losses = {k: float(np.asarray(v)[i]) for k, v in metrics.items() if k.endswith("loss")}
    error = DivergenceError(
        f"non-finite loss or parameters for seed(s) {bad} in the {phase} phase at step {step} "
        f"(losses of seed {bad[0]}: {losses}); lower --config.lr or --config.beta; checkpoints written "
        f"earlier are kept"
    )
    error.seed, error.step, error.phase = bad[0], step, "offline" if phase.startswith("offline") else "online"
    raise error


def host_metrics(metrics: dict, prefix: str) -> dict[str, np.ndarray]:
    return {f"{prefix}/{k}": np.asarray(v, dtype=np.float64) for k, v in jax.device_get(metrics).items()
            if k != "finite"}


def scores_of(result) -> dict | None:
    """The part of an EvalResult kept in checkpoints (for the final table after a resume)."""
    if result is None:
        return None
    return {"normalized_score": result.normalized_score.tolist(), "success_rate": result.success_rate.tolist()}


def from_scores(scores: dict | None):
    if scores is None:
        return None
    return EvalResult(np.asarray(scores["normalized_score"]), np.full(len(scores["normalized_score"]), np.nan),
                      np.asarray(scores["success_rate"]), None)


def seed_keys(seeds: list[int], stream: int) -> jax.Array:
    """One PRNG key per seed, for an independent `stream` (init, offline, online, eval...)."""
    return jnp.stack([jax.random.fold_in(jax.random.PRNGKey(s), stream) for s in seeds])


@dataclasses.dataclass
class RunClock:
    """Wall clock of a run over all its processes. Every checkpoint carries it, so a run stopped and resumed
    across sessions and machines reports what the result cost (`compute_s`), not only its last process.

    `counted_from` is None when every process since the run's start was counted; otherwise the checkpoint
    ({"phase", "step"}) the count starts at, because it was written before runs carried a clock."""

    before_s: float = 0.0
    counted_from: dict | None = None
    started: float = dataclasses.field(default_factory=time.perf_counter)

    @classmethod
    def resumed(cls, record: dict | None, at: dict | None = None) -> "RunClock":
        """The clock of the checkpoint a run resumes from (host.json, or an offline checkpoint's meta with
        `at` naming where it stands). Without a clock there, counting starts at that checkpoint. No record:
        a run from its start."""
        if record is None:
            return cls()
        if "compute_s" in record:
            return cls(float(record["compute_s"]), record.get("compute_counted_from"))
        return cls(0.0, dict(at) if at is not None else {"phase": record["phase"], "step": int(record["step"])})

    @property
    def wall_s(self) -> float:
        """This process's wall clock since the run (re)started."""
        return time.perf_counter() - self.started

    def record(self, wall: float | None = None) -> dict:
        """The fields a checkpoint and summary.json carry (`wall`: this process's, if already read)."""
        wall = self.wall_s if wall is None else wall
        return {"compute_s": round(self.before_s + wall, 2), "compute_counted_from": self.counted_from}


def timing(clock: RunClock, evals: EvalScheduler, shared_by: list[str] | None = None) -> dict:
    """summary.json's timing: this process's wall clock, the run's over all its processes (`compute_s`),
    evaluation work, and the share training waited for it. `shared_by` names the runs trained in the same
    call (several tasks in one process), so that reports count their clock once."""
    wall = clock.wall_s
    return {"wall_s": round(wall, 2), **clock.record(wall), "eval_s": round(evals.eval_seconds, 2),
            "eval_blocking_s": round(evals.blocked_seconds, 2),
            "eval_share": round(evals.blocked_seconds / max(wall, 1e-9), 4),
            "eval_env_steps": evals.env_steps, "eval_workers": evals.workers,
            **({"shared_by": sorted(shared_by)} if shared_by and len(shared_by) > 1 else {})}


# --- Run records ---


def offline_meta(config, seeds, dims) -> dict:
    return {
        "seeds": seeds,
        "dataset_id": config.dataset_id,
        "obs_dim": dims.obs_dim,
        "action_dim": dims.action_dim,
        "hidden_dims": list(config.hidden_dims),
    }


SCORE_NAMES = {"success": "D4RL-scale score (100 x success rate)", "return": "Normalized scores (x100)"}


def run_record(config, task: Task, info) -> dict:
    """config.json: the flags, plus the task the run trains and evaluates on, the data files read and the
    transitions' sha256."""
    return config.to_dict() | {"env_task": task.describe(), "data_source": info.source,
                               "data_files": [dict(f) for f in info.files], "data_sha256": info.content_sha256}


def announce_task(task: Task, info) -> None:
    """Print the task, the score scale and any correction applied to the dataset's envs (one line each)."""
    extra = f", success within {task.success_radius} ends the episode" if task.success_radius else ""
    print(f"task: {task.name} ({task.kind}, {task.env_id}, {task.max_episode_steps} steps{extra}); "
          f"score: {SCORE_NAMES[task.score]}; trained and evaluated on this same task", flush=True)
    for note in task.notes:
        print(f"note: {note}", flush=True)
    for f in info.files:
        print(f"data file: {f['path']} ({f['size']} bytes, sha256 {f['sha256']})", flush=True)


def format_table(rows: list[tuple[str, list[int], np.ndarray]]) -> str:
    """Per-seed normalized scores and mean ± std (population std over seeds)."""
    lines = ["| phase | seeds | normalized score (mean ± std) | per seed |", "|---|---|---|---|"]
    for name, seeds, scores in rows:
        per_seed = ", ".join(f"{s}: {v:.1f}" for s, v in zip(seeds, scores, strict=True))
        lines.append(f"| {name} | {len(seeds)} | {scores.mean():.1f} ± {scores.std():.1f} | {per_seed} |")
    return "\n".join(lines)


def logged_before(host: dict | None, offline_done: bool):
    """Which metric lines survive a resume: those logged up to the checkpoint we resume from, so
    that no step is logged twice (`RunLogger` drops the rest)."""

    def keep(row: dict) -> bool:
        if host is None:
            return offline_done and row.get("phase") == "offline"
        pending = host.get("pending_eval")  # its evaluation is run again by the resumed run
        if pending is not None and any(k.startswith("eval/") for k in row) and row.get("phase") == host["phase"] \
                and row.get(f"{host['phase']}_step") == pending:
            return False
        if host["phase"] == "offline":
            return row.get("phase") == "offline" and row.get("offline_step", 0) <= host["step"]
        return row.get("phase") == "offline" or row.get("online_step", 0) <= host["step"]

    return keep


# Fields a task may set on its own in a multi-task call: its data, records and evaluation; with the IQL
# backbone also the traced hyperparameters (`agents.algorithms.TRACED_FIELDS`, per task in the call; the SAC
# backbone compiles them in). Every other field shapes the shared update.
PER_TASK_FIELDS = {"task", "dataset_id", "run_dir", "eval_episodes", "eval_parallel_envs", "reward_transform",
                   "terminal_on_success", "grid", "grid_point", "offline_checkpoint", "wandb"}


def update_fields(config) -> dict:
    """The fields tasks sharing a device call must agree on (everything but the per-task ones)."""
    own = PER_TASK_FIELDS | (set(TRACED_FIELDS) if ALGORITHMS[config.algo].backbone == "iql" else set())
    return {k: v for k, v in config.to_dict().items() if k not in own}


def call_groups(configs: list, dims: list) -> list[list[int]]:
    """Indices of the tasks that can share a device call, in first-seen order: equal obs/action shapes and equal
    update fields (e.g. hopper apart from halfcheetah; a task with its own expectile apart from the others)."""
    import json

    groups: dict[str, list[int]] = {}
    for i, (c, d) in enumerate(zip(configs, dims, strict=True)):
        key = json.dumps([repr(d), update_fields(c)], sort_keys=True, default=repr)
        groups.setdefault(key, []).append(i)
    return list(groups.values())
