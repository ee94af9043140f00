"""PointMaze on the locally generated datasets (`make data`): pex/pointmaze/<maze>-v0.

Usage: --config=experiments/configs/pointmaze.py:umaze   (umaze | medium | large | <maze>-<variant>)
Sparse reward with the reference's maze transform (r - 1), expectile 0.9 and beta 10 as for AntMaze.
"""

from pex_jax.config import default_config

MAZES = ("umaze", "medium", "large")


def get_config(task: str = "umaze"):
    maze, _, variant = task.partition("-")
    if maze not in MAZES:
        raise ValueError(f"unknown PointMaze task {task!r}; choose one of {MAZES} (optionally <maze>-<variant>)")
    c = default_config()
    c.task = f"pointmaze-{task}"
    c.dataset_id = f"pex/pointmaze/{task}-v0"
    c.expectile = 0.9
    c.beta = 10.0
    c.eval_episodes = 10
    c.reward_transform = "minus_one"
    c.terminal_on_success = True  # reaching the goal is terminal, as in the reference's antmaze
    return c
