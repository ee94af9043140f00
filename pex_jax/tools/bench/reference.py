"""The reference PyTorch PEX side by side (`--reference PYTHON`, `make bench-reference`): its own IQL and PEX
classes (pinned commit, `pex_jax.tools.ref_pex`) run in a child process of their own venv, timed in
windows that alternate with pex-jax's equivalents (A B B A ...), at 1 seed and its AntMaze shapes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pex_jax.agents.algorithms import ALGORITHMS, make_offline_chunk, update_fn
from pex_jax.data.replay import ReplayBuffer, mixed_batch
from pex_jax.runner.workers import StepResult
from pex_jax.tools import ref_pex
from pex_jax.tools.bench.act import act_once
from pex_jax.tools.bench.ceiling import cost_flops
from pex_jax.tools.bench.components import EngineStepper
from pex_jax.tools.bench.config import BenchConfig
from pex_jax.tools.bench.harness import compile_timed, rate_stats, timed_window
from pex_jax.tools.bench.offline import offline_update_once
from pex_jax.tools.bench.problem import box_dims, init_offline_states, init_online_states, keys, synthetic_dataset
from pex_jax.tools.bench.report import bm

SIDE_FIGURES = {  # worker figure name -> (label, unit); 1 seed, PEX, the reference's AntMaze shapes
    "offline": ("offline IQL updates/s", "updates/s"),
    "pex_update": ("online PEX updates/s (update alone, half dataset / half buffer batch)", "updates/s"),
    "online_step": ("online PEX env-steps/s, env excluded (act + update + buffer insert)", "env-steps/s"),
    "act": ("PEX action selections/s (1 observation, host round trip)", "per s"),
}


def online_update_once(spec, config):
    """One online update on the runner's mixed batch (half dataset, half buffer), without acting."""
    update = update_fn(spec, config)
    batch_size, ratio = config.batch_size, spec.offline_ratio

    def one(state, online, online_size, key, dataset):
        key, k_batch, k_update = jax.random.split(key, 3)
        state, metrics = update(state, mixed_batch(k_batch, dataset, online, online_size, batch_size, ratio), k_update)
        return state, key, metrics

    return one


def project_side(bc: BenchConfig, config) -> dict:
    """pex-jax's side of each side-by-side figure: a callable, the work one call does, FLOPs per unit of work."""
    spec, obs_dim, act_dim = ALGORITHMS["pex"], bc.obs_dim, bc.act_dim
    dims = box_dims(obs_dim, act_dim)
    dataset = synthetic_dataset(bc.dataset_size, obs_dim, act_dim, seed=2)
    compile_s: dict[str, float] = {}
    # Offline: the runner's chunk of K updates in one call.
    k = max(2, bc.updates)
    off = [init_offline_states(keys(1, 1), dims, config), keys(1, 2)]
    chunk = jax.jit(jax.vmap(make_offline_chunk(config, k), in_axes=(0, 0, None)), donate_argnums=(0,))
    chunk_c, compile_s["offline_chunk"] = compile_timed(chunk, *off, dataset)
    once = jax.jit(jax.vmap(offline_update_once(config), in_axes=(0, 0, None)))
    offline_flops = cost_flops(once.lower(*off, dataset).compile())  # the chunk's scan hides its trip count

    def offline():
        off[0], off[1], m = chunk_c(off[0], off[1], dataset)
        return m

    # Online: the engine's step at one agent with the env excluded; the update alone; action selection.
    stepper = EngineStepper(bc, config, "pex", 1, 1, obs_dim, act_dim, bc.dataset_size)
    compile_s.update({f"engine {k}": v for k, v in stepper.compile_s.items()})
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(2, 1, obs_dim)).astype(np.float32)
    result = StepResult(obs[0], obs[1], np.array([-1.0]), np.zeros(1, bool), np.zeros(1, bool), np.zeros(1, bool))
    capacity = stepper.capacity
    buffers = ReplayBuffer.create(1, obs_dim, act_dim, capacity)
    buffers = buffers.replace(size=jnp.asarray(capacity // 2, jnp.int32), ptr=jnp.asarray(capacity // 2, jnp.int32))
    upd = {"states": init_online_states(spec, keys(1, 5), keys(1, 1), dims, config), "keys": keys(1, 6)}
    update = jax.jit(jax.vmap(online_update_once(spec, config), in_axes=(0, 0, None, 0, None)), donate_argnums=(0,))
    update_c, compile_s["update"] = compile_timed(update, upd["states"], buffers.data, buffers.size, upd["keys"],
                                                  dataset)
    acting = {"states": init_online_states(spec, keys(1, 7), keys(1, 1), dims, config), "keys": keys(1, 8)}
    obs0 = np.zeros((1, obs_dim), np.float32)
    act_c, compile_s["act"] = compile_timed(jax.jit(jax.vmap(act_once(spec, config))), acting["states"],
                                            acting["keys"], obs0)

    def online_step():
        return stepper.cycle(result, ["minus_one"], [True])  # ends with the download of the actions

    def pex_update():
        upd["states"], upd["keys"], m = update_c(upd["states"], buffers.data, buffers.size, upd["keys"], dataset)
        return m

    def act_call():
        acting["keys"], a, choice = act_c(acting["states"], acting["keys"], obs0)
        jax.device_get((a, choice))

    sides = {"offline": (offline, k, offline_flops), "pex_update": (pex_update, 1, cost_flops(update_c)),
             "online_step": (online_step, 1, stepper.flops), "act": (act_call, 1, cost_flops(act_c))}
    for fn, _, _ in sides.values():  # warm-up: first-call allocations
        jax.block_until_ready(fn())
    return {"sides": sides, "compile_s": compile_s, "buffer_capacity": capacity}


def project_window(fn: Callable, seconds: float) -> tuple[int, float]:
    return timed_window(fn, seconds, finish=jax.block_until_ready)


def bench_side_by_side(bc: BenchConfig, config, worker, threads: Sequence[int],
                       log: Callable[[str], None] = print) -> dict:
    """Each figure: pex-jax and the reference (at each thread count) in alternating windows (A B B A ...).

    `worker.window(figure, seconds, threads) -> (calls, seconds)` times the reference's side. The ratio
    divides pex-jax by the reference at its faster thread count; the range is over the reps, each
    rep's pex-jax window divided by the faster of that rep's reference windows.
    """
    project = project_side(bc, config)
    figures = []
    for name, (label, unit) in SIDE_FIGURES.items():
        fn, work, flops = project["sides"][name]
        rates: dict[Any, list[float]] = {"pex-jax": [], **{t: [] for t in threads}}
        order = ["pex-jax", *threads]
        for r in range(bc.reference_reps):
            for side in order if r % 2 == 0 else order[::-1]:
                if side == "pex-jax":
                    calls, dt = project_window(fn, bc.reference_window_s)
                    rates[side].append(calls * work / dt)
                else:
                    calls, dt = worker.window(name, bc.reference_window_s, side)
                    rates[side].append(calls / dt)
        ours = rate_stats(rates["pex-jax"])
        ref = {str(t): rate_stats(rates[t]) for t in threads}
        per_rep = [rates["pex-jax"][r] / max(rates[t][r] for t in threads) for r in range(bc.reference_reps)]
        fig = {"figure": name, "label": label, "unit": unit, "flops_per_unit": flops, "project": ours,
               "reference": ref, "reference_best_threads": int(max(ref, key=lambda t: ref[t]["best"])),
               "ratio": {"best": ours["best"] / max(v["best"] for v in ref.values()),
                         "median": ours["median"] / max(v["median"] for v in ref.values())},
               "ratio_range": [min(per_rep), max(per_rep)]}
        log(f"side by side, {label}: pex-jax {bm(ours)}, reference "
            + ", ".join(f"{bm(v)} ({t} thr)" for t, v in ref.items())
            + f" -> x{fig['ratio']['best']:.2f} (best), x{min(per_rep):.2f}-{max(per_rep):.2f} per rep")
        figures.append(fig)
    return {"reference": dict(worker.info), "threads": [int(t) for t in threads], "window_s": bc.reference_window_s,
            "reps": bc.reference_reps, "shapes": {"obs": bc.obs_dim, "act": bc.act_dim,
                                                  "hidden": list(bc.hidden_dims), "batch": bc.batch_size},
            "dataset_rows": bc.dataset_size, "project_buffer_rows": project["buffer_capacity"] // 2,
            "figures": figures, "compile_s": project["compile_s"]}


def reference_hparams(config) -> dict:
    """The project's hyperparameters under the reference's names (speed does not depend on them)."""
    return {"lr": config.lr, "expectile": config.expectile, "beta": config.beta, "discount": config.gamma,
            "target_rate": config.tau, "inv_temperature": config.inv_temperature,
            "offline_steps": config.offline_steps}


def prepare_reference(bc: BenchConfig, log: Callable[[str], None] = print) -> dict | None:
    """Check the reference's Python and put its code in place before anything is timed (fails fast).

    None when `bc.reference == "auto"` and no .venv-ref with torch is there.
    """
    python = bc.reference
    if python == "auto":
        python = str(Path(".venv-ref") / "bin" / "python")
        if not Path(python).exists():
            log("reference: no .venv-ref here (make bench-reference builds it); side by side skipped")
            return None
    torch_version = ref_pex.check_python(python)
    dest = bc.reference_dir or str(Path(".ref") / f"PEX-{bc.reference_commit}")
    source = ref_pex.prepare_source(dest, bc.reference_commit, bc.reference_src or None, log=log)
    return {"python": python, "torch": torch_version, "dir": dest, "source": source}
