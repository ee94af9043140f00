"""One task definition per run, used for BOTH the online training env and the evaluation env.

A run cannot train on one task and evaluate on another: `task_for_dataset` derives the `Task` once
from the dataset, and `make_env` / `make_vector_env` build every env of the run from it.

Three kinds:
- `d4rl_antmaze`: the original D4RL AntMaze v2 task in D4RL physics and frame
  (`pex_jax.envs.d4rl_antmaze`), for the original hdf5 files.
- `goal_maze`: a Gymnasium-Robotics maze (Minari `D4RL/antmaze/*-v1`, PointMaze) with one start and
  one goal cell, ending at the goal (`pex_jax.envs.goal_maze`). The walls are those of the maze the
  data was collected in; Minari's umaze(-diverse) eval env is the column mirror of it (Minari #304).
- `gym`: any other env (locomotion), rebuilt from the dataset's eval spec.

The score of maze tasks is D4RL's: 100 x success rate. Other tasks use the normalized return.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from typing import Any

import gymnasium as gym
import numpy as np

from pex_jax.data.minari import DatasetInfo
from pex_jax.envs import register_robotics_envs
from pex_jax.envs.goal_maze import GoalMazeTask, cells, walls, with_cells
from pex_jax.errors import ConfigError, DatasetError

# Longest training episode: PointMaze datasets are collected as one 1M-step env episode, and
# online training must see episode ends; beyond this the eval spec's limit applies.
MAX_EPISODE_STEPS = 100_000
# Success radius of a maze task. D4RL AntMaze (and every AntMaze paper) uses 0.5; Gymnasium-Robotics
# uses 0.45, which is also what labelled the PointMaze datasets' rewards, so PointMaze keeps it.
ANTMAZE_SUCCESS_RADIUS = 0.5
POINTMAZE_SUCCESS_RADIUS = 0.45
MINARI_MIRROR_ISSUE = "https://github.com/Farama-Foundation/Minari/issues/304"
_D4RL_GYM_ID = "pex/D4RLAntMaze-v2"  # = d4rl_antmaze.GYM_ID, without importing MuJoCo models here


@dataclasses.dataclass(frozen=True)
class Task:
    """What a run trains and evaluates on."""

    name: str
    kind: str  # "d4rl_antmaze" | "goal_maze" | "gym"
    env_id: str  # Gymnasium id, or the D4RL task id for d4rl_antmaze
    max_episode_steps: int | None
    maze_map: tuple | None = None  # goal_maze: walls plus one 'r' and one 'g'
    success_radius: float | None = None  # maze tasks: success (and the episode's end) within this radius
    env_spec: Any = None  # gym: the dataset's EnvSpec
    clip_actions: bool = False  # gym: clip actions to the action space before stepping (D4RL's files' envs did)
    notes: tuple[str, ...] = ()  # one-line remarks the runner prints (e.g. a corrected Minari eval map)

    @property
    def score(self) -> str:
        """"success" (D4RL scale: 100 x success rate) for maze tasks, else "return" (normalized return)."""
        return "success" if self.kind in ("d4rl_antmaze", "goal_maze") else "return"

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for config.json and the report."""
        out = {"name": self.name, "kind": self.kind, "env_id": self.env_id,
               "max_episode_steps": self.max_episode_steps, "score": self.score}
        if self.maze_map is not None:
            out["maze_map"] = [list(row) for row in self.maze_map]
            out["reset_cell"], out["goal_cell"] = cells(self.maze_map, "r")[0], cells(self.maze_map, "g")[0]
        if self.success_radius is not None:
            out["success_radius"] = self.success_radius
        if self.clip_actions:
            out["clip_actions"] = True
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def _register(spec_id: str) -> None:
    if spec_id == _D4RL_GYM_ID:
        from pex_jax.envs import d4rl_antmaze  # noqa: F401  (registers it)
    elif "Maze" in spec_id:
        register_robotics_envs()


def _spec_map(spec: gym.envs.registration.EnvSpec) -> Any:
    if "maze_map" in spec.kwargs:
        return spec.kwargs["maze_map"]
    _register(spec.id)
    return gym.spec(spec.id).kwargs.get("maze_map")


def _mirror_cells(data_map: Any, eval_map: Any) -> tuple[Any, str] | None:
    """The eval map's r/g cells carried into the data maze, when the eval walls are its mirror image."""
    n_rows, n_cols = len(data_map), len(data_map[0])
    for name, flip in (("column", lambda i, j: (i, n_cols - 1 - j)), ("row", lambda i, j: (n_rows - 1 - i, j))):
        mirrored = [[data_map[flip(i, j)[0]][flip(i, j)[1]] for j in range(n_cols)] for i in range(n_rows)]
        if walls(mirrored) == walls(eval_map):
            r, g = cells(eval_map, "r"), cells(eval_map, "g")
            if len(r) == 1 and len(g) == 1:
                return with_cells(data_map, flip(*r[0]), flip(*g[0])), name
    return None


def _goal_maze_map(info: DatasetInfo) -> tuple[tuple, list[str]]:
    """The task's maze: the data's walls, and the eval env's start/goal cells (mirrored back if needed)."""
    train_spec = info.env_spec
    eval_spec = info.eval_env_spec or info.env_spec
    data_map, eval_map = _spec_map(train_spec), _spec_map(eval_spec)
    if data_map is None or eval_map is None:
        raise DatasetError(f"dataset {info.dataset_id!r}: its env spec records no maze_map; cannot define the task")
    if len(data_map) != len(eval_map) or len(data_map[0]) != len(eval_map[0]):
        raise DatasetError(
            f"dataset {info.dataset_id!r} was collected in a {len(data_map)}x{len(data_map[0])} maze but its eval env "
            f"is {len(eval_map)}x{len(eval_map[0])}: they are different mazes; fix: rebuild the dataset's eval env"
        )
    if walls(data_map) == walls(eval_map):
        r, g = cells(eval_map, "r"), cells(eval_map, "g")
        if len(r) == 1 and len(g) == 1:
            return with_cells(data_map, r[0], g[0]), []
    notes = []
    r, g = cells(data_map, "r"), cells(data_map, "g")
    if walls(data_map) != walls(eval_map):
        if len(r) == 1 and len(g) == 1:
            maze = with_cells(data_map, r[0], g[0])
            how = f"start {r[0]} / goal {g[0]} of the data map"
        else:
            mirrored = _mirror_cells(data_map, eval_map)
            if mirrored is None:
                raise DatasetError(
                    f"dataset {info.dataset_id!r}: the eval env's maze has other walls than the maze the data was "
                    "collected in, and no start/goal cells can be carried over; fix: pass a dataset whose eval env "
                    "uses the data's maze"
                )
            maze, axis = mirrored
            how = f"the eval env's start/goal cells, {axis}-mirrored into the data maze"
        notes.append(
            f"{info.dataset_id}: the dataset's eval env uses a mirrored maze (Minari #304, {MINARI_MIRROR_ISSUE}); "
            f"training and evaluating in the maze the data was collected in, with {how}"
        )
        return maze, notes
    raise DatasetError(
        f"dataset {info.dataset_id!r}: its eval env's maze has no single start ('r') and goal ('g') cell "
        f"(found r {cells(eval_map, 'r')}, g {cells(eval_map, 'g')}); fix: recreate the dataset with a "
        "single-goal eval env"
    )


def _episode_limit(spec: gym.envs.registration.EnvSpec, info: DatasetInfo) -> int:
    """The spec's time limit; one that no online episode would reach (a 1M-step collection episode)
    falls back to the limit Gymnasium registers for that env id."""
    limit = spec.max_episode_steps
    if limit is not None and limit <= MAX_EPISODE_STEPS:
        return int(limit)
    _register(spec.id)
    try:
        registered = gym.spec(spec.id).max_episode_steps
    except gym.error.Error:
        registered = None
    if registered is None or registered > MAX_EPISODE_STEPS:
        raise DatasetError(
            f"dataset {info.dataset_id!r}: its env {spec.id} has time limit {limit}, and Gymnasium registers none "
            f"below {MAX_EPISODE_STEPS}; fix: recreate the dataset with an eval env that has a time limit"
        )
    return int(registered)


def task_for_dataset(info: DatasetInfo) -> Task:
    """The task a dataset is trained and evaluated on (see the module docstring)."""
    if info.source == "d4rl" and info.domain == "locomotion":
        from pex_jax.data import d4rl_locomotion as loco

        env_id = loco.GYM_IDS[loco.env_of(info.task_hint)]
        _register(env_id)
        return Task(name=info.task_hint, kind="gym", env_id=env_id, max_episode_steps=loco.MAX_EPISODE_STEPS,
                    env_spec=gym.spec(env_id), clip_actions=True,
                    notes=(f"evaluated in Gymnasium's {env_id} (D4RL collected the file in gym's -v2 env on "
                           "mujoco_py), actions clipped to [-1, 1] as D4RL's wrapper does; docs/data.md",))
    if info.source == "d4rl":
        from pex_jax.envs import d4rl_antmaze

        spec = d4rl_antmaze.TASKS[info.task_hint]
        return Task(name=spec.task_id, kind="d4rl_antmaze", env_id=spec.task_id,
                    max_episode_steps=spec.max_episode_steps, success_radius=d4rl_antmaze.SUCCESS_RADIUS)
    spec = info.eval_env_spec or info.env_spec
    if spec is not None and spec.id == _D4RL_GYM_ID:  # generated here (`datagen/antmaze`): the D4RL task
        from pex_jax.envs import d4rl_antmaze

        task_id = spec.kwargs.get("task_id")
        if task_id not in d4rl_antmaze.TASKS:
            raise DatasetError(f"dataset {info.dataset_id!r}: its eval env names an unknown D4RL AntMaze task "
                               f"{task_id!r}; fix: regenerate it with `make data-antmaze`")
        return Task(name=task_id, kind="d4rl_antmaze", env_id=task_id,
                    max_episode_steps=d4rl_antmaze.TASKS[task_id].max_episode_steps,
                    success_radius=d4rl_antmaze.SUCCESS_RADIUS)
    if spec is None:
        raise DatasetError(
            f"dataset {info.dataset_id!r} records no env spec, so its environment cannot be rebuilt; "
            "fix: recreate the dataset with an env_spec / eval_env"
        )
    limit = _episode_limit(spec, info)
    if info.domain == "maze" and info.env_spec is not None:
        maze_map, notes = _goal_maze_map(info)
        radius = ANTMAZE_SUCCESS_RADIUS if "Ant" in spec.id else POINTMAZE_SUCCESS_RADIUS
        return Task(name=info.dataset_id, kind="goal_maze", env_id=spec.id, max_episode_steps=limit,
                    maze_map=maze_map, success_radius=radius, notes=tuple(notes))
    return Task(name=info.dataset_id, kind="gym", env_id=spec.id, max_episode_steps=limit, env_spec=spec)


class ClipToBounds(gym.ActionWrapper):
    """Clip actions to the action space before stepping, as D4RL's `NormalizedBoxEnv` did when its locomotion
    files were collected (so the control cost sees the clipped action). Unlike gymnasium's `ClipAction`, the
    action space stays the env's: the agent's action bounds are unchanged."""

    def action(self, action):
        return np.clip(action, self.action_space.low, self.action_space.high)


def _build(task: Task, **kwargs: Any) -> gym.Env:
    if task.kind == "d4rl_antmaze":
        from pex_jax.envs.d4rl_antmaze import make_d4rl_antmaze

        if kwargs:
            raise ConfigError(f"the D4RL AntMaze env takes no extra arguments (got {sorted(kwargs)})")
        return make_d4rl_antmaze(task.env_id)
    _register(task.env_id)
    limit = kwargs.pop("max_episode_steps", task.max_episode_steps)
    if task.kind == "goal_maze":
        # AntMaze v4 is what Minari's data was collected on (27-d ant obs); pex_jax.envs silences its deprecation
        env = gym.make(task.env_id, maze_map=[list(row) for row in task.maze_map], continuing_task=True,
                       reset_target=False, max_episode_steps=limit, **kwargs)
        with contextlib.suppress(OSError, AttributeError):  # the model is built; its maze XML in /tmp is not needed
            os.remove(env.unwrapped.tmp_xml_file_path)
        return GoalMazeTask(env, task.success_radius)
    if task.kind == "gym":
        _register(task.env_spec.id)
        env = gym.make(task.env_spec, max_episode_steps=limit, **kwargs)
        return ClipToBounds(env) if task.clip_actions else env
    raise ConfigError(f"unknown task kind {task.kind!r}")


def make_env(task: Task, seed: int | None = None, **kwargs: Any) -> gym.Env:
    """One env of the task. With `seed`, it is reset once with that seed (and its spaces seeded), so
    later unseeded resets are reproducible. `kwargs` go to `gym.make` (e.g. `max_episode_steps`)."""
    env = _build(task, **kwargs)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
        env.observation_space.seed(seed)
    return env


def check_task(task: Task, info: DatasetInfo) -> None:
    """Raise `SpaceMismatchError` (one line, with the fix) unless the task's env fits the dataset."""
    from pex_jax.data.envs import check_spaces

    env = make_env(task)
    try:
        check_spaces(env, info)
    finally:
        env.close()


def make_vector_env(task: Task, num_envs: int, seeds: list[int], vectorization: str = "sync",
                    **kwargs: Any) -> gym.vector.VectorEnv:
    """`num_envs` seeded copies of the task's env, autoreset in SAME_STEP mode.

    SAME_STEP: a step that ends an episode already returns the reset obs; the true last obs is in
    `info["final_obs"]` (needed for bootstrapping). Sync because on a 2-core machine async only adds
    IPC cost (docs/data.md).
    """
    if len(seeds) != num_envs:
        raise ConfigError(f"make_vector_env got {len(seeds)} seeds for num_envs={num_envs}; pass one seed per env")
    fns = [functools.partial(make_env, task, int(s), **kwargs) for s in seeds]
    mode = gym.vector.AutoresetMode.SAME_STEP
    if vectorization == "sync":
        return gym.vector.SyncVectorEnv(fns, autoreset_mode=mode)
    if vectorization == "async":
        return gym.vector.AsyncVectorEnv(fns, autoreset_mode=mode)
    raise ConfigError(f"unknown vectorization {vectorization!r}; valid: sync, async")
