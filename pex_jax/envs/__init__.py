"""Environment tasks: one definition per task, used for both online training and evaluation.

Third-party messages that would otherwise open every maze or D4RL locomotion run are dropped here, each matched exactly
so that anything else the libraries say still reaches the user.
"""

import contextlib
import io
import re
import sys
import warnings

import gymnasium as gym

# gymnasium_robotics prints this (a print to stderr, not a warning) when it is first imported. It is
# about the Adroit hand envs, which no task here uses.
ADROIT_NOTICE = re.compile(
    r"AdroitHand\w+-v1(, AdroitHand\w+-v1)* environment's reward functions were updated in v\d+(\.\d+)* without an "
    r"environment version update\.[^\n]*\n?"
)
# Gymnasium's deprecation for every AntMaze v4 `gym.make`. v4 is deliberate: its 27-d ant observation
# is what Minari's and D4RL's AntMaze data hold (v5 adds contact forces). gymnasium's import adds a
# filter that shows its deprecations, so ours goes in after that import, in front of it.
ANTMAZE_V4_OUT_OF_DATE = r".*The environment AntMaze_\w+-v4 is out of date\."
warnings.filterwarnings("ignore", message=ANTMAZE_V4_OUT_OF_DATE, category=DeprecationWarning)
# The same for the locomotion v4 envs that D4RL's -v2 files are evaluated in: v4 is deliberate, the closest
# to the gym -v2 envs the files were collected in (`pex_jax.data.d4rl_locomotion`).
LOCOMOTION_V4_OUT_OF_DATE = r".*The environment (Hopper|HalfCheetah|Walker2d)-v4 is out of date\."
warnings.filterwarnings("ignore", message=LOCOMOTION_V4_OUT_OF_DATE, category=DeprecationWarning)


def register_robotics_envs() -> None:
    """Register Gymnasium-Robotics' envs with gymnasium; its import's Adroit notice is dropped, the rest of
    what the import prints passes through."""
    if "gymnasium_robotics" not in sys.modules:
        printed = io.StringIO()
        with contextlib.redirect_stderr(printed):
            import gymnasium_robotics  # noqa: F401
        sys.stderr.write(ADROIT_NOTICE.sub("", printed.getvalue()))
    import gymnasium_robotics

    gym.register_envs(gymnasium_robotics)

