"""AntMaze datasets made here with D4RL's recipe: a goal-reaching ant steered along BFS waypoints, in D4RL physics.

Why: the original D4RL AntMaze files cannot be downloaded on these machines; with this module every AntMaze task is
runnable and testable anywhere, and the D4RL AntMaze env (`envs/d4rl_antmaze`) evaluates the result exactly as it
evaluates the original files. Recipe (`shared/docs/antmaze-data-recipe.md` §1, §5; deviations in docs/data.md):

- maze: the task's D4RL map (walls of the generation maps = walls of the test maps), D4RL frame, 29-d observation
  qpos[0:15] ++ qvel[0:14], actions in [-1, 1] (torque 30 a), 0.1 s steps;
- start: umaze from the start cell (1, 1) with D4RL's start noise; every other task from a uniformly drawn free cell
  other than the generation map's goal cells, at its centre + U(0, 1) per axis (D4RL `--multi_start`);
- goal, drawn per episode and held for the whole episode (D4RL): a cell from the task's goal cells (umaze: the
  evaluation goal cell; play: D4RL's hand-picked G cells; diverse: any free cell) at centre + U(0, 1) + U(0, 0.5);
- control: each step the BFS planner (`envs/maze_planner`) gives the next cell centre (the exact goal inside the
  goal cell), the controller (`datagen/ant_controller`) its deterministic action, plus N(0, noise^2), clipped;
- episodes of `episode_steps` (1000) steps, truncated at the end; raw terminals none;
- relabelling (D4RL `relabel_antmaze_rewards.py`): reward = terminal = 1[|next xy - g*| <= 0.5] against one
  evaluation goal g* (the eval goal cell + 0.75 per axis, the mean of the eval env's goal noise), trajectories not
  cut there. Minari stores T + 1 observations, so the next xy is always the true post-step state.

Saved as Minari datasets `pex/antmaze/<task>-v0` with the D4RL AntMaze env as eval env (`pex/D4RLAntMaze-v2`)
and reference scores 0 / 1 (the score is 100 x success, D4RL's scale). `make data-antmaze`, or
`python -m pex_jax.datagen.antmaze --task=all [--steps N --noise S --seed K]`; same seed, same dataset.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import math
import time
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from pex_jax.data.minari import dataset_dir, datasets_root
from pex_jax.datagen.dataset_slot import dataset_slot
from pex_jax.envs.d4rl_antmaze import (
    GYM_ID,
    MAPS,
    SUCCESS_RADIUS,
    TASKS,
    D4RLAntMazeEnv,
    cell_to_xy,
    d4rl_start_state,
)
from pex_jax.errors import ConfigError, DatasetError, DatasetExistsError, run_cli

Cell = tuple[int, int]
NOISE = 0.2
EPISODE_STEPS = 1000
STEPS = 1_000_000
SEED = 0
# Eval goal g* for relabelling: the goal cell + 0.75 per axis, the mean of D4RL's U(0, 1) + U(0, 0.5) goal noise.
EVAL_GOAL_OFFSET = 0.75
# D4RL generation maps' G cells (maze_env.py U_MAZE / BIG_MAZE / HARDEST_MAZE): play goals, never starts.
G_CELLS: dict[str, tuple[Cell, ...]] = {
    "umaze": ((3, 1),),
    "medium": ((2, 6), (5, 1), (6, 5)),
    "large": ((1, 6), (3, 5), (3, 10), (5, 2), (7, 4), (7, 6), (7, 9)),
}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How one dataset's episodes start and where they go."""

    name: str  # dataset name, e.g. "medium-play"
    task_id: str  # the D4RL task it is evaluated on
    multistart: bool  # start in any free non-G cell (else the task's start cell)
    goals: str  # "eval" (the task's goal cell) | "g" (the G cells) | "all" (any free cell)

    @property
    def maze(self) -> str:
        return TASKS[self.task_id].maze

    @property
    def dataset_id(self) -> str:
        return f"pex/antmaze/{self.name}-v0"

    def start_cells(self) -> list[Cell]:
        if not self.multistart:
            return [TASKS[self.task_id].start_cell]
        return [c for c in free_cells(self.maze) if c not in G_CELLS[self.maze]]

    def goal_cells(self) -> list[Cell]:
        return {"eval": [TASKS[self.task_id].goal_cell], "g": list(G_CELLS[self.maze]),
                "all": free_cells(self.maze)}[self.goals]


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("umaze", "antmaze-umaze-v2", multistart=False, goals="eval"),
    Recipe("umaze-diverse", "antmaze-umaze-diverse-v2", multistart=True, goals="all"),
    Recipe("medium-play", "antmaze-medium-play-v2", multistart=True, goals="g"),
    Recipe("medium-diverse", "antmaze-medium-diverse-v2", multistart=True, goals="all"),
    Recipe("large-play", "antmaze-large-play-v2", multistart=True, goals="g"),
    Recipe("large-diverse", "antmaze-large-diverse-v2", multistart=True, goals="all"),
)}


def free_cells(maze: str) -> list[Cell]:
    return [(i, j) for i, row in enumerate(MAPS[maze]) for j, c in enumerate(row) if c != 1]


def eval_goal(task_id: str) -> np.ndarray:
    """g*, the single evaluation goal the rewards are relabelled against (D4RL frame)."""
    return np.asarray(cell_to_xy(*TASKS[task_id].goal_cell)) + EVAL_GOAL_OFFSET


def recipe_for(name: str) -> Recipe:
    if name not in RECIPES:
        raise ConfigError(f"unknown AntMaze dataset {name!r}; valid: {', '.join(RECIPES)}, all")
    return RECIPES[name]


# ----------------------------------------------------------------------------------------------------- steering
PLANNERS = ("d4rl", "centre")


def steer(controller: Any, obs: np.ndarray, goals: np.ndarray, maze: str, planner: str = "d4rl",
          rng: np.random.Generator | None = None) -> np.ndarray:
    """Deterministic controller actions (N, 8) for ants at D4RL observations `obs` (N, 29) heading to `goals` (N, 2),
    along `planner`'s waypoints (`envs/maze_planner`: "d4rl" = D4RL's lookup and waypoint noise, drawn from `rng`;
    "centre" = nearest-cell lookup, noiseless cell centres)."""
    from pex_jax.envs.goal_reaching_ant import controller_observation
    from pex_jax.envs.maze_planner import next_waypoint, next_waypoint_d4rl

    if planner == "d4rl":
        rng = rng if rng is not None else np.random.default_rng()
        waypoints = [next_waypoint_d4rl(maze, o[:2], g, rng) for o, g in zip(obs, goals, strict=True)]
    elif planner == "centre":
        waypoints = [next_waypoint(maze, o[:2], g) for o, g in zip(obs, goals, strict=True)]
    else:
        raise ConfigError(f"unknown planner {planner!r}; valid: {', '.join(PLANNERS)}")
    return controller.act(controller_observation(obs, np.stack(waypoints)))


def _place(env: D4RLAntMazeEnv, rng: np.random.Generator, recipe: Recipe) -> np.ndarray:
    """Reset `env` to a recipe start and goal drawn from `rng`; returns the first observation."""
    env.reset(seed=int(rng.integers(2**31 - 1)))
    qpos, qvel = d4rl_start_state(rng)
    if recipe.multistart:
        starts = recipe.start_cells()
        cell = starts[int(rng.integers(len(starts)))]
        qpos[:2] = np.asarray(cell_to_xy(*cell)) + rng.uniform(0.0, 1.0, size=2)
    else:
        qpos[:2] += cell_to_xy(*TASKS[recipe.task_id].start_cell)
    goals = recipe.goal_cells()
    cell = goals[int(rng.integers(len(goals)))]
    env.set_goal(np.asarray(cell_to_xy(*cell)) + rng.uniform(0.0, 1.0, size=2) + rng.uniform(0.0, 0.5, size=2))
    return env.set_state(qpos, qvel)


def collect(recipe: Recipe, controller: Any, episodes: int, episode_steps: int = EPISODE_STEPS, noise: float = NOISE,
            seed: int = SEED, parallel: int = 20, progress: bool = True,
            planner: str = "d4rl") -> dict[str, np.ndarray]:
    """Run `episodes` fixed-length episodes, `parallel` at a time in lock-step (one batched controller call per
    step). Returns arrays: observations (E, T+1, 29), actions (E, T, 8), goals (E, 2), all float32/64 as stored."""
    from tqdm import tqdm

    rng = np.random.default_rng([seed, list(RECIPES).index(recipe.name)])  # per-dataset stream of one seed
    obs_all = np.zeros((episodes, episode_steps + 1, 29), np.float32)
    act_all = np.zeros((episodes, episode_steps, 8), np.float32)
    goal_all = np.zeros((episodes, 2), np.float64)
    envs = [D4RLAntMazeEnv(recipe.task_id, end_at_success=False, max_episode_steps=episode_steps)
            for _ in range(min(parallel, episodes))]
    bar = tqdm(total=episodes * episode_steps, disable=not progress, unit="step", desc=f"antmaze {recipe.name}",
               mininterval=1.0, smoothing=0.1)
    try:
        for first in range(0, episodes, len(envs)):
            group = envs[: min(len(envs), episodes - first)]
            ids = range(first, first + len(group))
            obs = np.stack([_place(env, rng, recipe) for env in group])
            goals = np.stack([env.goal for env in group])
            goal_all[list(ids)] = goals
            obs_all[list(ids), 0] = obs
            for t in range(episode_steps):
                action = steer(controller, obs, goals, recipe.maze, planner, rng)
                action = np.clip(action + noise * rng.standard_normal(action.shape), -1.0, 1.0).astype(np.float32)
                for k, env in enumerate(group):
                    obs[k], _, term, trunc, _ = env.step(action[k])
                    if term or trunc != (t == episode_steps - 1):
                        raise DatasetError(f"collection episode ended at step {t + 1} of {episode_steps}")
                act_all[list(ids), t] = action
                obs_all[list(ids), t + 1] = obs
                bar.update(len(group))
    finally:
        bar.close()
        for env in envs:
            env.close()
    return {"observations": obs_all, "actions": act_all, "goals": goal_all}


def relabel(next_xy: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """D4RL sparse relabel: 1 where the post-step xy is within 0.5 of the evaluation goal, as float32."""
    return (np.linalg.norm(next_xy - goal, axis=-1) <= SUCCESS_RADIUS).astype(np.float32)


# --------------------------------------------------------------------------------------------------- write out
def _requirements() -> list[str]:
    return [f"{pkg}=={importlib.metadata.version(pkg)}" for pkg in ("gymnasium-robotics", "mujoco")]


def generate_antmaze(name: str, controller: Any, steps: int = STEPS, noise: float = NOISE, seed: int = SEED,
                     episode_steps: int = EPISODE_STEPS, overwrite: bool = False, progress: bool = True,
                     parallel: int = 20, planner: str = "d4rl") -> dict[str, Any]:
    """Collect, relabel and save one dataset; returns a summary (id, steps, episodes, goal-pass share, ...)."""
    import minari
    from minari.data_collector import EpisodeBuffer

    from pex_jax.datagen.pointmaze import compact_hdf5

    recipe = recipe_for(name)
    if steps < episode_steps or episode_steps < 1:
        raise ConfigError(f"steps ({steps}) must be at least one episode ({episode_steps} steps)")
    if noise < 0:
        raise ConfigError(f"noise must be >= 0, got {noise}")
    if planner not in PLANNERS:
        raise ConfigError(f"unknown planner {planner!r}; valid: {', '.join(PLANNERS)}")
    with dataset_slot(recipe.dataset_id, overwrite) as path:
        episodes = max(1, round(steps / episode_steps))
        start = time.perf_counter()
        data = collect(recipe, controller, episodes, episode_steps, noise, seed, parallel, progress, planner)
        g_star = eval_goal(recipe.task_id)
        rewards = relabel(data["observations"][:, 1:, :2].astype(np.float64), g_star)
        to_goal = np.linalg.norm(data["observations"][:, :, :2] - data["goals"][:, None], axis=-1).min(axis=1)
        truncations = np.zeros((episodes, episode_steps), bool)
        truncations[:, -1] = True
        buffers = [
            EpisodeBuffer(id=e, observations=data["observations"][e], actions=data["actions"][e], rewards=rewards[e],
                          terminations=rewards[e].astype(bool), truncations=truncations[e],
                          infos={"goal": np.repeat(data["goals"][e][None], episode_steps + 1, axis=0)})
            for e in range(episodes)
        ]
        datasets_root().mkdir(parents=True, exist_ok=True)
        obs_space = gym.spaces.Box(-np.inf, np.inf, shape=(29,), dtype=np.float32)
        act_space = gym.spaces.Box(-1.0, 1.0, shape=(8,), dtype=np.float32)
        spec = TASKS[recipe.task_id]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # author_email / code_permalink missing, obs dtype float32 vs env float64
            collection_env = gym.make(GYM_ID, task_id=recipe.task_id, end_at_success=False,
                                      max_episode_steps=episode_steps)
            eval_env = gym.make(GYM_ID, task_id=recipe.task_id, max_episode_steps=spec.max_episode_steps)
            try:
                minari.create_dataset_from_buffers(
                    recipe.dataset_id, buffer=buffers, env=collection_env, eval_env=eval_env,
                    observation_space=obs_space, action_space=act_space,
                    algorithm_name="BFS waypoints + SAC goal-reaching ant (pex_jax.datagen.ant_controller) + noise",
                    author="pex-jax", ref_min_score=0.0, ref_max_score=1.0,
                    description=(
                        f"D4RL-recipe AntMaze data generated locally for {recipe.task_id}: {episodes} episodes x "
                        f"{episode_steps} steps, action noise std {noise}, seed {seed}, {planner} planner, starts "
                        f"{'any free non-G cell' if recipe.multistart else 'the start cell'}, goal cells "
                        f"{recipe.goal_cells()} (+U(0,1)+U(0,0.5)), fixed per episode; rewards and terminations "
                        f"relabelled against the eval goal {g_star.tolist()} at radius {SUCCESS_RADIUS}; "
                        f"D4RL frame, 29-d qpos++qvel observations; infos/goal is the commanded goal."),
                    requirements=_requirements(), data_format="hdf5",
                )
                compact_hdf5(path / "data")
            finally:
                collection_env.close()
                eval_env.close()
    return {
        "dataset_id": recipe.dataset_id, "steps": episodes * episode_steps, "episodes": episodes,
        "eval_goal_pass": float((rewards.max(axis=1) > 0).mean()),
        "commanded_goal_reached": float((to_goal <= SUCCESS_RADIUS).mean()),
        "reward_ones": int(rewards.sum()),
        "flips": float((data["observations"][:, :, 2] < 0.2).any(axis=1).mean()),
        "seconds": time.perf_counter() - start,
        "mb": sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6,
        "path": str(path),
    }


# ----------------------------------------------------------------------------------------------------- checking
CHECK_TASKS = {"umaze": "antmaze-umaze-v2", "medium": "antmaze-medium-play-v2", "large": "antmaze-large-play-v2"}


def waypoint_success(controller: Any, task_id: str, episodes: int, seed: int = 0, noise: float = 0.0,
                     parallel: int = 25, planner: str = "d4rl") -> dict[str, float]:
    """The evaluation task itself (D4RL start, random goal, success at 0.5 ends the episode, 700/1000 steps), driven
    by planner + controller: success rate and mean steps of the successful episodes."""
    rng = np.random.default_rng(seed)
    maze = TASKS[task_id].maze
    envs = [D4RLAntMazeEnv(task_id) for _ in range(min(parallel, episodes))]
    successes, lengths, started = 0, [], 0
    try:
        obs, goals, active = np.zeros((len(envs), 29)), np.zeros((len(envs), 2)), []
        for k, env in enumerate(envs):
            obs[k], info = env.reset(seed=seed * 100_000 + started)
            goals[k], started = info["goal"], started + 1
            active.append(k)
        while active:
            action = steer(controller, obs[active], goals[active], maze, planner, rng)
            if noise > 0:
                action = np.clip(action + noise * rng.standard_normal(action.shape), -1.0, 1.0)
            still = []
            for a, k in zip(action, active, strict=True):
                obs[k], _, term, trunc, _ = envs[k].step(a.astype(np.float32))
                if term or trunc:
                    successes += int(term)
                    if term:
                        lengths.append(envs[k].elapsed_steps)
                    if started < episodes:
                        obs[k], info = envs[k].reset(seed=seed * 100_000 + started)
                        goals[k], started = info["goal"], started + 1
                        still.append(k)
                else:
                    still.append(k)
            active = still
    finally:
        for env in envs:
            env.close()
    return {"success": successes / episodes, "episodes": episodes,
            "mean_steps": float(np.mean(lengths)) if lengths else math.nan}


def check_controller(controller: Any, episodes: int = 100, seed: int = 0,
                     mazes: tuple[str, ...] = tuple(CHECK_TASKS), planner: str = "d4rl") -> dict[str, dict]:
    """Planner + controller without action noise on each maze's evaluation task; one line per maze."""
    out = {}
    for maze in mazes:
        t0 = time.perf_counter()
        out[maze] = res = waypoint_success(controller, CHECK_TASKS[maze], episodes, seed, planner=planner)
        print(f"{maze:7s} {CHECK_TASKS[maze]}: success {100 * res['success']:.0f}% of {episodes} noiseless episodes "
              f"({planner} planner), "
              f"mean {res['mean_steps']:.0f} steps to the goal ({time.perf_counter() - t0:.0f} s)", flush=True)
    worst = min(res["success"] for res in out.values())
    print(f"acceptance (>= 90% on every maze): {'pass' if worst >= 0.9 else 'FAIL'} (lowest {100 * worst:.0f}%)")
    return out


# ------------------------------------------------------------------------------------------------------------ CLI
def main(argv: list[str] | None = None) -> int:
    from pex_jax.datagen.ant_controller import CHECKPOINT, load_controller

    parser = argparse.ArgumentParser(prog="python -m pex_jax.datagen.antmaze",
                                     description="Generate the local AntMaze datasets pex/antmaze/<task>-v0 "
                                                 "into MINARI_DATASETS_PATH.")
    parser.add_argument("--task", default="all", help=f"one of {', '.join(RECIPES)}, a comma list, or all")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--noise", type=float, default=NOISE)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--episode-steps", type=int, default=EPISODE_STEPS)
    parser.add_argument("--planner", default="d4rl", choices=PLANNERS,
                        help="waypoints: d4rl (D4RL's cell lookup + waypoint noise) or centre (nearest cell, centres)")
    parser.add_argument("--controller", type=Path, default=CHECKPOINT)
    parser.add_argument("--overwrite", action="store_true", help="replace existing datasets")
    parser.add_argument("--skip-existing", action="store_true", help="leave existing datasets alone")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    names = list(RECIPES) if args.task == "all" else [t for t in args.task.split(",") if t]
    recipes = [recipe_for(n) for n in names]  # unknown names fail here, before any work
    controller = load_controller(args.controller)  # a bad checkpoint fails here, before any work
    todo = []
    for recipe in recipes:
        if (dataset_dir(recipe.dataset_id) / "data").exists() and not args.overwrite:
            if args.skip_existing:
                print(f"{recipe.dataset_id}: exists at {dataset_dir(recipe.dataset_id)}, skipped")
                continue
            raise DatasetExistsError(f"dataset {recipe.dataset_id!r} already exists at "
                                     f"{dataset_dir(recipe.dataset_id)}; pass --overwrite to replace it or "
                                     "--skip-existing to keep it")
        todo.append(recipe)
    for recipe in todo:
        try:
            s = generate_antmaze(recipe.name, controller, steps=args.steps, noise=args.noise, seed=args.seed,
                                 episode_steps=args.episode_steps, overwrite=args.overwrite,
                                 progress=not args.no_progress, planner=args.planner)
        except DatasetExistsError:
            if not args.skip_existing:
                raise
            print(f"{recipe.dataset_id}: made meanwhile by another process, skipped")
            continue
        print(f"{s['dataset_id']}: {s['steps']} steps, {s['episodes']} episodes, {100 * s['eval_goal_pass']:.1f}% "
              f"pass within 0.5 of the eval goal, {100 * s['commanded_goal_reached']:.1f}% reach their own goal, "
              f"{s['reward_ones']} reward-1 steps, flips {100 * s['flips']:.1f}%, {s['seconds']:.0f} s, "
              f"{s['mb']:.0f} MB at {s['path']}", flush=True)
    return 0


def run_main() -> None:
    run_cli(main)


if __name__ == "__main__":
    run_main()
