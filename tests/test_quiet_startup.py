"""A run's start-up output is its own: the third-party notices every maze run would print are filtered, exactly.

The env libraries print once per process, so the checks run in a fresh interpreter; they set their own warning
filters there (setup.cfg's pytest filters would hide the very warnings this looks for).
"""

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from pex_jax.envs import ADROIT_NOTICE, ANTMAZE_V4_OUT_OF_DATE

ROOT = Path(__file__).resolve().parents[1]

# Every kind of task the runner builds: PointMaze and Minari AntMaze (v4) goal mazes, the D4RL AntMaze task.
BUILD_EVERY_TASK_KIND = textwrap.dedent("""
    import json, sys, warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from pex_jax.envs.task import Task, make_env

        u_maze = [[1, 1, 1, 1, 1], [1, "r", 0, 0, 1], [1, 1, 1, 0, 1], [1, "g", 0, 0, 1], [1, 1, 1, 1, 1]]
        tasks = [
            Task(name="point", kind="goal_maze", env_id="PointMaze_UMaze-v3", max_episode_steps=300,
                 maze_map=u_maze, success_radius=0.45),
            Task(name="ant", kind="goal_maze", env_id="AntMaze_UMaze-v4", max_episode_steps=700,
                 maze_map=u_maze, success_radius=0.5),
            Task(name="antmaze-umaze-v2", kind="d4rl_antmaze", env_id="antmaze-umaze-v2", max_episode_steps=700,
                 success_radius=0.5),
        ]
        for task in tasks:
            env = make_env(task, seed=0)
            env.step(env.action_space.sample())
            env.close()
    print("CAUGHT" + json.dumps([f"{w.category.__name__}: {w.message}" for w in caught]))
""")


@pytest.fixture(scope="module")
def startup():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    proc = subprocess.run([sys.executable, "-c", BUILD_EVERY_TASK_KIND], cwd=ROOT, env={**env, "JAX_PLATFORMS": "cpu"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("CAUGHT"))
    return json.loads(line[len("CAUGHT"):]), proc.stderr


def test_building_every_task_kind_warns_nothing_even_with_all_warnings_shown(startup):
    caught, _ = startup
    assert caught == []


def test_building_every_task_kind_prints_nothing_to_stderr(startup):
    _, stderr = startup
    assert stderr == ""


def test_the_filters_match_the_libraries_messages_and_nothing_broader():
    adroit = ("AdroitHandRelocateDense-v1, AdroitHandHammerDense-v1, AdroitHandDoorDense-v1 environment's reward "
              "functions were updated in v1.2.1 without an environment version update. Therefore, use "
              "gymnasium-robotics==1.2.0 for v1 reproducibility.\n")
    assert ADROIT_NOTICE.sub("", "before\n" + adroit + "after\n") == "before\nafter\n"
    other = "Hopper-v5 environment's reward functions were updated in v1.2.1\n"
    assert ADROIT_NOTICE.sub("", other) == other
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", message=ANTMAZE_V4_OUT_OF_DATE, category=DeprecationWarning)
        warnings.warn("\x1b[33mWARN: The environment AntMaze_UMaze-v4 is out of date. You should consider "
                      "upgrading to version `v5`.\x1b[0m", DeprecationWarning, stacklevel=1)
        warnings.warn("WARN: The environment PointMaze_UMaze-v2 is out of date.", DeprecationWarning, stacklevel=1)
        warnings.warn("WARN: The environment AntMaze_UMaze-v4 is out of date.", UserWarning, stacklevel=1)
    assert [(w.category, str(w.message)) for w in caught] == [
        (DeprecationWarning, "WARN: The environment PointMaze_UMaze-v2 is out of date."),
        (UserWarning, "WARN: The environment AntMaze_UMaze-v4 is out of date."),
    ]
