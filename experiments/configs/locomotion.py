"""MuJoCo locomotion on Minari `mujoco/<env>/<level>-v0` or on D4RL-recipe data generated here.

Usage: --config=experiments/configs/locomotion.py:<env>-<level>[-local]
  <env>-<level>        Minari `mujoco/<env>/<level>-v0` (env hopper, halfcheetah, walker2d; level simple, medium,
                       expert); the D4RL -v2 sets are not on Minari.
  <env>-<level>-local  `pex/mujoco/<env>/<level>-v0`, generated on this machine with D4RL's recipe (env hopper,
                       halfcheetah; level medium, medium-replay, expert): `make data-mujoco` (from the committed
                       SAC policies; `make mujoco-experts` retrains them).
Reference: identity rewards (no normalisation), expectile 0.7 (README: 0.9 for halfcheetah-random),
beta 10, 10 eval episodes; normalized scores use the D4RL reference returns when the dataset has none.
"""

from pex_jax.config import default_config

ENVS = ("hopper", "halfcheetah", "walker2d")
LEVELS = ("simple", "medium", "expert")
LOCAL_ENVS = ("hopper", "halfcheetah")
LOCAL_LEVELS = ("medium", "medium-replay", "expert")


def get_config(task: str = "hopper-medium"):
    local = task.endswith("-local")
    env, _, level = task.removesuffix("-local").partition("-")
    envs, levels = (LOCAL_ENVS, LOCAL_LEVELS) if local else (ENVS, LEVELS)
    if env not in envs or level not in levels:
        raise ValueError(f"unknown locomotion task {task!r}; use <env>-<level> (env in {ENVS}, level in {LEVELS}) "
                         f"or <env>-<level>-local (env in {LOCAL_ENVS}, level in {LOCAL_LEVELS})")
    c = default_config()
    c.task = task
    c.dataset_id = f"pex/mujoco/{env}/{level}-v0" if local else f"mujoco/{env}/{level}-v0"
    c.expectile = 0.7
    c.beta = 10.0
    c.eval_episodes = 10
    c.reward_transform = "identity"
    return c
