"""The benchmark's outputs, and the performance changes it measures keeping the numbers.

No timings are asserted: the machines are shared and noisy; `make bench` reports them.
"""

import copy
import json
import os
import subprocess
import sys
import textwrap
from functools import partial

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pex_jax.agents.algorithms import Dims, make_offline_chunk, over_seeds
from pex_jax.agents.networks import Dense, dense
from pex_jax.multitask import make_multitask_offline_chunk, stack_datasets
from pex_jax.tools import bench, ref_pex
from pex_jax.tools.bench import (
    FAST_COMPILE,
    BenchConfig,
    fraction_of_ceiling,
    init_offline_states,
    parse_args,
    scaling_check,
    synthetic_dataset,
    to_markdown,
)

FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"


@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory):
    """One `--quick` run in a subprocess, with XLA set to compile fast (3x fewer seconds; timings are not checked)."""
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": FAST_COMPILE_FLAGS}
    proc = subprocess.run([sys.executable, "-m", "pex_jax.tools.bench", "--quick", "--out", str(out)], env=env,
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
    for heading in ("## Ceiling", "## Offline IQL updates/s", "## Online loop", "## Action selection",
                    "## Several tasks", "## Compile times", "## Memory", "## Context"):
        assert heading in md
    assert "side_by_side" not in result and "## The reference PyTorch PEX" not in md  # only when asked for


def test_quick_bench_measures_the_matmul_ceiling_and_reports_each_rate_as_a_fraction_of_it(quick_bench):
    result, md = quick_bench
    c = result["ceiling"]
    assert set(c["matmul"]) == {"update shape", "large"}
    assert c["matmul"]["update shape"]["m"] == 32 and c["matmul"]["update shape"]["n"] == 32  # batch x hidden
    # 2 windows each at the start and at the end; interleaved (after a warm-up window): offline 1 and 2 seeds
    # (both sizes), online 1 seed with and without the env (update shape only)
    assert c["matmul"]["large"]["windows"] == 4 + 2 * 3
    assert c["matmul"]["update shape"]["windows"] == 4 + 2 * 3 + 2 * 2
    assert all(x["best"] > 0 for x in c["matmul"].values())
    assert c["peak_gflops"] == max(x["best"] for x in c["matmul"].values())
    peak = c["peak_gflops"]
    for r in result["offline"]:
        assert r["flops_per_update"] > 1e6  # XLA's cost analysis of one IQL update at the quick shapes
        assert r["fraction_of_ceiling"]["best"] == pytest.approx(r["fused_total"]["best"] * r["flops_per_update"]
                                                                 / (peak * 1e9))
    (online,) = result["online"]
    assert online["flops_per_env_step"] > online["flops_per_update"] > 0  # the fused step acts too
    for mode in ("env", "no_env"):
        assert online[mode]["fraction_of_ceiling"]["best"] == pytest.approx(
            online[mode]["env_steps_per_s_total"]["best"] * online["flops_per_env_step"] / (peak * 1e9))
    assert 0 < result["act"]["fraction_of_ceiling"]["best"] < result["offline"][0]["fraction_of_ceiling"]["best"]
    assert "total, fraction of ceiling" in md and "ceiling at the peak" in md


def test_markdown_renders_from_the_json_alone(quick_bench):
    result, md = quick_bench
    assert to_markdown(json.loads(json.dumps(result))) == md


def _strip_derived(tree):
    if isinstance(tree, dict):
        return {k: _strip_derived(v) for k, v in tree.items() if k != "fraction_of_ceiling"}
    return [_strip_derived(v) for v in tree] if isinstance(tree, list) else tree


def _before_context(md: str) -> str:
    return md.split("## Context")[0]


def test_markdown_is_rebuilt_from_measured_fields_only(quick_bench):
    """No figure from another machine is a denominator: context values can change and nothing else does;
    the fractions are recomputed from the measured rate, FLOPs and peak, not read back."""
    result, md = quick_bench
    assert not hasattr(bench, "REFERENCE")
    assert result["context"] and all({"figure", "value", "measured"} <= set(c) for c in result["context"])
    other = copy.deepcopy(result)
    for c in other["context"]:
        c["value"] = 123456789.0
    assert _before_context(to_markdown(other)) == _before_context(md)
    assert to_markdown(_strip_derived(result)) == md  # stored fractions are not what the Markdown prints


def test_fraction_of_ceiling_is_rate_times_flops_over_the_peak():
    assert fraction_of_ceiling(100.0, 0.5e9, 200.0) == pytest.approx(0.25)  # 100/s x 0.5 GFLOP / 200 GFLOP/s
    assert fraction_of_ceiling(3000.0, 2e6, 12.0) == pytest.approx(0.5)  # 6 GFLOP/s of 12
    assert fraction_of_ceiling(3000.0, 2e6, 24.0) == pytest.approx(0.25)  # twice the peak, half the fraction
    for flops, peak in ((None, 12.0), (0.0, 12.0), (2e6, None), (2e6, 0.0)):
        assert fraction_of_ceiling(3000.0, flops, peak) is None


def test_markdown_prints_each_rate_as_its_fraction_of_the_current_peak(quick_bench):
    """Rates set so that, at a new peak, the fractions are round numbers: the Markdown must show those, not the
    fractions stored in the JSON for the old peak."""
    result, _ = quick_bench
    scaled = copy.deepcopy(result)
    peak = 1000.0  # GFLOP/s
    scaled["ceiling"]["peak_gflops"] = peak
    off = scaled["offline"][0]
    off["fused_total"]["best"] = 0.25 * peak * 1e9 / off["flops_per_update"]
    off["fused_total"]["median"] = 0.10 * peak * 1e9 / off["flops_per_update"]
    on = scaled["online"][0]
    on["env"]["env_steps_per_s_total"]["best"] = 0.5 * peak * 1e9 / on["flops_per_env_step"]
    on["env"]["env_steps_per_s_total"]["median"] = 0.05 * peak * 1e9 / on["flops_per_env_step"]
    act = scaled["act"]
    act["act_per_s"]["best"] = act["act_per_s"]["median"] = 0.0005 * peak * 1e9 / act["flops_per_call"]
    md = to_markdown(scaled)
    assert "| 25% / 10% |" in md.split("## Offline")[1].split("\n")[4]  # the 1-seed row
    online_rows = md.split("## Online loop")[1].split("### Host time")[0]
    assert [row for row in online_rows.splitlines() if "| 50% / 5.0% |" in row], online_rows
    assert "fraction of ceiling 0.05% / 0.05%" in md.split("## Action selection")[1]


def _fake_side_by_side(monkeypatch, project_rates, reference_rates, reps=4):
    """bench_side_by_side with scripted rates (calls per 1 s window) for both sides; returns (result, order)."""
    order = []
    sides = {name: (f"fn-{name}", 1, 1e9) for name in bench.SIDE_FIGURES}
    monkeypatch.setattr(bench, "_project_side", lambda bc, config: {"sides": sides, "compile_s": {},
                                                                    "buffer_capacity": 10})
    count = {"p": 0}

    def project_window(fn, seconds):
        order.append("P")
        count["p"] += 1
        return project_rates[(count["p"] - 1) % reps], 1.0

    class Worker:
        info = {"ready": True, "torch": "x", "commit": "b0ae11e" + "0" * 33, "patches": ["a patch"], "buffer_rows": 5}
        calls = {1: 0, 2: 0}

        def window(self, figure, seconds, threads):
            order.append(f"R{threads}")
            self.calls[threads] += 1
            return reference_rates[threads][(self.calls[threads] - 1) % reps], 1.0

    monkeypatch.setattr(bench, "_project_window", project_window)
    bc = BenchConfig.quick_config(reference_reps=reps)
    return bench.bench_side_by_side(bc, None, Worker(), [1, 2], log=lambda s: None), order


def test_side_by_side_alternates_windows_and_divides_by_the_faster_reference(monkeypatch):
    sbs, order = _fake_side_by_side(monkeypatch, [100, 120, 90, 110], {1: [50, 40, 60, 50], 2: [30, 80, 20, 10]})
    assert order[:12] == ["P", "R1", "R2", "R2", "R1", "P", "P", "R1", "R2", "R2", "R1", "P"]  # A B B A per figure
    assert len(order) == 4 * 12
    fig = sbs["figures"][0]
    assert fig["figure"] == "offline" and fig["project"]["best"] == 120 and fig["reference"]["2"]["best"] == 80
    assert fig["ratio"]["best"] == pytest.approx(120 / 80)  # the reference at its faster thread count
    assert fig["ratio"]["median"] == pytest.approx(105 / 50)
    assert fig["ratio_range"] == pytest.approx([1.5, 2.2])  # per rep: 100/50, 120/80, 90/60, 110/50
    result = {"side_by_side": sbs, "ceiling": {"peak_gflops": 1000.0}}
    md = "\n".join(bench.side_by_side_markdown(sbs, 1000.0))
    assert "| **1.50x** / 2.10x | 1.50-2.20x | 1 | 12% / 8.0% |" in md  # fraction = 120 x 1 GFLOP / 1000 GFLOP/s
    assert "- a patch" in md and "b0ae11e" in md
    bench.attach_fractions(result)
    assert fig["project"]["fraction_of_ceiling"]["best"] == pytest.approx(0.12)


def _git_repo(path, versions):
    """A git repo whose commits write pex/algorithms/pex.py with each text in turn; returns the commit ids."""
    run = partial(subprocess.run, check=True, capture_output=True, text=True, cwd=path)
    run(["git", "init", "-q"])
    commits = []
    for text in versions:
        (path / "pex" / "algorithms").mkdir(parents=True, exist_ok=True)
        (path / "pex" / "algorithms" / "pex.py").write_text(text)
        run(["git", "add", "-A"])
        run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", text])
        commits.append(run(["git", "rev-parse", "HEAD"]).stdout.strip())
    return commits


def test_reference_source_comes_from_a_path_at_the_pinned_commit_or_fails_with_one_clear_message(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    first, second = _git_repo(repo, ["old", "new"])
    dest = tmp_path / "ref"
    info = ref_pex.prepare_source(dest, first[:7], repo, log=lambda s: None)
    assert info["commit"] == first and (dest / "pex" / "algorithms" / "pex.py").read_text() == "old"
    assert ref_pex.prepare_source(dest, first[:7], repo, log=lambda s: None) == info  # reused
    with pytest.raises(ref_pex.RefBenchError, match=f"is not in the git repository.*{second[:7]}"):
        ref_pex.prepare_source(tmp_path / "other", "0" * 7, repo, log=lambda s: None)
    copied = ref_pex.prepare_source(tmp_path / "copy", first[:7], dest, log=lambda s: None)  # a plain tree
    assert copied["commit"].startswith(first) and (tmp_path / "copy" / "pex" / "algorithms" / "pex.py").exists()
    with pytest.raises(ref_pex.RefBenchError, match="does not exist"):
        ref_pex.prepare_source(tmp_path / "x", first[:7], tmp_path / "missing", log=lambda s: None)
    with pytest.raises(ref_pex.RefBenchError, match="git clone .* failed.*pass REF_SRC="):
        ref_pex.prepare_source(tmp_path / "y", first[:7], None, url=f"file://{tmp_path}/nothing", log=lambda s: None)
    assert not (tmp_path / "y").exists() and not (tmp_path / "y.partial").exists()


def test_reference_worker_speaks_one_json_line_per_window_and_reports_worker_errors(tmp_path):
    fake = tmp_path / "fake-python"
    fake.write_text(f"#!{sys.executable}\n" + textwrap.dedent("""
        import json, sys
        if "--obs-dim" not in sys.argv or sys.argv[sys.argv.index("--obs-dim") + 1] != "29":
            print(json.dumps({"error": "wrong arguments"}), flush=True)
            sys.exit(1)
        print(json.dumps({"ready": True, "patches": ["p"]}), flush=True)
        for line in sys.stdin:
            req = json.loads(line)
            if req["cmd"] == "quit":
                break
            print(json.dumps({"calls": req["threads"] * 10, "seconds": req["seconds"]}), flush=True)
    """))
    fake.chmod(0o755)
    kw = dict(act_dim=8, hidden_dims=(4, 4), batch_size=2, hp={}, threads=2)
    with ref_pex.ReferenceWorker(str(fake), tmp_path, obs_dim=29, **kw) as worker:
        assert worker.info["patches"] == ["p"]
        assert worker.window("offline", 0.5, 2) == (20, 0.5)
    assert worker.proc.poll() == 0
    with pytest.raises(ref_pex.RefBenchError, match="wrong arguments"):
        ref_pex.ReferenceWorker(str(fake), tmp_path, obs_dim=3, **kw)


def test_initialisers_fall_back_to_plain_jit_when_xla_lacks_the_fast_compile_options(monkeypatch):
    monkeypatch.setitem(bench.FAST_COMPILE, "no_such_option_in_any_xla", True)  # as jax 0.12 with the CPU options
    np.testing.assert_array_equal(bench._fast_jit(lambda x: x + 1)(jnp.ones(2)), [2.0, 2.0])


def test_reference_patches_must_match_exactly_once():
    assert ref_pex._replace_once("a\nimport gym\n", "import gym\n", "gym = None\n", "f") == "a\ngym = None\n"
    for text in ("nothing here", "import gym\nimport gym\n"):
        with pytest.raises(ref_pex.RefBenchError, match="the reference changed"):
            ref_pex._replace_once(text, "import gym\n", "gym = None\n", "f")


def test_scaling_check_compares_the_largest_seed_count_with_n_times_one_seed():
    rows = [{"seeds": 1, "fused_total": {"best": 100.0}}, {"seeds": 10, "fused_total": {"best": 850.0}}]
    check = scaling_check(rows, 0.8)
    assert check["passed"] and check["efficiency"] == pytest.approx(0.85)
    assert not scaling_check(rows, 0.9)["passed"]
    assert scaling_check(rows[1:], 0.8) is None  # nothing to compare with


def test_cli_parses_seed_lists_and_rejects_unknown_parts():
    bc = parse_args(["--seeds", "1,10", "--online-seeds", "1", "--skip", "act", "--out", "x"])
    assert bc.seeds == [1, 10] and bc.online_seeds == [1] and bc.skip == ["act"] and not bc.quick
    assert not bc.reference and bc.reference_commit == "b0ae11e"
    bc = parse_args(["--reference", "auto", "--reference-src", "/src", "--reference-threads", "1,4",
                     "--reference-window", "2", "--reference-reps", "6", "--skip", "reference"])
    assert (bc.reference, bc.reference_src, bc.reference_threads, bc.reference_window_s, bc.reference_reps,
            bc.skip) == ("auto", "/src", [1, 4], 2.0, 6, ["reference"])
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
