"""Regenerate D4RL-style PointMaze datasets offline (no downloads): grid planner + PD controller.

Recipe of the published `D4RL/pointmaze/*-v2` data (docs/data.md): the env runs as one continuing
episode (`continuing_task=True, reset_target=True, max_episode_steps=steps`), a new goal is sampled
whenever the ball reaches the current one, and a `StepDataCallback` marks that step `truncated` so
Minari splits episodes at each success. Actions are the PD command toward the next waypoint plus
N(0, noise^2), clipped to [-1, 1].

Datasets are saved as `pex/pointmaze/{umaze,medium,large}-v0`, a local namespace that cannot be
mistaken for the official ids. CLI: `python -m pex_jax.datagen.pointmaze --maze=all` (`make data`).
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import time
import warnings
from collections import deque
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from pex_jax.data.minari import dataset_dir, datasets_root
from pex_jax.datagen.dataset_slot import dataset_slot
from pex_jax.errors import ConfigError, DatasetError, DatasetExistsError, run_cli

MAZES: dict[str, str] = {
    "umaze": "PointMaze_UMaze-v3",
    "medium": "PointMaze_Medium-v3",
    "large": "PointMaze_Large-v3",
}
# Single-goal evaluation maps as in the official EVAL_ENV_MAPS: (goal cell, reset cell).
EVAL_CELLS: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "umaze": ((1, 1), (3, 1)),
    "medium": ((6, 6), (1, 1)),
    "large": ((7, 9), (1, 1)),
}
KP, KD = 10.0, -1.0
WAYPOINT_THRESHOLD = 0.1
WAYPOINT_JITTER = 0.2
_NEIGHBOURS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def default_dataset_id(maze: str) -> str:
    return f"pex/pointmaze/{maze}-v0"


def _check_maze(maze: str) -> str:
    if maze not in MAZES:
        raise ConfigError(f"unknown maze {maze!r}; valid: {', '.join(MAZES)}, all")
    return MAZES[maze]


def _check_dataset_id(dataset_id: str) -> None:
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(dataset_id)
    except ValueError:
        raise ConfigError(
            f"malformed dataset id {dataset_id!r}: use (namespace/)name-vN with namespace parts of 2+ characters, "
            "e.g. pex/pointmaze/umaze-v0"
        ) from None


def _register() -> None:
    from pex_jax.envs import register_robotics_envs

    register_robotics_envs()


def eval_maze_map(maze: str) -> list[list[Any]]:
    """The maze's wall layout with one goal ('g') and one reset ('r') cell."""
    _check_maze(maze)
    _register()
    base = copy.deepcopy(gym.spec(MAZES[maze]).kwargs["maze_map"])
    (gi, gj), (ri, rj) = EVAL_CELLS[maze]
    base[gi][gj], base[ri][rj] = "g", "r"
    return base


class WaypointController:
    """Follow a shortest grid path to the goal cell, then the exact goal, with a PD law.

    Shortest paths come from one BFS per goal cell over free cells (precomputed: the grids have at
    most ~50 free cells). The plan is rebuilt when the goal moves or the ball jumps (an env reset),
    so the same object works as Minari's obs-only `expert_policy` across episodes.
    """

    def __init__(self, maze: Any, rng: np.random.Generator, jitter: float = WAYPOINT_JITTER):
        self.maze = maze
        self.rng = rng
        self.jitter = jitter
        grid = maze.maze_map
        self.free = {(i, j) for i in range(len(grid)) for j in range(len(grid[0])) if grid[i][j] != 1}
        self.next_hop = {goal: self._bfs(goal) for goal in self.free}
        self.reset()

    def _bfs(self, goal: tuple[int, int]) -> dict[tuple[int, int], tuple[int, int]]:
        """For every reachable cell, the neighbour one step closer to `goal` (fixed tie-breaking)."""
        hop = {goal: goal}
        queue = deque([goal])
        while queue:
            cell = queue.popleft()
            for di, dj in _NEIGHBOURS:
                nb = (cell[0] + di, cell[1] + dj)
                if nb in self.free and nb not in hop:
                    hop[nb] = cell
                    queue.append(nb)
        return hop

    def reset(self) -> None:
        self.waypoints: list[np.ndarray] = []
        self.goal_xy: np.ndarray | None = None
        self.last_xy: np.ndarray | None = None

    def _cell(self, xy: np.ndarray) -> tuple[int, int]:
        cell = tuple(int(v) for v in self.maze.cell_xy_to_rowcol(xy))
        if cell in self.free:
            return cell
        centers = {c: self.maze.cell_rowcol_to_xy(np.array(c)) for c in self.free}
        return min(centers, key=lambda c: float(np.linalg.norm(centers[c] - xy)))

    def _plan(self, xy: np.ndarray, goal_xy: np.ndarray) -> None:
        goal_cell, cell = self._cell(goal_xy), self._cell(xy)
        hops = self.next_hop[goal_cell]
        path = []
        while cell != goal_cell and cell in hops:
            cell = hops[cell]
            path.append(cell)
        centers = [self.maze.cell_rowcol_to_xy(np.array(c)) for c in path[:-1]]
        waypoints = [c - self.rng.uniform(0.0, self.jitter, size=2) for c in centers]
        self.waypoints = [*waypoints, np.array(goal_xy, dtype=np.float64)]
        self.goal_xy = np.array(goal_xy, dtype=np.float64)

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        xy, goal, vel = obs["achieved_goal"], obs["desired_goal"], obs["observation"][2:]
        jumped = self.last_xy is not None and float(np.linalg.norm(xy - self.last_xy)) > 0.5
        if self.goal_xy is None or jumped or float(np.linalg.norm(goal - self.goal_xy)) > 1e-6:
            self._plan(xy, goal)
        self.last_xy = np.array(xy, dtype=np.float64)
        while len(self.waypoints) > 1 and float(np.linalg.norm(self.waypoints[0] - xy)) <= WAYPOINT_THRESHOLD:
            self.waypoints.pop(0)
        return KP * (self.waypoints[0] - xy) + KD * vel


class ExpertPolicy:
    """Noiseless controller with clipped float32 actions (Minari's `expert_policy` signature)."""

    def __init__(self, maze: Any, seed: int):
        self.controller = WaypointController(maze, np.random.default_rng(seed))

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return np.clip(self.controller(obs), -1.0, 1.0).astype(np.float32)


def _split_at_success_callback() -> type:
    import minari

    class SplitAtSuccess(minari.StepDataCallback):
        """Minari 0.5 reads step_data["truncated"]; the older "truncation" key is silently ignored."""

        def __call__(self, env, obs, info, action=None, rew=None, terminated=None, truncated=None):
            step = super().__call__(env, obs, info, action, rew, terminated, truncated)
            if info.get("success", False):
                step["truncated"] = True
            return step

    return SplitAtSuccess


def planner_success_rate(maze: str, episodes: int = 100, seed: int = 0, eval_map: bool = True) -> float:
    """Fraction of episodes in which the noiseless controller reaches the goal within the eval time limit.

    `eval_map=True` uses the single-goal eval map; False samples random goal/reset cells.
    """
    env_id = _check_maze(maze)
    _register()
    maze_map = eval_maze_map(maze) if eval_map else gym.spec(env_id).kwargs["maze_map"]
    env = gym.make(env_id, maze_map=maze_map, continuing_task=True, reset_target=False)
    policy = ExpertPolicy(env.unwrapped.maze, seed)
    successes = 0
    try:
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed + ep)
            policy.controller.reset()
            while True:
                obs, _, terminated, truncated, info = env.step(policy(obs))
                if info.get("success", False):
                    successes += 1
                    break
                if terminated or truncated:
                    break
    finally:
        env.close()
    return successes / max(episodes, 1)


def _requirements() -> list[str]:
    return [f"{pkg}=={importlib.metadata.version(pkg)}" for pkg in ("gymnasium-robotics", "mujoco")]


def generate_pointmaze(
    maze: str = "umaze",
    steps: int = 1_000_000,
    noise: float = 0.5,
    seed: int = 123,
    dataset_id: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    ref_episodes: int = 100,
    compact: bool = True,
) -> str:
    """Collect `steps` transitions on one maze and save them as a Minari dataset; returns its id.

    Deterministic for a given seed: actions/jitter use `np.random.default_rng(seed)` and the env is
    reset once with `seed` (the collector's random auto-seed is never used). Reference scores are
    computed by Minari on the eval env over `ref_episodes` episodes: `ref_min_score` with its seeded
    random policy, `ref_max_score` with the noiseless controller as `expert_policy`.
    `compact=True` rewrites the HDF5 file without chunking (see `compact_hdf5`).
    """
    import minari
    from tqdm import tqdm

    env_id = _check_maze(maze)
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    if noise < 0:
        raise ConfigError(f"noise must be >= 0, got {noise}")
    dataset_id = dataset_id or default_dataset_id(maze)
    _check_dataset_id(dataset_id)
    with dataset_slot(dataset_id, overwrite) as path:
        _register()
        datasets_root().mkdir(parents=True, exist_ok=True)

        rng = np.random.default_rng(seed)
        env = gym.make(env_id, continuing_task=True, reset_target=True, max_episode_steps=steps)
        collector = minari.DataCollector(env, step_data_callback=_split_at_success_callback(), record_infos=False)
        try:
            controller = WaypointController(env.unwrapped.maze, rng)
            obs, _ = collector.reset(seed=seed)
            bar = tqdm(total=steps, disable=not progress, unit="step", desc=f"pointmaze {maze}", mininterval=1.0)
            for t in range(steps):
                action = controller(obs) + noise * rng.standard_normal(2)
                obs, _, terminated, truncated, _ = collector.step(np.clip(action, -1.0, 1.0).astype(np.float32))
                if (t + 1) % 1000 == 0:
                    bar.update(1000)
                if terminated or (truncated and t + 1 < steps):
                    raise DatasetError(f"{env_id} ended after {t + 1} of {steps} steps; expected one episode")
            bar.update(steps - bar.n)
            bar.close()

            eval_env = gym.make(env_id, maze_map=eval_maze_map(maze), continuing_task=True, reset_target=False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # missing author_email / code_permalink
                try:
                    collector.create_dataset(
                        dataset_id,
                        eval_env=eval_env,
                        algorithm_name="BFS waypoints + PD controller (kp=10, kd=-1) + Gaussian action noise",
                        author="pex-jax",
                        expert_policy=ExpertPolicy(env.unwrapped.maze, seed + 1),
                        num_episodes_average_score=ref_episodes,
                        description=(
                            f"Local regeneration of the D4RL PointMaze recipe on {env_id}: {steps} steps, "
                            f"action noise std {noise}, seed {seed}; episodes split at each goal success "
                            f"(truncated=True). Eval env: goal cell {EVAL_CELLS[maze][0]}, reset cell "
                            f"{EVAL_CELLS[maze][1]}, continuing_task=True, reset_target=False."
                        ),
                        requirements=_requirements(),
                    )
                finally:
                    eval_env.close()
        finally:
            collector.close()
        if compact:
            compact_hdf5(path / "data")
    return dataset_id


def compact_hdf5(data_path: Path) -> None:
    """Rewrite main_data.hdf5 with contiguous (unchunked) datasets; about 3x smaller for PointMaze.

    Minari writes every per-episode array as a resizable chunked dataset, whose chunk index costs
    ~20 KB per episode: more than the data itself for ~75-step maze episodes. The group/dataset
    names and attributes are unchanged, so `minari.load_dataset` reads the result as before; only
    appending to an existing episode (which nothing here does) would need chunked datasets.
    """
    import h5py
    import minari

    src = data_path / "main_data.hdf5"
    tmp = data_path / "main_data.compact.tmp"

    def copy(group_in: Any, group_out: Any) -> None:
        group_out.attrs.update(group_in.attrs)
        for key, item in group_in.items():
            if isinstance(item, h5py.Group):
                copy(item, group_out.create_group(key, track_order=True))
            else:
                group_out.create_dataset(key, data=item[()]).attrs.update(item.attrs)

    try:
        with h5py.File(src, "r") as fin:
            with h5py.File(tmp, "w", track_order=True, libver=("earliest", "v110")) as fout:
                copy(fin, fout)
        tmp.replace(src)
    finally:
        tmp.unlink(missing_ok=True)
    storage = minari.load_dataset(str(data_path.parent.relative_to(datasets_root()))).storage
    storage.update_metadata({"dataset_size": storage.get_size()})


def _dir_size_mb(path: Any) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pex_jax.datagen.pointmaze",
        description="Generate local PointMaze Minari datasets (pex/pointmaze/<maze>-v0) "
        "into MINARI_DATASETS_PATH.",
    )
    parser.add_argument("--maze", default="all", choices=[*MAZES, "all"])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--dataset-id", default=None, help="only with a single --maze")
    parser.add_argument("--ref-episodes", type=int, default=100)
    parser.add_argument("--overwrite", action="store_true", help="replace existing datasets")
    parser.add_argument("--skip-existing", action="store_true", help="leave existing datasets alone")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    mazes = list(MAZES) if args.maze == "all" else [args.maze]
    if args.dataset_id and len(mazes) > 1:
        raise ConfigError("--dataset-id needs a single --maze (umaze, medium or large), not --maze=all")
    ids = {maze: args.dataset_id or default_dataset_id(maze) for maze in mazes}
    for ds_id in ids.values():
        _check_dataset_id(ds_id)
    todo = []
    for maze, ds_id in ids.items():
        if (dataset_dir(ds_id) / "data").exists() and not args.overwrite:
            if args.skip_existing:
                print(f"{ds_id}: exists at {dataset_dir(ds_id)}, skipped")
                continue
            raise DatasetExistsError(
                f"dataset {ds_id!r} already exists at {dataset_dir(ds_id)}; pass --overwrite to replace it "
                "or --skip-existing to keep it"
            )
        todo.append(maze)
    for maze in todo:
        start = time.perf_counter()
        try:
            ds_id = generate_pointmaze(
                maze,
                steps=args.steps,
                noise=args.noise,
                seed=args.seed,
                dataset_id=ids[maze],
                overwrite=args.overwrite,
                progress=not args.no_progress,
                ref_episodes=args.ref_episodes,
            )
        except DatasetExistsError:
            if not args.skip_existing:
                raise
            print(f"{ids[maze]}: made meanwhile by another process, skipped")
            continue
        import minari

        meta = minari.load_dataset(ds_id).storage.metadata
        where = dataset_dir(ds_id)
        print(
            f"{ds_id}: {meta['total_steps']} steps, {meta['total_episodes']} episodes, "
            f"ref scores [{meta.get('ref_min_score'):.2f}, {meta.get('ref_max_score'):.2f}], "
            f"{time.perf_counter() - start:.1f} s, {_dir_size_mb(where):.1f} MB at {where}",
            flush=True,
        )
    return 0


def run_main() -> None:
    run_cli(main)


if __name__ == "__main__":
    run_main()
