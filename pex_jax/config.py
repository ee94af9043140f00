"""Default hyperparameters (the reference's defaults) as an ml_collections ConfigDict.

Experiment configs in `experiments/configs/` start from `default_config()` and override
task-specific fields. Every flag is spelled `--config.<name>` on the command line.
"""

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
    # --- Logging ---
    c.log_every = 1_000  # online env steps between train-metric logs
    c.progress = True
    c.wandb = ml_collections.ConfigDict()
    c.wandb.enabled = True  # still honours WANDB_MODE (disabled/offline); never prompts
    c.wandb.project = "pex-jax"
    c.wandb.entity = ""
    c.wandb.tags = ()
    # --- Reliability ---
    c.checkpoint_every = 0  # online env steps between full-state checkpoints (0 = off)
    c.keep_checkpoints = 2
    return c
