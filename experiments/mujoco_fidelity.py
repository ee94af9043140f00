"""How far today's simulator is from the one D4RL's locomotion files were collected in: the same states and
actions stepped in MuJoCo 2.x (the model files of gym 0.23.1, D4RL's gym) and in MuJoCo 4 (Gymnasium's v4 model
files, what runs here), the divergence of qpos, qvel and the observation after 1, 10 and 100 steps.

    make mujoco-fidelity   # builds .venv-mj2 (Python 3.10, mujoco 2.2.0); writes docs/results/mujoco_fidelity.md

Three subcommands, so that each simulator runs in its own venv:
- `states` (this venv): start states from Gymnasium v4 rollouts under uniform random actions, plus 100 random
  actions per state (all seeded);
- `step --xml-dir DIR` (any venv with `mujoco` and numpy, nothing else of this project): step every state with its
  actions in the model files of DIR, recording qpos and qvel after each step;
- `compare`: the table, from three step files: MuJoCo 2.x + gym 0.23.1's files (D4RL's pair); MuJoCo 2.x +
  Gymnasium's files; MuJoCo 4 + Gymnasium's files (what runs here). The middle one separates the engine from the
  model files (gym 0.23.1's hopper and walker2d files use global coordinates, which MuJoCo 4 cannot load).

Stepping is Gymnasium's and mujoco_py's: set qpos/qvel, `mj_forward`; per env step, ctrl = the clipped action,
then `frame_skip` calls of `mj_step`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ENVS = {  # name: (Gymnasium v4 id, model file, frame_skip, velocities clipped in the observation)
    "hopper": ("Hopper-v4", "hopper.xml", 4, True),
    "halfcheetah": ("HalfCheetah-v4", "half_cheetah.xml", 5, False),
    "walker2d": ("Walker2d-v4", "walker2d.xml", 4, True),
    # this project's D4RL AntMaze (umaze): its model as MuJoCo 4 builds it, written out by `states`
    "antmaze": ("antmaze-umaze-v2", "antmaze.xml", 5, False),
}
HORIZONS = (1, 10, 100)


def make_states(env_name: str, count: int, seed: int, out: Path, xml_out: Path | None = None) -> None:
    """`count` start states from seeded rollouts under random actions (a state every 7 steps, new episode on
    termination), and 100 uniform random actions for each. For the ant maze, also its model file for both
    engines in `xml_out`/{mj4,mj2}."""
    import gymnasium as gym

    import pex_jax.envs  # noqa: F401  (silences v4's deprecation)

    if env_name == "antmaze":
        from pex_jax.envs.d4rl_antmaze import make_d4rl_antmaze

        env = make_d4rl_antmaze(ENVS[env_name][0])
        if xml_out is not None:
            write_antmaze_models(env.model, Path(xml_out))
    else:
        env = gym.make(ENVS[env_name][0])
    rng = np.random.default_rng(seed)
    qpos, qvel = [], []
    env.reset(seed=seed)
    step = 0
    while len(qpos) < count:
        _, _, term, trunc, _ = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        step += 1
        if term or trunc:
            env.reset(seed=int(rng.integers(2**31)))
        elif step % 7 == 0:
            qpos.append(env.unwrapped.data.qpos.copy())
            qvel.append(env.unwrapped.data.qvel.copy())
    actions = rng.uniform(-1, 1, (count, max(HORIZONS), env.action_space.shape[0]))
    np.savez(out, qpos=np.array(qpos), qvel=np.array(qvel), actions=actions)


def write_antmaze_models(model, out: Path) -> None:
    """The ant maze model as MuJoCo 4 holds it (D4RL's patched physics included), for MuJoCo 4 (`mj4/`) and, with
    the few attributes MuJoCo 2.x does not know rewritten (texture colour space, light type, an unlimited
    free joint), for MuJoCo 2.x (`mj2/`). Nothing that the physics reads changes."""
    import re

    import mujoco

    (out / "mj4").mkdir(parents=True, exist_ok=True)
    (out / "mj2").mkdir(parents=True, exist_ok=True)
    path = out / "mj4" / ENVS["antmaze"][1]
    mujoco.mj_saveLastXML(str(path), model)
    text = path.read_text().replace(' colorspace="auto"', "")
    text = re.sub(r'(<light[^>]*?) type="directional"', r'\1 directional="true"', text)
    text = text.replace('<texture type="skybox"', '<texture name="skybox" type="skybox"')
    text = text.replace('<joint name="root" type="free"', '<joint name="root" type="free" limited="false"')
    (out / "mj2" / ENVS["antmaze"][1]).write_text(text)


def step_states(env_name: str, xml_dir: Path, states: Path, out: Path, perturb: float = 0.0) -> None:
    """qpos/qvel after every step of every state's actions, in the `mujoco` of this interpreter; `perturb` adds
    seeded noise of that scale to the start qpos (the chaos floor: how far rounding-sized differences grow)."""
    import mujoco

    _, xml, frame_skip, _ = ENVS[env_name]
    model = mujoco.MjModel.from_xml_path(str(Path(xml_dir) / xml))
    data = mujoco.MjData(model)
    s = np.load(states)
    n, horizon = s["actions"].shape[:2]
    qpos = np.zeros((n, horizon, model.nq))
    qvel = np.zeros((n, horizon, model.nv))
    low, high = model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1]
    for i in range(n):
        mujoco.mj_resetData(model, data)
        noise = perturb * np.random.default_rng(i).standard_normal(model.nq) if perturb else 0.0
        data.qpos[:], data.qvel[:] = s["qpos"][i] + noise, s["qvel"][i]
        mujoco.mj_forward(model, data)
        for t in range(horizon):
            data.ctrl[:] = np.clip(s["actions"][i, t], low, high)
            for _ in range(frame_skip):
                mujoco.mj_step(model, data)
            qpos[i, t], qvel[i, t] = data.qpos, data.qvel
    np.savez(out, qpos=qpos, qvel=qvel, mujoco=mujoco.__version__, xml_dir=str(xml_dir))


def observation(env_name: str, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
    """The v2/v3/v4 observation: qpos without x, then qvel (clipped to +-10 for hopper and walker2d); the ant
    maze's: all of qpos (its x-y offset to D4RL's frame cancels in a difference), then qvel."""
    if env_name == "antmaze":
        return np.concatenate([qpos, qvel], axis=-1)
    vel = np.clip(qvel, -10, 10) if ENVS[env_name][3] else qvel
    return np.concatenate([qpos[..., 1:], vel], axis=-1)


def divergence(env_name: str, a: dict, b: dict) -> dict[int, dict[str, float]]:
    """Median and 90th percentile over states of the largest absolute difference, per horizon."""
    out = {}
    for h in HORIZONS:
        row = {}
        for name, (x, y) in {"qpos": (a["qpos"], b["qpos"]), "qvel": (a["qvel"], b["qvel"]),
                             "obs": (observation(env_name, a["qpos"], a["qvel"]),
                                     observation(env_name, b["qpos"], b["qvel"]))}.items():
            d = np.abs(x[:, h - 1] - y[:, h - 1]).max(axis=-1)
            row[name] = (float(np.median(d)), float(np.quantile(d, 0.9)))
        out[h] = row
    return out


def compare(env_names: list[str], work: Path, out_md: Path) -> None:
    lines = ["# MuJoCo 2.x vs 4: the same states and actions, stepped in both", "",
             "For the ant maze (this project's D4RL AntMaze umaze, whose model is Gymnasium-Robotics' patched to "
             "D4RL's physics) both engines load the model MuJoCo 4 builds, written out; it has no older file.", "",
             "Generated by `make mujoco-fidelity` (`experiments/mujoco_fidelity.py`). Per env, start states from "
             "Gymnasium v4 rollouts under uniform random actions, each stepped with 100 uniform random actions. "
             "Cells: the largest absolute difference over the vector's entries, median / 90th percentile over the "
             "states.", ""]
    results = {}
    for env_name in env_names:
        runs = {k: dict(np.load(work / f"{env_name}-{k}.npz")) for k in ("mj2", "mj2-gymnasium", "mj4", "mj4-1e-9")
                if (work / f"{env_name}-{k}.npz").exists()}
        n = runs["mj2"]["qpos"].shape[0]
        scale = np.median(np.abs(runs["mj4"]["qvel"]).max(axis=-1))
        pairs = {"as deployed: MuJoCo 2.x + gym 0.23.1's file vs MuJoCo 4 + Gymnasium's v4 file": ("mj2", "mj4"),
                 "engine only: MuJoCo 2.x vs 4, both on Gymnasium's file": ("mj2-gymnasium", "mj4"),
                 "model file only: gym 0.23.1's vs Gymnasium's, both in MuJoCo 2.x": ("mj2", "mj2-gymnasium"),
                 "chaos floor: MuJoCo 4, start qpos moved by 1e-9": ("mj4", "mj4-1e-9")}
        if env_name == "antmaze":  # one model file, loaded by both engines
            pairs = {"engine: MuJoCo 2.x vs 4 on the same model": ("mj2", "mj4"),
                     "chaos floor: MuJoCo 4, start qpos moved by 1e-9": ("mj4", "mj4-1e-9")}
        pairs = {k: v for k, v in pairs.items() if v[0] in runs and v[1] in runs}
        versions = {k: str(v["mujoco"]) for k, v in runs.items()}
        lines += [f"## {env_name} ({n} states; MuJoCo {versions['mj2']} vs {versions['mj4']}; typical largest "
                  f"|qvel| {scale:.2g})", "",
                  "| comparison | steps | qpos | qvel | observation |", "|---|---|---|---|---|"]
        results[env_name] = {}
        for label, (x, y) in pairs.items():
            div = divergence(env_name, runs[x], runs[y])
            results[env_name][label] = div
            for h, row in div.items():
                cells = " | ".join(f"{row[k][0]:.2g} / {row[k][1]:.2g}" for k in ("qpos", "qvel", "obs"))
                lines.append(f"| {label} | {h} | {cells} |")
        lines.append("")
    out_md.write_text("\n".join(lines))
    (out_md.with_suffix(".json")).write_text(json.dumps(results, indent=1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("states")
    st.add_argument("--env", required=True, choices=list(ENVS))
    st.add_argument("--count", type=int, default=300)
    st.add_argument("--seed", type=int, default=0)
    st.add_argument("--out", type=Path, required=True)
    st.add_argument("--xml-out", type=Path, help="antmaze: where its model files for both engines go")
    sp = sub.add_parser("step")
    sp.add_argument("--env", required=True, choices=list(ENVS))
    sp.add_argument("--xml-dir", type=Path, required=True)
    sp.add_argument("--states", type=Path, required=True)
    sp.add_argument("--out", type=Path, required=True)
    sp.add_argument("--perturb", type=float, default=0.0)
    cp = sub.add_parser("compare")
    cp.add_argument("--envs", default=",".join(ENVS))
    cp.add_argument("--work", type=Path, required=True)
    cp.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    if a.cmd == "states":
        make_states(a.env, a.count, a.seed, a.out, a.xml_out)
    elif a.cmd == "step":
        step_states(a.env, a.xml_dir, a.states, a.out, a.perturb)
    else:
        compare(a.envs.split(","), a.work, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
