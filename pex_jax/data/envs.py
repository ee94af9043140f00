"""Training / evaluation env construction from a dataset's own env specs, with space checks.

The eval env is the dataset's `eval_env_spec` (what `MinariDataset.recover_environment(eval_env=True)`
builds), falling back to `env_spec`. The training env is built from `env_spec`, except that an
absurd time limit is replaced: PointMaze datasets (the official D4RL/pointmaze ones and ours) are
collected as ONE env episode with `max_episode_steps` = 1e6, so online training would otherwise
never see a time-limit reset. Any limit above `MAX_TRAIN_EPISODE_STEPS` becomes the eval limit.

Seeding: `make_env(..., seed=s)` resets the env once with `seed=s` and seeds its action space, so
later `reset()` calls without a seed are reproducible. Vector envs get one seed per sub-env; callers
may equally (re)seed with `vec_env.reset(seed=[...])`.
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import numpy as np

from pex_jax.data.minari import DatasetInfo
from pex_jax.data.observations import flat_dim
from pex_jax.errors import ConfigError, DatasetError, SpaceMismatchError

MAX_TRAIN_EPISODE_STEPS = 100_000


def _ensure_registered(spec: gym.envs.registration.EnvSpec) -> None:
    entry = spec.entry_point if isinstance(spec.entry_point, str) else ""
    if "gymnasium_robotics" in entry or "Maze" in spec.id:
        import gymnasium_robotics

        gym.register_envs(gymnasium_robotics)


def _spaces_of(target: Any) -> tuple[gym.Space, gym.Space, str]:
    if isinstance(target, tuple):
        obs_space, act_space = target
        return obs_space, act_space, "env"
    spec = getattr(target, "spec", None)
    name = spec.id if spec is not None else type(target).__name__
    if hasattr(target, "single_observation_space"):
        return target.single_observation_space, target.single_action_space, name
    return target.observation_space, target.action_space, name


def _mismatch_hint(info: DatasetInfo, env_name: str, env_obs_dim: int) -> str:
    text = f"{info.dataset_id} {env_name}".lower()
    if "antmaze" in text and (env_name.endswith("-v5") or env_obs_dim - info.obs_dim == 78):
        return (
            "AntMaze v1 datasets are 27-dim ant observations: use the -v4 env (e.g. AntMaze_UMaze-v4), "
            "not -v5"
        )
    if info.domain == "locomotion":
        return "Minari mujoco/* datasets were collected on -v5 envs: build the env with make_env(info, ...)"
    return "build the env with make_env(info, ...) from the dataset's own spec, or load the matching dataset"


def check_spaces(target: Any, info: DatasetInfo) -> None:
    """Raise `SpaceMismatchError` unless the env's flat obs dim and action shape/bounds match the dataset.

    `target` is a `gym.Env`, a vector env (its single-env spaces are used) or an
    `(observation_space, action_space)` tuple.
    """
    obs_space, act_space, env_name = _spaces_of(target)
    problems = []
    env_obs_dim = flat_dim(obs_space)
    if env_obs_dim != info.obs_dim:
        problems.append(f"obs_dim {info.obs_dim} vs {env_obs_dim}")
    ds_obs = info.observation_space
    if isinstance(ds_obs, gym.spaces.Dict) and isinstance(obs_space, gym.spaces.Dict):
        if set(ds_obs.spaces) != set(obs_space.spaces):
            problems.append(f"obs keys {sorted(ds_obs.spaces)} vs {sorted(obs_space.spaces)}")
    if not isinstance(act_space, gym.spaces.Box):
        problems.append(f"action space {type(act_space).__name__} vs Box")
    else:
        env_act_dim = int(np.prod(act_space.shape))
        if env_act_dim != info.act_dim:
            problems.append(f"act_dim {info.act_dim} vs {env_act_dim}")
        else:
            low = np.broadcast_to(act_space.low, act_space.shape).reshape(-1)
            high = np.broadcast_to(act_space.high, act_space.shape).reshape(-1)
            if not (np.allclose(low, info.action_low) and np.allclose(high, info.action_high)):
                problems.append(
                    f"action bounds [{info.action_low.min():g}, {info.action_high.max():g}] "
                    f"vs [{low.min():g}, {high.max():g}]"
                )
    if problems:
        raise SpaceMismatchError(
            f"dataset {info.dataset_id!r} does not match env {env_name} "
            f"(dataset vs env: {'; '.join(problems)}); fix: {_mismatch_hint(info, env_name, env_obs_dim)}"
        )


def make_env(info: DatasetInfo, eval: bool, seed: int | None = None, **kwargs: Any) -> gym.Env:
    """Build the eval env (`eval=True`) or the training env for a dataset, checked against its spaces.

    `kwargs` go to `gym.make` (e.g. `max_episode_steps`, `render_mode`).
    """
    spec = info.eval_env_spec if eval and info.eval_env_spec is not None else info.env_spec
    if spec is None:
        raise DatasetError(
            f"dataset {info.dataset_id!r} records no env spec, so its environment cannot be rebuilt; "
            "fix: recreate the dataset with an env_spec / eval_env"
        )
    _ensure_registered(spec)
    if (
        not eval
        and "max_episode_steps" not in kwargs
        and spec.max_episode_steps is not None
        and spec.max_episode_steps > MAX_TRAIN_EPISODE_STEPS
        and info.max_episode_steps is not None
    ):
        kwargs["max_episode_steps"] = info.max_episode_steps
    env = gym.make(spec, **kwargs)
    try:
        check_spaces(env, info)
    except SpaceMismatchError:
        env.close()
        raise
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
        env.observation_space.seed(seed)
    return env


def make_vector_env(
    info: DatasetInfo,
    num_envs: int,
    eval: bool,
    seeds: list[int],
    vectorization: str = "sync",
    **kwargs: Any,
) -> gym.vector.VectorEnv:
    """`num_envs` copies of `make_env`, autoreset in SAME_STEP mode.

    SAME_STEP means a step that terminates/truncates already returns the reset obs, and the true last
    obs is in `info["final_obs"]` (needed for bootstrapping). Sync is the default because on a 2-core
    machine async only adds IPC cost (docs/data.md).
    """
    if len(seeds) != num_envs:
        raise ConfigError(
            f"make_vector_env got {len(seeds)} seeds for num_envs={num_envs}; pass one seed per env"
        )
    fns = [functools.partial(make_env, info, eval, seed=int(s), **kwargs) for s in seeds]
    mode = gym.vector.AutoresetMode.SAME_STEP
    if vectorization == "sync":
        return gym.vector.SyncVectorEnv(fns, autoreset_mode=mode)
    if vectorization == "async":
        return gym.vector.AsyncVectorEnv(fns, autoreset_mode=mode)
    raise ConfigError(f"unknown vectorization {vectorization!r}; valid: sync, async")
