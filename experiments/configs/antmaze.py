"""AntMaze with the reference's AntMaze settings, on D4RL's original files, Minari's re-collection or local data.

Usage: --config=experiments/configs/antmaze.py:<task>[-d4rl|-local]
  umaze, umaze-diverse, medium-play, medium-diverse, large-play, large-diverse
  <task>-d4rl   the original D4RL v2 hdf5 file (`d4rl:antmaze-<task>-v2`, looked up in $D4RL_DATASET_DIR,
                default ~/.d4rl/datasets) in the D4RL AntMaze env: D4RL physics, start, goal and success
                rules. These are the numbers that compare with the paper.
  <task>        Minari `D4RL/antmaze/<task>-v1`: re-collected in Gymnasium-Robotics physics; trained and
                evaluated on its fixed-cell task in the maze the data came from (docs/deviations.md).
  <task>-local  `pex/antmaze/<task>-v0`, generated on this machine with D4RL's recipe (`make data-antmaze`),
                evaluated in the same D4RL AntMaze env as -d4rl.
Reference (README commands): expectile 0.9, beta 10, inv_temperature 10, 100 eval episodes,
1M offline updates and 1M online env steps; rewards r - 1. The score is D4RL's: 100 x success rate.
"""

from pex_jax.config import default_config

TASKS = ("umaze", "umaze-diverse", "medium-play", "medium-diverse", "large-play", "large-diverse")
SOURCES = {"d4rl": "d4rl:antmaze-{}-v2", "minari": "D4RL/antmaze/{}-v1", "local": "pex/antmaze/{}-v0"}


def get_config(task: str = "umaze"):
    name, source = task, "minari"
    for suffix in ("d4rl", "local"):
        if task.endswith(f"-{suffix}"):
            name, source = task[: -len(suffix) - 1], suffix
    if name not in TASKS:
        raise ValueError(f"unknown AntMaze task {task!r}; choose one of {', '.join(TASKS)}, each optionally "
                         "with -d4rl (the original D4RL file) or -local (data generated here)")
    c = default_config()
    c.task = f"antmaze-{task}"
    c.dataset_id = SOURCES[source].format(name)
    c.expectile = 0.9
    c.beta = 10.0
    c.eval_episodes = 100  # the reference's count, kept for the headline evaluations
    c.interim_eval_episodes = 10  # the curve in between (docs/performance.md: evaluation budget)
    c.reward_transform = "minus_one"
    c.terminal_on_success = True  # reaching the goal is terminal, as in the reference's antmaze
    return c
