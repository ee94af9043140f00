"""The benchmark's outputs, and the performance changes it measures keeping the numbers.

No timings are asserted: the machines are shared and noisy; `make bench` reports them.
"""

import json
import os
import subprocess
import sys
from functools import partial

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pex_jax.agents import Dims, make_offline_chunk, over_seeds
from pex_jax.bench import (
    FAST_COMPILE,
    BenchConfig,
    init_offline_states,
    parse_args,
    scaling_check,
    synthetic_dataset,
    to_markdown,
)
from pex_jax.multitask import make_multitask_offline_chunk, stack_datasets
from pex_jax.networks import Dense, dense

FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"


@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory):
    """One `--quick` run in a subprocess, with XLA set to compile fast (3x fewer seconds; timings are not checked)."""
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": FAST_COMPILE_FLAGS}
    proc = subprocess.run([sys.executable, "-m", "pex_jax.bench", "--quick", "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "bench.json").read_text()), (out / "bench.md").read_text()


def test_quick_bench_reports_offline_rates_per_seed_and_total_with_baseline_ratios(quick_bench):
    result, _ = quick_bench
    assert [r["seeds"] for r in result["offline"]] == [1, 2]
    for r in result["offline"]:
        for key in ("fused_per_seed", "baseline_per_seed"):
            assert r[key]["best"] > 0 and r[key]["median"] > 0
        assert r["fused_total"]["best"] == pytest.approx(r["fused_per_seed"]["best"] * r["seeds"])
        assert set(r["ratio_to_baseline"]) == {"best", "median"}
        assert {"fused_chunk", "baseline_update"} <= set(r["compile_s"])
        assert r["efficiency_vs_1_seed"] > 0
    two = result["offline"][1]
    assert two["seeds_looped"] and set(two["looped_to_vmap"]) == {"best", "median"}  # CPU: seeds looped


def test_quick_bench_reports_the_online_loop_with_and_without_the_env(quick_bench):
    result, _ = quick_bench
    (online,) = result["online"]
    assert online["algo"] == "pex" and online["obs_dim"] == 31  # AntMaze_UMaze-v4, flattened like the runner
    for mode in ("env", "no_env"):
        x = online[mode]
        assert x["env_steps_per_s_per_seed"]["best"] > 0
        assert x["baseline_env_steps_per_s_per_seed"]["best"] > 0
        assert set(x["host_ms_per_step"]) == {"env_step", "host_prep", "insert_call", "obs_to_device", "step_call",
                                              "device_get"}
    assert online["no_env"]["host_ms_per_step"]["env_step"] < online["env"]["host_ms_per_step"]["env_step"]


def test_quick_bench_reports_act_multitask_compile_memory_and_device(quick_bench):
    result, md = quick_bench
    assert result["act"]["act_per_s"]["best"] > 0
    assert result["multitask"]["tasks"] == 2 and result["multitask"]["ratio_to_sequential"]["best"] > 0
    assert all(v > 0 for v in result["compile_s"].values()) and len(result["compile_s"]) >= 8
    assert result["memory"]["peak_rss_mib"] > 0
    assert result["machine"]["platform"] == "cpu" and result["machine"]["device_count"] >= 1
    assert result["reference"]["offline_updates_per_s_2_threads"] == 190.0
    for heading in ("## Offline IQL updates/s", "## Online loop", "## Action selection", "## Several tasks",
                    "## Compile times", "## Memory"):
        assert heading in md


def test_markdown_renders_from_the_json_alone(quick_bench):
    result, md = quick_bench
    assert to_markdown(json.loads(json.dumps(result))) == md


def test_scaling_check_compares_the_largest_seed_count_with_n_times_one_seed():
    rows = [{"seeds": 1, "fused_total": {"best": 100.0}}, {"seeds": 10, "fused_total": {"best": 850.0}}]
    check = scaling_check(rows, 0.8)
    assert check["passed"] and check["efficiency"] == pytest.approx(0.85)
    assert not scaling_check(rows, 0.9)["passed"]
    assert scaling_check(rows[1:], 0.8) is None  # nothing to compare with


def test_cli_parses_seed_lists_and_rejects_unknown_parts():
    bc = parse_args(["--seeds", "1,10", "--online-seeds", "1", "--skip", "act", "--out", "x"])
    assert bc.seeds == [1, 10] and bc.online_seeds == [1] and bc.skip == ["act"] and not bc.quick
    assert parse_args(["--quick"]).hidden_dims == BenchConfig.quick_config().hidden_dims
    with pytest.raises(SystemExit):
        parse_args(["--skip", "everything"])
    with pytest.raises(SystemExit):
        parse_args(["--seeds", "0,2"])
    with pytest.raises(SystemExit):
        parse_args(["--algos", "offline"])


# --- The optimised core keeps the numbers ---

def test_dense_gradients_match_autodiff_of_the_plain_matmul():
    """Narrow (5 -> 3) and wide (3 -> 9) kernels, extra leading axes, and a single vector."""
    cases = [((7, 5), (5, 3)), ((7, 3), (3, 9)), ((2, 4, 6), (6, 6)), ((5,), (5, 2))]

    def grads(f, x, k, b, probe):
        return jax.grad(lambda x, k, b: jnp.sum(jnp.sin(f(x, k, b)) * probe), argnums=(0, 1, 2))(x, k, b)

    @partial(jax.jit, compiler_options=FAST_COMPILE)
    def both(args):
        return [(grads(dense, *a), grads(lambda x, k, b: x @ k + b, *a), dense(*a[:3]), a[0] @ a[1] + a[2])
                for a in args]

    args = []
    for i, (x_shape, k_shape) in enumerate(cases):
        kx, kk, kb, kg = jax.random.split(jax.random.PRNGKey(i), 4)
        args.append((jax.random.normal(kx, x_shape), jax.random.normal(kk, k_shape),
                     jax.random.normal(kb, k_shape[-1:]), jax.random.normal(kg, x_shape[:-1] + k_shape[-1:])))
    for ours, plain, y_ours, y_plain in both(args):
        chex.assert_trees_all_close(ours, plain, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(y_ours, y_plain)


def test_dense_module_initialises_and_computes_like_flax_dense():
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 6))
    ref = nn.Dense(5, kernel_init=nn.initializers.xavier_uniform(), bias_init=nn.initializers.zeros)
    ours = Dense(5)
    p_ref, p_ours = ref.init(jax.random.PRNGKey(2), x), ours.init(jax.random.PRNGKey(2), x)
    chex.assert_trees_all_equal(p_ref, p_ours)
    np.testing.assert_array_equal(ref.apply(p_ref, x), ours.apply(p_ours, x))


def test_multitask_chunk_gives_each_task_and_seed_the_result_of_running_alone():
    """Task 0 fills the padded length (num_rows path == plain path), task 1 is padded."""
    from pex_jax.config import default_config

    config = default_config()
    config.hidden_dims, config.batch_size = (16, 16), 8
    dims = Dims(3, 2, (-1.0, -1.0), (1.0, 1.0))
    datasets = [synthetic_dataset(40, 3, 2, seed=1), synthetic_dataset(25, 3, 2, seed=2)]
    stacked, rows = stack_datasets(datasets)
    assert stacked.observations.shape == (2, 40, 3) and rows.tolist() == [40, 25]
    np.testing.assert_array_equal(stacked.observations[1, 25:], 0.0)
    keys = jax.random.split(jax.random.PRNGKey(0), 4).reshape(2, 2, -1)
    states = init_offline_states(keys, dims, config)  # (tasks, seeds, ...)
    multi = jax.jit(make_multitask_offline_chunk(config, 4), compiler_options=FAST_COMPILE)
    together = multi(states, keys, stacked, rows)
    single = jax.jit(jax.vmap(make_offline_chunk(config, 4), in_axes=(0, 0, None)), compiler_options=FAST_COMPILE)
    for t, data in enumerate(datasets):
        alone = single(jax.tree.map(lambda x, t=t: x[t], states), keys[t], data)
        mine = jax.tree.map(lambda x, t=t: x[t], together)
        chex.assert_trees_all_close(jax.tree.leaves(mine), jax.tree.leaves(alone), rtol=1e-6, atol=1e-7)


def test_looping_seeds_on_cpu_matches_the_vmapped_chunk():
    from pex_jax.config import default_config

    config = default_config()
    config.hidden_dims, config.batch_size = (16, 16), 8
    dims = Dims(3, 2, (-1.0, -1.0), (1.0, 1.0))
    data = synthetic_dataset(40, 3, 2)
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    states = init_offline_states(keys, dims, config)
    chunk = make_offline_chunk(config, 3)
    looped = jax.jit(over_seeds(chunk, (0, 0, None), sequential=True), compiler_options=FAST_COMPILE)
    vmapped = jax.jit(over_seeds(chunk, (0, 0, None), sequential=False), compiler_options=FAST_COMPILE)
    a, b = looped(states, keys, data), vmapped(states, keys, data)
    chex.assert_trees_all_close(jax.tree.leaves(a), jax.tree.leaves(b), rtol=1e-5, atol=1e-6)


def test_stack_datasets_rejects_tasks_with_different_shapes():
    with pytest.raises(ValueError, match="equal obs/action shapes"):
        stack_datasets([synthetic_dataset(10, 3, 2), synthetic_dataset(10, 4, 2)])
