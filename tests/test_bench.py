"""The benchmark's outputs, the projection's arithmetic, and the performance changes it measures keeping the
numbers.

No timings are asserted: the machines are shared and noisy; `make bench` reports them.
"""

import copy
import json
import os
import re
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pex_jax.agents.algorithms import Dims, make_offline_chunk, over_seeds
from pex_jax.agents.networks import Dense, dense
from pex_jax.multitask import make_multitask_offline_chunk, stack_datasets
from pex_jax.tools import ref_pex
from pex_jax.tools.bench import engine, problem, reference, report
from pex_jax.tools.bench.ceiling import fraction_of_ceiling
from pex_jax.tools.bench.cli import parse_args
from pex_jax.tools.bench.config import BenchConfig
from pex_jax.tools.bench.offline import scaling_check
from pex_jax.tools.bench.problem import FAST_COMPILE, init_offline_states, synthetic_dataset
from pex_jax.tools.bench.projection import Measured, Suite, engine_hours, measured_inputs, projection, today_hours
from pex_jax.tools.bench.report import cpu_bound, to_markdown

FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"


@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory):
    """One `--quick` run in a subprocess, with XLA set to compile fast (3x fewer seconds; timings are not checked)."""
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": FAST_COMPILE_FLAGS, "WANDB_MODE": "disabled"}
    # the grid figure (two processes per point) is rendered from a recorded result below, not re-run here
    proc = subprocess.run([sys.executable, "-m", "pex_jax.tools.bench", "--quick", "--skip", "grid", "--out", str(out)],
                          env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
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


def test_quick_bench_times_the_engine_through_finetune_with_workers_off_and_on_alternating(quick_bench):
    result, md = quick_bench
    eng = result["engine"]
    (case,) = eng["cases"]
    assert case["label"] == "1x2" and case["tasks"] == ["umaze"] and case["agents"] == 2
    assert case["order"] == ["baseline", "workers"] and [r["mode"] for r in case["runs"]] == case["order"]
    off, on = case["runs"]
    assert (off["env_workers"], off["eval_workers"], off["pipeline_lanes"]) == (0, 0, 1)  # the loop before the engine
    assert on["env_workers"] >= 1 and on["eval_workers"] >= 1  # EnvPool workers and a background evaluation pool
    for r in case["runs"]:
        assert r["steps_per_s"] > 0 and r["window_s"] > 0 and r["eval_env_steps"] > 0
        assert r["agent_steps_per_s"] == pytest.approx(r["steps_per_s"] * case["agents"])
        assert r["online_wall_s"] >= r["window_s"]
    assert case["workers"]["best"] == on["steps_per_s"] and case["baseline"]["best"] == off["steps_per_s"]
    c = eng["cadence"]
    assert c["online_steps"] == c["warmup"] + c["cycles"] * c["eval_every"]
    assert eng["acceptance"]["reused"] and eng["acceptance"]["target"] == 1.5  # the same case as the size: runs reused
    ratio = on["steps_per_s"] / off["steps_per_s"]
    section = md.split("## The online engine")[1].split("## Per-component")[0]
    assert f"**{ratio:.2f}x**" in section
    # the cores' bound: a step's CPU work (device call CPU time, envs, evaluation, packing) over the cores
    bound = cpu_bound(eng["acceptance"], result["components"], eng["cores"])
    assert set(bound["parts_ms"]) == {"device call", "env steps", "evaluation", "packing"}
    assert bound["cpu_ms"] == pytest.approx(sum(bound["parts_ms"].values()))
    assert bound["max_speedup"] == pytest.approx(1e3 / off["steps_per_s"] / (bound["cpu_ms"] / eng["cores"]))
    assert f"at most **{bound['max_speedup']:.2f}x** here" in section


def test_window_rate_reads_the_loop_clock_from_the_engines_cumulative_rates():
    clock = {20: 2.0, 40: 3.0, 60: 5.0}  # seconds since the loop started, at each log row
    rows = [{"phase": "online", "online_step": k, "train/env_steps_per_s": k / t} for k, t in clock.items()]
    rows.append({"phase": "online", "online_step": 40, "eval/normalized_score": 0.0})  # not a clock row
    assert engine.window_rate(rows, 20, 60) == pytest.approx((3.0, 40 / 3.0))
    assert engine.window_rate(rows, 40, 60) == pytest.approx((2.0, 10.0))
    with pytest.raises(ValueError, match="no engine log row at env step"):
        engine.window_rate(rows, 20, 80)


def test_quick_bench_reports_each_component_of_an_engine_step(quick_bench):
    result, md = quick_bench
    comp = result["components"]
    d = comp["device"]
    assert (d["tasks"], d["seeds"], d["agents"]) == (2, 2, 4) and d["flops_per_call"] > 0
    assert d["upload_shape"] == [2, 2, 2 + 2 * 29] and d["download_shape"] == [2, 2, 8 + 1]
    assert set(d["calls_per_s"]) == {"device_call", "insert", "upload", "download"}
    assert d["device_call_cpu_ms"]["best"] > 0  # all its XLA threads' CPU time
    assert comp["device_acceptance"]["agents"] == 2  # the acceptance case's call, for the bound in bench.md
    assert {h["agents"] for h in comp["host"].values()} == {4, 2}
    assert comp["env_step"]["steps_per_s"]["best"] > 0
    ev = comp["eval"]
    assert ev["env_steps_per_episode"] == 700  # untrained policies: every umaze episode runs to its time limit
    pools = {(r["envs"], r["env"], r["pool"]): r for r in comp["pools"]}
    assert set(pools) == {(2, env, pool) for env in ("null", "ant") for pool in ("LocalEnvs", "EnvPool(1)",
                                                                                  "AsyncVectorEnv")}
    # NullEnv steps cost next to nothing, so in-process stepping of it is far faster than of the ant
    local = {env: pools[(2, env, "LocalEnvs")]["steps_per_s"]["best"] for env in ("null", "ant")}
    assert local["null"] > local["ant"]
    assert "### Env pools" in md
    # the verdict against 2 h is rendered (which one depends on the quick run's timings)
    assert re.search(r"The engine: [\d.]+-[\d.]+ h, (within 2 h over the whole range|within 2 h at the low end, "
                     r"above it at the high end|above 2 h over the whole range)", md.split("## Projection")[1])


def test_quick_bench_reports_act_multitask_compile_memory_and_device(quick_bench):
    result, md = quick_bench
    assert result["act"]["act_per_s"]["best"] > 0
    assert result["multitask"]["tasks"] == 2 and result["multitask"]["ratio_to_sequential"]["best"] > 0
    assert all(v > 0 for v in result["compile_s"].values()) and len(result["compile_s"]) >= 8
    assert result["memory"]["peak_rss_mib"] > 0
    assert result["machine"]["platform"] == "cpu" and result["machine"]["device_count"] >= 1
    for heading in ("## Ceiling", "## Offline IQL updates/s", "## The online engine", "## Per-component costs",
                    "## Projection", "## Action selection", "## Several tasks", "## Compile times", "## Memory",
                    "## Context"):
        assert heading in md
    assert "side_by_side" not in result and "## The reference PyTorch PEX" not in md  # only when asked for
    assert set(result["part_s"]) >= {"offline", "components", "online engine", "act", "multitask"}


def test_quick_bench_measures_the_matmul_ceiling_and_reports_each_rate_as_a_fraction_of_it(quick_bench):
    result, md = quick_bench
    c = result["ceiling"]
    assert set(c["matmul"]) == {"update shape", "large"}
    assert c["matmul"]["update shape"]["m"] == 32 and c["matmul"]["update shape"]["n"] == 32  # batch x hidden
    # 2 windows each at the start and at the end; interleaved: offline 1 and 2 seeds (both sizes, after a
    # warm-up window), the engine step's component windows (update shape)
    assert c["matmul"]["large"]["windows"] == 4 + 2 * 3
    assert c["matmul"]["update shape"]["windows"] == 4 + 2 * 3 + 2
    assert all(x["best"] > 0 for x in c["matmul"].values())
    assert c["peak_gflops"] == max(x["best"] for x in c["matmul"].values())
    peak = c["peak_gflops"]
    for r in result["offline"]:
        assert r["flops_per_update"] > 1e6  # XLA's cost analysis of one IQL update at the quick shapes
        assert r["fraction_of_ceiling"]["best"] == pytest.approx(r["fused_total"]["best"] * r["flops_per_update"]
                                                                 / (peak * 1e9))
    d = result["components"]["device"]
    assert d["flops_per_call"] > 4 * result["offline"][0]["flops_per_update"]  # 4 agents' update + act
    assert d["fraction_of_ceiling"]["best"] == pytest.approx(
        d["calls_per_s"]["device_call"]["best"] * d["flops_per_call"] / (peak * 1e9))
    assert 0 < result["act"]["fraction_of_ceiling"]["best"] < result["offline"][0]["fraction_of_ceiling"]["best"]
    assert "total, fraction of ceiling" in md and "ceiling at the peak" in md


def test_markdown_renders_from_the_json_alone(quick_bench):
    result, md = quick_bench
    assert to_markdown(json.loads(json.dumps(result))) == md


def _strip_derived(tree):
    if isinstance(tree, dict):
        return {k: _strip_derived(v) for k, v in tree.items() if k not in ("fraction_of_ceiling", "projection")}
    return [_strip_derived(v) for v in tree] if isinstance(tree, list) else tree


def _before_context(md: str) -> str:
    return md.split("## Context")[0]


def test_markdown_is_rebuilt_from_measured_fields_only(quick_bench):
    """No figure from another machine is a denominator: context values can change and nothing else does;
    the fractions and the projection are recomputed from the measured fields, not read back."""
    result, md = quick_bench
    assert result["context"] and all({"figure", "value", "measured"} <= set(c) for c in result["context"])
    other = copy.deepcopy(result)
    for c in other["context"]:
        c["value"] = 123456789.0
    assert _before_context(to_markdown(other)) == _before_context(md)
    assert to_markdown(_strip_derived(result)) == md  # stored fractions and projection are not what it prints


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
    d = scaled["components"]["device"]
    d["calls_per_s"]["device_call"]["best"] = 0.5 * peak * 1e9 / d["flops_per_call"]
    d["calls_per_s"]["device_call"]["median"] = 0.05 * peak * 1e9 / d["flops_per_call"]
    act = scaled["act"]
    act["act_per_s"]["best"] = act["act_per_s"]["median"] = 0.0005 * peak * 1e9 / act["flops_per_call"]
    md = to_markdown(scaled)
    assert "| 25% / 10% |" in md.split("## Offline")[1].split("\n")[4]  # the 1-seed row
    components = md.split("## Per-component costs")[1].split("### Env pools")[0]
    assert "fraction of ceiling 50% / 5.0%" in components
    assert "fraction of ceiling 0.05% / 0.05%" in md.split("## Action selection")[1]


# --- The projection's arithmetic, by hand ---

TOY_SUITE = Suite(tasks=2, seeds=2, time_limits=(100, 200), offline_updates=1000, online_steps=1000, eval_every=100,
                  interim_episodes=1, headline_episodes=10, episode_fraction=0.5, cores=5, today_transfers=3)
TOY_MEASURED = Measured(env_ms=1.0, eval_ms=2.0, pack_ms=0.5, bookkeeping_ms=0.25, pack_task_ms=0.2,
                        bookkeeping_task_ms=0.1, pool_overhead_ms=0.5)
TOY_ASSUMED = {"device_ms_60": 3.0, "device_ms_10": 1.0, "transfer_ms": 0.25, "offline_device_h": 3600 / 3.6e6}
MS = 1 / 3.6e6  # hours per millisecond


def test_engine_projection_adds_the_serial_step_parts_and_spreads_evaluation_jobs_over_the_free_cores():
    """Per seed: offline 9 interim episodes + 10 at the end, online 9 + 10 (step 0) in the background + 10 at the
    end; an episode is 0.5 T, T = 100 and 200. 4 evaluation workers: each task's 2 seeds in 2 jobs of 1 seed."""
    e = engine_hours(TOY_SUITE, TOY_MEASURED, TOY_ASSUMED)
    assert (e["env_workers"], e["envs_per_worker"]) == (4, 1)  # 5 cores - the trainer's; 4 agents
    assert e["env_phase_ms"] == pytest.approx(1.0 + 0.5)  # one env step + the pool's overhead
    assert e["step_ms"] == pytest.approx(1.5 + 0.5 + 2 * 0.25 + 3.0)  # envs (bookkeeping hidden), pack, 2 transfers
    assert e["busy_env_cores"] == pytest.approx(4 * 1.5 / 5.5)
    assert (e["eval_jobs_per_task"], e["eval_chunk_seeds"], e["eval_procs_offline"]) == (2, 1, 4)
    free = 5 - 1 - 4 * 1.5 / 5.5  # online, the cores the env workers leave
    assert e["eval_procs_online"] == pytest.approx(free)
    # offline: the longest job (1 seed x 9 episodes x 100 steps x 2 ms = 1800 ms) > all 5400 ms / 4 processes
    assert e["offline_eval_h"] == pytest.approx(1800 * MS)
    # online: 2 seeds x 19 episodes x (50 + 100) steps x 2 ms = 11400 ms spread over the free cores (> 3800 ms)
    assert e["online_eval_h"] == pytest.approx(11400 / free * MS)
    assert e["tail_h"] == pytest.approx(1 * 10 * 100 * 2.0 * MS)  # the longest final job (> 6000 ms / 4)
    assert e["online_train_h"] == pytest.approx(1000 * 5.5 * MS)
    assert e["offline_h"] == pytest.approx((3600 + 2000) * MS)  # the device time (3600 ms) > 1800 ms
    assert e["online_h"] == pytest.approx((5500 + 2000) * MS)
    assert e["total_h"] == pytest.approx(13100 * MS)


def test_todays_design_projection_runs_tasks_one_after_another_and_blocks_on_every_evaluation():
    t = today_hours(TOY_SUITE, TOY_MEASURED, TOY_ASSUMED)
    assert t["step_ms"] == pytest.approx(2 * 1.0 + 0.2 + 0.1 + 3 * 0.25 + 1.0)  # 2 envs serially, 3 transfers
    assert t["online_train_h"] == pytest.approx(2 * 1000 * 4.05 * MS)  # 2 tasks one after another
    assert t["offline_eval_h"] == pytest.approx(2 * 19 * 150 * 2.0 * MS)  # 19 episodes per seed, 0.5 x (100 + 200)
    assert t["online_eval_h"] == pytest.approx(2 * 29 * 150 * 2.0 * MS)
    assert t["total_h"] == pytest.approx((3600 + 11400 + 8100 + 17400) * MS)


def test_projection_takes_its_measured_inputs_from_the_components_best_windows():
    comp = {"env_step": {"steps_per_s": {"best": 4000.0}}, "eval": {"ms_per_env_step": {"best": 0.3}},
            "host": {"6x10": {"agents": 60, "pack_step": {"best": 10000.0}, "bookkeeping": {"best": 20000.0}},
                     "1x10": {"agents": 10, "pack_step": {"best": 40000.0}, "bookkeeping": {"best": 50000.0}}},
            "pools": [{"envs": 60, "env": "null", "pool": "EnvPool(1)", "steps_per_s": {"best": 2000.0}},
                      {"envs": 60, "env": "null", "pool": "EnvPool(2)", "steps_per_s": {"best": 5000.0}},
                      {"envs": 6, "env": "null", "pool": "EnvPool(2)", "steps_per_s": {"best": 9000.0}},
                      {"envs": 60, "env": "ant", "pool": "EnvPool(2)", "steps_per_s": {"best": 50.0}},
                      {"envs": 60, "env": "null", "pool": "LocalEnvs", "steps_per_s": {"best": 9000.0}}]}
    m = measured_inputs(comp)
    assert m == Measured(env_ms=0.25, eval_ms=0.3, pack_ms=0.1, bookkeeping_ms=0.05, pack_task_ms=0.025,
                         bookkeeping_task_ms=0.02, pool_overhead_ms=0.2)  # EnvPool(2), NullEnv, 60 envs
    p = projection(comp)
    assert p["measured"]["env_ms"] == 0.25 and set(p["engine"]) == set(p["today"]) == {"low", "high"}
    assert p["engine"]["low"]["total_h"] <= p["engine"]["high"]["total_h"]  # slower GPU and transfers, longer run
    assert p["today"]["low"]["total_h"] < p["today"]["high"]["total_h"]
    md = "\n".join(report.projection_markdown(p))
    assert "1.5-2.5 ms" in md and "0.24-0.63 h" in md  # every assumption is named with its range


# --- The reference side by side ---

def _fake_side_by_side(monkeypatch, project_rates, reference_rates, reps=4):
    """bench_side_by_side with scripted rates (calls per 1 s window) for both sides; returns (result, order)."""
    order = []
    sides = {name: (f"fn-{name}", 1, 1e9) for name in reference.SIDE_FIGURES}
    monkeypatch.setattr(reference, "project_side", lambda bc, config: {"sides": sides, "compile_s": {},
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

    monkeypatch.setattr(reference, "project_window", project_window)
    bc = BenchConfig.quick_config(reference_reps=reps)
    return reference.bench_side_by_side(bc, None, Worker(), [1, 2], log=lambda s: None), order


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
    md = "\n".join(report.side_by_side_markdown(sbs, 1000.0))
    assert "| **1.50x** / 2.10x | 1.50-2.20x | 1 | 12% / 8.0% |" in md  # fraction = 120 x 1 GFLOP / 1000 GFLOP/s
    assert "- a patch" in md and "b0ae11e" in md
    report.attach_fractions(result)
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
    monkeypatch.setitem(problem.FAST_COMPILE, "no_such_option_in_any_xla", True)  # as jax 0.12 with the CPU options
    np.testing.assert_array_equal(problem.fast_jit(lambda x: x + 1)(jnp.ones(2)), [2.0, 2.0])


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
    bc = parse_args(["--seeds", "1,10", "--skip", "act", "--out", "x"])
    assert bc.seeds == [1, 10] and bc.skip == ["act"] and not bc.quick
    assert bc.engine_sizes == ["1x3", "3x3", "6x10"] and bc.acceptance == "1x10"  # defaults
    assert not bc.reference and bc.reference_commit == "b0ae11e"
    bc = parse_args(["--engine-sizes", "2x5,6x10", "--engine-hidden", "256,256", "--acceptance", "", "--suite",
                     "3x4", "--pool-envs", "6,60", "--engine-reps", "1"])
    assert (bc.engine_sizes, bc.engine_hidden, bc.acceptance, bc.suite_tasks, bc.suite_seeds, bc.pool_envs,
            bc.engine_reps) == (["2x5", "6x10"], (256, 256), "", 3, 4, [6, 60], 1)
    # the old online options keep old command lines working: seed counts at 1 task, no env; the old window
    # length has no counterpart (the engine's window is set by its evaluation cadence)
    bc = parse_args(["--online-seeds", "1,10", "--online-steps", "6", "--env", "none"])
    assert bc.engine_sizes == ["1x1", "1x10"] and bc.engine_eval_every == BenchConfig().engine_eval_every
    assert {"online", "components"} <= set(bc.skip)
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
    for bad in (["--engine-sizes", "6by10"], ["--engine-eval-every", "300"], ["--env", "AntMaze_UMaze-v4"]):
        with pytest.raises(SystemExit):  # not TASKSxSEEDS; the window must end on a log row; the engine's env only
            parse_args(bad)


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


def test_the_grid_figure_renders_from_its_recorded_json():
    from pex_jax.tools.bench.report import grid_markdown

    recorded = json.loads((Path(__file__).resolve().parents[1] / "docs" / "bench" / "grid_cpu" / "bench.json")
                          .read_text())["grid"]
    md = "\n".join(grid_markdown(recorded))
    assert f"{recorded['speedup_wall']:.2f}x faster" in md and f"{recorded['speedup_loop']:.2f}x" in md
    assert recorded["speedup_wall"] == pytest.approx(-recorded["separate"]["wall_s"]["best"]
                                                     / -recorded["grid"]["wall_s"]["best"])
    assert len(recorded["runs"]["grid"]) == len(recorded["runs"]["separate"]) == 2  # A B B A
