"""AntMaze on Minari `D4RL/antmaze/<task>-v1` with the reference's AntMaze settings.

Usage: --config=experiments/configs/antmaze.py:umaze-diverse
Reference (README commands): expectile 0.9, beta 10, inv_temperature 10, 100 eval episodes,
1M offline updates and 1M online env steps; rewards r - 1.
"""

from pex_jax.config import default_config

TASKS = ("umaze", "umaze-diverse", "medium-play", "medium-diverse", "large-play", "large-diverse")


def get_config(task: str = "umaze"):
    if task not in TASKS:
        raise ValueError(f"unknown AntMaze task {task!r}; choose one of {', '.join(TASKS)}")
    c = default_config()
    c.task = f"antmaze-{task}"
    c.dataset_id = f"D4RL/antmaze/{task}-v1"
    c.expectile = 0.9
    c.beta = 10.0
    c.eval_episodes = 100
    c.reward_transform = "minus_one"
    c.terminal_on_success = True  # reaching the goal is terminal, as in the reference's antmaze
    return c
