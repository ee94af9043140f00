"""Where does an offline IQL critic leave the range its rewards allow? Q, V and TD targets by region of the data.

    python experiments/diagnose_critic.py --run docs/results/antmaze_paper_runs/medium-play/offline
    python experiments/diagnose_critic.py --run <run dir> --checkpoint <run dir>/checkpoints/offline-000000500000

With AntMaze's r - 1 rewards and gamma = 0.99 every true Q lies in [-100, 0]. On a fixed sample of dataset
transitions (seeded, so two checkpoints see the same transitions), per seed: the critic's Q (min of the twins, as
training reads it), its TD target y = r + gamma (1 - d) V(s'), and V(s) - Q(s, a), the value net's expectile gap
over the data's actions. Split by region: within `--radius` m of each play goal (the D4RL generation map's G cells
at their mean goal offset), where the collecting ant hovers until its episode ends, of the evaluation goal, and
elsewhere.

Why the hover clusters: there the next states are the cluster itself, so mean Q = -1 + gamma mean V(s') with
V(s') ~ V(s), and V = mean Q + gap. Together V ~ (gap - 1) / (1 - gamma): the cluster's value is the expectile gap
times 100, and once the gap passes one step's cost there is no negative fixed point. The column `(gap-1)/(1-g)`
prints that arithmetic beside the measured Q.

`--checkpoint` takes an offline checkpoint (`offline_ckpt/`) or a run-state checkpoint (`checkpoints/offline-*`,
including one taken from git history with `git archive <commit> <path> | tar -x -C /tmp`); without it, the run's
`offline_ckpt/` when pre-training finished, else its newest `checkpoints/offline-*`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pex_jax import checkpoint  # noqa: E402
from pex_jax.agents.algorithms import Dims, init_offline_state  # noqa: E402
from pex_jax.data import transform_rewards  # noqa: E402
from pex_jax.data.sources import load_transitions  # noqa: E402
from pex_jax.datagen.antmaze import EVAL_GOAL_OFFSET, G_CELLS, eval_goal  # noqa: E402
from pex_jax.envs.d4rl_antmaze import TASKS, cell_to_xy  # noqa: E402
from pex_jax.envs.task import task_for_dataset  # noqa: E402
from pex_jax.errors import CheckpointError  # noqa: E402
from pex_jax.runner.common import INIT_STREAM, seed_keys  # noqa: E402
from pex_jax.tools.tracking import CONFIG_FILE  # noqa: E402

CHUNK = 50_000  # transitions per forward pass: bounds the activations' memory


def regions(xy: np.ndarray, task_id: str | None, radius: float) -> dict[str, np.ndarray]:
    """Boolean masks over transitions by their xy: each play goal's disk, the evaluation goal's, and the rest.

    Disks are assigned in that order, so the masks never overlap and together cover every transition (umaze's
    play goal sits on its evaluation goal, which is then empty). Not an AntMaze task: one region, "all".
    """
    if task_id not in TASKS:
        return {"all": np.ones(len(xy), bool)}
    centres = {f"play goal {cell}": np.asarray(cell_to_xy(*cell)) + EVAL_GOAL_OFFSET
               for cell in G_CELLS[TASKS[task_id].maze]}
    centres["evaluation goal"] = eval_goal(task_id)
    taken = np.zeros(len(xy), bool)
    masks = {}
    for name, centre in centres.items():
        masks[name] = (np.linalg.norm(xy - centre, axis=1) < radius) & ~taken
        taken |= masks[name]
    masks["elsewhere"] = ~taken
    return masks


def hover_value(gap: float, gamma: float) -> float:
    """V of a cluster whose next states are itself: V = -1 + gamma V + gap, i.e. (gap - 1) / (1 - gamma)."""
    return (gap - 1.0) / (1.0 - gamma)


def summarize(q: np.ndarray, v: np.ndarray, y: np.ndarray, masks: dict[str, np.ndarray], gamma: float,
              q_max: float) -> list[dict]:
    """One row per region: its share of the sample, mean Q, share of Q above `q_max`, mean Q - y, mean gap."""
    rows = []
    for name, m in masks.items():
        if not m.any():
            continue
        gap = float(np.mean(v[m] - q[m]))
        rows.append({"region": name, "share": float(m.mean()), "q": float(q[m].mean()),
                     "above_max": float(np.mean(q[m] > q_max)), "q_minus_y": float(np.mean(q[m] - y[m])),
                     "gap": gap, "hover_value": hover_value(gap, gamma)})
    return rows


def load_states(run: Path, path: Path | None, template, seeds: list[int], offline_steps: int):
    """(seed-stacked offline IQL states, the step they were saved at) from `path` or the run's newest.

    `offline_ckpt/` is written once pre-training ends, so its step is the run's `offline_steps`."""
    if path is None:
        if (run / checkpoint.OFFLINE_DIR).exists():
            path = run / checkpoint.OFFLINE_DIR
        else:
            saved = sorted((run / checkpoint.RUN_DIR).glob("offline-*[0-9]"))
            if not saved:
                raise CheckpointError(f"{run} has no offline checkpoint (no {checkpoint.OFFLINE_DIR}/ and no "
                                      f"{checkpoint.RUN_DIR}/offline-*); pass --checkpoint or pre-train first")
            path = saved[-1]
    if (path / "host.json").exists():  # a run-state checkpoint written while pre-training
        raw, host = checkpoint.load_run_state(path)
        return checkpoint.restore_into(template, raw["states"]), int(host["step"])
    return checkpoint.load_offline(path, template, seeds, {}), offline_steps


class OfflineRun(NamedTuple):
    """What the diagnoses read from an offline run dir: its config, data, shapes and seed-stacked states."""

    config: Any  # ml_collections.ConfigDict
    data: Any  # the transitions (pex_jax.data.sources.load_transitions)
    info: Any  # their DatasetInfo
    dims: Dims
    seeds: list[int]
    states: Any  # seed-stacked offline IQLState, on the device
    step: int  # the offline step they were saved at


def load_offline_run(run: Path, path: Path | None = None) -> OfflineRun:
    """The run's config.json, its dataset (never downloaded) and the offline states at `path` (load_states)."""
    from ml_collections import ConfigDict

    c = ConfigDict(json.loads((run / CONFIG_FILE).read_text()))
    data, info = load_transitions(c.dataset_id, download=False, progress=False)
    dims = Dims.of(info)
    seeds = list(c.seeds)
    template = jax.vmap(lambda k: init_offline_state(k, dims, c))(seed_keys(seeds, INIT_STREAM))
    states, step = load_states(run, path, template, seeds, int(c.offline_steps))
    return OfflineRun(c, data, info, dims, seeds, jax.tree.map(jnp.asarray, states), step)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, type=Path, help="offline run dir (its config.json names the data)")
    p.add_argument("--checkpoint", type=Path, help="offline_ckpt/ or checkpoints/offline-<step> (default: newest)")
    p.add_argument("--n", type=int, default=200_000, help="dataset transitions to evaluate (a seeded sample)")
    p.add_argument("--radius", type=float, default=1.0, help="metres around each goal that count as its region")
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args(argv)

    c, data, info, _, seeds, states, step = load_offline_run(args.run, args.checkpoint)
    task = task_for_dataset(info)

    idx = np.sort(np.random.default_rng(0).choice(len(data.rewards), min(args.n, len(data.rewards)), replace=False))
    transform = c.get("reward_transform") or info.default_reward_transform
    rewards = np.asarray(transform_rewards(np.asarray(data.rewards[idx], np.float32), transform))
    done = np.asarray(data.terminals[idx], np.float32)
    gamma = float(c.gamma)
    q_max = 0.0 if transform == "minus_one" else np.inf
    masks = regions(np.asarray(data.observations[idx, :2]), task.env_id if task.kind == "d4rl_antmaze" else None,
                    args.radius)

    @jax.jit
    def heads(state, obs, act, next_obs):
        q = state.critic.apply_fn({"params": state.critic.params}, obs, act).min(0)
        v = state.value.apply_fn({"params": state.value.params}, obs)
        next_v = state.value.apply_fn({"params": state.value.params}, next_obs)
        return q, v, next_v

    print(f"{c.dataset_id}, offline step {step}, {len(idx)} transitions; Q bound for {transform} rewards: "
          f"{q_max if np.isfinite(q_max) else 'none'}")
    print(f"{'seed':>4} {'region':<22} {'share':>6} {'Q':>8} {'Q>max':>6} {'Q-y':>6} {'V-Q':>6} {'(gap-1)/(1-g)':>13}")
    out = []
    for i, seed in enumerate(seeds):
        one = jax.tree.map(lambda x, i=i: x[i], states)
        parts = [heads(one, *(jnp.asarray(a[idx[lo:lo + CHUNK]]) for a in
                              (data.observations, data.actions, data.next_observations)))
                 for lo in range(0, len(idx), CHUNK)]
        q, v, next_v = (np.concatenate([np.asarray(part[k]) for part in parts]) for k in range(3))
        y = rewards + gamma * (1.0 - done) * next_v
        for row in summarize(q, v, y, masks, gamma, q_max):
            out.append({"seed": seed, "offline_step": step, **row})
            print(f"{seed:>4} {row['region']:<22} {row['share']:6.3f} {row['q']:8.1f} {row['above_max']:6.3f} "
                  f"{row['q_minus_y']:6.2f} {row['gap']:6.2f} {row['hover_value']:13.1f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
