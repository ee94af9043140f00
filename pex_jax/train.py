"""Runner: offline IQL pre-training, then online fine-tuning (pex | direct | buffer | scratch | pex_sac |
sac), all seeds of a run on one vmap axis in one process.

    python -m pex_jax.train --config=experiments/configs/pointmaze.py:umaze --config.seeds=0-2

Python here only drives loops, environments, checkpoints and logging; every update, insert and
action selection is a jitted, seed-vmapped pure function from `pex_jax.agents.algorithms`.
"""

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from pex_jax import checkpoint
from pex_jax.agents.algorithms import (
    ALGORITHMS,
    AlgoSpec,
    Dims,
    act,
    init_offline_state,
    init_online_state,
    make_offline_chunk,
    make_online_step,
    over_seeds,
)
from pex_jax.agents.iql import Batch
from pex_jax.agents.pex_sac import BACKUPS, check_action_bounds
from pex_jax.config import ALGOS
from pex_jax.data import flatten_observation, to_device, transform_rewards
from pex_jax.data.minari import DatasetInfo
from pex_jax.data.replay import ReplayBuffer
from pex_jax.data.sources import load_transitions
from pex_jax.device import announce as announce_device
from pex_jax.envs.task import Task, check_task, make_vector_env, task_for_dataset
from pex_jax.errors import ConfigError, DivergenceError, PexError
from pex_jax.rollout import EvalResult, Evaluator, goal_terminals, seed_keys, stored_transition
from pex_jax.seeds import parse_seeds
from pex_jax.sharding import can_shard, replicate, shard_seeds
from pex_jax.tools.tracking import RunLogger

# Independent PRNG streams per seed.
INIT_STREAM, OFFLINE_STREAM, ONLINE_INIT_STREAM, ONLINE_STREAM = 1, 2, 3, 4


# --- Validation ---


def validate_config(config: ml_collections.ConfigDict) -> list[int]:
    """Check every user-facing value before any expensive work; returns the parsed seeds."""
    seeds = parse_seeds(config.seeds)
    if config.algo not in ALGOS:
        raise ConfigError(f"unknown algorithm {config.algo!r}; choose one of {', '.join(ALGOS)} (--config.algo)")
    if not 0.0 < config.expectile < 1.0:
        raise ConfigError(f"expectile must be in (0, 1), got {config.expectile} (--config.expectile)")
    for name in ("offline_steps", "online_steps", "learning_starts", "eval_episodes", "checkpoint_every"):
        if int(config[name]) < 0:
            raise ConfigError(f"{name} must be >= 0, got {config[name]} (--config.{name})")
    for name in ("batch_size", "utd", "updates_per_call", "interim_eval_episodes", "offline_eval_every",
                 "online_eval_every", "log_every",
                 "buffer_capacity"):
        if int(config[name]) <= 0:
            raise ConfigError(f"{name} must be > 0, got {config[name]} (--config.{name})")
    if config.gamma <= 0 or config.gamma > 1:
        raise ConfigError(f"gamma must be in (0, 1], got {config.gamma} (--config.gamma)")
    if not 0.0 <= config.offline_ratio <= 1.0:
        raise ConfigError(f"offline_ratio must be in [0, 1], got {config.offline_ratio} (--config.offline_ratio)")
    if not 0.0 <= config.eval_epsilon <= 1.0:
        raise ConfigError(f"eval_epsilon must be in [0, 1], got {config.eval_epsilon} (--config.eval_epsilon)")
    if config.init_temperature <= 0:
        raise ConfigError(f"init_temperature must be > 0, got {config.init_temperature} (--config.init_temperature)")
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


def default_run_dir(config) -> Path:
    return Path("runs") / config.task / config.algo / time.strftime("%Y%m%d-%H%M%S")


# --- Phases ---


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


def _unalias(tree):
    """Fresh buffers for every leaf: init can return one buffer twice (target == critic), which
    buffer donation rejects."""
    return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)


def _check_finite(metrics: dict, seeds: list[int], phase: str, step: int) -> None:
    finite = np.asarray(metrics["finite"])
    if finite.all():
        return
    bad = [s for s, ok in zip(seeds, finite, strict=True) if not ok]
    i = seeds.index(bad[0])
    losses = {k: float(np.asarray(v)[i]) for k, v in metrics.items() if k.endswith("loss")}
    raise DivergenceError(
        f"non-finite loss or parameters for seed(s) {bad} in the {phase} phase at step {step} "
        f"(losses of seed {bad[0]}: {losses}); lower --config.lr or --config.beta; checkpoints written "
        f"earlier are kept"
    )


def _host_metrics(metrics: dict, prefix: str) -> dict[str, np.ndarray]:
    return {f"{prefix}/{k}": np.asarray(v, dtype=np.float64) for k, v in jax.device_get(metrics).items()
            if k != "finite"}


def _scores(result) -> dict | None:
    """The part of an EvalResult kept in checkpoints (for the final table after a resume)."""
    if result is None:
        return None
    return {"normalized_score": result.normalized_score.tolist(), "success_rate": result.success_rate.tolist()}


def _from_scores(scores: dict | None):
    if scores is None:
        return None
    return EvalResult(np.asarray(scores["normalized_score"]), np.full(len(scores["normalized_score"]), np.nan),
                      np.asarray(scores["success_rate"]), None)


def offline_phase(config, seeds, dims, dataset: Batch, evaluator: Evaluator, logger: RunLogger, run_dir: Path,
                  resume_from: tuple[dict, dict] | None = None):
    """Offline IQL: K updates per jit call (lax.scan), vmapped over seeds; evaluate every N updates.

    With `checkpoint_every > 0`, the full state (params, optimizer states, targets, keys) is
    checkpointed at every evaluation, so a resumed run continues bit-identically.
    """
    init_keys = seed_keys(seeds, INIT_STREAM)
    states = _unalias(jax.vmap(lambda k: init_offline_state(k, dims, config))(init_keys))
    keys = seed_keys(seeds, OFFLINE_STREAM)
    total, every = int(config.offline_steps), int(config.offline_eval_every)
    done, last_eval = 0, None
    if resume_from is not None:
        raw, host = resume_from
        states = _unalias(checkpoint.restore_into(states, raw["states"]))
        keys = jnp.asarray(raw["keys"])
        done, last_eval = int(host["step"]), _from_scores(host.get("last_eval"))
    if can_shard(len(seeds)):  # several devices: each runs its share of the seeds
        states, keys = shard_seeds((states, keys))
    chunk_fns = {}

    def chunk_fn(n):
        if n not in chunk_fns:
            fn = over_seeds(make_offline_chunk(config, n), (0, 0, None))
            chunk_fns[n] = jax.jit(fn, donate_argnums=(0,))
        return chunk_fns[n]

    bar = tqdm(total=total, initial=done, desc="offline updates", unit="upd", disable=not config.progress,
               dynamic_ncols=True)
    while done < total:
        next_stop = min(total, (done // every + 1) * every)
        n = min(int(config.updates_per_call), next_stop - done)
        states, keys, metrics = chunk_fn(n)(states, keys, dataset)
        done += n
        bar.update(n)
        if done == next_stop:
            _check_finite(metrics, seeds, "offline", done)
            result = evaluator(ALGORITHMS["offline"], states, round_index=done,
                               episodes=eval_episodes(config, final=done == total))
            logger.log({**_host_metrics(metrics, "train"), **result.metrics()}, phase="offline",
                       offline_step=done, online_step=0)
            last_eval = result
            bar.set_postfix(score=f"{result.normalized_score.mean():.1f}")
            if config.checkpoint_every > 0 and done < total:
                checkpoint.save_run_state(run_dir, "offline", done, {"states": states, "keys": keys},
                                          {"last_eval": _scores(last_eval)}, int(config.keep_checkpoints))
    bar.close()
    return states, last_eval


class EpisodeStats:
    """Host-side bookkeeping of training episodes and policy-set choices between log calls."""

    def __init__(self, n: int, saved: dict | None = None):
        self.n = n
        self.new_episode()
        self.window = {"return": [[] for _ in range(n)], "success": [[] for _ in range(n)],
                       "length": [[] for _ in range(n)]}
        self.all_success = [[] for _ in range(n)]  # for CORL's train/regret
        self.choice_sum, self.choice_count = np.zeros(n), 0
        if saved:
            self.window, self.all_success = saved["window"], saved["all_success"]
            self.choice_sum, self.choice_count = np.asarray(saved["choice_sum"], float), saved["choice_count"]

    def new_episode(self) -> None:
        self.ep_return, self.ep_len = np.zeros(self.n), np.zeros(self.n, dtype=np.int64)
        self.ep_success = np.zeros(self.n, dtype=bool)

    def step(self, reward, success, done, choices) -> None:
        self.ep_return += reward
        self.ep_len += 1
        self.ep_success |= success
        self.choice_sum += choices == 0
        self.choice_count += 1
        for i in np.flatnonzero(done):
            self.window["return"][i].append(float(self.ep_return[i]))
            self.window["success"][i].append(float(self.ep_success[i]))
            self.window["length"][i].append(int(self.ep_len[i]))
            self.all_success[i].append(float(self.ep_success[i]))
            self.ep_return[i], self.ep_len[i], self.ep_success[i] = 0.0, 0, False

    def flush(self, policy_set: bool) -> dict[str, np.ndarray]:
        """Metrics since the last flush (CORL names), then start a new window."""
        row = {}
        if policy_set:
            row["train/offline_choice_rate"] = self.choice_sum / max(self.choice_count, 1)
        if any(self.window["return"]):
            def per_seed(lists, fn=np.mean):
                return np.array([fn(w) if w else np.nan for w in lists])

            row["train/episode_return"] = per_seed(self.window["return"])
            row["train/is_success"] = per_seed(self.window["success"])
            row["train/episode_length"] = per_seed(self.window["length"])
            row["train/regret"] = per_seed(self.all_success, lambda s: 1.0 - np.mean(s))
        self.window = {k: [[] for _ in range(self.n)] for k in self.window}
        self.choice_sum, self.choice_count = np.zeros(self.n), 0
        return row

    def state(self) -> dict:
        return {"window": self.window, "all_success": self.all_success, "choice_sum": self.choice_sum,
                "choice_count": self.choice_count}


def online_phase(spec: AlgoSpec, config, seeds, dims, task: Task, dataset: Batch, offline_states,
                 evaluator: Evaluator, logger: RunLogger, reward_transform: str, offline_step: int, run_dir: Path,
                 offline_eval=None, resume_from: tuple[dict, dict] | None = None):
    """Online fine-tuning: per env step, one donated insert and one fused, seed-vmapped update+act call.

    Checkpoints (every `checkpoint_every` env steps) are episode boundaries: after saving, every env is
    reset with a seed derived from (seed, step). A resumed run performs the same reset, so it continues
    exactly as the uninterrupted run does; no simulator state needs saving.
    """
    n = len(seeds)
    init_keys = seed_keys(seeds, ONLINE_INIT_STREAM)
    if spec.warm_start == "none":
        states = jax.vmap(lambda k: init_online_state(spec, k, dims, config, None))(init_keys)
    else:
        if offline_states is None:  # resuming: only the structure matters, values come from the checkpoint
            offline_states = jax.vmap(lambda k: init_offline_state(k, dims, config))(init_keys)
        states = jax.vmap(lambda k, s: init_online_state(spec, k, dims, config, s))(init_keys, offline_states)
    capacity = int(min(config.buffer_capacity, max(config.online_steps, 1)))
    buffer = ReplayBuffer.create(n, dims.obs_dim, dims.action_dim, capacity)
    keys = seed_keys(seeds, ONLINE_STREAM)
    stats, start, last_eval, step0_eval = EpisodeStats(n), 0, None, None
    if resume_from is not None:
        raw, host = resume_from
        states = checkpoint.restore_into(states, raw["states"])
        keys = jnp.asarray(raw["keys"])
        rows, size = raw["buffer"]["rows"], int(raw["buffer"]["size"])
        buffer = buffer.replace(
            data=jax.tree.map(lambda buf, r: buf.at[:, : r.shape[1]].set(r), buffer.data,
                              checkpoint.restore_into(buffer.data, rows)),
            size=jnp.asarray(size, jnp.int32), ptr=jnp.asarray(int(raw["buffer"]["ptr"]), jnp.int32))
        stats, start = EpisodeStats(n, host["stats"]), int(host["step"])
        last_eval = _from_scores(host.get("last_eval"))
        step0_eval = _from_scores(host.get("step0_eval"))
    states = _unalias(states)
    if can_shard(n):
        states, keys, buffer = shard_seeds((states, keys, buffer))

    insert = jax.jit(ReplayBuffer.insert, donate_argnums=(0,))
    step_collect = jax.jit(make_online_step(spec, config, False), donate_argnums=(0,))
    step_update = jax.jit(make_online_step(spec, config, True), donate_argnums=(0,))
    first_act = jax.jit(jax.vmap(lambda s, k, o: act(spec, s, k, o, config, evaluate=False)))
    env = make_vector_env(task, n, seeds=seeds)

    def boundary(step: int, keys):
        """Reset every env (seeded by seed and step) and pick the first actions."""
        obs, _ = env.reset(seed=[s * 1_000_003 + step for s in seeds])
        obs = flatten_observation(obs)
        split = jax.vmap(jax.random.split)(keys)
        actions, choices = jax.device_get(first_act(states, split[:, 1], jnp.asarray(obs)))
        stats.new_episode()
        return obs, split[:, 0], actions, choices

    if start == 0:  # the policy set (or fine-tuned policy) before any online update
        step0_eval = evaluator(spec, states, round_index=offline_step, episodes=eval_episodes(config, final=True))
        logger.log(step0_eval.metrics(), phase="online", offline_step=offline_step, online_step=0)
        last_eval = step0_eval
    obs, keys, actions, choices = boundary(start, keys)
    metrics = None
    total = int(config.online_steps)
    bar = tqdm(total=total, initial=start, desc=f"online {spec.name} env steps", unit="step",
               disable=not config.progress, dynamic_ncols=True)
    t_start = time.time()
    for t in range(start, total):
        step = env.step(actions)
        transition, next_obs, done, success = stored_transition(obs, actions, step, reward_transform,
                                                                bool(config.terminal_on_success))
        stats.step(step[1], success, done, choices)
        step_fn = step_update if t + 1 > config.learning_starts else step_collect
        buffer = insert(buffer, transition)
        states, keys, actions, choices, new_metrics = step_fn(
            states, buffer.data, buffer.size, keys, jnp.asarray(next_obs), dataset
        )
        if new_metrics:
            metrics = new_metrics
        actions, choices = jax.device_get((actions, choices))
        obs = next_obs
        env_steps = t + 1

        if env_steps % config.log_every == 0 or env_steps == total:
            row = {"train/env_steps_per_s": (env_steps - start) / max(time.time() - t_start, 1e-9)}
            if metrics is not None:
                _check_finite(metrics, seeds, "online", env_steps)
                row.update(_host_metrics(metrics, "train"))
            row.update(stats.flush(spec.policy_set))
            logger.log(row, phase="online", offline_step=offline_step, online_step=env_steps)
            bar.update(env_steps - bar.n)
        if env_steps % config.online_eval_every == 0 or env_steps == total:
            result = evaluator(spec, states, round_index=offline_step + env_steps,
                               episodes=eval_episodes(config, final=env_steps == total))
            logger.log(result.metrics(), phase="online", offline_step=offline_step, online_step=env_steps)
            last_eval = result
            bar.set_postfix(score=f"{result.normalized_score.mean():.1f}")
        if config.checkpoint_every > 0 and env_steps % config.checkpoint_every == 0 and env_steps < total:
            if metrics is not None:
                _check_finite(metrics, seeds, "online", env_steps)  # never checkpoint a diverged state
            size = int(buffer.size)
            device_state = {"states": states, "keys": keys, "buffer": {
                "rows": jax.tree.map(lambda x, n=size: x[:, :n], buffer.data), "size": buffer.size, "ptr": buffer.ptr}}
            checkpoint.save_run_state(run_dir, "online", env_steps, device_state,
                                      {"stats": stats.state(), "last_eval": _scores(last_eval),
                                       "offline_eval": _scores(offline_eval), "step0_eval": _scores(step0_eval)},
                                      int(config.keep_checkpoints))
            obs, keys, actions, choices = boundary(env_steps, keys)
    bar.update(total - bar.n)
    bar.close()
    env.close()
    return states, last_eval, step0_eval


# --- Entry point ---


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
    """config.json: the flags, plus the task the run trains and evaluates on and the data files read."""
    return config.to_dict() | {"env_task": task.describe(), "data_source": info.source,
                               "data_files": [dict(f) for f in info.files]}


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


def run(config: ml_collections.ConfigDict) -> dict:
    """Run one (task, algorithm) for all seeds; returns the summary written to summary.json."""
    seeds = validate_config(config)
    spec = ALGORITHMS[config.algo]
    if config.offline_checkpoint:
        checkpoint.resolve_offline_path(config.offline_checkpoint)  # fail before loading data
    transitions, info = load_transitions(config.dataset_id, download=bool(config.download),
                                         progress=bool(config.progress))
    task = task_for_dataset(info)
    check_task(task, info)
    if config.batch_size > len(transitions):
        raise ConfigError(
            f"batch_size {config.batch_size} exceeds the dataset's {len(transitions)} transitions; "
            f"lower --config.batch_size"
        )
    reward_transform = config.reward_transform or info.default_reward_transform
    dims = Dims(info.obs_dim, info.act_dim, tuple(float(x) for x in np.ravel(info.action_low)),
                tuple(float(x) for x in np.ravel(info.action_high)))
    if spec.backbone == "sac":
        check_action_bounds(dims.action_low, dims.action_high)
    dataset = dataset_batch(transitions, info, reward_transform, bool(config.terminal_on_success))
    if can_shard(len(seeds)):
        dataset = replicate(dataset)
    del transitions

    run_dir = Path(config.run_dir) if config.run_dir else default_run_dir(config)
    with config.unlocked():
        config.run_dir = str(run_dir)
    resume = config.resume == "auto" and (run_dir / "config.json").exists()
    saved = checkpoint.latest_run_state(run_dir) if resume else None
    resume_state = checkpoint.load_run_state(saved) if saved else None
    own_offline = run_dir / checkpoint.OFFLINE_DIR
    offline_done = (resume and spec.offline_phase and not config.offline_checkpoint
                    and (own_offline / "meta.json").exists())
    if resume:
        where = f"checkpoint {saved.name}" if saved else ("its offline checkpoint" if offline_done else "the start")
        print(f"resuming {run_dir} from {where}", flush=True)
    logger = RunLogger(run_dir, run_record(config, task, info), seeds, use_wandb=bool(config.wandb.enabled),
                       resume=resume,
                       resume_keep=_logged_before(resume_state[1] if resume_state else None, offline_done))
    print(f"pex-jax: {config.task} / {config.algo}, seeds {seeds}, dataset {config.dataset_id} "
          f"({len(dataset.rewards)} transitions, obs {dims.obs_dim}, act {dims.action_dim}), "
          f"device {jax.devices()[0].platform}, run dir {run_dir}", flush=True)
    announce_task(task, info)
    evaluator = Evaluator(task, info, seeds, int(config.eval_episodes), int(config.eval_parallel_envs), config)
    t_run = time.perf_counter()
    table = []
    summary: dict = {"task": config.task, "algo": config.algo, "seeds": seeds, "dataset_id": config.dataset_id}
    phase = resume_state[1]["phase"] if resume_state else None
    try:
        offline_states, offline_eval, offline_step, step0_eval = None, None, 0, None
        if spec.offline_phase:
            offline_step = int(config.offline_steps)
            source = config.offline_checkpoint or (str(own_offline) if offline_done else "")
            if phase == "online":  # online states come from the checkpoint
                offline_eval = _from_scores(resume_state[1].get("offline_eval"))
            elif source:
                template = jax.vmap(lambda k: init_offline_state(k, dims, config))(seed_keys(seeds, INIT_STREAM))
                expect = {k: v for k, v in offline_meta(config, seeds, dims).items() if k != "seeds"}
                offline_states = checkpoint.load_offline(source, template, seeds, expect)
                offline_eval = _from_scores(checkpoint.offline_final_scores(source, seeds))
                print(f"loaded offline states for seeds {seeds} from {source}", flush=True)
            else:
                offline_states, offline_eval = offline_phase(
                    config, seeds, dims, dataset, evaluator, logger, run_dir,
                    resume_from=resume_state if phase == "offline" else None)
                checkpoint.save_offline(own_offline, offline_states,
                                        offline_meta(config, seeds, dims) | {"final_eval": _scores(offline_eval)})
            if offline_eval is not None:
                table.append(("offline (end)", seeds, offline_eval.normalized_score))
                summary["offline/normalized_score"] = offline_eval.normalized_score.tolist()
        if spec.name != "offline":
            _, online_eval, step0_eval = online_phase(
                spec, config, seeds, dims, task, dataset, offline_states, evaluator, logger, reward_transform,
                offline_step, run_dir, offline_eval=offline_eval,
                resume_from=resume_state if phase == "online" else None)
            table.append((f"online {spec.name} (end)", seeds, online_eval.normalized_score))
            summary["online/normalized_score"] = online_eval.normalized_score.tolist()
            summary["online/success_rate"] = online_eval.success_rate.tolist()
            if step0_eval is not None:
                summary["online_step0/normalized_score"] = step0_eval.normalized_score.tolist()
        final = table[-1][2]
        summary["final/normalized_score"] = final.tolist()
        summary["final/normalized_score_mean"] = float(final.mean())
        summary["final/normalized_score_std"] = float(final.std())
        wall = time.perf_counter() - t_run
        info_out = {"score": SCORE_NAMES[task.score], "data_source": info.source,
                    "timing": {"wall_s": round(wall, 2), "eval_s": round(evaluator.total_seconds, 2),
                               "eval_share": round(evaluator.total_seconds / max(wall, 1e-9), 4),
                               "eval_env_steps": evaluator.total_env_steps}}
        summary.update(info_out)
        finals = {"final/normalized_score": final}
        if offline_eval:
            finals["offline/normalized_score"] = offline_eval.normalized_score
        if step0_eval is not None:
            finals["online_step0/normalized_score"] = step0_eval.normalized_score
        logger.summary(finals, info_out)
    finally:
        logger.close()
        evaluator.close()
    print(f"\n{SCORE_NAMES[task.score]} for {config.task} / {config.algo}:\n{format_table(table)}\n"
          f"evaluation took {summary['timing']['eval_share']:.0%} of the run's wall clock\n", flush=True)
    return summary


def _logged_before(host: dict | None, offline_done: bool):
    """Which metric lines survive a resume: those logged up to the checkpoint we resume from, so
    that no step is logged twice (`RunLogger` drops the rest)."""

    def keep(row: dict) -> bool:
        if host is None:
            return offline_done and row.get("phase") == "offline"
        if host["phase"] == "offline":
            return row.get("phase") == "offline" and row.get("offline_step", 0) <= host["step"]
        return row.get("phase") == "offline" or row.get("online_step", 0) <= host["step"]

    return keep


def absl_main(argv: list[str] | None, body: Callable[[Any], None]) -> int:
    """Parse absl flags, then run `body(FLAGS)`. A flag error exits 2 and a PexError exits 1, each
    printed as one `error:` line. Shared by the `train` and `pretrain` CLIs."""
    from absl import flags

    argv = sys.argv if argv is None else argv
    try:
        flags.FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    announce_device()  # first line of a run: the device JAX found (and a warning if it isn't the one asked for)
    try:
        body(flags.FLAGS)
    except PexError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI: `--config=<file>:<task>` plus `--config.x=v` overrides; runs one (task, algorithm)."""

    def body(flag_values) -> None:
        if flag_values.config is None:
            raise ConfigError("no config given; pass --config=experiments/configs/<domain>.py:<task>")
        run(flag_values.config)

    return absl_main(argv, body)


def run_main() -> None:
    sys.exit(main())


def _define_flags() -> None:
    from absl import flags
    from ml_collections import config_flags

    if "config" not in flags.FLAGS:
        config_flags.DEFINE_config_file(
            "config", None, "experiment config, e.g. experiments/configs/antmaze.py:umaze", lock_config=True
        )


_define_flags()

if __name__ == "__main__":
    run_main()
