"""Hopper and HalfCheetah datasets made here with D4RL's recipe: one SAC run per env, then medium, replay, expert.

Why: the PEX paper's locomotion data are D4RL's -v2 files, which cannot be downloaded here. D4RL made them from one
SAC run per env, and so does this module (Gymnasium `<Env>-v5`, this project's SAC):
- expert: `steps` env steps of the fully trained policy (the snapshot with the best evaluation return);
- medium: the same from the snapshot whose evaluation return is closest to 1/3 of the expert's;
- medium-replay: the SAC replay buffer up to and including the medium snapshot's step.
Medium and expert are sampled with the policy's own stochastic sampling (a tanh-Gaussian draw, no added noise).

    python -m pex_jax.datagen.locomotion train --env=hopper --steps=500000 --seed=0    # `make mujoco-experts`
    python -m pex_jax.datagen.locomotion generate --env=all --level=all --skip-existing  # `make data-mujoco`
    python -m pex_jax.datagen.locomotion curve --env=hopper                             # re-plot the curve
    python -m pex_jax.datagen.locomotion d4rl-file --env=hopper --level=medium --out=DIR  # D4RL's -v2 file layout

`train` writes `assets/<env>_{medium,expert}.npz` (actor + JSON header) and the medium-replay dataset, since the
buffer exists only during training. Without it, `generate` rebuilds medium-replay by re-running the seeded training
up to the medium step in the policy file (same buffer on the same machine and software, `stop_at`). Datasets are
Minari `pex/mujoco/<env>/<level>-v0` with the collection env as eval env and D4RL's reference returns, so a run
evaluates them in `<Env>-v5` and reports normalized scores on the paper's scale.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.metadata
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import jax
import numpy as np

from pex_jax.data.minari import dataset_dir, datasets_root
from pex_jax.data.scores import D4RL_REF_SCORES, d4rl_normalize
from pex_jax.datagen.ant_controller import read_actor_file, replay_buffer, save_controller, write_curve
from pex_jax.datagen.dataset_slot import dataset_slot
from pex_jax.errors import ConfigError, DatasetExistsError, PexError

ENVS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5"}
LEVELS = ("medium", "medium-replay", "expert")
MEDIUM_FRACTION = 1 / 3
STEPS = 1_000_000  # per collected dataset, as D4RL's
TRAIN_STEPS = 500_000
SNAPSHOT_EVERY = 10_000
EVAL_EPISODES = 5
EVAL_SEED = 1_000_000  # the same start states for every snapshot: snapshots are compared on equal terms
ASSETS = Path(__file__).resolve().parent / "assets"
RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"
FORMAT = "pex-jax locomotion policy v1"
HEADER_KEYS = ("env_id", "obs_dim", "act_dim", "hidden_dims", "seed", "sac", "train_steps", "snapshot_every",
               "env_steps", "eval_return", "medium_fraction", "medium_step")
FIX = "train it with `make mujoco-experts` (python -m pex_jax.datagen.locomotion train --env={env})"


@dataclasses.dataclass(frozen=True)
class SACConfig:
    """Stock SAC for locomotion (target entropy -|A|, entropy in the backup, UTD 1); all a replay must repeat."""

    hidden_dims: tuple[int, ...] = (256, 256)
    lr: float = 3e-4
    batch_size: int = 256
    gamma: float = 0.99
    tau: float = 0.005
    init_temperature: float = 1.0
    random_steps: int = 10_000  # uniform-random warm-up; updates start once the buffer holds this many


@dataclasses.dataclass
class Episode:
    """Minari's layout: T + 1 observations (the final next observation included), T actions and rewards."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: bool  # the env terminated; otherwise the last step is a truncation (time limit or step budget)
    complete: bool  # ended by the env (termination or its time limit), not cut by a step budget

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def ret(self) -> float:
        return float(np.sum(self.rewards, dtype=np.float64))

    def cut(self, n: int) -> Episode:
        return Episode(self.observations[: n + 1], self.actions[:n], self.rewards[:n], False, False)


@dataclasses.dataclass
class TrainResult:
    snapshots: list[tuple[int, float, Any]]  # (env step, eval return, actor params)
    replay: dict[str, np.ndarray]  # `Batch` fields plus "ends" (termination or time limit), trimmed to its size
    history: list[dict]
    wall_s: float


def env_name(name: str) -> str:
    if name not in ENVS:
        raise ConfigError(f"unknown locomotion env {name!r}; valid: {', '.join(ENVS)}, all")
    return name


def level_name(name: str) -> str:
    if name not in LEVELS:
        raise ConfigError(f"unknown locomotion level {name!r}; valid: {', '.join(LEVELS)}, all")
    return name


@functools.lru_cache
def env_dims(env: str) -> tuple[int, int]:
    """(obs_dim, act_dim) of a live env, so that policy files are checked against the installed Gymnasium; its
    actions must lie in [-1, 1], the tanh policy's range (no rescaling anywhere here)."""
    e = gym.make(ENVS[env_name(env)])
    try:
        low, high = e.action_space.low, e.action_space.high
        if not (np.all(low == -1.0) and np.all(high == 1.0)):
            raise ConfigError(f"{ENVS[env]} has action bounds [{low.min()}, {high.max()}]; this module needs [-1, 1]")
        return int(e.observation_space.shape[0]), int(e.action_space.shape[0])
    finally:
        e.close()


@functools.lru_cache
def _policy_fns(hidden_dims: tuple[int, ...], act_dim: int) -> tuple[Callable, Callable]:
    """Jitted (greedy, sample) actions for actor params; cached so snapshots and files share one compile."""
    from pex_jax.agents.sac import TanhGaussianPolicy, mode, sample_and_log_prob

    module = TanhGaussianPolicy(hidden_dims, act_dim)
    greedy = jax.jit(lambda p, o: mode(module.apply({"params": p}, o)[0]))
    sample = jax.jit(lambda p, o, k: sample_and_log_prob(*module.apply({"params": p}, o), k)[0])
    return greedy, sample


# ------------------------------------------------------------------------------------------------------ rollouts
def rollout(env: str, act: Callable[[np.ndarray], np.ndarray], parallel: int, seed: int | Sequence[int],
            steps: int | None = None, episodes: int | None = None, desc: str = "") -> list[Episode]:
    """Episodes from `parallel` envs in lock-step (one batched `act` call per step), seeded resets.

    New episodes start while fewer than `episodes` have started and fewer than `steps` transitions are under way;
    every started episode runs to its end, then the episodes in start order are cut at exactly `steps` (the one
    crossing the budget truncated, later ones dropped), so only the last episode is incomplete.
    """
    from tqdm import tqdm

    reset_rng = np.random.default_rng(seed)
    envs = [gym.make(ENVS[env]) for _ in range(parallel)]
    (obs_dim, act_dim), limit = env_dims(env), envs[0].spec.max_episode_steps
    obs = np.zeros((parallel, limit + 1, obs_dim), np.float32)  # one episode per env, preallocated
    actions, rewards = np.zeros((parallel, limit, act_dim), np.float32), np.zeros((parallel, limit), np.float32)
    length, ids = np.zeros(parallel, int), [None] * parallel
    done: list[tuple[int, Episode]] = []
    started = taken = 0
    bar = tqdm(total=steps, disable=not desc, unit="step", desc=desc, mininterval=1.0)

    def start(i: int) -> None:
        nonlocal started
        ids[i] = None
        if (episodes is None or started < episodes) and (steps is None or taken < steps):
            obs[i, 0], length[i], ids[i] = envs[i].reset(seed=int(reset_rng.integers(2**31 - 1)))[0], 0, started
            started += 1

    try:
        for i in range(parallel):
            start(i)
        while any(k is not None for k in ids):
            a = np.asarray(act(obs[np.arange(parallel), length]), np.float32)
            for i in [i for i, k in enumerate(ids) if k is not None]:
                n = length[i]
                obs[i, n + 1], rewards[i, n], term, trunc, _ = envs[i].step(a[i])
                actions[i, n], length[i] = a[i], n + 1
                taken += 1
                if steps is None or taken <= steps:  # episodes in flight at the budget finish off the bar
                    bar.update(1)
                if term or trunc:
                    done.append((ids[i], Episode(obs[i, : n + 2].copy(), actions[i, : n + 1].copy(),
                                                 rewards[i, : n + 1].copy(), bool(term), True)))
                    start(i)
    finally:
        bar.close()
        for e in envs:
            e.close()
    out, total = [], 0
    for _, ep in sorted(done, key=lambda x: x[0]):
        if steps is not None and total + len(ep) > steps:
            ep = ep.cut(steps - total)
        out.append(ep)
        total += len(ep)
        if steps is not None and total >= steps:
            break
    return out


def evaluate(env: str, params: Any, hidden_dims: Sequence[int], episodes: int = EVAL_EPISODES) -> float:
    """Mean return of the deterministic policy (tanh of the mean) over `episodes` fixed-seed episodes."""
    greedy, _ = _policy_fns(tuple(hidden_dims), env_dims(env)[1])
    eps = rollout(env, lambda o: np.asarray(greedy(params, o)), parallel=episodes, seed=EVAL_SEED, episodes=episodes)
    return float(np.mean([e.ret for e in eps]))


def replay_episodes(replay: dict[str, np.ndarray]) -> list[Episode]:
    """A training replay (one env, in order) as episodes; a last episode cut mid-way is truncated, incomplete."""
    size = len(replay["rewards"])
    bounds = [0, *(np.flatnonzero(replay["ends"]) + 1).tolist()]
    if bounds[-1] != size:
        bounds.append(size)
    return [Episode(np.concatenate([replay["observations"][a:b], replay["next_observations"][b - 1:b]]),
                    replay["actions"][a:b], replay["rewards"][a:b], bool(replay["terminals"][b - 1]),
                    bool(replay["ends"][b - 1]))
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


# ------------------------------------------------------------------------------------------------------- training
def select_snapshots(returns: Sequence[float], fraction: float = MEDIUM_FRACTION) -> tuple[int, int]:
    """(medium, expert) snapshot indices: expert = the highest return, medium = the return closest to `fraction` x
    the expert's; ties go to the earliest snapshot. Raw returns, so the choice does not depend on any normalisation."""
    r = np.asarray(returns, np.float64)
    expert = int(np.argmax(r))
    return int(np.argmin(np.abs(r - fraction * r[expert]))), expert


@functools.partial(jax.jit, static_argnames="hp")
def _update_and_act(state: Any, batch: Any, key: jax.Array, obs: jax.Array, hp: Any) -> tuple[Any, Any, dict]:
    """One SAC update, then the updated policy's sampled action for the next env step: one device call per step."""
    from pex_jax.agents.sac import sac_act, sac_update

    k_update, k_act = jax.random.split(key)
    state, metrics = sac_update(state, batch, k_update, hp)
    return state, sac_act(state, k_act, obs, deterministic=False), metrics


def train_sac(env: str, steps: int, seed: int = 0, cfg: SACConfig | None = None, snapshot_every: int = SNAPSHOT_EVERY,
              eval_episodes: int = EVAL_EPISODES, stop_at: int | None = None, curve: Path | None = None,
              log: Callable[[str], None] | None = None) -> TrainResult:
    """Stock SAC, one env, one update per env step after `cfg.random_steps` uniform-random steps.

    Every `snapshot_every` steps (and at the end) the deterministic policy is evaluated and kept in memory with its
    actor params. With `stop_at` the run ends there without evaluations: those use their own envs and never touch
    the training's numpy rng, env or JAX keys, so the replay prefix equals a full run's.
    """
    from pex_jax.agents.iql import Batch
    from pex_jax.agents.sac import SACHparams, alpha, create_sac_state

    cfg = cfg or SACConfig()
    log = log or (lambda line: print(line, flush=True))
    if cfg.random_steps < 1 or steps < 1:
        raise ConfigError(f"steps ({steps}) and random_steps ({cfg.random_steps}) must be >= 1")
    obs_dim, act_dim = env_dims(env)
    hp = SACHparams(gamma=cfg.gamma, tau=cfg.tau, init_temperature=cfg.init_temperature)  # target entropy -|A|
    key, k_init = jax.random.split(jax.random.PRNGKey(seed))
    state = create_sac_state(k_init, obs_dim, act_dim, hp, cfg.hidden_dims, cfg.lr)
    end = steps if stop_at is None else min(steps, stop_at)
    buf, ends = replay_buffer(end, obs_dim, act_dim), np.zeros(end, bool)
    rng = np.random.default_rng(seed)
    train_env = gym.make(ENVS[env])
    obs = train_env.reset(seed=seed)[0].astype(np.float32)
    action, metrics, snapshots, history = None, {}, [], []
    t0 = time.perf_counter()
    t_learn = t0
    try:
        for t in range(end):
            a = rng.uniform(-1.0, 1.0, act_dim).astype(np.float32) if t < cfg.random_steps else action
            next_obs, r, term, trunc, _ = train_env.step(a)
            buf["observations"][t], buf["actions"][t], buf["rewards"][t] = obs, a, r
            buf["next_observations"][t], buf["terminals"][t], ends[t] = next_obs, float(term), term or trunc
            obs = (train_env.reset()[0] if term or trunc else next_obs).astype(np.float32)
            if t + 1 == cfg.random_steps:
                t_learn = time.perf_counter()
            if t + 1 >= cfg.random_steps:
                idx = rng.integers(0, t + 1, size=cfg.batch_size)
                key, k = jax.random.split(key)
                state, action, metrics = _update_and_act(state, Batch(**{n: v[idx] for n, v in buf.items()}), k,
                                                         obs, hp)
                action = np.asarray(action)
            if (t + 1) % snapshot_every != 0 and t + 1 != end:
                continue
            now = time.perf_counter()
            sps = (t + 1 - cfg.random_steps) / (now - t_learn) if t + 1 > cfg.random_steps else float("nan")
            if stop_at is not None:
                log(f"{env} replaying SAC: step {t + 1} / {end}  {now - t0:.0f}s  {sps:.0f} steps/s")
            else:
                params = state.actor.params
                ret = evaluate(env, params, cfg.hidden_dims, eval_episodes)
                snapshots.append((t + 1, ret, params))
                row = {"env_steps": t + 1, "wall_s": round(now - t0, 1), "eval_return": round(ret, 2),
                       "steps_per_s": round(sps, 1), "alpha": float(alpha(state)),
                       **{n: float(metrics.get(n, np.nan)) for n in ("q_mean", "critic_loss", "actor_loss", "entropy")}}
                history.append(row)
                eta = f"{(end - t - 1) / sps:6.0f}s" if sps > 0 else "     -"
                log(f"{env} step {t + 1:>7d}  {row['wall_s']:>7.0f}s  eta {eta}  "
                    f"{sps:5.0f} steps/s  return {ret:8.1f}  alpha {row['alpha']:.3f}  "
                    f"q {row.get('q_mean', float('nan')):.1f}")
                if curve is not None:
                    write_curve(curve, history)
    finally:
        train_env.close()
    replay = {**{n: v[:end] for n, v in buf.items()}, "ends": ends[:end]}
    return TrainResult(snapshots, replay, history, time.perf_counter() - t0)


def _versions() -> dict[str, str]:
    return {pkg: importlib.metadata.version(pkg) for pkg in ("gymnasium", "mujoco", "jax")}


def train_experts(env: str, steps: int = TRAIN_STEPS, seed: int = 0, cfg: SACConfig | None = None,
                  snapshot_every: int = SNAPSHOT_EVERY, eval_episodes: int = EVAL_EPISODES,
                  policy_dir: Path = ASSETS, curve: Path | None = None, command: str = "",
                  write_replay: bool = True, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train, pick medium and expert, save both policy files and (with `write_replay`) the medium-replay dataset."""
    cfg = cfg or SACConfig()
    result = train_sac(env, steps, seed, cfg, snapshot_every, eval_episodes, curve=curve, log=log)
    medium, expert = select_snapshots([ret for _, ret, _ in result.snapshots])
    obs_dim, act_dim = env_dims(env)
    header = {"env": env, "env_id": ENVS[env], "obs_dim": obs_dim, "act_dim": act_dim,
              "hidden_dims": list(cfg.hidden_dims), "seed": seed, "command": command, "train_steps": steps,
              "snapshot_every": snapshot_every, "eval_episodes": eval_episodes, "train_wall_s": round(result.wall_s),
              "sac": dataclasses.asdict(cfg), "target_entropy": -float(act_dim), "backup_entropy": True,
              "versions": _versions(), "medium_fraction": MEDIUM_FRACTION,
              "medium_step": result.snapshots[medium][0], "medium_return": result.snapshots[medium][1],
              "expert_step": result.snapshots[expert][0], "expert_return": result.snapshots[expert][1]}
    for level, i in (("medium", medium), ("expert", expert)):
        step, ret, params = result.snapshots[i]
        save_controller(policy_dir / f"{env}_{level}.npz", params,
                        {**header, "level": level, "env_steps": step, "eval_return": ret}, fmt=FORMAT)
    if curve is not None:
        plot_curve(curve)
    out = {"medium": result.snapshots[medium][:2], "expert": result.snapshots[expert][:2], "wall_s": result.wall_s}
    if write_replay:
        start = time.perf_counter()
        prefix = {n: v[: header["medium_step"]] for n, v in result.replay.items()}
        out["medium-replay"] = write_dataset(env, "medium-replay", replay_episodes(prefix),
                                             _description(env, "medium-replay", header), overwrite=True)
        out["medium-replay"]["seconds"] = time.perf_counter() - start
    return out


def plot_curve(csv_path: Path, png_path: Path | None = None) -> Path:
    """PNG of eval return vs env steps, with the expert, the medium target (fraction x expert) and the medium pick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [line.split(",") for line in Path(csv_path).read_text().splitlines()]
    cols = {name: np.array([float(r[i]) for r in rows[1:]]) for i, name in enumerate(rows[0])}
    x, y = cols["env_steps"], cols["eval_return"]
    medium, expert = select_snapshots(y)
    png_path = Path(png_path) if png_path is not None else Path(csv_path).with_suffix(".png")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(x, y, marker=".")
    ax.axhline(MEDIUM_FRACTION * y[expert], color="grey", ls="--", lw=1, label="1/3 of the expert's return")
    ax.plot(x[medium], y[medium], "o", color="C1", label=f"medium ({int(x[medium])} steps)")
    ax.plot(x[expert], y[expert], "o", color="C2", label=f"expert ({int(x[expert])} steps)")
    ax.set(xlabel="env steps", ylabel=f"eval return (deterministic, {EVAL_EPISODES} ep.)", title=Path(csv_path).stem)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return png_path


# ------------------------------------------------------------------------------------------------ policy files
class Policy:
    """A loaded policy file: actor params and the header it was saved with."""

    def __init__(self, params: Any, header: dict[str, Any], path: Path):
        self.params, self.header, self.path = params, header, path
        self._sample = _policy_fns(tuple(header["hidden_dims"]), int(header["act_dim"]))[1]

    def sampler(self, key: jax.Array) -> Callable[[np.ndarray], np.ndarray]:
        """Its own stochastic sampling, a fresh key per call: the actions D4RL's medium/expert data hold."""
        def act(obs: np.ndarray) -> np.ndarray:
            nonlocal key
            key, k = jax.random.split(key)
            return np.asarray(self._sample(self.params, obs, k))
        return act


def load_policy(env: str, level: str, policy_dir: Path = ASSETS) -> Policy:
    """`<policy_dir>/<env>_<level>.npz`, checked against the live env; each failure is one ConfigError + the fix."""
    path, fix = Path(policy_dir) / f"{env}_{level}.npz", FIX.format(env=env)
    header, params = read_actor_file(path, FORMAT, HEADER_KEYS, "locomotion policy file", fix)
    want = (ENVS[env], *env_dims(env))
    got = (header["env_id"], header["obs_dim"], header["act_dim"])
    if got != want:
        raise ConfigError(f"locomotion policy file {path} is for {got[0]} with obs/act dims {got[1]}/{got[2]}, but "
                          f"{want[0]} has {want[1]}/{want[2]}; {fix}")
    return Policy(params, header, path)


# --------------------------------------------------------------------------------------------------- datasets
def dataset_id(env: str, level: str) -> str:
    return f"pex/mujoco/{env}/{level}-v0"


def _description(env: str, level: str, h: dict[str, Any], steps: int = 0, seed: int = 0, parallel: int = 0) -> str:
    recipe = (f"D4RL-recipe {env}-{level} data generated locally in {ENVS[env]} from one SAC run (seed {h['seed']}, "
              f"{h['train_steps']} steps; expert = best of the snapshots every {h['snapshot_every']} steps, "
              f"medium = the snapshot closest to {h['medium_fraction']:.4f} x the expert's eval return, step "
              f"{h['medium_step']}); ")
    if level == "medium-replay":
        return recipe + (f"the SAC replay buffer up to and including env step {h['medium_step']} (the first "
                         f"{h['sac']['random_steps']} uniform random), split at terminations and the time limit.")
    return recipe + (f"{steps} env steps of policy file {env}_{level}.npz (env step {h['env_steps']}, eval return "
                     f"{h['eval_return']:.1f}) with its own stochastic sampling (tanh-Gaussian, no added noise), "
                     f"{parallel} envs in lock-step, seed {seed}; the last episode cut at the step budget.")


def write_dataset(env: str, level: str, episodes: list[Episode], description: str,
                  overwrite: bool = False) -> dict[str, Any]:
    """Save `episodes` as Minari `pex/mujoco/<env>/<level>-v0` (hdf5, compacted); returns its summary."""
    with dataset_slot(dataset_id(env, level), overwrite) as path:
        return _write_episodes(env, level, path, episodes, description)


def _write_episodes(env: str, level: str, path: Path, episodes: list[Episode], description: str) -> dict[str, Any]:
    """The writing itself, inside a held `dataset_slot` (`path` is its directory)."""
    import minari
    from minari.data_collector import EpisodeBuffer

    from pex_jax.datagen.pointmaze import compact_hdf5

    did = dataset_id(env, level)
    buffers = []
    for i, ep in enumerate(episodes):
        last = np.zeros(len(ep), bool)
        last[-1] = True
        buffers.append(EpisodeBuffer(id=i, observations=ep.observations, actions=ep.actions, rewards=ep.rewards,
                                     terminations=last & ep.terminated, truncations=last & (not ep.terminated)))
    obs_dim, act_dim = env_dims(env)
    datasets_root().mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # author_email / code_permalink missing, obs dtype float32 vs env float64
        collection_env = gym.make(ENVS[env])
        try:
            minari.create_dataset_from_buffers(
                did, buffer=buffers, env=collection_env,
                observation_space=gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
                action_space=gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32),
                algorithm_name="SAC (pex_jax.datagen.locomotion), D4RL recipe", author="pex-jax",
                ref_min_score=D4RL_REF_SCORES[env][0], ref_max_score=D4RL_REF_SCORES[env][1],
                description=description, data_format="hdf5",
                requirements=[f"{p}=={v}" for p, v in _versions().items() if p != "jax"])
            compact_hdf5(path / "data")
        finally:
            collection_env.close()
    complete = [ep.ret for ep in episodes if ep.complete]
    mean = float(np.mean(complete)) if complete else float("nan")
    return {"dataset_id": did, "steps": sum(map(len, episodes)), "episodes": len(episodes),
            "complete_episodes": len(complete), "mean_return": mean,
            "mean_normalized": float(d4rl_normalize(mean, *D4RL_REF_SCORES[env])),
            "mb": sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6, "path": str(path)}


def generate_locomotion(env: str, level: str, steps: int = STEPS, seed: int = 0, overwrite: bool = False,
                        policy_dir: Path = ASSETS, parallel: int = 10, progress: bool = True) -> dict[str, Any]:
    """One dataset. medium / expert: `steps` steps of that policy file's own sampling; medium-replay: the seeded
    training re-run up to the medium file's step (its size is that step; `steps` does not apply)."""
    level_name(level)
    if steps < 1 or parallel < 1:
        raise ConfigError(f"steps ({steps}) and parallel ({parallel}) must be >= 1")
    policy = load_policy(env_name(env), "medium" if level == "medium-replay" else level, policy_dir)
    h = policy.header
    start = time.perf_counter()
    with dataset_slot(dataset_id(env, level), overwrite) as path:
        if level == "medium-replay":
            cfg = SACConfig(**{**h["sac"], "hidden_dims": tuple(h["sac"]["hidden_dims"])})
            result = train_sac(env, h["medium_step"], h["seed"], cfg, stop_at=h["medium_step"])
            episodes, description = replay_episodes(result.replay), _description(env, level, h)
        else:
            act = policy.sampler(jax.random.fold_in(jax.random.PRNGKey(seed), LEVELS.index(level)))
            episodes = rollout(env, act, parallel, [seed, LEVELS.index(level)], steps=steps,
                               desc=f"{env} {level}" if progress else "")
            description = _description(env, level, h, steps, seed, parallel)
        summary = _write_episodes(env, level, path, episodes, description)
    return {**summary, "seconds": time.perf_counter() - start}


def d4rl_rows(episodes: list[Episode]) -> dict[str, np.ndarray]:
    """Episodes in the row layout of D4RL's -v2 files: one row per step, episodes back to back; `terminals` on an
    episode's last row when the env ended it, `timeouts` there when its time limit or the step budget did."""
    rows: dict[str, list] = {k: [] for k in ("observations", "next_observations", "actions", "rewards", "terminals",
                                             "timeouts")}
    for ep in episodes:
        n = len(ep)
        last = np.zeros(n, bool)
        last[-1] = True
        rows["observations"].append(ep.observations[:-1])
        rows["next_observations"].append(ep.observations[1:])
        rows["actions"].append(ep.actions)
        rows["rewards"].append(ep.rewards)
        rows["terminals"].append(last & ep.terminated)
        rows["timeouts"].append(last & (not ep.terminated))
    return {k: np.concatenate(v).astype(np.bool_ if k in ("terminals", "timeouts") else np.float32)
            for k, v in rows.items()}


def write_d4rl_file(env: str, level: str, out_dir: Path, steps: int = 100_000, seed: int = 0,
                    policy_dir: Path = ASSETS, parallel: int = 10, progress: bool = True) -> Path:
    """A file in the layout of D4RL's `<env>_<level>-v2.hdf5` (same name, keys, dtypes), from this module's policy
    files: for running the D4RL locomotion source end to end without D4RL's files. Its data are made here (the
    policy's own sampling in `<Env>-v5`), so its checksum is not D4RL's and the loader says so."""
    import h5py

    from pex_jax.data.d4rl_locomotion import file_name, task_id

    if level not in ("medium", "expert"):
        raise ConfigError(f"d4rl-file writes medium or expert (the policy files' levels), not {level!r}")
    policy = load_policy(env_name(env), level, policy_dir)
    act = policy.sampler(jax.random.fold_in(jax.random.PRNGKey(seed), LEVELS.index(level)))
    episodes = rollout(env, act, parallel, [seed, LEVELS.index(level), 2], steps=steps,
                       desc=f"{env} {level} (D4RL layout)" if progress else "")
    path = Path(out_dir) / file_name(task_id(env, level))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        for key, value in d4rl_rows(episodes).items():
            f.create_dataset(key, data=value)
        f["metadata/algorithm"] = np.bytes_("SAC (pex-jax datagen.locomotion)")
    tmp.replace(path)
    return path


# ------------------------------------------------------------------------------------------------------------ CLI
def _choices(value: str, valid: Sequence[str], check: Callable[[str], str]) -> list[str]:
    return list(valid) if value == "all" else [check(v) for v in value.split(",") if v]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pex_jax.datagen.locomotion", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train", help="SAC; writes the medium/expert policy files and the medium-replay dataset")
    tr.add_argument("--env", required=True, help=f"one of {', '.join(ENVS)}")
    tr.add_argument("--steps", type=int, default=TRAIN_STEPS)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--snapshot-every", type=int, default=SNAPSHOT_EVERY)
    tr.add_argument("--policy-dir", type=Path, default=ASSETS)
    tr.add_argument("--curve", type=Path, default=None, help="default docs/results/locomotion_sac_<env>.csv")
    ge = sub.add_parser("generate", help="write pex/mujoco/<env>/<level>-v0 into MINARI_DATASETS_PATH")
    ge.add_argument("--env", default="all", help=f"{', '.join(ENVS)}, a comma list, or all")
    ge.add_argument("--level", default="all", help=f"{', '.join(LEVELS)}, a comma list, or all")
    ge.add_argument("--steps", type=int, default=STEPS)
    ge.add_argument("--seed", type=int, default=0)
    ge.add_argument("--parallel", type=int, default=10)
    ge.add_argument("--policy-dir", type=Path, default=ASSETS)
    ge.add_argument("--overwrite", action="store_true", help="replace existing datasets")
    ge.add_argument("--skip-existing", action="store_true", help="leave existing datasets alone")
    ge.add_argument("--no-progress", action="store_true")
    d4 = sub.add_parser("d4rl-file", help="write <env>_<level>-v2.hdf5 in D4RL's layout (data made here) into --out")
    d4.add_argument("--env", required=True, help=f"one of {', '.join(ENVS)}")
    d4.add_argument("--level", required=True, help="medium or expert")
    d4.add_argument("--steps", type=int, default=100_000)
    d4.add_argument("--seed", type=int, default=0)
    d4.add_argument("--out", type=Path, required=True, help="e.g. $D4RL_DATASET_DIR")
    d4.add_argument("--policy-dir", type=Path, default=ASSETS)
    cv = sub.add_parser("curve", help="re-plot a training curve CSV as a PNG next to it")
    cv.add_argument("--env", default="hopper")
    cv.add_argument("--csv", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        if args.cmd == "train":
            env = env_name(args.env)
            if args.steps < 1 or args.snapshot_every < 1:
                raise ConfigError(f"--steps ({args.steps}) and --snapshot-every ({args.snapshot_every}) must be >= 1")
            cmd = "python -m pex_jax.datagen.locomotion " + " ".join(argv if argv is not None else sys.argv[1:])
            curve = args.curve or RESULTS / f"locomotion_sac_{env}.csv"
            out = train_experts(env, args.steps, args.seed, snapshot_every=args.snapshot_every,
                                policy_dir=args.policy_dir, curve=curve, command=cmd)
            print(f"{env}: expert = step {out['expert'][0]} (return {out['expert'][1]:.1f}), medium = step "
                  f"{out['medium'][0]} (return {out['medium'][1]:.1f}); {out['wall_s']:.0f} s; policy files in "
                  f"{args.policy_dir}; curve {curve.with_suffix('.png')}")
            _print_summary(out["medium-replay"])
            stale = [dataset_id(env, lv) for lv in ("medium", "expert") if dataset_dir(dataset_id(env, lv)).exists()]
            if stale:
                print(f"note: {', '.join(stale)} came from the previous policy files; regenerate them with "
                      f"`python -m pex_jax.datagen.locomotion generate --env={env} --level=medium,expert --overwrite`")
        elif args.cmd == "d4rl-file":
            if args.steps < 1:
                raise ConfigError(f"--steps ({args.steps}) must be >= 1")
            path = write_d4rl_file(args.env, args.level, args.out, args.steps, args.seed, args.policy_dir)
            print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB, D4RL's -v2 layout, data made here)")
        elif args.cmd == "curve":
            csv = args.csv or RESULTS / f"locomotion_sac_{env_name(args.env)}.csv"
            if not csv.is_file():
                raise ConfigError(f"no training curve at {csv}; it is written by `make mujoco-experts` (train)")
            print(f"wrote {plot_curve(csv)}")
        else:
            envs = _choices(args.env, list(ENVS), env_name)
            levels = _choices(args.level, LEVELS, level_name)
            if args.steps < 1 or args.parallel < 1:
                raise ConfigError(f"--steps ({args.steps}) and --parallel ({args.parallel}) must be >= 1")
            todo = []
            for env in envs:
                for level in levels:  # missing or mismatched policy files fail here, before any work
                    load_policy(env, "medium" if level == "medium-replay" else level, args.policy_dir)
                    if (dataset_dir(dataset_id(env, level)) / "data").exists() and not args.overwrite:
                        if not args.skip_existing:
                            raise DatasetExistsError(f"dataset {dataset_id(env, level)!r} already exists; pass "
                                                     "--overwrite to replace it or --skip-existing to keep it")
                        print(f"{dataset_id(env, level)}: exists at {dataset_dir(dataset_id(env, level))}, skipped")
                        continue
                    todo.append((env, level))
            for env, level in todo:
                try:
                    _print_summary(generate_locomotion(env, level, args.steps, args.seed, args.overwrite,
                                                       args.policy_dir, args.parallel, not args.no_progress))
                except DatasetExistsError:
                    if not args.skip_existing:
                        raise
                    print(f"{dataset_id(env, level)}: made meanwhile by another process, skipped")
    except PexError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _print_summary(s: dict[str, Any]) -> None:
    print(f"{s['dataset_id']}: {s['steps']} steps, {s['episodes']} episodes ({s['complete_episodes']} complete), "
          f"mean return {s['mean_return']:.1f} = {s['mean_normalized']:.1f} normalized (D4RL scale), "
          f"{s['seconds']:.0f} s, {s['mb']:.1f} MB at {s['path']}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
