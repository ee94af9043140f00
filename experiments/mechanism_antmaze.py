"""Why PEX's policy set drops at the switch on AntMaze: the selection mechanism, measured at online step 0.

    python experiments/mechanism_antmaze.py --task umaze          # seeds 0-2 of the task's offline checkpoint
    python experiments/mechanism_antmaze.py --task umaze --from-json   # the tables again, from the saved JSON

The offline checkpoints are the study's (`python experiments/study_antmaze.py --tasks <task> --algos= --out
runs/mechanism`); umaze's is committed in docs/results/antmaze_mechanism/runs/umaze/offline.

For each seed's offline checkpoint (the study's 100k-update IQL run) and the new policy PEX adds at the switch (the
same initialisation as the study's runs: the runner's online-init key), three measurements:

1. **True gap against the critic's gap.** Along episodes of the policy set in evaluation mode (as the step-0
   evaluation), every `--every` steps the simulator state is saved and the episode branches: take the offline
   policy's action (its mode) or the new policy's (its mode), then continue with the policy set (the same keys in
   both branches) to the goal or the time limit. True Q of a branch from the steps to the goal k under the runner's
   rewards (r - 1, terminal at the goal): -(1 - gamma^(k-1)) / (1 - gamma); never reaching it: -100. Reported: the
   true gap Q(offline) - Q(new), the critic's gap (min of the twins, the quantity the policy set's softmax reads),
   their sign agreement, both by distance to the goal.
2. **How much of a second member the gait survives.** Success of the offline policy (its mode) when a share p of its
   steps take the new policy's action (its mode) instead, p in {0, 0.1, 0.25, 0.5}; beside the policy set's
   measured offline-pick rate at step 0.
3. **Init spread.** `--inits` new-policy initialisations x `--episodes` episodes of the policy set at step 0: score
   against the offline-pick rate.

Writes docs/results/antmaze_mechanism/<task>.json (every number of docs/results/antmaze.md's mechanism section) and
prints a summary. Nothing is tuned: the offline checkpoints, the policy set's rule and the evaluation settings are
the study's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pex_jax import checkpoint  # noqa: E402
from pex_jax.agents.algorithms import ALGORITHMS, Dims, act, init_offline_state, init_online_state  # noqa: E402
from pex_jax.data.sources import load_transitions  # noqa: E402
from pex_jax.envs.task import make_env, task_for_dataset  # noqa: E402
from pex_jax.runner.common import INIT_STREAM, ONLINE_INIT_STREAM, seed_keys  # noqa: E402
from pex_jax.tools.tracking import CONFIG_FILE, METRICS_FILE  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PEX = ALGORITHMS["pex"]
NEVER = -100.0  # Q of a branch that never reaches the goal: -1 / (1 - gamma)


def load(run: Path, seeds: list[int]):
    """(config, dims, task, info, per-seed PEX states at the switch) from an offline run directory."""
    from ml_collections import ConfigDict

    c = ConfigDict(json.loads((run / CONFIG_FILE).read_text()))
    _, info = load_transitions(c.dataset_id, download=False, progress=False)
    task = task_for_dataset(info)
    dims = Dims.of(info)
    template = jax.vmap(lambda k: init_offline_state(k, dims, c))(seed_keys(seeds, INIT_STREAM))
    offline = checkpoint.load_offline(str(run), template, seeds, {})
    keys = seed_keys(seeds, ONLINE_INIT_STREAM)
    states = [init_online_state(PEX, keys[i], dims, c, jax.tree.map(lambda x, i=i: x[i], offline))
              for i in range(len(seeds))]
    return c, dims, task, info, states


def functions(c):
    """Jitted per-observation (and batched) pieces of the policy set."""

    @jax.jit
    def policy_set(state, key, obs):  # evaluation mode, as the step-0 evaluation
        return act(PEX, state, key, obs, c, evaluate=True)

    def _members(state, obs):
        """(offline mode, new-policy mode, critic Q of each: min of the online twins)."""
        a_off, _ = state.actor.apply_fn({"params": state.offline_actor_params}, obs)
        a_new, _ = state.actor.apply_fn({"params": state.actor.params}, obs)
        q = state.critic.apply_fn({"params": state.critic.params}, jnp.stack([obs, obs]),
                                  jnp.stack([a_off, a_new])).min(0)
        return a_off, a_new, q

    members = jax.jit(_members)
    batched_set = jax.jit(jax.vmap(lambda s, k, o: act(PEX, s, k, o, c, evaluate=True), in_axes=(None, 0, 0)))
    batched_members = jax.jit(jax.vmap(_members, in_axes=(None, 0)))
    return policy_set, members, batched_set, batched_members


# --- Simulator state ---


def snapshot(env) -> tuple:
    u = env.unwrapped
    return (u.data.qpos.copy(), u.data.qvel.copy(), u.data.act.copy(), float(u.data.time), u._steps,
            u._goal.copy(), u._gx, u._gy)


def restore(env, snap: tuple) -> None:
    u = env.unwrapped
    qpos, qvel, act_, t, steps, goal, gx, gy = snap
    u.data.qpos[:], u.data.qvel[:], u.data.act[:] = qpos, qvel, act_
    u.data.time = t
    u._steps, u._goal, u._gx, u._gy = steps, goal.copy(), gx, gy
    mujoco.mj_forward(u.model, u.data)


def true_q(steps_to_goal: int | None, gamma: float) -> float:
    if steps_to_goal is None:
        return NEVER
    return -(1.0 - gamma ** (steps_to_goal - 1)) / (1.0 - gamma)


# --- 1. Branch rollouts ---


def branch_gaps(env, state, fns, key, episodes: int, every: int, gamma: float, seed: int) -> list[dict]:
    policy_set, members, _, _ = fns
    rows = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=50_000 + 1_000 * seed + ep)
        ep_key = jax.random.fold_in(key, ep)
        t, done = 0, False
        while not done:
            if t % every == 0:
                snap = snapshot(env)
                a_off, a_new, q = jax.device_get(members(state, jnp.asarray(obs)))
                reached = []
                for a in (a_off, a_new):
                    restore(env, snap)
                    o, _, term, trunc, info = env.step(np.asarray(a))
                    k = 1
                    while not (term or trunc):
                        a2, _ = policy_set(state, jax.random.fold_in(ep_key, 1_000_000 + t + k), jnp.asarray(o))
                        o, _, term, trunc, info = env.step(np.asarray(a2))
                        k += 1
                    reached.append(k if info["success"] else None)
                restore(env, snap)
                q_true = [true_q(k, gamma) for k in reached]
                u = env.unwrapped
                distance = float(np.hypot(obs[0] - u._gx, obs[1] - u._gy))
                rows.append({"seed": seed, "episode": ep, "t": t, "distance": distance,
                             "critic_gap": float(q[0] - q[1]), "true_gap": q_true[0] - q_true[1],
                             "steps_offline": reached[0], "steps_new": reached[1]})
            action, _ = policy_set(state, jax.random.fold_in(ep_key, t), jnp.asarray(obs))
            obs, _, term, trunc, info = env.step(np.asarray(action))
            done = term or trunc
            t += 1
    return rows


# --- 2 and 3. Batched episodes ---


def episodes_batch(task, state, fns, n: int, seed: int, mode: str, p: float = 0.0, key=None) -> dict:
    """`n` episodes at once: mode "mix" (offline mode, a share p of steps the new policy's mode) or "set" (the
    policy set in evaluation mode). Returns successes and, for "set", the offline-pick rate."""
    _, _, batched_set, batched_members = fns
    envs = [make_env(task) for _ in range(n)]
    obs = np.stack([e.reset(seed=90_000 + 1_000 * seed + j)[0] for j, e in enumerate(envs)])
    live, success = np.ones(n, bool), np.zeros(n, bool)
    rng = np.random.default_rng(1_000 + seed)
    picks = count = 0
    t = 0
    while live.any():
        if mode == "mix":
            a_off, a_new, _ = jax.device_get(batched_members(state, jnp.asarray(obs)))
            take_new = rng.random(n) < p
            actions = np.where(take_new[:, None], a_new, a_off)
        else:
            step_key = jax.random.fold_in(key, t)
            keys = jax.vmap(lambda j, k=step_key: jax.random.fold_in(k, j))(jnp.arange(n))
            actions, choice = jax.device_get(batched_set(state, keys, jnp.asarray(obs)))
            picks += int((choice[live] == 0).sum())
            count += int(live.sum())
        for j in np.flatnonzero(live):
            o, _, term, trunc, info = envs[j].step(np.asarray(actions[j]))
            obs[j] = o
            if term or trunc:
                live[j], success[j] = False, bool(info["success"])
        t += 1
    for e in envs:
        e.close()
    return {"success": success.tolist(), "score": 100.0 * float(success.mean()),
            "offline_pick_rate": picks / count if count else None}


def summarize_gaps(rows: list[dict]) -> dict:
    def stats(sel: list[dict]) -> dict:
        if not sel:
            return {"n": 0}
        true = np.array([r["true_gap"] for r in sel])
        critic = np.array([r["critic_gap"] for r in sel])
        decided = true != 0
        agree = np.sign(true[decided]) == np.sign(critic[decided])
        return {"n": len(sel), "true_gap_zero_share": float(1 - decided.mean()),
                "sign_agreement": float(agree.mean()) if decided.any() else None, "decided": int(decided.sum()),
                "true_prefers_offline": float((true > 0).mean()), "true_prefers_new": float((true < 0).mean()),
                "critic_prefers_new": float((critic < 0).mean()),
                "median_abs_true_gap": float(np.median(np.abs(true))),
                "median_abs_true_gap_decided": float(np.median(np.abs(true[decided]))) if decided.any() else None,
                "median_abs_critic_gap": float(np.median(np.abs(critic))),
                "flip_success_share": float(np.mean([(r["steps_offline"] is None) != (r["steps_new"] is None)
                                                     for r in sel]))}

    with_d = rows
    edges = [0.0, 2.0, 4.0, 6.0, 8.0, np.inf]
    bins = {f"{lo:g}-{hi:g} m": stats([r for r in with_d if lo <= r["distance"] < hi]) for lo, hi in
            zip(edges[:-1], edges[1:], strict=True)}
    return {"all": stats(rows), "by_distance": {k: v for k, v in bins.items() if v["n"]}}


def step0_of_study(task: str) -> dict:
    """The committed study's PEX evaluation at online step 0 per seed: score and offline-pick rate."""
    path = ROOT / "docs" / "results" / "antmaze_runs" / task / "pex" / METRICS_FILE
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    step0 = [r for r in rows
             if r.get("phase") == "online" and r.get("online_step") == 0 and "eval/normalized_score" in r]
    return {str(r["seed"]): {"score": r["eval/normalized_score"],
                             "offline_pick_rate": r.get("eval/offline_choice_rate")} for r in step0}


def markdown(result: dict) -> str:
    """The tables of docs/results/antmaze.md's mechanism section, from the JSON alone."""
    seeds = [str(s) for s in result["seeds"]]
    lines = [f"# The selection mechanism at the switch: {result['task']}", "",
             f"Recomputed by `python experiments/mechanism_antmaze.py --task {result['task']} --from-json` from "
             f"`{result['task']}.json` (measured by the same script without `--from-json`; offline run "
             f"`{result['run']}`, seeds {', '.join(seeds)}, inverse temperature {result['inv_temperature']:g}, "
             f"evaluation epsilon {result['eval_epsilon']:g}, episode limit {result['episode_limit']}).", ""]
    if "branch" in result:
        b = result["branch"]
        lines += ["## True gap against the critic's gap (branch rollouts)", "",
                  f"Every {b['every']} env steps of {b['episodes_per_seed']} policy-set episodes per seed: offline "
                  "action vs new policy's action, then the policy set to the goal or the time limit. Gap = Q(offline) "
                  "- Q(new); true Q from the steps to the goal (never: -100).", "",
                  "| states | n | true gap 0 (same outcome) | true prefers offline | true prefers new | critic prefers "
                  "new | sign agreement (true gap != 0) | median abs true gap (!= 0) | median abs critic gap | "
                  "one branch reaches the goal, the other not |", "|---|---|---|---|---|---|---|---|---|---|"]

        def row(name, st):
            if not st.get("n"):
                return
            agree = "-" if st["sign_agreement"] is None else f"{st['sign_agreement']:.2f} (n={st['decided']})"
            decided = "-" if st["median_abs_true_gap_decided"] is None else f"{st['median_abs_true_gap_decided']:.2f}"
            lines.append(f"| {name} | {st['n']} | {st['true_gap_zero_share']:.2f} | {st['true_prefers_offline']:.2f} "
                         f"| {st['true_prefers_new']:.2f} | {st['critic_prefers_new']:.2f} | {agree} | {decided} | "
                         f"{st['median_abs_critic_gap']:.2f} | {st['flip_success_share']:.2f} |")

        row("all", b["summary"]["all"])
        for name, st in b["summary"]["by_distance"].items():
            row(f"distance to goal {name}", st)
        for s in seeds:
            row(f"seed {s}", b["per_seed"][s])
        lines.append("")
    if "share" in result:
        sh, step0 = result["share"], result.get("step0_study") or step0_of_study(result["task"])
        lines += ["## How much of a second member the gait survives", "",
                  f"Success (100 x, {sh['episodes']} episodes per seed) of the offline policy's mode when a share p of "
                  "its steps take the new policy's mode instead; last rows: the policy set at online step 0 in the "
                  "committed study (30 episodes), with the share of its evaluation actions that were NOT the offline "
                  "policy's.", "", "| p | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
                  "|---|" + "---|" * (len(seeds) + 1)]
        for p_new, by_seed in sh["score_by_p"].items():
            vals = [by_seed[s] for s in seeds]
            lines.append(f"| {p_new} | " + " | ".join(f"{v:.0f}" for v in vals) + f" | {np.mean(vals):.1f} |")
        if step0:
            lines.append("| policy set, step 0: score | " + " | ".join(f"{step0[s]['score']:.0f}" for s in seeds)
                         + f" | {np.mean([step0[s]['score'] for s in seeds]):.1f} |")
            lines.append("| policy set, step 0: share of new-policy actions | "
                         + " | ".join(f"{1 - step0[s]['offline_pick_rate']:.2f}" for s in seeds) + " | "
                         f"{np.mean([1 - step0[s]['offline_pick_rate'] for s in seeds]):.2f} |")
        lines.append("")
    if "inits" in result:
        it = result["inits"]
        lines += ["## Init spread", "",
                  f"The policy set at online step 0 with {len(it['rows']) // len(seeds)} new-policy initialisations "
                  f"per seed, {it['episodes']} episodes each: score and offline-pick rate (evaluation mode).", "",
                  "| seed | scores | offline-pick rates | mean score | mean pick rate |", "|---|---|---|---|---|"]
        for s in seeds:
            rs = [r for r in it["rows"] if str(r["seed"]) == s]
            scores = [r["score"] for r in rs]
            picks = [r["offline_pick_rate"] for r in rs]
            lines.append(f"| {s} | {' / '.join(f'{v:.0f}' for v in scores)} | "
                         f"{' / '.join(f'{v:.2f}' for v in picks)} | {np.mean(scores):.1f} | {np.mean(picks):.2f} |")
        corr = it.get("corr_score_pick")
        lines += ["", f"Correlation of score and offline-pick rate over all {len(it['rows'])} initialisations: "
                  f"{'-' if corr is None else f'{corr:.2f}'}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="umaze")
    p.add_argument("--run", help="offline run directory (default: docs/results/antmaze_mechanism/runs/<task>/offline "
                                 "when committed, else runs/mechanism/<task>/offline)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--branch-episodes", type=int, default=3, help="policy-set episodes branched per seed")
    p.add_argument("--every", type=int, default=35, help="env steps between branch points")
    p.add_argument("--episodes", type=int, default=30, help="episodes per share p and per initialisation")
    p.add_argument("--inits", type=int, default=10, help="new-policy initialisations (init spread)")
    p.add_argument("--parts", default="branch,share,inits")
    p.add_argument("--out", default=str(ROOT / "docs" / "results" / "antmaze_mechanism"))
    p.add_argument("--from-json", action="store_true", help="only rewrite <task>.md from <task>.json")
    args = p.parse_args(argv)
    out_path = Path(args.out) / f"{args.task}.json"
    if args.from_json:
        md = out_path.with_suffix(".md")
        md.write_text(markdown(json.loads(out_path.read_text())))
        print(md.read_text())
        return 0
    seeds = [int(s) for s in args.seeds.split(",")]
    committed = Path(args.out) / "runs" / args.task / "offline"
    run = Path(args.run) if args.run else (committed if committed.exists() else
                                           ROOT / "runs" / "mechanism" / args.task / "offline")
    c, dims, task, info, states = load(run, seeds)
    fns = functions(c)
    parts = set(args.parts.split(","))
    result = json.loads(out_path.read_text()) if out_path.exists() else {}
    result.update({"task": args.task, "run": str(run.relative_to(ROOT)) if run.is_relative_to(ROOT) else str(run),
                   "seeds": seeds, "inv_temperature": float(c.inv_temperature), "eval_epsilon": float(c.eval_epsilon),
                   "gamma": float(c.gamma), "episode_limit": task.max_episode_steps})
    t0 = time.time()
    if "branch" in parts:
        env = make_env(task)
        rows = []
        for i, s in enumerate(seeds):
            rows += branch_gaps(env, states[i], fns, jax.random.fold_in(jax.random.PRNGKey(s), 77),
                                args.branch_episodes, args.every, float(c.gamma), s)
            print(f"branch: seed {s} done, {len(rows)} branch points, {time.time() - t0:.0f} s", flush=True)
        result["branch"] = {"every": args.every, "episodes_per_seed": args.branch_episodes, "rows": rows,
                            "summary": summarize_gaps(rows),
                            "per_seed": {str(s): summarize_gaps([r for r in rows if r["seed"] == s])["all"]
                                         for s in seeds}}
    if "share" in parts:
        share = {}
        for p_new in (0.0, 0.1, 0.25, 0.5):
            share[f"{p_new:g}"] = {str(s): episodes_batch(task, states[i], fns, args.episodes, s, "mix", p_new)["score"]
                                   for i, s in enumerate(seeds)}
            print(f"share p={p_new:g}: {share[f'{p_new:g}']}, {time.time() - t0:.0f} s", flush=True)
        result["share"] = {"episodes": args.episodes, "score_by_p": share}
        result["step0_study"] = step0_of_study(args.task)
    if "inits" in parts:
        rows = []
        for i, s in enumerate(seeds):
            off = states[i]
            for j in range(args.inits):
                key = jax.random.fold_in(jax.random.PRNGKey(s), 5_000 + j)
                fresh = init_online_state(PEX, key, dims, c, _offline_of(off))
                r = episodes_batch(task, fresh, fns, args.episodes, s, "set",
                                   key=jax.random.fold_in(jax.random.PRNGKey(s), 6_000 + j))
                rows.append({"seed": s, "init": j, "score": r["score"], "offline_pick_rate": r["offline_pick_rate"]})
                print(f"init: seed {s} init {j}: score {r['score']:.0f}, offline picks {r['offline_pick_rate']:.2f}, "
                      f"{time.time() - t0:.0f} s", flush=True)
        scores = np.array([r["score"] for r in rows])
        picks = np.array([r["offline_pick_rate"] for r in rows])
        result["inits"] = {"episodes": args.episodes, "rows": rows,
                           "corr_score_pick": float(np.corrcoef(scores, picks)[0, 1]) if scores.std() > 0 else None}
    result["seconds"] = round(time.time() - t0, 1)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1) + "\n")
    out_path.with_suffix(".md").write_text(markdown(result))
    if "branch" in result:
        print(json.dumps(result["branch"]["summary"], indent=1))
    print(f"wrote {out_path}")
    return 0


def _offline_of(state):
    """The offline run's pieces of a PEX state (critic, value, target, frozen actor) as an offline state, so a fresh
    new policy can be added to it again."""
    from pex_jax.agents.iql import IQLState

    actor = state.actor.replace(params=state.offline_actor_params)
    return IQLState(actor=actor, critic=state.critic, target_critic_params=state.target_critic_params,
                    value=state.value)


if __name__ == "__main__":
    sys.exit(main())
