"""Does an env fit a dataset? Observation width, dict keys, action shape and bounds, in one check.

Envs themselves are built from the run's task (`pex_jax.envs.task`), for training and evaluation alike.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from pex_jax.data.minari import DatasetInfo
from pex_jax.data.observations import flat_dim
from pex_jax.errors import SpaceMismatchError


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
