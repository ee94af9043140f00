"""Runner: offline IQL pre-training, then online fine-tuning (pex | direct | buffer | scratch), all
seeds of a run on one vmap axis in one process.

    python -m pex_jax.train --config=experiments/configs/pointmaze.py:umaze --config.seeds=0-2

Python here only drives loops, environments, checkpoints and logging; every update, insert and
action selection is a jitted, seed-vmapped pure function from `pex_jax.agents`.
"""

import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from pex_jax import checkpoint
from pex_jax.agents import (
    ALGORITHMS,
    AlgoSpec,
    Dims,
    act,
    init_offline_state,
    init_online_state,
    make_offline_chunk,
    make_online_step,
)
from pex_jax.config import ALGOS
from pex_jax.data import flatten_observation, load_dataset, make_vector_env, to_device, transform_rewards
from pex_jax.data.minari import DatasetInfo
from pex_jax.errors import ConfigError, DivergenceError, PexError
from pex_jax.iql import Batch
from pex_jax.replay import ReplayBuffer
from pex_jax.rollout import Evaluator, final_observations, seed_keys, step_success
from pex_jax.seeds import parse_seeds
from pex_jax.tracking import RunLogger

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
    for name in ("batch_size", "utd", "updates_per_call", "offline_eval_every", "online_eval_every", "log_every",
                 "buffer_capacity"):
        if int(config[name]) <= 0:
            raise ConfigError(f"{name} must be > 0, got {config[name]} (--config.{name})")
    if config.gamma <= 0 or config.gamma > 1:
        raise ConfigError(f"gamma must be in (0, 1], got {config.gamma} (--config.gamma)")
    if not 0.0 <= config.offline_ratio <= 1.0:
        raise ConfigError(f"offline_ratio must be in [0, 1], got {config.offline_ratio} (--config.offline_ratio)")
    if not 0.0 <= config.eval_epsilon <= 1.0:
        raise ConfigError(f"eval_epsilon must be in [0, 1], got {config.eval_epsilon} (--config.eval_epsilon)")
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


def dataset_batch(transitions, info: DatasetInfo, reward_transform: str) -> Batch:
    """Device-resident offline data with the domain's reward transform applied once."""
    dev = to_device(transitions)
    return Batch(
        observations=dev.observations,
        actions=dev.actions,
        rewards=transform_rewards(dev.rewards, reward_transform),
        next_observations=dev.next_observations,
        terminals=dev.terminals,
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


def offline_phase(config, seeds, dims, dataset: Batch, evaluator: Evaluator, logger: RunLogger):
    """Offline IQL: K updates per jit call (lax.scan), vmapped over seeds; evaluate every N updates."""
    init_keys = seed_keys(seeds, INIT_STREAM)
    states = _unalias(jax.vmap(lambda k: init_offline_state(k, dims, config))(init_keys))
    keys = seed_keys(seeds, OFFLINE_STREAM)
    total, every = int(config.offline_steps), int(config.offline_eval_every)
    chunk_fns = {}

    def chunk_fn(n):
        if n not in chunk_fns:
            fn = jax.vmap(make_offline_chunk(config, n), in_axes=(0, 0, None))
            chunk_fns[n] = jax.jit(fn, donate_argnums=(0,))
        return chunk_fns[n]

    last_eval = None
    done = 0
    bar = tqdm(total=total, desc="offline updates", unit="upd", disable=not config.progress, dynamic_ncols=True)
    while done < total:
        next_stop = min(total, (done // every + 1) * every)
        n = min(int(config.updates_per_call), next_stop - done)
        states, keys, metrics = chunk_fn(n)(states, keys, dataset)
        done += n
        bar.update(n)
        if done == next_stop:
            _check_finite(metrics, seeds, "offline", done)
            result = evaluator(ALGORITHMS["offline"], states, round_index=done)
            logger.log({**_host_metrics(metrics, "train"), **result.metrics()}, phase="offline",
                       offline_step=done, online_step=0)
            last_eval = result
            bar.set_postfix(score=f"{result.normalized_score.mean():.1f}")
    bar.close()
    return states, last_eval


def online_phase(spec: AlgoSpec, config, seeds, dims, info: DatasetInfo, dataset: Batch, offline_states,
                 evaluator: Evaluator, logger: RunLogger, reward_transform: str, offline_step: int):
    """Online fine-tuning: one fused, seed-vmapped device call per env step (insert, update, act)."""
    n = len(seeds)
    init_keys = seed_keys(seeds, ONLINE_INIT_STREAM)
    if spec.warm_start == "none":
        states = jax.vmap(lambda k: init_online_state(spec, k, dims, config, None))(init_keys)
    else:
        states = jax.vmap(lambda k, s: init_online_state(spec, k, dims, config, s))(init_keys, offline_states)
    states = _unalias(states)
    capacity = int(min(config.buffer_capacity, max(config.online_steps, 1)))
    buffers = ReplayBuffer.create(n, dims.obs_dim, dims.action_dim, capacity)
    keys = seed_keys(seeds, ONLINE_STREAM)

    insert = jax.jit(ReplayBuffer.insert, donate_argnums=(0,))
    step_collect = jax.jit(make_online_step(spec, config, False), donate_argnums=(0,))
    step_update = jax.jit(make_online_step(spec, config, True), donate_argnums=(0,))
    first_act = jax.jit(jax.vmap(lambda s, k, o: act(spec, s, k, o, config, evaluate=False)))

    env = make_vector_env(info, n, eval=False, seeds=seeds)
    obs, _ = env.reset(seed=list(seeds))
    obs = flatten_observation(obs)
    split = jax.vmap(jax.random.split)(keys)
    keys = split[:, 0]
    actions, choices = jax.device_get(first_act(states, split[:, 1], jnp.asarray(obs)))

    ep_return, ep_len = np.zeros(n), np.zeros(n, dtype=np.int64)
    ep_success = np.zeros(n, dtype=bool)
    window = {"return": [[] for _ in range(n)], "success": [[] for _ in range(n)], "length": [[] for _ in range(n)]}
    all_success = [[] for _ in range(n)]
    choice_sum, choice_count = np.zeros(n), 0
    metrics, last_eval = None, None
    total = int(config.online_steps)
    bar = tqdm(total=total, desc=f"online {spec.name} env steps", unit="step", disable=not config.progress,
               dynamic_ncols=True)
    t_start = time.time()
    for t in range(total):
        next_obs_raw, reward, terminated, truncated, env_info = env.step(actions)
        next_obs = flatten_observation(next_obs_raw)
        done = terminated | truncated
        transition = Batch(
            observations=obs,
            actions=np.asarray(actions, np.float32),
            rewards=np.asarray(transform_rewards(reward, reward_transform), np.float32),
            next_observations=final_observations(next_obs, env_info, done),
            terminals=terminated.astype(np.float32),
        )
        ep_return += reward
        ep_len += 1
        ep_success |= step_success(env_info, done, n)
        choice_sum += choices == 0
        choice_count += 1
        for i in np.flatnonzero(done):
            window["return"][i].append(ep_return[i])
            window["success"][i].append(float(ep_success[i]))
            window["length"][i].append(ep_len[i])
            all_success[i].append(float(ep_success[i]))
            ep_return[i], ep_len[i], ep_success[i] = 0.0, 0, False

        step_fn = step_update if t + 1 > config.learning_starts else step_collect
        buffers = insert(buffers, transition)
        states, keys, actions, choices, new_metrics = step_fn(
            states, buffers.data, buffers.size, keys, jnp.asarray(next_obs), dataset
        )
        if new_metrics:
            metrics = new_metrics
        actions, choices = jax.device_get((actions, choices))
        obs = next_obs
        env_steps = t + 1

        if env_steps % config.log_every == 0 or env_steps == total:
            row = {"train/env_steps_per_s": env_steps / max(time.time() - t_start, 1e-9)}
            if metrics is not None:
                _check_finite(metrics, seeds, "online", env_steps)
                row.update(_host_metrics(metrics, "train"))
            if spec.policy_set:
                row["train/offline_choice_rate"] = choice_sum / max(choice_count, 1)
            if any(window["return"]):
                row["train/episode_return"] = np.array([np.mean(w) if w else np.nan for w in window["return"]])
                row["train/is_success"] = np.array([np.mean(w) if w else np.nan for w in window["success"]])
                row["train/episode_length"] = np.array([np.mean(w) if w else np.nan for w in window["length"]])
                row["train/regret"] = np.array([1.0 - np.mean(s) if s else np.nan for s in all_success])
            logger.log(row, phase="online", offline_step=offline_step, online_step=env_steps)
            window = {k: [[] for _ in range(n)] for k in window}
            choice_sum, choice_count = np.zeros(n), 0
            bar.update(env_steps - bar.n)
        if env_steps % config.online_eval_every == 0 or env_steps == total:
            result = evaluator(spec, states, round_index=offline_step + env_steps)
            logger.log(result.metrics(), phase="online", offline_step=offline_step, online_step=env_steps)
            last_eval = result
            bar.set_postfix(score=f"{result.normalized_score.mean():.1f}")
    bar.update(total - bar.n)
    bar.close()
    env.close()
    return states, last_eval


# --- Entry point ---


def offline_meta(config, seeds, dims) -> dict:
    return {
        "seeds": seeds,
        "dataset_id": config.dataset_id,
        "obs_dim": dims.obs_dim,
        "action_dim": dims.action_dim,
        "hidden_dims": list(config.hidden_dims),
    }


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
    transitions, info = load_dataset(config.dataset_id, download=bool(config.download))
    if config.batch_size > len(transitions):
        raise ConfigError(
            f"batch_size {config.batch_size} exceeds the dataset's {len(transitions)} transitions; "
            f"lower --config.batch_size"
        )
    reward_transform = config.reward_transform or info.default_reward_transform
    dims = Dims(info.obs_dim, info.act_dim, tuple(float(x) for x in np.ravel(info.action_low)),
                tuple(float(x) for x in np.ravel(info.action_high)))
    dataset = dataset_batch(transitions, info, reward_transform)
    del transitions

    run_dir = Path(config.run_dir) if config.run_dir else default_run_dir(config)
    with config.unlocked():
        config.run_dir = str(run_dir)
    logger = RunLogger(run_dir, config.to_dict(), seeds, use_wandb=bool(config.wandb.enabled),
                       resume=config.resume == "auto")
    print(f"pex-jax: {config.task} / {config.algo}, seeds {seeds}, dataset {config.dataset_id} "
          f"({len(dataset.rewards)} transitions, obs {dims.obs_dim}, act {dims.action_dim}), "
          f"device {jax.devices()[0].platform}, run dir {run_dir}", flush=True)
    evaluator = Evaluator(info, seeds, int(config.eval_episodes), int(config.eval_parallel_envs), config)
    table = []
    summary: dict = {"task": config.task, "algo": config.algo, "seeds": seeds, "dataset_id": config.dataset_id}
    try:
        offline_states, offline_eval, offline_step = None, None, 0
        if spec.offline_phase:
            if config.offline_checkpoint:
                template = jax.vmap(lambda k: init_offline_state(k, dims, config))(seed_keys(seeds, INIT_STREAM))
                expect = {k: v for k, v in offline_meta(config, seeds, dims).items() if k != "seeds"}
                offline_states = checkpoint.load_offline(config.offline_checkpoint, template, seeds, expect)
                print(f"loaded offline states for seeds {seeds} from {config.offline_checkpoint}", flush=True)
                offline_step = int(config.offline_steps)
            else:
                offline_states, offline_eval = offline_phase(config, seeds, dims, dataset, evaluator, logger)
                offline_step = int(config.offline_steps)
                checkpoint.save_offline(run_dir / checkpoint.OFFLINE_DIR, offline_states,
                                        offline_meta(config, seeds, dims))
                table.append(("offline (end)", seeds, offline_eval.normalized_score))
                summary["offline/normalized_score"] = offline_eval.normalized_score.tolist()
        if spec.name != "offline":
            _, online_eval = online_phase(spec, config, seeds, dims, info, dataset, offline_states, evaluator,
                                          logger, reward_transform, offline_step)
            table.append((f"online {spec.name} (end)", seeds, online_eval.normalized_score))
            summary["online/normalized_score"] = online_eval.normalized_score.tolist()
            summary["online/success_rate"] = online_eval.success_rate.tolist()
        final = table[-1][2]
        summary["final/normalized_score"] = final.tolist()
        summary["final/normalized_score_mean"] = float(final.mean())
        summary["final/normalized_score_std"] = float(final.std())
        logger.summary({"final/normalized_score": final,
                        **({"offline/normalized_score": offline_eval.normalized_score} if offline_eval else {})})
    finally:
        logger.close()
        evaluator.close()
    print(f"\nNormalized scores (x100) for {config.task} / {config.algo}:\n{format_table(table)}\n", flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    """CLI: parse absl flags (`--config=...`, `--config.x=v`), run, print PexErrors as one line."""
    from absl import flags

    argv = sys.argv if argv is None else argv
    try:
        flags.FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    config = flags.FLAGS.config
    try:
        if config is None:
            raise ConfigError("no config given; pass --config=experiments/configs/<domain>.py:<task>")
        run(config)
    except PexError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


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
