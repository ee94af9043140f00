"""MuJoCo locomotion on Minari `mujoco/<env>/<level>-v0` (the D4RL -v2 sets are not on Minari).

Usage: --config=experiments/configs/locomotion.py:hopper-medium
Reference: identity rewards (no normalisation), expectile 0.7 (README: 0.9 for halfcheetah-random),
beta 10, 10 eval episodes; normalized scores use the D4RL reference returns when the dataset has none.
"""

from pex_jax.config import default_config

ENVS = ("hopper", "halfcheetah", "walker2d")
LEVELS = ("simple", "medium", "expert")


def get_config(task: str = "hopper-medium"):
    env, _, level = task.partition("-")
    if env not in ENVS or level not in LEVELS:
        raise ValueError(f"unknown locomotion task {task!r}; use <env>-<level>, env in {ENVS}, level in {LEVELS}")
    c = default_config()
    c.task = f"{env}-{level}"
    c.dataset_id = f"mujoco/{env}/{level}-v0"
    c.expectile = 0.7
    c.beta = 10.0
    c.eval_episodes = 10
    c.reward_transform = "identity"
    return c
