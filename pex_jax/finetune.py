"""Online fine-tuning of several tasks in one process: every task x seed on the engine's shared axis.

    python -m pex_jax.finetune --config=experiments/configs/antmaze.py --tasks=umaze,medium-play \
        --config.seeds=0-9 --config.algo=pex --config.run_dir=runs/antmaze/20261206

Each task writes `<run_dir>/<task>/<algo>/` as `python -m pex_jax.train` does (config.json,
metrics.jsonl, summary.json, one W&B run per seed), starting from the offline states that
`python -m pex_jax.pretrain` left in `<run_dir>/<task>/offline` (or `--config.offline_checkpoint`,
for a single task). `make antmaze` runs the two one after the other.

Why: one env step of 6 tasks x 10 seeds is one device call for 60 agents instead of six processes
taking turns, and the envs of all of them step together in the env workers (docs/performance.md).
Tasks of other obs/action shapes or compiled settings form further groups, run one after another; traced
hyperparameters (an expectile of its own, a grid point's values) do not split a group.
"""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from pathlib import Path

import jax
import ml_collections

from pex_jax import checkpoint
from pex_jax.agents.algorithms import ALGORITHMS, Dims, init_offline_state
from pex_jax.agents.pex_sac import check_action_bounds
from pex_jax.envs.task import check_task, task_for_dataset
from pex_jax.errors import ConfigError
from pex_jax.grid import entry_name, group_name, offline_label, suffix
from pex_jax.runner.cli import tasks_main, validate_config
from pex_jax.runner.common import (
    INIT_STREAM,
    SCORE_NAMES,
    RunClock,
    announce_task,
    call_groups,
    format_table,
    from_scores,
    load_datasets,
    logged_before,
    offline_meta,
    run_record,
    seed_keys,
    shared_dataset_batches,
    timing,
)
from pex_jax.runner.evaluation import EvalScheduler, EvalTarget, default_eval_workers
from pex_jax.runner.online import OnlineTask, run_online
from pex_jax.runner.run_dir import DIVERGED, FAILED, check_resume, end_status, finished, lock_run_dir, stop_on_signals
from pex_jax.tools.tracking import CONFIG_FILE, SUMMARY_FILE, RunLogger


def _offline_source(config, run_dir: Path) -> Path:
    """Where a task's offline states come from: --config.offline_checkpoint, else pretrain's directory (a grid
    point's: the offline run of its offline fields)."""
    if config.offline_checkpoint:
        return Path(config.offline_checkpoint)
    return run_dir / config.task / ("offline" + suffix(offline_label(config)))


def finetune(configs: list[ml_collections.ConfigDict], run_dir: Path, resume: bool = False) -> dict[str, dict]:
    """Fine-tune every task's seeds online, same-shape tasks in one loop; returns {task: summary}."""
    if not configs:
        raise ConfigError("no tasks given; pass --tasks=<task>,<task>,...")
    names = [entry_name(c) for c in configs]
    if len(set(names)) != len(names):
        raise ConfigError(f"tasks repeat in --tasks: {names}")
    seeds = [validate_config(c) for c in configs][0]
    spec = ALGORITHMS[configs[0].algo]
    if spec.name == "offline":
        raise ConfigError("algo=offline has no online phase; pre-train with `python -m pex_jax.pretrain`")
    if len({c.task for c in configs}) > 1 and any(c.offline_checkpoint for c in configs):
        raise ConfigError("--config.offline_checkpoint names one task's checkpoint; with several tasks the "
                          "offline states come from <run_dir>/<task>/offline (python -m pex_jax.pretrain)")
    dirs = {entry_name(c): run_dir / c.task / (c.algo + suffix(c.grid_point)) for c in configs}
    todo = [c for c in configs if not (resume and finished(dirs[entry_name(c)]))]
    for c in configs:
        if c not in todo:
            print(f"finetune: {c.task} / {c.algo} already done ({dirs[entry_name(c)]}), skipping", flush=True)
    if spec.warm_start != "none":
        for c in todo:  # fail before any data loads
            checkpoint.resolve_offline_path(_offline_source(c, run_dir))
    loaded = load_datasets(todo)
    for c, (transitions, _) in zip(todo, loaded, strict=True):
        if c.batch_size > len(transitions):
            raise ConfigError(f"batch_size {c.batch_size} exceeds the {len(transitions)} transitions of "
                              f"{c.dataset_id}; lower --config.batch_size")
    all_dims = [Dims.of(info) for _, info in loaded]
    groups = call_groups(todo, all_dims)  # tasks of other shapes or update fields: further groups, one after another
    summaries = {entry_name(c): json.loads((dirs[entry_name(c)] / SUMMARY_FILE).read_text())
                 for c in configs if c not in todo}
    print(f"pex-jax finetune: {len(todo)} task(s) x seeds {seeds}, algo {spec.name}, in {len(groups)} group(s) "
          f"{[[entry_name(todo[i]) for i in g] for g in groups]}, device {jax.devices()[0].platform}", flush=True)
    for members in groups:
        summaries.update(_finetune_group(spec, [todo[i] for i in members], [loaded[i] for i in members], seeds,
                                         all_dims[members[0]], run_dir, dirs, resume))
    return summaries


def _finetune_group(spec, configs, loaded, seeds, dims: Dims, run_dir: Path, dirs: dict, resume: bool) -> dict:
    config = configs[0]
    if spec.backbone == "sac":
        check_action_bounds(dims.action_low, dims.action_high)
    group_dir = run_dir / group_name(f"_online-{spec.name}-", [entry_name(c) for c in configs])
    with ExitStack() as guard:
        for c in configs:
            guard.enter_context(lock_run_dir(dirs[entry_name(c)]))
        stop = guard.enter_context(stop_on_signals())
        for d in (group_dir, *(dirs[entry_name(c)] for c in configs)):
            for line in checkpoint.recover(d):
                print(f"recovered from an interrupted write: {line}", flush=True)
        saved = checkpoint.latest_run_state(group_dir) if resume else None
        raw, host = checkpoint.load_run_state(saved) if saved else (None, None)
        if saved:
            print(f"resuming finetune {[entry_name(c) for c in configs]} from {saved.name}", flush=True)
        elif resume:
            print(f"resume=auto: no online checkpoint under {group_dir / checkpoint.RUN_DIR}, so "
                  f"{[entry_name(c) for c in configs]} start from online step 0", flush=True)
        tasks, infos, targets, offline = [], [], [], []
        template = jax.jit(jax.vmap(lambda k: init_offline_state(k, dims, config)))(seed_keys(seeds, INIT_STREAM))
        expect = {k: v for k, v in offline_meta(config, seeds, dims).items() if k not in ("seeds", "dataset_id")}
        batches = shared_dataset_batches(configs, loaded)  # grid points of a task share one device copy
        for i, (c, (_, info)) in enumerate(zip(configs, loaded, strict=True)):
            with c.unlocked():
                c.run_dir = str(dirs[entry_name(c)])
                if spec.warm_start != "none":  # recorded as a single-task run records it (reports follow it)
                    c.offline_checkpoint = str(_offline_source(c, run_dir))
            task = task_for_dataset(info)
            check_task(task, info)
            record = run_record(c, task, info)
            if resume and (dirs[entry_name(c)] / CONFIG_FILE).exists():
                check_resume(dirs[entry_name(c)], record | {"seeds": seeds})
            announce_task(task, info)
            offline_eval = None
            if spec.warm_start != "none":
                source = _offline_source(c, run_dir)
                if raw is None:  # on resume the online states come from the checkpoint
                    offline.append(checkpoint.load_offline(source, template, seeds,
                                                           expect | {"dataset_id": c.dataset_id}))
                offline_eval = from_scores(checkpoint.offline_final_scores(source, seeds))
            if host is not None:
                offline_eval = from_scores(host["offline_eval"][i]) or offline_eval
            transform = c.reward_transform or info.default_reward_transform
            dataset = batches[i]
            logger = RunLogger(dirs[entry_name(c)], record, seeds, use_wandb=bool(c.wandb.enabled),
                               resume=resume and (dirs[entry_name(c)] / CONFIG_FILE).exists(),
                               resume_keep=logged_before(host, False))
            guard.callback(logger.close)  # a no-op once closed with its status below
            tasks.append(OnlineTask(c, task, dataset, logger, transform, offline_eval=offline_eval))
            infos.append(info)
            targets.append(EvalTarget(task, info, tuple(seeds), int(c.eval_episodes), int(c.eval_parallel_envs),
                                      dims, c.to_dict()))
        del loaded
        offline_states = jax.tree.map(lambda *xs: jax.numpy.stack(xs), *offline) if offline else None
        evals = EvalScheduler(targets, default_eval_workers(int(config.eval_workers)), float(config.worker_timeout))
        guard.callback(evals.close)
        clock = RunClock.resumed(host)
        try:
            run_online(spec, config, seeds, dims, tasks, offline_states, evals, group_dir,
                       int(config.offline_steps) if spec.offline_phase else 0, clock,
                       resume_from=(raw, host) if raw is not None else None, stop=stop)
        except BaseException as e:
            failing = getattr(e, "task_index", 0)  # the task whose check failed
            status, detail = end_status(e)
            for i, ot in enumerate(tasks):
                if status == DIVERGED and i != failing:
                    ot.logger.close(status=FAILED, detail={"error": f"stopped because {entry_name(configs[failing])}, "
                                                                     f"trained in the same call, diverged"})
                else:
                    ot.logger.close(status=status, detail=detail)
            raise
        summaries = {}
        for ot, info in zip(tasks, infos, strict=True):
            summaries[entry_name(ot.config)] = finish_task(ot, info, seeds, spec,
                                                           timing(clock, evals, [entry_name(c) for c in configs]))
        return summaries


def finish_task(ot: OnlineTask, info, seeds: list[int], spec, timing_info: dict) -> dict:
    """summary.json, the W&B summaries and the final table of one fine-tuned task."""
    table, summary = [], {"task": ot.config.task, "algo": spec.name, "seeds": seeds,
                          "dataset_id": ot.config.dataset_id, "status": "finished"}
    finals = {}
    if ot.offline_eval is not None:
        table.append(("offline (end)", seeds, ot.offline_eval.normalized_score))
        summary["offline/normalized_score"] = ot.offline_eval.normalized_score.tolist()
        finals["offline/normalized_score"] = ot.offline_eval.normalized_score
    table.append((f"online {spec.name} (end)", seeds, ot.last_eval.normalized_score))
    summary["online/normalized_score"] = ot.last_eval.normalized_score.tolist()
    summary["online/success_rate"] = ot.last_eval.success_rate.tolist()
    if ot.step0_eval is not None:
        summary["online_step0/normalized_score"] = ot.step0_eval.normalized_score.tolist()
        finals["online_step0/normalized_score"] = ot.step0_eval.normalized_score
    final = ot.last_eval.normalized_score
    summary["final/normalized_score"] = final.tolist()
    summary["final/normalized_score_mean"] = float(final.mean())
    summary["final/normalized_score_std"] = float(final.std())
    info_out = {"score": SCORE_NAMES[ot.task.score], "data_source": info.source, "timing": timing_info}
    summary.update(info_out)
    ot.logger.summary({"final/normalized_score": final, **finals}, info_out)
    ot.logger.close()
    print(f"\n{SCORE_NAMES[ot.task.score]} for {entry_name(ot.config)} / {spec.name}:\n{format_table(table)}\n",
          flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    return tasks_main(argv, lambda configs, run_dir, resume: finetune(configs, run_dir, resume=resume), "finetune")


if __name__ == "__main__":
    sys.exit(main())
