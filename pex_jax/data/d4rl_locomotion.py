"""D4RL's MuJoCo locomotion -v2 files: names, published checksums, shapes, and how they are checked.

Why: the paper's locomotion rows (and IQL's, CORL's, Cal-QL's) come from these files. They were collected in
gym's Hopper/HalfCheetah/Walker2d -v2 classes on mujoco_py, wrapped so that actions are clipped to [-1, 1].
Here they are evaluated in Gymnasium's -v4 envs, the closest match (same reward, with the healthy bonus also
on the terminating step, same termination, observation and reset noise; v5 drops that bonus on the last step
and changes Walker2d's foot friction), with actions clipped as D4RL's wrapper does; docs/data.md has the
table and the measured remaining gap.

Everything generic (lookup, download, manifest, qlearning semantics) lives in `pex_jax.data.d4rl`.
"""

from __future__ import annotations

import numpy as np

from pex_jax.data.scores import D4RL_REF_SCORES

ENVS = ("hopper", "halfcheetah", "walker2d")
LEVELS = ("random", "medium", "medium-replay", "medium-expert", "expert")
# obs / action dims of the gym -v2 envs the files were collected in (x position excluded)
DIMS: dict[str, tuple[int, int]] = {"hopper": (11, 3), "halfcheetah": (17, 6), "walker2d": (17, 6)}
# the Gymnasium env each is evaluated in (see the module docstring)
GYM_IDS: dict[str, str] = {"hopper": "Hopper-v4", "halfcheetah": "HalfCheetah-v4", "walker2d": "Walker2d-v4"}
MAX_EPISODE_STEPS = 1000
ACTION_SLACK = 1e-6
# D4RL's `dataset_url` prefix for the -v2 locomotion files (Farama-Foundation/D4RL, d4rl/infos.py)
URL_BASE = "http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2/"

# (size in bytes, sha256) of D4RL's files, as TensorFlow Datasets records them for these URLs
# (tensorflow_datasets/d4rl/d4rl_mujoco_<env>/checksums.tsv; the set that matches downloads recorded
# elsewhere, docs/d4rl-locomotion-notes.md).
PUBLISHED: dict[str, tuple[int, str]] = {
    "hopper-random-v2": (152525345, "63103ef7059db4c0819bd054f4e83ff339030b50bcdb46bdbe50385f234b5054"),
    "hopper-medium-v2": (152756557, "5bdf1bc4a713c82941de44633df669b36c89850b652a25985166796d25cf71a0"),
    "hopper-medium-replay-v2": (75854457, "e121c5f7c9857a307baa9edc6a2c3b48e85fedb9ac316ecddd0f48ca7ef4e39b"),
    "hopper-medium-expert-v2": (304537315, "9d51ad87f8c905be3880d84c6140bcdb7fbf39a19e046a237f238ba34fec9e26"),
    "hopper-expert-v2": (152427435, "01aa219a5f8eea5e639eccdc636ec2bf40e317159a95cf4bf6e985f16909941b"),
    "halfcheetah-random-v2": (237338037, "25407aef85b5d16c0f36b4149341edb4acc6a9e88c1db529b2de19e7464874ba"),
    "halfcheetah-medium-v2": (237727262, "41324e8487a9556d8cfa4538827f8937f4d63dae3030825ebc9f3a726ed08ca0"),
    "halfcheetah-medium-replay-v2": (59448533, "48d494a4770c11f48260736dec090b78bdca8375647ed4d24bfa5b6610c7f683"),
    "halfcheetah-medium-expert-v2": (474567252, "015db75dae5bbe8e94029b71fa0bafc2073365df0c94744e71031189f3f79c06"),
    "halfcheetah-expert-v2": (237464597, "d9fe53bb994eb1e20a99b4fa3412cd76a1bb7966a7ff55e0fcbdd6081bd2965f"),
    "walker2d-random-v2": (216109364, "4e863bb6090cf4a461548bd470564b32f1ae5b32ef3085f816b2ede7f092e7fa"),
    "walker2d-medium-v2": (232254996, "cf00f43add04c17fdfc2958dd581dea0851b2e5bedbe6fda073758a8f841aeda"),
    "walker2d-medium-replay-v2": (86323963, "e75de96a4f77acf7d4e0d6fdf0d7ccb177c26c44bb4388e4fd99f543ccfa18db"),
    "walker2d-medium-expert-v2": (462197079, "6b8d7f868c45bbaedf460be797fb7271b46dee6ebe45fe7a64319f2005b59a04"),
    "walker2d-expert-v2": (230567195, "2985dc3d436a8baa10e8f43f946fe1d7c6337a4e4fbc65def70618093b18c59a"),
}


def task_id(env: str, level: str) -> str:
    return f"{env}-{level}-v2"


def file_name(task: str) -> str:
    """D4RL's name for the task's file: `hopper-medium-replay-v2` -> `hopper_medium_replay-v2.hdf5`."""
    return task.removesuffix("-v2").replace("-", "_") + "-v2.hdf5"


FILES: dict[str, str] = {task_id(e, lv): file_name(task_id(e, lv)) for e in ENVS for lv in LEVELS}


def env_of(task: str) -> str:
    return task.split("-", 1)[0]


def minari_id(task: str) -> str:
    """The Minari dataset nearest in name (other data, collected in Gymnasium's v5 envs)."""
    level = task.removesuffix("-v2").split("-", 1)[1]
    return f"mujoco/{env_of(task)}/{'simple' if level == 'random' else level}-v0"


def reference_scores(task: str) -> tuple[float, float]:
    return D4RL_REF_SCORES[env_of(task)]


def problems(task: str, data: dict[str, np.ndarray]) -> list[str]:
    """What makes `data` unfit to be `task`'s file (empty when fit): the widths of another env (always the
    first problem listed), non-finite values, actions outside [-1, 1], terminals and timeouts on one row."""
    env = env_of(task)
    obs_dim, act_dim = DIMS[env]
    width, act_width = data["observations"].shape[1], data["actions"].shape[1]
    out = []
    if (width, act_width) != (obs_dim, act_dim):
        others = [e for e, dims in DIMS.items() if dims == (width, act_width)]
        which = f" (those of {' or '.join(others)})" if others else ""
        out.append(f"has {width}-d observations and {act_width}-d actions{which}: {env}'s are {obs_dim}-d and "
                   f"{act_dim}-d")
    for key in ("observations", "actions", "rewards"):
        bad = ~np.isfinite(np.asarray(data[key], np.float64))
        if bad.any():
            rows = np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))
            out.append(f"has non-finite values in {key} ({len(rows)} row(s), first at row {rows[0]})")
    max_abs = float(np.abs(np.asarray(data["actions"], np.float64)).max()) if not out else 0.0
    if max_abs > 1.0 + ACTION_SLACK:
        out.append(f"has actions outside [-1, 1] (max |a| = {max_abs:.6g}): D4RL's actions are normalised")
    both = np.asarray(data["terminals"]).astype(bool) & np.asarray(data["timeouts"]).astype(bool)
    if both.any():
        out.append(f"has {int(both.sum())} row(s) marked both terminal and timeout (D4RL marks one or the other)")
    return out
