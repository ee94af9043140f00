"""Default hyperparameters (the reference's defaults) as an ml_collections ConfigDict.

Experiment configs in `experiments/configs/` start from `default_config()` and override
task-specific fields. Every flag is spelled `--config.<name>` on the command line.
"""

import dataclasses
import difflib
import math
import re
from collections.abc import Callable, Iterable, Sequence

import ml_collections

ALGOS = ("pex", "direct", "buffer", "scratch", "offline", "pex_sac", "sac")


def default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    # --- Experiment ---
    c.task = "pointmaze-umaze"  # human-readable task name (report rows, W&B group)
    c.dataset_id = "pex/pointmaze/umaze-v0"  # Minari dataset id, or d4rl:<task id | path to a D4RL hdf5>
    c.algo = "pex"  # pex | direct | buffer | scratch | offline | pex_sac | sac
    c.seeds = "0"  # "0-9", "0,3,7" or "4"; all seeds share one process (vmap axis)
    c.run_dir = ""  # default: runs/<task>/<algo>/<timestamp>
    c.offline_checkpoint = ""  # reuse a pre-trained offline run (its offline_ckpt dir or run dir)
    c.resume = ""  # "" | "auto"
    c.download = True  # allow Minari to download when the network allows
    # Hyperparameter grid on the vmapped axis (pex_jax/grid.py): 'inv_temperature=10,100;expectile=0.7,0.9'
    c.grid = ""
    c.grid_point = ""  # set per point by the grid ('inv_temperature=10,expectile=0.7'); never by hand
    # --- Data ---
    c.reward_transform = ""  # "" = dataset default: minus_one for mazes, identity for locomotion
    # Sparse goal-reaching tasks: a rewarded (goal-reaching) transition ends the task for that goal, as
    # in D4RL antmaze and the reference (episode ends at the goal, terminal=1). Minari's maze data and
    # envs are continuing tasks that only *truncate* there; without this the value bootstraps into the
    # next goal's journey and Q barely depends on the action (docs/deviations.md).
    c.terminal_on_success = False
    # --- Networks ---
    c.hidden_dims = (256, 256)
    # --- IQL ---
    c.gamma = 0.99
    c.expectile = 0.7  # reference default; 0.9 for AntMaze
    c.beta = 10.0  # AWR inverse temperature
    c.adv_clip = 100.0  # min(exp(beta * adv), adv_clip)
    c.tau = 0.005  # target EMA rate
    c.lr = 3e-4
    c.batch_size = 256
    c.actor_cosine_decay = True  # offline only: actor lr cosine-decays over offline_steps
    # --- Offline phase ---
    c.offline_steps = 1_000_000
    c.offline_eval_every = 10_000  # gradient updates between evaluations
    c.updates_per_call = 1_000  # K updates fused in one jit call (lax.scan)
    # --- Online phase ---
    c.online_steps = 1_000_000  # env steps
    c.learning_starts = 5_000  # updates start once the online buffer holds more than this
    c.utd = 1  # gradient updates per env step
    c.online_eval_every = 10_000  # env steps between evaluations
    c.offline_ratio = 0.5  # share of offline rows in each online batch (pex/direct/buffer)
    c.buffer_capacity = 1_000_000
    c.inv_temperature = 10.0  # PEX selection: softmax(inv_temperature * Q)
    c.eval_epsilon = 0.1  # PEX eval: epsilon on both a2 and w (reference); 0 = fully greedy
    # --- SAC backbone (pex_sac, sac; docs/pex-sac.md) ---
    c.init_temperature = 1.0  # initial entropy temperature alpha (learned, target entropy -action_dim)
    c.sac_backup_entropy = False  # -alpha log pi(a'|s') in the critic target (only with pex_sac_backup=new)
    c.pex_sac_backup = "policy_set"  # next action of the critic target: policy_set | new (stock SAC)
    # --- Evaluation ---
    c.eval_episodes = 10  # headline evaluations: end of each phase and online step 0
    c.interim_eval_episodes = 10  # every other evaluation (at most eval_episodes)
    c.eval_parallel_envs = 10  # eval envs stepped together per seed (one policy call per step)
    # --- Engine (docs/performance.md) ---
    c.env_workers = -1  # processes stepping the training envs: -1 = all cores but one, 0 = in the trainer
    c.eval_workers = -1  # processes running evaluations in the background: -1 = all cores but one, 0 = blocking
    c.pipeline_lanes = -1  # seed shares whose device work overlaps the others' env steps (1 = none; -1 = 2 on
    # the CPU, 1 on an accelerator, where a call costs about the same for half the agents)
    c.worker_timeout = 600.0  # seconds a worker may take for one step (env) before the run stops
    # --- Logging ---
    c.log_every = 1_000  # online env steps between train-metric logs
    c.progress = True
    c.wandb = ml_collections.ConfigDict()
    c.wandb.enabled = True  # still honours WANDB_MODE (disabled/offline); never prompts
    c.wandb.project = "pex-jax"
    c.wandb.entity = ""
    c.wandb.tags = ()
    # --- Reliability ---
    # Online env steps between full-state checkpoints (0 = off; offline ones follow offline_eval_every).
    # 84_000 is the smallest multiple of every episode length in experiments/configs (PointMaze 300 / 600 /
    # 800, AntMaze 700 / 1000, locomotion 1000), so the env reset at a checkpoint cuts no full-length
    # episode; a 1M-step run writes 11 and loses at most ~84k steps to a kill. Disk: docs/reliability.md.
    c.checkpoint_every = 84_000
    c.keep_checkpoints = 2
    return c


# --- Valid values ---


@dataclasses.dataclass(frozen=True)
class Range:
    """The interval a numeric field must lie in; `str` spells it as the error message shows it."""

    low: float
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, x: float) -> bool:
        # Written so that NaN is outside every range.
        above = self.low < x if self.low_open else self.low <= x
        below = x < self.high if self.high_open else x <= self.high
        return bool(above and below)

    def __str__(self) -> str:
        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


POSITIVE = Range(0, low_open=True)
# Checked by `pex_jax.train.validate_config` before any work, so a bad value fails in one line
# instead of as NaN scores or a crash hours in.
RANGES: dict[str, Range] = {
    # counts and intervals
    "offline_steps": Range(0),
    "online_steps": Range(0),
    "learning_starts": Range(0),
    "checkpoint_every": Range(0),  # 0 = off
    "batch_size": Range(1),
    "utd": Range(1),
    "updates_per_call": Range(1),
    "offline_eval_every": Range(1),
    "online_eval_every": Range(1),
    "log_every": Range(1),
    "buffer_capacity": Range(1),
    "eval_episodes": Range(1),  # 0 would average over no episodes: NaN scores
    "interim_eval_episodes": Range(1),
    "eval_parallel_envs": Range(1),
    "keep_checkpoints": Range(1),  # 0 would delete the checkpoint just written
    "env_workers": Range(-1),  # -1 = all cores but one
    "pipeline_lanes": Range(-1),  # -1 and 0: the default for the device
    "eval_workers": Range(-1),
    # rates, temperatures and clips
    "gamma": Range(0, 1, low_open=True),
    "expectile": Range(0, 1, low_open=True, high_open=True),
    "tau": Range(0, 1, low_open=True),
    "lr": POSITIVE,
    "beta": Range(0),  # 0 = behaviour cloning
    "adv_clip": POSITIVE,
    "inv_temperature": Range(0),  # 0 = uniform choice between the policies
    "offline_ratio": Range(0, 1),
    "eval_epsilon": Range(0, 1),
    "init_temperature": POSITIVE,
    "worker_timeout": POSITIVE,
}


# --- Command-line overrides ---

_OVERRIDE = re.compile(r"--?(?:no)?config\.([^=]+)")
_CONFIG = re.compile(r"--?config(?:=(.*))?$")


def field_names(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """Every dotted field name of `config`, nested ConfigDicts' own names included."""
    names = []
    for key, value in config.items():
        names.append(prefix + key)
        if isinstance(value, ml_collections.ConfigDict):
            names += field_names(value, f"{prefix}{key}.")
    return names


def override_names(argv: Iterable[str]) -> list[str]:
    """The dotted field names that `--config.<name>[=value]` arguments override."""
    return [m.group(1) for m in map(_OVERRIDE.match, argv) if m]


def unknown_override(argv: Sequence[str], load: Callable[[str], ml_collections.ConfigDict]) -> str | None:
    """One line naming the first `--config.<name>` of argv that is no field of the config `--config` names,
    and the nearest field it has; None when every override is a field or the config does not load.

    Why: ml_collections reports such a typo as a bare AttributeError / KeyError traceback.
    """
    spec = None
    for i, arg in enumerate(argv):
        m = _CONFIG.match(arg)
        if m:
            spec = m.group(1) if m.group(1) is not None else (argv[i + 1] if i + 1 < len(argv) else None)
    if not spec:
        return None
    try:
        fields = field_names(load(spec))
    except Exception:  # the config itself is what fails: leave its own error to the caller
        return None
    for name in override_names(argv):
        if name not in fields:
            nearest = difflib.get_close_matches(name, fields, n=1, cutoff=0.0)[0]
            return f"unknown config field --config.{name}; the nearest valid field is --config.{nearest}"
    return None
