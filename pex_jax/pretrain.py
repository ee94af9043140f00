"""Offline IQL pre-training of several tasks at once: one device call per chunk for tasks x seeds.

    python -m pex_jax.pretrain --config=experiments/configs/antmaze.py --tasks=umaze,umaze-diverse \
        --config.seeds=0-9 --config.run_dir=runs/antmaze/20261127

Each task gets `<run_dir>/<task>/offline/`, the same run directory that
`python -m pex_jax.train --config.algo=offline` writes (config.json, metrics.jsonl, summary.json,
offline_ckpt/), so `--config.offline_checkpoint=<run_dir>/<task>/offline` starts pex or direct from
it. `make antmaze` pre-trains the six AntMaze tasks this way, then fine-tunes each task online.

Why: on an accelerator one call for tasks x seeds fills the device where one task would not; on a
CPU it costs nothing extra (docs/performance.md). Every (task, seed) gets the batches, and so the
parameters, of a single-task run with the same seed (`pex_jax.multitask`). Tasks of equal obs/action
shapes and compiled settings go into one call while their stacked datasets fit in half the free device
memory (each keeps its own traced hyperparameters, e.g. an expectile of its own, and so do grid points);
the rest form further groups (hopper apart from halfcheetah, one after another).
"""

import importlib.util
import json
import os
import sys
from contextlib import ExitStack
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from pex_jax import checkpoint
from pex_jax.agents.algorithms import ALGORITHMS, Dims, stack_hparams
from pex_jax.envs.task import check_task, task_for_dataset
from pex_jax.errors import ConfigError
from pex_jax.grid import entry_name, group_name, offline_dir, offline_points
from pex_jax.multitask import init_multitask_states, make_multitask_offline_chunk, stack_datasets, unique_datasets
from pex_jax.runner.cli import tasks_main, validate_config
from pex_jax.runner.common import (
    INIT_STREAM,
    OFFLINE_STREAM,
    SCORE_NAMES,
    RunClock,
    announce_task,
    call_groups,
    check_finite,
    eval_episodes,
    format_table,
    from_scores,
    host_metrics,
    load_datasets,
    logged_before,
    offline_meta,
    run_record,
    scores_of,
    seed_keys,
    shared_dataset_batches,
    timing,
    unalias,
)
from pex_jax.runner.evaluation import EvalScheduler, EvalTarget, default_eval_workers
from pex_jax.runner.run_dir import (
    DIVERGED,
    FAILED,
    StopRequest,
    check_resume,
    end_status,
    finished,
    lock_run_dir,
    stop_on_signals,
)
from pex_jax.sharding import can_shard, replicate, shard_seeds
from pex_jax.tools.tracking import CONFIG_FILE, SUMMARY_FILE, RunLogger


def task_configs(config_file: str, tasks: list[str], overrides: dict) -> list[ml_collections.ConfigDict]:
    """`get_config(task)` of the config file for every task, with the command line's overrides applied."""
    spec = importlib.util.spec_from_file_location("pex_task_config", config_file)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot load config file {config_file!r}; pass --config=experiments/configs/<domain>.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    configs = []
    for task in tasks:
        try:
            c = module.get_config(task)
        except ValueError as e:
            raise ConfigError(f"{e} (--tasks)") from None
        for dotted, value in overrides.items():
            *parents, leaf = dotted.split(".")
            node = c
            for p in parents:
                node = node[p]
            node[leaf] = value
        configs.append(c)
    return configs


def _device_bytes_free() -> int:
    """Free memory on the default device: the allocator's limit on accelerators, RAM on the CPU."""
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def group_tasks(rows: list[int], row_bytes: int, budget: int, data: list | None = None) -> list[list[int]]:
    """Consecutive task groups whose zero-padded stack (distinct datasets x longest x row_bytes) fits `budget`.

    `data[i]` names task i's dataset (default: each its own); entries sharing one (grid points) stack it once.
    A task that does not fit even alone gets a group of its own (it runs as it would alone).
    """
    data = list(range(len(rows))) if data is None else data
    groups: list[list[int]] = []
    for i, n in enumerate(rows):
        g = groups[-1] if groups else None
        if g is not None and len({data[j] for j in (*g, i)}) * max(n, *(rows[j] for j in g)) * row_bytes <= budget:
            g.append(i)
        else:
            groups.append([i])
    return groups


def pretrain(configs: list[ml_collections.ConfigDict], run_dir: Path, resume: bool = False,
             memory_budget: int | None = None) -> dict[str, dict]:
    """Pre-train every task's seeds offline, in as few device calls as memory allows.

    Returns {task: summary}; each task's run directory is `<run_dir>/<task>/offline`.
    """
    if not configs:
        raise ConfigError("no tasks given; pass --tasks=<task>,<task>,...")
    names = [entry_name(c) for c in configs]
    if len(set(names)) != len(names):
        raise ConfigError(f"tasks repeat in --tasks: {names}")
    # Validate as given first (`make antmaze` passes the algorithm that will fine-tune, so a typo fails
    # now, not after the pre-training); each task's run directory then holds an `offline` run.
    seeds = [validate_config(c) for c in configs][0]
    for c in configs:
        with c.unlocked():
            c.algo = "offline"
    dirs = [offline_dir(run_dir, c) for c in configs]
    if resume and all(finished(d) for d in dirs):
        print(f"pretrain: {names} already done ({run_dir}), skipping", flush=True)
        return {entry_name(c): json.loads((d / SUMMARY_FILE).read_text()) for c, d in zip(configs, dirs, strict=True)}
    with ExitStack() as guard:  # one writer per task directory; SIGTERM / SIGINT stop after a checkpoint
        for d in dirs:
            guard.enter_context(lock_run_dir(d))
        stop = guard.enter_context(stop_on_signals())
        if resume:  # before any data loads: the flags (the data files are compared once loaded)
            for c, d in zip(configs, dirs, strict=True):
                check_resume(d, c.to_dict() | {"seeds": seeds})
        return _pretrain_locked(configs, run_dir, seeds, resume, memory_budget, stop)


def _pretrain_locked(configs, run_dir: Path, seeds: list[int], resume: bool, memory_budget: int | None,
                     stop: StopRequest) -> dict[str, dict]:
    names = [entry_name(c) for c in configs]
    # Load (and fail on a missing dataset) before any training; grid points of a task share its data.
    loaded = load_datasets(configs)
    tasks = [task_for_dataset(info) for _, info in loaded]
    for task, (_, info) in zip(tasks, loaded, strict=True):
        check_task(task, info)
    all_dims = []
    for c, (transitions, info) in zip(configs, loaded, strict=True):
        all_dims.append(Dims.of(info))
        if c.batch_size > len(transitions):
            raise ConfigError(f"batch_size {c.batch_size} exceeds the {len(transitions)} transitions of "
                              f"{c.dataset_id}; lower --config.batch_size")
    budget = memory_budget if memory_budget is not None else _device_bytes_free() // 2
    groups = []  # tasks of other shapes or update fields form further groups; each group splits to fit memory
    for members in call_groups(configs, all_dims):
        dims = all_dims[members[0]]
        row_bytes = 4 * (2 * dims.obs_dim + dims.action_dim + 2)
        sizes, data = [len(loaded[i][0]) for i in members], [id(loaded[i][0]) for i in members]
        groups += [[members[j] for j in g] for g in group_tasks(sizes, row_bytes, budget, data)]
    print(f"pex-jax pretrain: {len(configs)} task(s) x seeds {seeds} in {len(groups)} call group(s) "
          f"{[[names[i] for i in g] for g in groups]}, device {jax.devices()[0].platform}", flush=True)
    summaries = {}
    for g in groups:
        group_configs = [configs[i] for i in g]
        group_data = [loaded[i] for i in g]
        with stop.polled():  # a signal waits for the end of a chunk (a checkpoint) or of the group
            summaries.update(_pretrain_group(group_configs, group_data, [tasks[i] for i in g], seeds,
                                             all_dims[g[0]], run_dir, resume, stop))
    return summaries


def _pretrain_group(configs, loaded, tasks, seeds, dims: Dims, run_dir: Path, resume: bool,
                    stop: StopRequest | None = None) -> dict[str, dict]:
    config, t_count = configs[0], len(configs)
    group_dir = run_dir / group_name("_group-", [entry_name(c) for c in configs])  # run-state checkpoints
    dirs = [offline_dir(run_dir, c) for c in configs]
    for d in (group_dir, *dirs):  # before the resume looks for the newest checkpoint
        for line in checkpoint.recover(d):
            print(f"recovered from an interrupted write: {line}", flush=True)
    if resume and all(finished(d) for d in dirs):
        print(f"pretrain: {[entry_name(c) for c in configs]} already done, skipping", flush=True)
        return {entry_name(c): json.loads((d / SUMMARY_FILE).read_text()) for c, d in zip(configs, dirs, strict=True)}
    saved = checkpoint.latest_run_state(group_dir) if resume else None
    raw, host = checkpoint.load_run_state(saved) if saved else (None, None)
    if resume and saved is None:
        print(f"resume=auto: no offline checkpoint under {group_dir / checkpoint.RUN_DIR}, so "
              f"{[entry_name(c) for c in configs]} start from offline update 0", flush=True)
    loggers, targets = [], []
    for c, d, (_, info), task in zip(configs, dirs, loaded, tasks, strict=True):
        with c.unlocked():
            c.run_dir = str(d)
        announce_task(task, info)
        record = run_record(c, task, info)
        if resume:
            check_resume(d, record | {"seeds": seeds})
        loggers.append(RunLogger(d, record, seeds, use_wandb=bool(c.wandb.enabled),
                                 resume=resume and (d / CONFIG_FILE).exists(),
                                 resume_keep=logged_before(host, False)))
        targets.append(EvalTarget(task, info, tuple(seeds), int(c.eval_episodes), int(c.eval_parallel_envs), dims,
                                  c.to_dict()))
    datasets = shared_dataset_batches(configs, loaded)
    unique, index = unique_datasets(datasets)
    stacked, unique_rows = stack_datasets(unique)
    rows, hps = unique_rows[index], jax.device_put(stack_hparams(configs))  # per entry; uploaded once
    del datasets, unique

    def tiled(stream):
        return jnp.broadcast_to(seed_keys(seeds, stream), (t_count, len(seeds), 2))

    states = init_multitask_states(tiled(INIT_STREAM), dims, config)
    keys, done = jnp.array(tiled(OFFLINE_STREAM)), 0
    last = [None] * t_count
    pending = None
    if raw is not None:
        states = unalias(checkpoint.restore_into(states, raw["states"]))
        keys, done = jnp.asarray(raw["keys"]), int(host["step"])
        last = [from_scores(s) for s in host["last_eval"]]
        pending = host.get("pending_eval")
        print(f"resuming pretrain {[entry_name(c) for c in configs]} from {saved.name}", flush=True)
    if can_shard(len(seeds)):  # several devices: each runs its share of every task's seeds
        states, keys = shard_seeds((states, keys), axis=1)
        stacked, rows, hps, index = replicate((stacked, rows, hps, index))
    total, every = int(config.offline_steps), int(config.offline_eval_every)
    chunks = {}
    bar = tqdm(total=total, initial=done, desc=f"offline updates ({t_count} tasks)", unit="upd",
               disable=not config.progress, dynamic_ncols=True)
    ended: BaseException | None = None
    checking = 0  # the task whose finiteness is being checked: a DivergenceError is that task's
    saved_at = done

    evals = EvalScheduler(targets, default_eval_workers(int(config.eval_workers)), float(config.worker_timeout))
    clock = RunClock.resumed(host)

    def evaluate(step: int) -> None:
        """One evaluation round of every task (in the background with eval workers)."""
        for i, c in enumerate(configs):
            def on_result(result, i=i, step=step):
                last[i] = result
                loggers[i].log(result.metrics(), phase="offline", offline_step=step, online_step=0)
                bar.set_postfix(score=" ".join(f"{r.normalized_score.mean():.1f}" for r in last if r is not None))

            evals.submit(i, ALGORITHMS["offline"], jax.tree.map(lambda x, i=i: x[i], states), round_index=step,
                         episodes=eval_episodes(c, final=step == total), on_result=on_result,
                         where=f"offline step {step}")

    def save():
        # With background evaluation, this step's round may still run: a resume runs it again.
        pending_step = done if (evals.background and done % every == 0) else None
        if pending_step is None:
            evals.collect()
        return checkpoint.save_run_state(group_dir, "offline", done, {"states": states, "keys": keys},
                                         {"last_eval": [scores_of(r) for r in last], "pending_eval": pending_step,
                                          **clock.record()}, int(config.keep_checkpoints))

    metrics = None
    try:
        if pending is not None:  # the checkpoint's own evaluation was still running
            evaluate(int(pending))
        while done < total:
            if stop is not None and stop.requested:  # polled after every chunk, before the next
                path = checkpoint.latest_run_state(group_dir) if config.checkpoint_every > 0 else None
                if config.checkpoint_every > 0 and saved_at != done:
                    for i, c in enumerate(configs):  # never checkpoint a diverged state
                        checking = i
                        check_finite(jax.tree.map(lambda x, i=i: x[i], metrics), seeds, f"offline ({entry_name(c)})",
                                     done)
                    path = save()
                raise stop.preempted("offline", done, path)
            next_stop = min(total, (done // every + 1) * every)
            n = min(int(config.updates_per_call), next_stop - done)
            if n not in chunks:
                chunks[n] = jax.jit(make_multitask_offline_chunk(config, n), donate_argnums=(0,))
            states, keys, metrics = chunks[n](states, keys, stacked, rows, hps, index)
            done += n
            bar.update(n)
            if done < next_stop:
                continue
            for i, c in enumerate(configs):
                task_metrics = jax.tree.map(lambda x, i=i: x[i], metrics)
                checking = i
                check_finite(task_metrics, seeds, f"offline ({entry_name(c)})", done)
                loggers[i].log(host_metrics(task_metrics, "train"), phase="offline", offline_step=done,
                               online_step=0)
            evals.collect()
            evaluate(done)
            if config.checkpoint_every > 0 and done < total:
                save()
                saved_at = done
        evals.collect()
        bar.close()
        summaries = {}
        for i, c in enumerate(configs):
            task_states = jax.tree.map(lambda x, i=i: x[i], states)
            checkpoint.save_offline(dirs[i] / checkpoint.OFFLINE_DIR, task_states,
                                    offline_meta(c, seeds, dims) | {"final_eval": scores_of(last[i])} | clock.record())
            scores = last[i].normalized_score if last[i] is not None else np.full(len(seeds), np.nan)
            loggers[i].summary({"final/normalized_score": scores, "offline/normalized_score": scores},
                               {"score": SCORE_NAMES[tasks[i].score], "data_source": loaded[i][1].source,
                                "timing": timing(clock, evals, [entry_name(c) for c in configs])})
            summaries[entry_name(c)] = json.loads((dirs[i] / SUMMARY_FILE).read_text())
            print(f"\n{SCORE_NAMES[tasks[i].score]} for {entry_name(c)} / offline:\n"
                  f"{format_table([('offline (end)', seeds, scores)])}\n", flush=True)
    except BaseException as e:
        ended = e
        raise
    finally:
        bar.close()
        status, detail = end_status(ended)
        for i, logger in enumerate(loggers):
            if status == DIVERGED and i != checking:  # stopped with the task that diverged
                logger.close(status=FAILED, detail={"error": f"stopped because {configs[checking].task}, trained "
                                                             f"in the same call, diverged: {detail['error']}"})
            else:
                logger.close(status=status, detail=detail)
        evals.close()
    return summaries


def main(argv: list[str] | None = None) -> int:
    def body(configs, run_dir, resume):  # a grid's points need one offline run per distinct offline setting
        pretrain(offline_points(configs) if any(c.grid_point for c in configs) else configs, run_dir, resume=resume)

    return tasks_main(argv, body, "pretrain")


if __name__ == "__main__":
    sys.exit(main())
