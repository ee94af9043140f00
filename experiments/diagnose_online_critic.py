"""What does the inherited IQL critic do when online training starts? Optimizer restart, batch mix, fixed samples.

    python experiments/diagnose_online_critic.py --run docs/results/antmaze_paper_runs/medium-play/offline \
        --online docs/results/antmaze_paper_runs/medium-play/pex docs/results/antmaze_paper_runs/medium-play/direct \
        --json docs/results/antmaze_critic/medium-play-online-critic.json

The online log's `train/q_mean` is the mean Q over one training batch, half of it online rows. On the paper-length
medium-play runs it doubled between the offline end and the first online log (1000 updates in). Three causes are
told apart here:

1. **The optimizer restart.** The online phase keeps the offline critic, value net and (for PEX) target critic
   but, as the reference does, builds new Adam optimizers (and for `direct` resets the target to the critic).
   The same IQL updates on the same seeded offline-only batches run from four starts: the checkpoint as saved
   (its Adam moments: pre-training going on), the same with `direct`'s target reset, and `init_online_state` for
   `pex` and for `direct`. The critic's mean Q on a fixed dataset sample is measured along them.
2. **The batch mix.** The offline critic, before any online update, on the online runs' first rows (the
   warm-up, re-simulated from each run's packed checkpoint) against the dataset sample; a 50/50 batch's expected
   mean Q beside the first logged `train/q_mean`.
3. **Fixed samples along the run** (`--checkpoints`): an online checkpoint's critic on the same dataset sample and
   the same warm-up rows, so the population stays put while the critic moves.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.diagnose_critic import load_offline_run  # noqa: E402
from pex_jax import checkpoint  # noqa: E402
from pex_jax.agents.algorithms import ALGORITHMS, Dims, hparams, init_online_state  # noqa: E402
from pex_jax.agents.iql import iql_update  # noqa: E402
from pex_jax.data.replay import sample_dataset  # noqa: E402
from pex_jax.envs.task import task_for_dataset  # noqa: E402
from pex_jax.runner.common import ONLINE_INIT_STREAM, dataset_batch, seed_keys  # noqa: E402
from pex_jax.runner.online import OnlineTask, online_states, replay_rows  # noqa: E402
from pex_jax.tools.tracking import CONFIG_FILE  # noqa: E402

MARKS = (1, 100, 200, 500, 1000, 2000, 5000)  # updates after which the fixed-sample Q is measured (1, then 100s)
CHUNK = 100  # updates per compiled call after the first
WINDOW = 100  # single-update batch means are averaged over the WINDOW updates ending at each mark


def restart_starts(offline, dims: Dims, config, seeds: list[int]) -> dict:
    """The four seed-stacked starting states of part 1, built as the runner builds them."""
    keys = seed_keys(seeds, ONLINE_INIT_STREAM)

    def online(name):
        return jax.vmap(lambda k, s: init_online_state(ALGORITHMS[name], k, dims, config, s))(keys, offline)

    return {
        "offline state": offline,
        "offline Adam, target := critic": offline.replace(target_critic_params=offline.critic.params),
        "online start (pex)": online("pex"),
        "online start (direct)": online("direct"),
    }


def warmup_rows(online_run: Path, steps: int, dims: Dims, info, seeds: list[int]) -> dict[str, np.ndarray]:
    """The first `steps` replay rows of an online run, (seeds, steps, ...), re-simulated from its packed checkpoint
    (committed, unlike the full ones) as `resume` does, over the episode boundaries that checkpoint records."""
    packed = sorted((online_run / checkpoint.RUN_DIR).glob(f"online-*{checkpoint.PACKED_SUFFIX}"))
    if not packed:
        raise SystemExit(f"{online_run} has no packed online checkpoint; run "
                         f"`python -m pex_jax.tools.pack_checkpoints {online_run}` first")
    raw, host = checkpoint.load_run_state(packed[-1])
    actions = np.asarray(raw["buffer"]["actions"])[:, :, :steps]
    if actions.shape[2] < steps:
        raise SystemExit(f"{packed[-1]} holds {actions.shape[2]} online steps, fewer than the {steps} needed (the "
                         f"first logged train/q_mean): let the run pass step {steps} and pack it again")
    from ml_collections import ConfigDict

    c = ConfigDict(json.loads((online_run / CONFIG_FILE).read_text()))
    task = OnlineTask(c, task_for_dataset(info), None, None, c.get("reward_transform")
                      or info.default_reward_transform)
    rows = replay_rows([task], seeds, dims, actions, list(host["boundaries"]), progress=False)
    return {k: v[0] for k, v in rows.items()}


def first_logged_step(config) -> int:
    """The first online step whose log row has `train/q_mean`: updates start once the buffer holds more than
    `learning_starts` rows, and rows are logged every `log_every` steps."""
    return (int(config.learning_starts) // int(config.log_every) + 1) * int(config.log_every)


def first_logged_q(online_run: Path, step: int, seeds: list[int]) -> list[float] | None:
    """`train/q_mean` per seed at online step `step` of the run's metrics.jsonl (one row per seed), if logged."""
    found = {}
    for line in (online_run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("online_step") == step and "train/q_mean" in row:
            found[row["seed"]] = round(float(row["train/q_mean"]), 2)
    return [found[s] for s in seeds] if all(s in found for s in seeds) else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, type=Path, help="offline run dir (its config.json names the data)")
    p.add_argument("--checkpoint", type=Path, help="offline_ckpt/ or checkpoints/offline-<step> (default: newest)")
    p.add_argument("--online", type=Path, nargs="*", default=[], help="online run dirs started from --run")
    p.add_argument("--checkpoints", type=Path, nargs="*", default=[],
                   help="online checkpoints (full or packed) of the --online runs, for part 3; each belongs to the "
                        "--online run whose directory name is in its path (also when extracted from git history)")
    p.add_argument("--updates", type=int, default=MARKS[-1], help="IQL updates per start in part 1 (0: skip)")
    p.add_argument("--n", type=int, default=20_000, help="dataset transitions in the fixed Q sample")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)

    from ml_collections import ConfigDict

    c, data, info, dims, seeds, offline, step = load_offline_run(args.run, args.checkpoint)
    dataset = dataset_batch(data, info, c.get("reward_transform") or info.default_reward_transform,
                            bool(c.get("terminal_on_success", False)))
    hp = hparams(c)
    idx = np.sort(np.random.default_rng(0).choice(len(data.rewards), min(args.n, len(data.rewards)), replace=False))
    sample = (jnp.asarray(data.observations[idx]), jnp.asarray(data.actions[idx]))
    out: dict = {"dataset_id": c.dataset_id, "offline_step": step, "n": len(idx), "seeds": seeds}

    @jax.jit
    def mean_q(states, obs, act):
        """Per seed: the mean over rows of the twins' mean, as `train/q_mean` averages them. obs (seeds?, N, d)."""
        def one(s, o, a):
            return s.critic.apply_fn({"params": s.critic.params}, o, a).mean()
        axes = (0, 0 if obs.ndim == 3 else None, 0 if act.ndim == 3 else None)
        return jax.vmap(one, in_axes=axes)(states, obs, act)

    def per_seed(values) -> list[float]:
        return [round(float(v), 2) for v in np.asarray(values)]

    print(f"{c.dataset_id}, offline step {step}; critic mean Q (mean of the twins) per seed {seeds}")
    dataset_q = per_seed(mean_q(offline, *sample))
    print(f"offline critic on {len(idx)} dataset transitions: {dataset_q}")
    out["offline_dataset_q"] = dataset_q

    # 1. The optimizer restart, on offline-only batches.
    def run(states, n: int, key):
        """`n` updates of every seed on the same seeded batches; per-update batch mean Q, shape (n, seeds)."""
        def body(carry, k):
            batch = sample_dataset(dataset, k, c.batch_size)
            new, metrics = jax.vmap(iql_update, in_axes=(0, None, None, None))(carry, batch, k, hp)
            return new, metrics["q_mean"]
        return jax.lax.scan(body, states, jax.random.split(key, n))

    run = jax.jit(run, static_argnums=1)
    marks = [m for m in MARKS if m <= args.updates]
    out["restart"] = []
    if marks:
        print(f"\n1. the optimizer restart: IQL updates on offline-only batches of {c.batch_size}; "
              f"dataset-sample mean Q after n updates")
    for name, states in (restart_starts(offline, dims, c, seeds).items() if marks else ()):
        key, done, trace, at = jax.random.PRNGKey(0), 0, [], {}
        for m in marks:
            while done < m:  # one update first, then chunks of CHUNK: two compilations per state layout
                n = 1 if done == 0 else CHUNK
                key, k = jax.random.split(key)
                states, q = run(states, n, k)
                trace.append(np.asarray(q))
                done += n
            at[m] = per_seed(mean_q(states, *sample))
        trace = np.concatenate(trace)
        out["restart"].append({"start": name, "dataset_q": {str(m): v for m, v in at.items()},
                               "batch_q": {str(m): per_seed(trace[max(0, m - WINDOW):m].mean(0)) for m in marks}})
        print(f"  {name:<32} " + "  ".join(f"{m}: {' '.join(f'{v:+.1f}' for v in at[m])}" for m in marks))

    # 2. The batch mix: the offline critic on each online run's first rows.
    online = {}  # run name -> (its config, its first rows, its warm-up length)
    for run_dir in args.online:
        oc = ConfigDict(json.loads((run_dir / CONFIG_FILE).read_text()))
        online[run_dir.name] = (oc, warmup_rows(run_dir, first_logged_step(oc), dims, info, seeds),
                                int(oc.learning_starts))
    out["batch_mix"] = []
    if online:
        print("\n2. the batch mix: the offline critic on each online run's rows up to its first logged train/q_mean "
              "(the warm-up, then those with updates)")

    def on_rows(states, r: dict, n: int | None = None) -> list[float]:
        return per_seed(mean_q(states, jnp.asarray(r["observations"][:, :n]), jnp.asarray(r["actions"][:, :n])))

    for run_dir in args.online:
        oc, r, warmup = online[run_dir.name]
        steps = first_logged_step(oc)
        warm, online_q = on_rows(offline, r, warmup), on_rows(offline, r)
        mix = [round(oc.offline_ratio * d + (1 - oc.offline_ratio) * o, 2)
               for d, o in zip(dataset_q, online_q, strict=True)]
        logged = first_logged_q(run_dir, steps, seeds)
        out["batch_mix"].append({"online_run": run_dir.name, "warmup_steps": warmup, "logged_at": steps,
                                 "warmup_q": warm, "online_rows_q": online_q, "offline_ratio": oc.offline_ratio,
                                 "expected_batch_q": mix, "logged_q": logged})
        print(f"  {run_dir.name:<8} warm-up rows (0-{warmup}) {warm}; all {steps} rows {online_q}; "
              f"{oc.offline_ratio:g}/{1 - oc.offline_ratio:g} with the dataset sample {mix}; "
              f"logged train/q_mean at {steps}: {logged}")

    # 3. Fixed samples along the run.
    out["along_the_run"] = []
    if args.checkpoints:
        print("\n3. online checkpoints' critics on the fixed samples (dataset sample; the run's warm-up rows)")
    for path in args.checkpoints:
        names = [name for name in online if name in Path(path).resolve().parts]
        if len(names) != 1:
            raise SystemExit(f"{path}: name its online run with --online (the run dir's name must be in the path)")
        oc, r, warmup = online[names[0]]
        raw, host = checkpoint.load_run_state(path)
        shape = online_states(ALGORITHMS[oc.algo], oc, seeds, dims, 1, None)
        states = jax.tree.map(lambda x: jnp.asarray(x[0]), checkpoint.restore_into(shape, raw["states"]))
        on_data, on_warm = per_seed(mean_q(states, *sample)), on_rows(states, r, warmup)
        out["along_the_run"].append({"online_run": names[0], "online_step": int(host["step"]),
                                     "dataset_q": on_data, "warmup_q": on_warm})
        print(f"  {names[0]:<8} step {int(host['step']):>7}: dataset sample {on_data}; warm-up rows {on_warm}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
