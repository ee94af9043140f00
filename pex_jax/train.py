"""Runner: offline IQL pre-training, then online fine-tuning (pex | direct | buffer | scratch | pex_sac |
sac), all seeds of a run on one vmap axis in one process.

    python -m pex_jax.train --config=experiments/configs/pointmaze.py:umaze --config.seeds=0-2

Python here only drives loops, environments, checkpoints and logging; every update, insert and
action selection is a jitted, seed-vmapped pure function from `pex_jax.agents.algorithms`.
"""

import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from pex_jax import checkpoint
from pex_jax.agents.algorithms import (
    ALGORITHMS,
    Dims,
    hparams,
    init_offline_state,
    make_offline_chunk,
    over_seeds,
)
from pex_jax.agents.iql import Batch
from pex_jax.agents.pex_sac import check_action_bounds
from pex_jax.data.sources import load_transitions
from pex_jax.envs.task import check_task, task_for_dataset
from pex_jax.errors import ConfigError
from pex_jax.grid import OFFLINE_FIELDS, expand, grid_id, offline_dir, offline_points, parse_grid, suffix
from pex_jax.runner.cli import absl_main, validate_config
from pex_jax.runner.common import (
    INIT_STREAM,
    OFFLINE_STREAM,
    SCORE_NAMES,
    RunClock,
    announce_task,
    check_finite,
    dataset_batch,
    eval_episodes,
    format_table,
    from_scores,
    host_metrics,
    logged_before,
    offline_meta,
    run_record,
    scores_of,
    seed_keys,
    timing,
    unalias,
)
from pex_jax.runner.evaluation import EvalScheduler, EvalTarget, default_eval_workers
from pex_jax.runner.online import OnlineTask, run_online
from pex_jax.runner.run_dir import StopRequest, check_resume, end_status, lock_run_dir, stop_on_signals
from pex_jax.sharding import can_shard, replicate, shard_seeds
from pex_jax.tools.tracking import CONFIG_FILE, SUMMARY_FILE, RunLogger, trial_scope

# --- Validation ---


def default_run_dir(config) -> Path:
    return Path("runs") / config.task / config.algo / time.strftime("%Y%m%d-%H%M%S")


# --- Phases ---


def offline_phase(config, seeds, dims, dataset: Batch, evals: EvalScheduler, logger: RunLogger, run_dir: Path,
                  clock: RunClock, resume_from: tuple[dict, dict] | None = None, stop: StopRequest | None = None):
    """Offline IQL: K updates per jit call (lax.scan), vmapped over seeds; evaluate every N updates.

    With `checkpoint_every > 0`, the full state (params, optimizer states, targets, keys) is
    checkpointed at every evaluation, so a resumed run continues bit-identically. With evaluation in
    the background, the evaluation of a checkpoint's own step may still run when the checkpoint is
    written; a resume runs it again on the same states. `stop` is polled after every chunk: a
    requested stop checkpoints there (if checkpoints are on) and raises `Preempted`.
    """
    init_keys = seed_keys(seeds, INIT_STREAM)
    states = unalias(jax.vmap(lambda k: init_offline_state(k, dims, config))(init_keys))
    keys = seed_keys(seeds, OFFLINE_STREAM)
    total, every = int(config.offline_steps), int(config.offline_eval_every)
    done, last_eval, pending = 0, None, None
    if resume_from is not None:
        raw, host = resume_from
        states = unalias(checkpoint.restore_into(states, raw["states"]))
        keys = jnp.asarray(raw["keys"])
        done, last_eval = int(host["step"]), from_scores(host.get("last_eval"))
        pending = host.get("pending_eval")
    if can_shard(len(seeds)):  # several devices: each runs its share of the seeds
        states, keys = shard_seeds((states, keys))
    chunk_fns, hp = {}, jax.device_put(hparams(config))  # traced, as a grid point's; uploaded once

    def chunk_fn(n):
        if n not in chunk_fns:
            fn = over_seeds(make_offline_chunk(config, n), (0, 0, None, None, None))
            chunk_fns[n] = jax.jit(fn, donate_argnums=(0,))
        return chunk_fns[n]

    bar = tqdm(total=total, initial=done, desc="offline updates", unit="upd", disable=not config.progress,
               dynamic_ncols=True)

    def evaluate(step: int) -> None:
        def on_result(result, step=step):
            nonlocal last_eval
            logger.log(result.metrics(), phase="offline", offline_step=step, online_step=0)
            last_eval = result
            bar.set_postfix(score=f"{result.normalized_score.mean():.1f}")

        evals.submit(0, ALGORITHMS["offline"], states, round_index=step,
                     episodes=eval_episodes(config, final=step == total), on_result=on_result,
                     where=f"offline step {step}")

    if pending is not None:  # the checkpoint's own evaluation was still running
        evaluate(int(pending))
    saved_at, metrics = done, None
    while done < total:
        if stop is not None and stop.requested:  # polled after every chunk, before the next
            path = checkpoint.latest_run_state(run_dir) if config.checkpoint_every > 0 else None
            if config.checkpoint_every > 0 and saved_at != done:
                check_finite(metrics, seeds, "offline", done)  # never checkpoint a diverged state
                evals.collect()  # its lines are logged before the checkpoint, so a resume keeps them
                path = checkpoint.save_run_state(run_dir, "offline", done, {"states": states, "keys": keys},
                                                 {"last_eval": scores_of(last_eval), "pending_eval": None,
                                                  **clock.record()}, int(config.keep_checkpoints))
            bar.close()
            raise stop.preempted("offline", done, path)
        next_stop = min(total, (done // every + 1) * every)
        n = min(int(config.updates_per_call), next_stop - done)
        states, keys, metrics = chunk_fn(n)(states, keys, dataset, None, hp)
        done += n
        bar.update(n)
        if done == next_stop:
            check_finite(metrics, seeds, "offline", done)
            logger.log(host_metrics(metrics, "train"), phase="offline", offline_step=done, online_step=0)
            evals.collect()
            evaluate(done)
            if config.checkpoint_every > 0 and done < total:
                pending = done if evals.background else None
                checkpoint.save_run_state(run_dir, "offline", done, {"states": states, "keys": keys},
                                          {"last_eval": scores_of(last_eval), "pending_eval": pending,
                                           **clock.record()}, int(config.keep_checkpoints))
                saved_at = done
    evals.collect()
    bar.close()
    return states, last_eval


# --- Entry point ---


def run(config: ml_collections.ConfigDict) -> dict:
    """Run one (task, algorithm) for all seeds; returns the summary written to summary.json.

    The process holds the run directory's lock throughout, and SIGTERM / SIGINT stop it as
    preempted (after a checkpoint, where a loop polls for them)."""
    seeds = validate_config(config)
    run_dir = Path(config.run_dir) if config.run_dir else default_run_dir(config)
    with config.unlocked():
        config.run_dir = str(run_dir)
    if config.grid:
        return run_grid(config, run_dir)
    with lock_run_dir(run_dir), stop_on_signals() as stop:
        return _run(config, seeds, run_dir, stop)


def run_grid(config: ml_collections.ConfigDict, run_dir: Path) -> dict:
    """`--config.grid`: every grid point x seed in one process, the offline runs the points need first
    (`pex_jax.pretrain`), then the online phase (`pex_jax.finetune`); one run directory per point under
    `run_dir` (pex_jax/grid.py), `grid.json` naming them. Returns {point: summary}."""
    from pex_jax.finetune import finetune
    from pex_jax.pretrain import pretrain

    points = expand(config)
    for c in points:
        validate_config(c)
    spec, resume = ALGORITHMS[config.algo], config.resume == "auto"
    offline = offline_points(points) if spec.offline_phase and not config.offline_checkpoint else []
    gid = grid_id(config)
    print(f"pex-jax grid {gid}: {len(points)} point(s) x seeds {config.seeds} of {config.task} / {config.algo} in "
          f"one process ({len(offline)} offline run(s)), run dir {run_dir}", flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {"id": gid, "grid": config.grid, "task": config.task, "algo": config.algo, "seeds": config.seeds,
              "points": [c.grid_point for c in points],
              "offline_runs": [str(offline_dir(run_dir, o).relative_to(run_dir)) for o in offline],
              "runs": [f"{c.task}/{c.algo}{suffix(c.grid_point)}" for c in points if spec.name != "offline"]}
    (run_dir / "grid.json").write_text(json.dumps(record, indent=2) + "\n")
    if config.offline_checkpoint and any(name in OFFLINE_FIELDS for name in parse_grid(config.grid)):
        print(f"note: every point starts from {config.offline_checkpoint}; the grid's offline fields act in the online "
              f"phase only (drop --config.offline_checkpoint to pre-train each point with its own)", flush=True)
    with trial_scope():  # a sweep trial's one W&B run stays open from the offline runs to the online ones
        summaries = pretrain(offline, run_dir, resume=resume) if offline else {}
        if spec.name != "offline":
            summaries = finetune(points, run_dir, resume=resume)
    rows = []
    for c in points if spec.name != "offline" else offline:  # read back: a resumed grid skipped finished points
        saved = json.loads(((offline_dir(run_dir, c) if spec.name == "offline" else
                             run_dir / c.task / f"{c.algo}{suffix(c.grid_point)}") / SUMMARY_FILE).read_text())
        seeds = saved["seeds"]
        rows.append((c.grid_point or "-", seeds,
                     np.asarray([saved["per_seed"][str(s)]["final/normalized_score"] for s in seeds])))
    print(f"\ngrid {gid}, final scores per point ({config.task} / {config.algo}):\n{format_table(rows)}\n",
          flush=True)
    return summaries


def _run(config: ml_collections.ConfigDict, seeds: list[int], run_dir: Path, stop: StopRequest) -> dict:
    spec = ALGORITHMS[config.algo]
    for line in checkpoint.recover(run_dir):  # before the resume looks for the newest checkpoint
        print(f"recovered from an interrupted write: {line}", flush=True)
    resume = config.resume == "auto" and (run_dir / CONFIG_FILE).exists()
    if resume:  # before any data loads: the flags (the data files are compared once loaded)
        check_resume(run_dir, config.to_dict())
    if config.offline_checkpoint:  # fail before loading data
        checkpoint.check_offline(config.offline_checkpoint,
                                 {"dataset_id": config.dataset_id, "hidden_dims": list(config.hidden_dims)}, seeds)
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
    dims = Dims.of(info)
    if spec.backbone == "sac":
        check_action_bounds(dims.action_low, dims.action_high)
    dataset = dataset_batch(transitions, info, reward_transform, bool(config.terminal_on_success))
    if can_shard(len(seeds)):
        dataset = replicate(dataset)
    del transitions

    record = run_record(config, task, info)
    if resume:
        check_resume(run_dir, record)
    saved = checkpoint.latest_run_state(run_dir) if resume else None
    resume_state = checkpoint.load_run_state(saved) if saved else None
    own_offline = run_dir / checkpoint.OFFLINE_DIR
    offline_done = (resume and spec.offline_phase and not config.offline_checkpoint
                    and (own_offline / "meta.json").exists())
    if resume:
        where = f"checkpoint {saved.name}" if saved else ("its offline checkpoint" if offline_done else "the start")
        print(f"resuming {run_dir} from {where}", flush=True)
    logger = RunLogger(run_dir, record, seeds, use_wandb=bool(config.wandb.enabled),
                       resume=resume,
                       resume_keep=logged_before(resume_state[1] if resume_state else None, offline_done))
    print(f"pex-jax: {config.task} / {config.algo}, seeds {seeds}, dataset {config.dataset_id} "
          f"({len(dataset.rewards)} transitions, obs {dims.obs_dim}, act {dims.action_dim}), "
          f"device {jax.devices()[0].platform}, run dir {run_dir}", flush=True)
    announce_task(task, info)
    evals = EvalScheduler([EvalTarget(task, info, tuple(seeds), int(config.eval_episodes),
                                      int(config.eval_parallel_envs), dims, config.to_dict())],
                          default_eval_workers(int(config.eval_workers)), float(config.worker_timeout))
    if resume_state:
        clock = RunClock.resumed(resume_state[1])
    elif offline_done:
        clock = RunClock.resumed(checkpoint.offline_meta(own_offline), {"phase": "online", "step": 0})
    else:
        clock = RunClock()
    table = []
    summary: dict = {"task": config.task, "algo": config.algo, "seeds": seeds, "dataset_id": config.dataset_id}
    phase = resume_state[1]["phase"] if resume_state else None
    ended: BaseException | None = None
    try:
        offline_states, offline_eval, offline_step, step0_eval = None, None, 0, None
        if spec.offline_phase:
            offline_step = int(config.offline_steps)
            source = config.offline_checkpoint or (str(own_offline) if offline_done else "")
            if phase == "online":  # online states come from the checkpoint
                offline_eval = from_scores(resume_state[1]["offline_eval"][0])  # one task: this run's
            elif source:
                template = jax.vmap(lambda k: init_offline_state(k, dims, config))(seed_keys(seeds, INIT_STREAM))
                expect = {k: v for k, v in offline_meta(config, seeds, dims).items() if k != "seeds"}
                offline_states = checkpoint.load_offline(source, template, seeds, expect)
                offline_eval = from_scores(checkpoint.offline_final_scores(source, seeds))
                print(f"loaded offline states for seeds {seeds} from {source}", flush=True)
            else:
                with stop.polled():  # a stop after the last chunk ends the run once offline_ckpt is written
                    offline_states, offline_eval = offline_phase(
                        config, seeds, dims, dataset, evals, logger, run_dir, clock,
                        resume_from=resume_state if phase == "offline" else None, stop=stop)
                    checkpoint.save_offline(own_offline, offline_states, offline_meta(config, seeds, dims)
                                            | {"final_eval": scores_of(offline_eval)} | clock.record())
            if offline_eval is not None:
                table.append(("offline (end)", seeds, offline_eval.normalized_score))
                summary["offline/normalized_score"] = offline_eval.normalized_score.tolist()
        if spec.name != "offline":
            one = OnlineTask(config, task, dataset, logger, reward_transform, offline_eval=offline_eval)
            run_online(spec, config, seeds, dims, [one],
                       None if offline_states is None else jax.tree.map(lambda x: x[None], offline_states),
                       evals, run_dir, offline_step, clock, resume_from=resume_state if phase == "online" else None,
                       stop=stop)
            online_eval, step0_eval = one.last_eval, one.step0_eval
            table.append((f"online {spec.name} (end)", seeds, online_eval.normalized_score))
            summary["online/normalized_score"] = online_eval.normalized_score.tolist()
            summary["online/success_rate"] = online_eval.success_rate.tolist()
            if step0_eval is not None:
                summary["online_step0/normalized_score"] = step0_eval.normalized_score.tolist()
        final = table[-1][2]
        summary["final/normalized_score"] = final.tolist()
        summary["final/normalized_score_mean"] = float(final.mean())
        summary["final/normalized_score_std"] = float(final.std())
        info_out = {"score": SCORE_NAMES[task.score], "data_source": info.source,
                    "timing": timing(clock, evals)}
        summary.update(info_out)
        finals = {"final/normalized_score": final}
        if offline_eval:
            finals["offline/normalized_score"] = offline_eval.normalized_score
        if step0_eval is not None:
            finals["online_step0/normalized_score"] = step0_eval.normalized_score
        logger.summary(finals, info_out)
    except BaseException as e:
        ended = e
        raise
    finally:
        status, detail = end_status(ended)
        logger.close(status=status, detail=detail)
        evals.close()
    print(f"\n{SCORE_NAMES[task.score]} for {config.task} / {config.algo}:\n{format_table(table)}\n"
          f"training waited {summary['timing']['eval_share']:.0%} of the run's wall clock for evaluation\n",
          flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    """CLI: `--config=<file>:<task>` plus `--config.x=v` overrides; runs one (task, algorithm)."""

    def body(flag_values) -> None:
        if flag_values.config is None:
            raise ConfigError("no config given; pass --config=experiments/configs/<domain>.py:<task>")
        run(flag_values.config)

    return absl_main(argv, body)


def run_main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run_main()
