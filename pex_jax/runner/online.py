"""The online engine: every (task, seed) of a run on one vmapped axis, one device round trip per env step.

Per env step:
1. the envs step (in-process or in worker processes, `pex_jax.runner.workers`);
2. one upload: reward, terminal, the true next observation and the observation to act on, packed
   into one float32 array (the stored observation and action are already on the device: they are
   the previous step's inputs and outputs);
3. a donated insert into the replay, then one call that runs the `utd` updates of every agent and
   picks the next actions;
4. one download: the actions and the policy-set choices, packed.

Tasks sharing a call must share obs/action shapes and the update's hyperparameters; each samples
the offline half of its batches from its own dataset (padded and stacked, `pex_jax.multitask`).
Every (task, seed) gets the batches, keys and env seeds of a single-task run with that seed, so a
multi-task run equals the per-task runs to float tolerance (tests/test_online_engine.py).

Not overlapped, on purpose: the next action needs the update of this step (acting on one-update-old
parameters would change the algorithm). What overlaps is the host's bookkeeping with env stepping,
and evaluation with everything (`pex_jax.runner.evaluation`).

Checkpoints (every `checkpoint_every` env steps) are episode boundaries: every env is reset with a
seed derived from (seed, step), before and after a resume alike, so no simulator state is saved. For
the same reason the replay follows from its actions and those boundary steps: a packed checkpoint
(`checkpoint.pack_run_state`) keeps only them, and a resume re-simulates the rows (`replay_rows`).
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from pex_jax import checkpoint
from pex_jax.agents.algorithms import (
    AlgoSpec,
    Dims,
    act,
    init_offline_state,
    init_online_state,
    online_step,
    stack_hparams,
)
from pex_jax.agents.iql import Batch, Hparams
from pex_jax.data import transform_rewards
from pex_jax.data.replay import ReplayBuffer
from pex_jax.errors import CheckpointError
from pex_jax.multitask import stack_datasets, unique_datasets
from pex_jax.rollout import goal_terminals
from pex_jax.runner.common import (
    ONLINE_INIT_STREAM,
    ONLINE_STREAM,
    RunClock,
    check_finite,
    eval_episodes,
    from_scores,
    host_metrics,
    scores_of,
    seed_keys,
    unalias,
)
from pex_jax.runner.evaluation import EvalResult, EvalScheduler
from pex_jax.runner.workers import EnvSlot, StepResult, default_workers, make_envs, reset_seed
from pex_jax.sharding import can_shard, replicate, shard_seeds


@dataclass
class OnlineTask:
    """One task of an online group: its data, its env, its log."""

    config: Any  # the task's ConfigDict
    task: Any  # pex_jax.envs.task.Task
    dataset: Batch
    logger: Any  # RunLogger
    reward_transform: str
    offline_eval: EvalResult | None = None
    last_eval: EvalResult | None = None
    step0_eval: EvalResult | None = None
    extra: dict = field(default_factory=dict)


# --- Device side ---


def make_engine_step(spec: AlgoSpec, config, with_update: bool):
    """(states, online, size, keys, packed, datasets, rows, hps, index) -> (states, keys, next_obs, actions, out,
    metrics).

    Leading axes (tasks, seeds) on states, online rows, keys and `packed`; (tasks,) on the row counts, the
    traced hyperparameters `hps` (`stack_hparams`) and `index`, which of the stacked (distinct) datasets
    each task samples. A "task" may be a grid point (`pex_jax.grid`). `packed` holds [reward, terminal,
    final obs, next obs] per agent; `out` is [action, choice] per agent.
    """
    per_seed = online_step(spec, config, with_update)  # the same per-seed math as a single-task step
    over_seeds = jax.vmap(per_seed, in_axes=(0, 0, None, 0, 0, None, None, None, None))
    over_tasks = jax.vmap(over_seeds, in_axes=(0, 0, None, 0, 0, None, 0, 0, 0))

    def step(states, online: Batch, online_size, keys, packed, datasets: Batch, rows, hps: Hparams, index):
        obs_dim = (packed.shape[-1] - 2) // 2
        next_obs = packed[..., 2 + obs_dim:]
        states, keys, actions, choices, metrics = over_tasks(states, online, online_size, keys, next_obs,
                                                             datasets, rows, hps, index)
        out = jnp.concatenate([actions, choices[..., None].astype(actions.dtype)], axis=-1)
        return states, keys, next_obs, actions, out, metrics

    return step


def insert_packed(buffer: ReplayBuffer, obs, actions, packed) -> ReplayBuffer:
    """Store (obs, action) of the last step with the uploaded [reward, terminal, final obs, -]."""
    obs_dim = obs.shape[-1]
    return buffer.insert(Batch(observations=obs, actions=actions, rewards=packed[..., 0],
                               next_observations=packed[..., 2:2 + obs_dim], terminals=packed[..., 1]))


def make_first_act(spec: AlgoSpec, config):
    """Actions at an episode boundary (start, after a checkpoint): split keys, act on the reset obs."""

    def one(state, key, obs, hp):
        key, k_act = jax.random.split(key)
        action, choice = act(spec, state, k_act, obs, config, evaluate=False, hp=hp)
        return key, action, choice

    over = jax.vmap(jax.vmap(one, in_axes=(0, 0, 0, None)))

    def first(states, keys, obs, hps: Hparams):
        keys, actions, choices = over(states, keys, obs, hps)
        out = jnp.concatenate([actions, choices[..., None].astype(actions.dtype)], axis=-1)
        return keys, actions, out

    return first


# --- Host side ---


def pack_step(result: StepResult, transforms: list[str], terminal_on_success: list[bool], seeds: int) -> np.ndarray:
    """The one upload of an env step: [reward, terminal, final obs, next obs] per agent, float32.

    Rewards and terminals use each task's transform (agents are task-major, `seeds` per task).
    """
    n = len(result.reward)
    rewards = np.empty(n, np.float32)
    terminals = np.empty(n, np.float32)
    for t, (transform, tos) in enumerate(zip(transforms, terminal_on_success, strict=True)):
        sl = slice(t * seeds, (t + 1) * seeds)
        rewards[sl] = np.asarray(transform_rewards(result.reward[sl], transform), np.float32)
        terminals[sl] = goal_terminals(result.terminated[sl], result.reward[sl], tos)
    return np.concatenate([rewards[:, None], terminals[:, None], result.final_obs, result.obs], axis=1)


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


def default_boundaries(step: int, checkpoint_every: int) -> list[int]:
    """Episode boundaries of an uninterrupted phase up to `step`: 0 and every checkpoint before it."""
    return [0, *range(checkpoint_every, step, checkpoint_every)] if checkpoint_every > 0 else [0]


def replay_rows(tasks: list[OnlineTask], seeds: list[int], dims: Dims, actions: np.ndarray, boundaries: list[int],
                workers: int = 0, timeout: float = 600.0, progress: bool = True) -> dict[str, np.ndarray]:
    """The replay rows of an online phase, re-simulated from its actions (a packed checkpoint's).

    `actions` is (tasks, seeds, steps, action_dim); every env is reset at each of `boundaries` with the
    seed the engine used there and then steps through the saved actions, so the rows are what the
    engine stored (same envs, same `pack_step`), as a state dict of `Batch` fields.
    """
    n_tasks, n_seeds, steps = actions.shape[:3]
    n, od = n_tasks * n_seeds, dims.obs_dim
    flat = np.asarray(actions, np.float32).reshape(n, steps, -1)
    obs = np.empty((n, steps, od), np.float32)
    next_obs = np.empty((n, steps, od), np.float32)
    rewards, terminals = np.empty((n, steps), np.float32), np.empty((n, steps), np.float32)
    transforms = [ot.reward_transform for ot in tasks]
    terminal_on_success = [bool(ot.config.terminal_on_success) for ot in tasks]
    slots = [EnvSlot(ot.task, s) for ot in tasks for s in seeds]
    starts = sorted({b for b in boundaries if b < steps} | {0})
    envs = make_envs(slots, od, dims.action_dim, workers, timeout)
    try:
        with tqdm(total=steps, desc=f"re-simulating the replay ({n_tasks} x {n_seeds})", unit="step",
                  disable=not progress, dynamic_ncols=True) as bar:
            for lo, hi in zip(starts, [*starts[1:], steps], strict=True):
                current = np.array(envs.reset([reset_seed(s.seed, lo) for s in slots], lo), np.float32)
                for t in range(lo, hi):
                    envs.step_async(flat[:, t], 0)
                    packed = pack_step(envs.step_wait(t + 1, 0), transforms, terminal_on_success, n_seeds)
                    obs[:, t], rewards[:, t], terminals[:, t] = current, packed[:, 0], packed[:, 1]
                    next_obs[:, t], current = packed[:, 2:2 + od], packed[:, 2 + od:]
                bar.update(hi - lo)
    finally:
        envs.close()
    shape = (n_tasks, n_seeds, steps)
    return {"observations": obs.reshape(*shape, od), "actions": flat.reshape(*shape, -1),
            "rewards": rewards.reshape(shape), "next_observations": next_obs.reshape(*shape, od),
            "terminals": terminals.reshape(shape)}


def unpack_rows(tasks: list[OnlineTask], seeds: list[int], dims: Dims, raw: dict, host: dict, boundaries: list[int],
                config) -> dict:
    """The full replay rows of a packed checkpoint, re-simulated and checked against its digest."""
    print(f"resume: re-simulating {host['step']} online steps of replay from the packed checkpoint", flush=True)
    rows = replay_rows(tasks, seeds, dims, np.asarray(raw["buffer"]["actions"]), boundaries,
                       default_workers(int(config.env_workers), len(tasks) * len(seeds)),
                       float(config.worker_timeout), bool(config.progress))
    if checkpoint.rows_digest(rows) != host["packed"]["digest"]:
        raise CheckpointError(
            f"the replay re-simulated from the packed checkpoint {host['packed']['from']}{checkpoint.PACKED_SUFFIX} "
            f"differs from the one it was packed from (its digest): this machine's simulator does not reproduce "
            f"those transitions bit for bit. Resume where the full checkpoint is, or delete the packed one to "
            f"start the online phase again from the offline checkpoint")
    return rows


def _task_slice(tree: Any, t: int, seeds: int) -> Any:
    """Rows of task `t` from a host pytree of agent-major (tasks * seeds) arrays."""
    return jax.tree.map(lambda x: x[t * seeds:(t + 1) * seeds], tree)


def online_states(spec: AlgoSpec, config, seeds: list[int], dims: Dims, num_tasks: int, offline_states) -> Any:
    """Fresh online states with (tasks, seeds) axes: every task gets the per-seed keys of a single run."""
    keys = jnp.broadcast_to(seed_keys(seeds, ONLINE_INIT_STREAM), (num_tasks, len(seeds), 2))

    def one(key, offline):
        return init_online_state(spec, key, dims, config, offline)

    # jitted: the same values as eager vmaps, without seconds of op-by-op dispatch at every start
    if spec.warm_start == "none":
        return jax.jit(jax.vmap(jax.vmap(lambda k: one(k, None))))(keys)
    if offline_states is None:  # resuming: only the structure matters, values come from the checkpoint
        offline_states = jax.jit(jax.vmap(jax.vmap(lambda k: init_offline_state(k, dims, config))))(keys)
    return jax.jit(jax.vmap(jax.vmap(one)))(keys, offline_states)


@dataclass
class Lane:
    """A share of the seeds (every task) whose device work overlaps the other lanes' env steps."""

    lo: int  # seeds [lo, hi) of every task
    hi: int
    first: int  # its envs are slots [first, first + tasks * (hi - lo)) of the env pool
    states: Any = None
    keys: Any = None
    buffer: Any = None
    obs: Any = None  # device: what the lane's agents act on (the next stored observation)
    actions: Any = None  # device: their last actions (the next stored actions)
    out: np.ndarray | None = None  # host: [action, choice] per slot, what the envs execute next
    out_dev: Any = None
    metrics: Any = None
    result: StepResult | None = None

    @property
    def seeds(self) -> int:
        return self.hi - self.lo


def default_lanes(requested: int) -> int:
    """`--config.pipeline_lanes`: -1 (or 0) = 2 on the CPU, where a call's cost grows with its agents so
    halving them frees the cores for the other lane's envs; 1 on an accelerator, where a small call is
    bound by kernel launches and costs about the same for half the agents (an assumption until measured,
    docs/performance.md)."""
    if requested > 0:
        return int(requested)
    return 2 if jax.default_backend() == "cpu" else 1


def make_lanes(num_tasks: int, num_seeds: int, requested: int) -> list[Lane]:
    """Contiguous seed ranges; slots are lane-major, then task, then seed."""
    count = max(1, min(int(requested), num_seeds))
    bounds = np.linspace(0, num_seeds, count + 1).round().astype(int)
    lanes, first = [], 0
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        lanes.append(Lane(int(lo), int(hi), first))
        first += num_tasks * int(hi - lo)
    return lanes


def _split(tree: Any, lane: Lane) -> Any:
    return jax.tree.map(lambda x: x[:, lane.lo:lane.hi], tree)


def _join(trees: list[Any], join=jnp.concatenate) -> Any:
    """Lanes back into one (tasks, seeds, ...) tree: what checkpoints, logs and evaluations see."""
    return jax.tree.map(lambda *xs: join(xs, axis=1), *trees)


def run_online(spec: AlgoSpec, config, seeds: list[int], dims: Dims, tasks: list[OnlineTask], offline_states,
               evals: EvalScheduler, ckpt_dir: Path, offline_step: int, clock: RunClock,
               resume_from: tuple[dict, dict] | None = None, stop=None) -> None:
    """Online fine-tuning of every task x seed in one loop; fills each task's `last_eval` / `step0_eval`.

    `offline_states` has leading (tasks, seeds) axes (None for algorithms without warm start, and on
    resume). `evals` holds one evaluation target per task, in the same order. `clock` is the run's wall
    clock over its processes; every checkpoint carries it. `stop` (optional) has a `requested` flag: when
    set, the loop checkpoints (if enabled) and raises its `Preempted`.

    With `pipeline_lanes` > 1 the seeds are split into lanes: while the device updates one lane, the
    envs of the others step. Every agent keeps its own keys, data and order of operations; only the
    number of seeds per vmapped call changes, which moves results at float rounding, as running
    tasks together does (tests/test_online_engine.py). Checkpoints hold the joined state.
    """
    n_tasks, n_seeds = len(tasks), len(seeds)
    n = n_tasks * n_seeds
    states = online_states(spec, config, seeds, dims, n_tasks, offline_states)
    capacity = int(min(config.buffer_capacity, max(config.online_steps, 1)))
    buffer = ReplayBuffer.create((n_tasks, n_seeds), dims.obs_dim, dims.action_dim, capacity)
    keys = jnp.array(jnp.broadcast_to(seed_keys(seeds, ONLINE_STREAM), (n_tasks, n_seeds, 2)))
    stats, start, pending_eval = EpisodeStats(n), 0, None
    boundaries: list[int] = []  # env steps at which every env was reset with `reset_seed` (a packed replay's)
    if resume_from is not None:
        raw, host = resume_from
        states = checkpoint.restore_into(states, raw["states"])
        keys = jnp.asarray(raw["keys"])
        start = int(host["step"])
        boundaries = list(host.get("boundaries") or default_boundaries(start, int(config.checkpoint_every)))
        rows = (unpack_rows(tasks, seeds, dims, raw, host, boundaries, config) if "packed" in host
                else raw["buffer"]["rows"])
        size = int(raw["buffer"]["size"])
        buffer = buffer.replace(
            data=jax.tree.map(lambda buf, r: buf.at[:, :, : r.shape[2]].set(r), buffer.data,
                              checkpoint.restore_into(buffer.data, rows)),
            size=jnp.asarray(size, jnp.int32), ptr=jnp.asarray(int(raw["buffer"]["ptr"]), jnp.int32))
        stats = EpisodeStats(n, host["stats"])
        for t, ot in enumerate(tasks):
            ot.last_eval = from_scores(host["last_eval"][t])
            ot.step0_eval = from_scores(host["step0_eval"][t])
        pending_eval = host.get("pending_eval")
    unique, index = unique_datasets([ot.dataset for ot in tasks])  # grid points of a task share its data
    datasets, unique_rows = stack_datasets(unique)
    rows, hps = unique_rows[index], jax.device_put(stack_hparams([ot.config for ot in tasks]))  # uploaded once
    del unique
    for ot in tasks:
        ot.dataset = None  # the stacked copy is the one in use
    sharded = can_shard(n_seeds)
    if sharded:
        datasets, rows, hps, index = replicate((datasets, rows, hps, index))
    lanes = make_lanes(n_tasks, n_seeds, 1 if sharded else default_lanes(int(config.pipeline_lanes)))
    for lane in lanes:
        lane.states, lane.keys = unalias(_split((states, keys), lane))
        lane.buffer = unalias(buffer.replace(data=_split(buffer.data, lane)))  # own size/ptr: inserts donate them
        if sharded:
            lane.states, lane.keys, lane.buffer = shard_seeds((lane.states, lane.keys, lane.buffer), axis=1)
    del states, keys, buffer, offline_states

    insert = jax.jit(insert_packed, donate_argnums=(0,))
    step_collect = jax.jit(make_engine_step(spec, config, False), donate_argnums=(0,))
    step_update = jax.jit(make_engine_step(spec, config, True), donate_argnums=(0,))
    first_act = jax.jit(make_first_act(spec, config))
    slots = [EnvSlot(ot.task, seeds[i]) for lane in lanes for ot in tasks for i in range(lane.lo, lane.hi)]
    # canonical[k] = slot of agent k in (task, seed) order: how logs and episode stats see them
    canonical = np.array([lane.first + t * lane.seeds + (i - lane.lo)
                          for t in range(n_tasks) for i in range(n_seeds)
                          for lane in lanes if lane.lo <= i < lane.hi])
    workers = default_workers(int(config.env_workers), n)
    envs = make_envs(slots, dims.obs_dim, dims.action_dim, workers, float(config.worker_timeout))
    transforms = [ot.reward_transform for ot in tasks]
    terminal_on_success = [bool(ot.config.terminal_on_success) for ot in tasks]
    total = int(config.online_steps)

    def joined_states():
        return lanes[0].states if len(lanes) == 1 else _join([lane.states for lane in lanes])

    def joined_metrics():
        """Host copy of the last update's metrics, (tasks, seeds) leaves; None before any update."""
        if any(lane.metrics is None for lane in lanes):
            return None
        return _join([jax.device_get(lane.metrics) for lane in lanes], np.concatenate)

    def evaluate(step: int) -> None:
        """Submit one evaluation round (every task) for the states after `step` env steps."""
        final = step == total or step == 0
        states = joined_states()
        for t, ot in enumerate(tasks):
            def on_result(result, t=t, ot=ot, step=step):
                ot.logger.log(result.metrics(), phase="online", offline_step=offline_step, online_step=step)
                ot.last_eval = result
                if step == 0:
                    ot.step0_eval = result
            task_states = jax.tree.map(lambda x, t=t: x[t], states)
            evals.submit(t, spec, task_states, round_index=offline_step + step,
                         episodes=eval_episodes(ot.config, final=final), on_result=on_result,
                         where=f"online step {step}")

    def boundary(step: int) -> None:
        """Reset every env (seeded by seed and step), pick the first actions and send them."""
        obs = envs.reset([reset_seed(s.seed, step) for s in slots], step)
        if step not in boundaries:
            boundaries.append(step)
        for lane in lanes:
            lane_obs = obs[lane.first:lane.first + n_tasks * lane.seeds]
            lane.obs = jnp.asarray(lane_obs.reshape(n_tasks, lane.seeds, -1))
            lane.keys, lane.actions, out = first_act(lane.states, lane.keys, lane.obs, hps)
            lane.out = np.asarray(out).reshape(n_tasks * lane.seeds, -1)
            envs.step_async(lane.out[:, :-1], lane.first)
        stats.new_episode()

    def check(host, step):
        for t, ot in enumerate(tasks):
            try:
                check_finite(jax.tree.map(lambda x, t=t: x[t], host), seeds, f"online ({ot.config.task})", step)
            except Exception as e:
                e.task_index = t
                raise

    def save(step: int) -> Path:
        nonlocal pending_eval
        host = joined_metrics()
        if host is not None:
            check(host, step)  # never checkpoint a diverged state
        # An evaluation of this very step may stay in flight: its states are the checkpoint's, so a
        # resume re-runs it. Anything older is collected first.
        pending_eval = step if (evals.background and step % int(config.online_eval_every) == 0) else None
        if pending_eval is None:
            evals.collect()
        size = int(lanes[0].buffer.size)
        rows = _join([jax.device_get(jax.tree.map(lambda x, n=size: x[:, :, :n], lane.buffer.data))
                      for lane in lanes], np.concatenate)
        device_state = {"states": joined_states(), "keys": _join([lane.keys for lane in lanes]),
                        "buffer": {"rows": rows, "size": lanes[0].buffer.size, "ptr": lanes[0].buffer.ptr}}
        return checkpoint.save_run_state(ckpt_dir, "online", step, device_state, {
            "stats": stats.state(), "pending_eval": pending_eval, "boundaries": boundaries,
            "last_eval": [scores_of(ot.last_eval) for ot in tasks],
            "offline_eval": [scores_of(ot.offline_eval) for ot in tasks],
            "step0_eval": [scores_of(ot.step0_eval) for ot in tasks], **clock.record()},
            int(config.keep_checkpoints))

    polled = stop.polled() if stop is not None else contextlib.nullcontext()
    try:
        polled.__enter__()  # a signal sets `stop.requested`; the loop checkpoints and stops at the next step
        if start == 0:  # the policy set (or fine-tuned policy) before any online update
            evaluate(0)
        elif pending_eval is not None:  # the checkpoint's own evaluation was still running
            evaluate(int(pending_eval))
        boundary(start)
        bar = tqdm(total=total, initial=start, desc=f"online {spec.name} env steps ({n_tasks} x {n_seeds})",
                   unit="step", disable=not config.progress, dynamic_ncols=True)
        t_start = time.time()
        step_fn = step_collect
        for t in range(start, total):
            if t + 1 > config.learning_starts:
                step_fn = step_update
            for lane in lanes:  # results in, device work dispatched (it runs while the next lane's envs finish)
                lane.result = envs.step_wait(t + 1, lane.first)
                packed = jax.device_put(pack_step(lane.result, transforms, terminal_on_success, lane.seeds).reshape(
                    n_tasks, lane.seeds, -1))
                lane.buffer = insert(lane.buffer, lane.obs, lane.actions, packed)
                lane.states, lane.keys, lane.obs, lane.actions, lane.out_dev, metrics = step_fn(
                    lane.states, lane.buffer.data, lane.buffer.size, lane.keys, packed, datasets, rows, hps, index)
                if metrics:
                    lane.metrics = metrics
            env_steps = t + 1
            boundary_now = (config.checkpoint_every > 0 and env_steps % config.checkpoint_every == 0
                            and env_steps < total)
            stopping = stop is not None and stop.requested and env_steps < total
            go_on = env_steps < total and not boundary_now and not stopping
            choices = np.empty(n)
            for lane in lanes:  # actions out: each lane's envs step while the later lanes' device work runs
                choices[lane.first:lane.first + n_tasks * lane.seeds] = lane.out[:, -1]  # this step's choices
                lane.out = np.asarray(lane.out_dev).reshape(n_tasks * lane.seeds, -1)
                if go_on:
                    envs.step_async(lane.out[:, :-1], lane.first)
            results = [lane.result for lane in lanes]
            reward, success, done = (np.concatenate([getattr(r, f) for r in results])[canonical]
                                     for f in ("reward", "success", "done"))
            stats.step(reward, success, done, choices[canonical])

            if env_steps % config.log_every == 0 or env_steps == total:
                row = {"train/env_steps_per_s": (env_steps - start) / max(time.time() - t_start, 1e-9)}
                host = joined_metrics()
                if host is not None:
                    check(host, env_steps)
                flushed = stats.flush(spec.policy_set)
                for ti, ot in enumerate(tasks):
                    task_row = dict(row)
                    if host is not None:
                        task_row.update(host_metrics(jax.tree.map(lambda x, ti=ti: x[ti], host), "train"))
                    task_row.update(_task_slice(flushed, ti, n_seeds))
                    ot.logger.log(task_row, phase="online", offline_step=offline_step, online_step=env_steps)
                bar.update(env_steps - bar.n)
            if env_steps % config.online_eval_every == 0 or env_steps == total:
                evals.collect()
                evaluate(env_steps)
                shown = [ot.last_eval for ot in tasks if ot.last_eval is not None]
                if shown:
                    bar.set_postfix(score=" ".join(f"{r.normalized_score.mean():.1f}" for r in shown))
            if boundary_now or stopping:
                path = None
                if config.checkpoint_every > 0:
                    path = save(env_steps)
                if stopping:
                    bar.close()
                    raise stop.preempted("online", env_steps, path)
                boundary(env_steps)
        evals.collect()
        bar.update(total - bar.n)
        bar.close()
    finally:
        envs.close()
        polled.__exit__(*sys.exc_info())  # an exception in flight (a preemption with its step) stays the one raised
