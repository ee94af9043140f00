"""Action selection: one seed, one observation, host round trip included (a latency figure)."""

from __future__ import annotations

import jax
import numpy as np

from pex_jax.agents.algorithms import ALGORITHMS, act
from pex_jax.tools.bench.ceiling import cost_flops
from pex_jax.tools.bench.config import BenchConfig
from pex_jax.tools.bench.harness import alternate, compile_timed, stats
from pex_jax.tools.bench.problem import box_dims, init_online_states, keys


def act_once(spec, config):
    """(state, key, obs) -> (key, action, choice): one acting call as the runner's."""

    def one(state, key, obs):
        key, k_act = jax.random.split(key)
        action, choice = act(spec, state, k_act, obs, config, evaluate=False)
        return key, action, choice

    return one


def bench_act(bc: BenchConfig, config, algo: str) -> dict:
    """Single-seed, single-observation action selections per second, host round trip included."""
    spec = ALGORITHMS[algo]
    dims = box_dims(bc.obs_dim, bc.act_dim)
    states = init_online_states(spec, keys(1, 3), keys(1, 1), dims, config)
    act_fn = jax.jit(jax.vmap(act_once(spec, config)))
    box = [keys(1, 4)]
    obs = np.zeros((1, bc.obs_dim), np.float32)
    compiled, compile_s = compile_timed(act_fn, states, box[0], obs)
    n = 20 if bc.quick else 500

    def run():
        for _ in range(n):
            box[0], a, c = compiled(states, box[0], obs)
            jax.device_get((a, c))

    run()
    times = alternate({"act": run}, bc.reps)
    return {"algo": algo, "act_per_s": stats(times["act"], n), "flops_per_call": cost_flops(compiled),
            "compile_s": compile_s}
