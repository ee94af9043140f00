"""The goal-reaching ant controller that AntMaze data is collected with: SAC training, checkpoint, loading.

Why: D4RL and OGBench collected AntMaze data by steering a SAC-trained ant along BFS waypoints
(`shared/docs/antmaze-data-recipe.md`); neither controller can be downloaded here, so one is trained on this
machine with `pex_jax.agents.sac` in `GoalReachingAnt` (D4RL ant physics, open floor, continuing target after target).

    python -m pex_jax.datagen.ant_controller train --steps=400000 --seed=0     # `make ant-expert`
    python -m pex_jax.datagen.ant_controller check --episodes=100              # noiseless maze success per maze
    python -m pex_jax.datagen.ant_controller curve                             # docs/results/ant_controller_curve.png

The committed checkpoint (`CHECKPOINT`, an .npz of the actor's parameters plus a JSON header) records the physics
and observation it was trained for; `load_controller` refuses a file that does not match the current env, with
the fix in the message. Only the actor is kept: data collection needs nothing else.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from pex_jax.errors import ConfigError

CHECKPOINT = Path(__file__).resolve().parent / "assets" / "ant_controller.npz"
CURVE = Path(__file__).resolve().parents[2] / "docs" / "results" / "ant_controller_curve.csv"
FORMAT = "pex-jax ant controller v1"
MAKE_HINT = "rebuild it with `make ant-expert` (or restore the committed file with `git checkout -- {path}`)"


# ----------------------------------------------------------------------------------------------- physics signature
def physics_signature() -> dict[str, Any]:
    """What a controller depends on: step length, gear, observation layout. Read from a live env, not constants,
    so that a change to the ant model invalidates old checkpoints."""
    from pex_jax.envs.goal_reaching_ant import OBS_DIM, TARGET_MAX_DIST, GoalReachingAnt

    env = GoalReachingAnt(max_episode_steps=1)
    try:
        return {
            "timestep": float(env.model.opt.timestep),
            "frame_skip": int(env.frame_skip),
            "gear": [float(g) for g in env.model.actuator_gear[:, 0]],
            "obs_dim": int(OBS_DIM),
            "act_dim": int(env.action_space.shape[0]),
            "relative_target_clip": float(TARGET_MAX_DIST),
        }
    finally:
        env.close()


# ----------------------------------------------------------------------------------------------------- checkpoint
def save_controller(path: Path, actor_params: Any, header: dict[str, Any], fmt: str = FORMAT) -> None:
    """Atomic write (tmp + rename) so that an interrupted save never leaves a half file under the real name.
    `fmt` labels the file's kind (other datagen policies reuse this layout with their own label)."""
    flat = traverse_util.flatten_dict(jax.device_get(actor_params), sep="/")
    arrays = {f"param:{k}": np.asarray(v, dtype=np.float32) for k, v in flat.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, header=np.asarray(json.dumps({"format": fmt, **header}, sort_keys=True)), **arrays)
    tmp.replace(path)


def read_actor_file(path: Path, fmt: str, required: tuple[str, ...], what: str, fix: str) -> tuple[dict, Any]:
    """Header and actor parameters of a file written by `save_controller`. A missing or unreadable file, another
    format, a missing header key or non-finite weights are each one ConfigError naming `path` and `fix`."""
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist; {fix}")
    try:
        with np.load(path, allow_pickle=False) as f:
            header = json.loads(str(f["header"]))
            flat = {k.removeprefix("param:"): np.asarray(f[k]) for k in f.files if k.startswith("param:")}
    except Exception as e:  # zip/npz/json damage of any kind
        raise ConfigError(f"{what} {path} is unreadable ({type(e).__name__}: {e}); {fix}") from e
    if header.get("format") != fmt or any(k not in header for k in required):
        raise ConfigError(f"{path} is not a pex-jax {what} (format {header.get('format')!r}); {fix}")
    if not flat or not all(np.all(np.isfinite(v)) for v in flat.values()):
        raise ConfigError(f"{what} {path} has no or non-finite parameters; {fix}")
    return header, traverse_util.unflatten_dict({tuple(k.split("/")): jnp.asarray(v) for k, v in flat.items()})


ACTION_GRID = 2.0**-20  # controller actions are multiples of this (exact in float32)


class Controller:
    """A loaded controller: `act(obs)` maps controller observations (B, 29) to deterministic actions (B, 8).

    The forward pass runs in float64 numpy and the actions are rounded to `ACTION_GRID`, so a dataset made
    with it is the same on any machine: in XLA (float32, compiled for the host CPU's vector instructions)
    the last bit of an action depends on the CPU, and the ant turns that into another trajectory
    (docs/data.md). float64 results of two CPUs differ by ~1e-16, far below the grid's half step.
    """

    def __init__(self, params: Any, header: dict[str, Any], path: Path):
        self.params, self.header, self.path = params, header, path
        as64 = {k: np.asarray(v, np.float64) for k, v in traverse_util.flatten_dict(params, sep="/").items()}
        n_hidden = len(header["hidden_dims"])
        self._layers = [(as64[f"MLP_0/Dense_{i}/kernel"], as64[f"MLP_0/Dense_{i}/bias"]) for i in range(n_hidden)]
        self._mean = (as64["Dense_0/kernel"], as64["Dense_0/bias"])  # the policy's mean head (Dense_1: log std)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """tanh of the policy's mean (`agents.sac.mode`), on the action grid, as float32."""
        h = np.asarray(obs, np.float32).astype(np.float64)
        for kernel, bias in self._layers:  # einsum, not BLAS: BLAS threads spin on a busy machine
            h = np.maximum(np.einsum("bi,io->bo", h, kernel) + bias, 0.0)
        mean = np.tanh(np.einsum("bi,io->bo", h, self._mean[0]) + self._mean[1])
        return (np.round(mean / ACTION_GRID) * ACTION_GRID).astype(np.float32)


def load_controller(path: Path | str | None = None, check_physics: bool = True) -> Controller:
    """Load and validate a controller checkpoint; every failure is one ConfigError naming the file and the fix."""
    path = Path(path) if path is not None else CHECKPOINT
    fix = MAKE_HINT.format(path=path)
    header, params = read_actor_file(path, FORMAT, ("physics", "hidden_dims"), "ant controller checkpoint", fix)
    if check_physics:
        want, got = physics_signature(), header["physics"]
        diff = [f"{k}: file {got.get(k)!r}, env {v!r}" for k, v in want.items() if got.get(k) != v]
        if diff:
            raise ConfigError(f"ant controller {path} was trained for other physics or observations "
                              f"({'; '.join(diff)}); {fix}")
    return Controller(params, header, path)


# ------------------------------------------------------------------------------------------------------- training
def replay_buffer(capacity: int, obs_dim: int, act_dim: int) -> dict[str, np.ndarray]:
    """Preallocated host replay with `Batch`'s fields: a batch is `Batch(**{k: v[idx] for k, v in buf.items()})`."""
    return {
        "observations": np.zeros((capacity, obs_dim), np.float32),
        "actions": np.zeros((capacity, act_dim), np.float32),
        "rewards": np.zeros((capacity,), np.float32),
        "next_observations": np.zeros((capacity, obs_dim), np.float32),
        "terminals": np.zeros((capacity,), np.float32),
    }


def evaluate_open_floor(act: Callable[[np.ndarray], np.ndarray], episodes: int, seed: int,
                        steps: int = 1000) -> dict[str, float]:
    """Deterministic episodes in GoalReachingAnt: targets reached per 1000 steps, metres of progress per step
    (bonus excluded), share of episodes ended by a flip."""
    from pex_jax.envs.goal_reaching_ant import GoalReachingAnt

    env = GoalReachingAnt(max_episode_steps=steps)
    reached, progress, flips, n = 0, 0.0, 0, 0
    try:
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed + ep)
            while True:
                obs, r, term, trunc, info = env.step(act(obs[None])[0])
                n += 1
                reached += int(info["success"])
                progress += r - (env.success_bonus if info["success"] else 0.0)
                if term or trunc:
                    flips += int(term)
                    break
    finally:
        env.close()
    return {"targets_per_1k": 1000.0 * reached / n, "speed": progress / n, "flip_rate": flips / episodes}


def train_controller(steps: int = 400_000, seed: int = 0, n_envs: int = 4, random_steps: int = 10_000,
                     batch_size: int = 256, hidden_dims: tuple[int, ...] = (256, 256), lr: float = 3e-4,
                     eval_every: int = 25_000, eval_episodes: int = 3, out: Path = CHECKPOINT,
                     curve: Path | None = CURVE, command: str = "", log: Callable[[str], None] | None = None) -> dict:
    """SAC on GoalReachingAnt with `n_envs` envs stepped in lock-step and one update per env step (UTD 1).

    Each iteration: one batched policy call for all envs, the env steps, then `n_envs` updates in one jitted
    `lax.scan` (batches gathered on the host). Every `eval_every` steps the deterministic policy is evaluated on
    the open floor and the checkpoint with the most targets reached so far is written to `out`.
    """
    from pex_jax.agents.iql import Batch
    from pex_jax.agents.sac import SACHparams, create_sac_state, mode, sac_act, sac_update
    from pex_jax.envs.goal_reaching_ant import OBS_DIM, GoalReachingAnt

    log = log or (lambda line: print(line, flush=True))
    act_dim = 8
    hp = SACHparams(gamma=0.99, tau=0.005, target_entropy=-0.5 * act_dim, init_temperature=1.0)
    key = jax.random.PRNGKey(seed)
    key, k_init = jax.random.split(key)
    state = create_sac_state(k_init, OBS_DIM, act_dim, hp, hidden_dims, lr)
    physics = physics_signature()

    @jax.jit
    def explore(state, key, obs):
        return sac_act(state, key, obs, deterministic=False)

    @jax.jit
    def greedy(params, obs):
        return mode(state.actor.apply_fn({"params": params}, obs)[0])

    @jax.jit
    def update_many(state, batches, key):
        def body(s, xs):
            batch, k = xs
            s, metrics = sac_update(s, batch, k, hp)
            return s, metrics

        keys = jax.random.split(key, batches.rewards.shape[0])
        state, metrics = jax.lax.scan(body, state, (batches, keys))
        return state, jax.tree.map(jnp.mean, metrics)

    envs = [GoalReachingAnt() for _ in range(n_envs)]
    rng = np.random.default_rng(seed)
    obs = np.stack([env.reset(seed=seed * 10_000 + i)[0] for i, env in enumerate(envs)]).astype(np.float32)
    n_resets = n_envs
    buf, size = replay_buffer(steps, OBS_DIM, act_dim), 0
    best, history, metrics = -math.inf, [], {}
    header = {"hidden_dims": list(hidden_dims), "physics": physics, "seed": seed, "command": command,
              "sac": {"lr": lr, "batch_size": batch_size, "gamma": hp.gamma, "tau": hp.tau,
                      "target_entropy": hp.target_entropy, "n_envs": n_envs, "random_steps": random_steps}}
    t0, t = time.time(), 0
    try:
        while t < steps:
            if t < random_steps:
                actions = rng.uniform(-1.0, 1.0, size=(n_envs, act_dim)).astype(np.float32)
            else:
                key, k = jax.random.split(key)
                actions = np.asarray(explore(state, k, obs))
            for i, env in enumerate(envs):
                next_obs, r, term, trunc, _ = env.step(actions[i])
                j = size
                buf["observations"][j], buf["actions"][j], buf["rewards"][j] = obs[i], actions[i], r
                buf["next_observations"][j], buf["terminals"][j] = next_obs, float(term)
                size += 1
                if term or trunc:
                    next_obs, _ = env.reset(seed=seed * 10_000 + n_resets)
                    n_resets += 1
                obs[i] = next_obs
            t += n_envs
            if t >= random_steps:
                idx = rng.integers(0, size, size=(n_envs, batch_size))
                batches = Batch(**{k: v[idx] for k, v in buf.items()})
                key, k = jax.random.split(key)
                state, metrics = update_many(state, batches, k)
            if t % eval_every == 0 or t >= steps:
                params = state.actor.params
                ev = evaluate_open_floor(lambda o, p=params: np.asarray(greedy(p, o)), eval_episodes,
                                         seed=10_000_000 + t)
                row = {"env_steps": t, "wall_s": round(time.time() - t0, 1), **ev,
                       **{k: float(v) for k, v in metrics.items()}}
                history.append(row)
                improved = ev["targets_per_1k"] > best
                if improved:
                    best = ev["targets_per_1k"]
                    save_controller(out, state.actor.params, {**header, "env_steps": t, "eval": ev,
                                                              "wall_s": row["wall_s"]})
                log(f"step {t:>7d}  {row['wall_s']:>7.0f}s  targets/1k {ev['targets_per_1k']:5.1f}  "
                    f"speed {ev['speed']:.3f} m/step  flips {ev['flip_rate']:.2f}  "
                    f"alpha {row.get('alpha', float('nan')):.3f}  q {row.get('q_mean', float('nan')):.2f}"
                    + ("  (saved)" if improved else ""))
                if curve is not None:
                    write_curve(curve, history)
    finally:
        for env in envs:
            env.close()
    return {"best_targets_per_1k": best, "wall_s": time.time() - t0, "history": history}


def plot_curve(csv_path: Path = CURVE, png_path: Path | None = None) -> Path:
    """PNG of the training curve (targets reached per 1000 steps and speed toward the target vs env steps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [line.split(",") for line in Path(csv_path).read_text().splitlines()]
    cols = {name: np.array([float(r[i]) for r in rows[1:]]) for i, name in enumerate(rows[0])}
    png_path = Path(png_path) if png_path is not None else Path(csv_path).with_suffix(".png")
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    ax[0].plot(cols["env_steps"], cols["targets_per_1k"], marker="o")
    ax[0].set(xlabel="env steps", ylabel="targets reached / 1000 steps", title="deterministic policy, open floor")
    ax[1].plot(cols["env_steps"], cols["speed"], marker="o", color="C1")
    ax[1].set(xlabel="env steps", ylabel="metres toward the target / step", title="progress speed")
    for a in ax:
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return png_path


def write_curve(path: Path, rows: list[dict]) -> None:
    """CSV of per-evaluation rows, rewritten whole after every evaluation (a killed run keeps its curve)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = list(rows[0])
    lines = [",".join(cols)] + [",".join(f"{r.get(c, '')}" for c in cols) for r in rows]
    path.write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------------------------ CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pex_jax.datagen.ant_controller",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train", help="train the controller with SAC and write the checkpoint")
    tr.add_argument("--steps", type=int, default=400_000)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--envs", type=int, default=4)
    tr.add_argument("--eval-every", type=int, default=25_000)
    tr.add_argument("--out", type=Path, default=CHECKPOINT)
    tr.add_argument("--curve", type=Path, default=CURVE)
    cv = sub.add_parser("curve", help="plot the training curve CSV as a PNG next to it")
    cv.add_argument("--csv", type=Path, default=CURVE)
    ck = sub.add_parser("check", help="noiseless waypoint following on umaze/medium/large: success rate per maze")
    ck.add_argument("--episodes", type=int, default=100)
    ck.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    ck.add_argument("--seed", type=int, default=0)
    ck.add_argument("--planner", default="d4rl", choices=("d4rl", "centre"))
    args = parser.parse_args(argv)
    try:
        if args.cmd == "train":
            cmd = "python -m pex_jax.datagen.ant_controller " + " ".join(argv if argv is not None else sys.argv[1:])
            result = train_controller(steps=args.steps, seed=args.seed, n_envs=args.envs,
                                      eval_every=args.eval_every, out=args.out, curve=args.curve, command=cmd)
            print(f"best: {result['best_targets_per_1k']:.1f} targets/1k steps; {result['wall_s']:.0f} s; "
                  f"checkpoint {args.out}")
        elif args.cmd == "curve":
            print(f"wrote {plot_curve(args.csv)}")
        else:
            from pex_jax.datagen.antmaze import check_controller

            check_controller(load_controller(args.checkpoint), episodes=args.episodes, seed=args.seed,
                             planner=args.planner)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
