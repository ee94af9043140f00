"""One flattening rule for dataset observations and live-env observations.

Dict observations (the goal-conditioned mazes) are concatenated in **sorted key order**, which is
the order gymnasium gives `spaces.Dict` and therefore `gymnasium.spaces.flatten`. For the mazes that
is ``achieved_goal (2) | desired_goal (2) | observation (4 point / 27 ant-v4)``. Using the same
rule for the stored arrays and for `env.step` outputs is what keeps offline and online inputs
identical; a different order would silently feed the agent permuted features.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from pex_jax.errors import DatasetError


def flatten_observation(obs: Any) -> np.ndarray:
    """Flatten an observation (or a batch of them) to float32 with features on the last axis.

    Dict values are concatenated in sorted key order (`achieved_goal`, `desired_goal`,
    `observation` for mazes), recursively for nested dicts. Any leading batch dims are kept:
    dataset arrays `(T+1, d)`, vector-env batches `(N, d)` and single observations `(d,)` all work.
    Non-dict observations are only cast to float32.
    """
    if isinstance(obs, Mapping):
        if not obs:
            raise DatasetError("cannot flatten an empty dict observation")
        parts = [flatten_observation(obs[key]) for key in sorted(obs)]
        lead = parts[0].shape[:-1]
        for key, part in zip(sorted(obs), parts, strict=True):
            if part.shape[:-1] != lead:
                raise DatasetError(
                    f"dict observation key {key!r} has batch shape {part.shape[:-1]}, expected {lead}"
                )
        return np.concatenate(parts, axis=-1)
    arr = np.asarray(obs, dtype=np.float32)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    return arr


def flat_dim(space: gym.Space) -> int:
    """Length of `flatten_observation` output for one observation of `space`."""
    if isinstance(space, gym.spaces.Dict):
        return sum(flat_dim(sub) for sub in space.spaces.values())
    if isinstance(space, gym.spaces.Box):
        return int(np.prod(space.shape)) if space.shape else 1
    raise DatasetError(
        f"unsupported observation space {type(space).__name__}: pex-jax handles Box and Dict-of-Box only"
    )
