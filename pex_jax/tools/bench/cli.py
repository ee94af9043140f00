"""`python -m pex_jax.tools.bench` (`make bench`): run the parts not skipped, write `bench.json` and `bench.md`,
print the summary."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pex_jax.agents.algorithms import ALGORITHMS
from pex_jax.tools import ref_pex
from pex_jax.tools.bench import __doc__ as PACKAGE_DOC
from pex_jax.tools.bench.act import bench_act
from pex_jax.tools.bench.antmaze import LocalAntMaze
from pex_jax.tools.bench.ceiling import MatmulCeiling
from pex_jax.tools.bench.components import bench_components
from pex_jax.tools.bench.config import CONTEXT, PARTS, BenchConfig, parse_size
from pex_jax.tools.bench.engine import bench_engine, check_cadence
from pex_jax.tools.bench.grid import bench_grid
from pex_jax.tools.bench.harness import load_average, machine_info, memory_info
from pex_jax.tools.bench.multitask import bench_multitask
from pex_jax.tools.bench.offline import bench_offline, scaling_check
from pex_jax.tools.bench.problem import make_config, synthetic_dataset
from pex_jax.tools.bench.projection import projection
from pex_jax.tools.bench.reference import bench_side_by_side, prepare_reference, reference_hparams
from pex_jax.tools.bench.report import attach_fractions, bm, summary_lines, to_markdown


def run(bc: BenchConfig, log: Callable[[str], None] = print) -> dict:
    """Run every measurement not in `bc.skip`; returns the result dict (also what `main` writes).

    Raises `ref_pex.RefBenchError` before anything is timed when the reference was asked for and cannot run.
    """
    import jax

    started = time.perf_counter()
    part_s: dict[str, float] = {}

    def lap(name: str) -> None:
        part_s[name] = round(time.perf_counter() - started - sum(part_s.values()), 2)

    config = make_config(bc)
    reference = prepare_reference(bc, log) if bc.reference and "reference" not in bc.skip else None
    result: dict[str, Any] = {"machine": machine_info(), "context": CONTEXT, "load_before": load_average(),
                              "config": json.loads(json.dumps(asdict(bc)))}
    ceiling = MatmulCeiling(bc)
    ceiling.measure()
    log("matmul (start): " + ", ".join(f"{k} {v[-1]:.1f} GFLOP/s" for k, v in ceiling.rates.items()))
    lap("start")
    compile_s: dict[str, float] = {}
    if "offline" not in bc.skip:
        dataset = synthetic_dataset(bc.dataset_size, bc.obs_dim, bc.act_dim)
        result["offline"] = []
        for s in bc.seeds:
            r = bench_offline(bc, config, dataset, s, ceiling.windows())
            log(f"offline {s} seeds: {bm(r['fused_per_seed'])} upd/s/seed, total {bm(r['fused_total'])}, "
                f"x{r['ratio_to_baseline']['best']:.2f} vs per-update calls")
            result["offline"].append(r)
            compile_s.update({f"offline {k} ({s} seeds)": v for k, v in r["compile_s"].items()})
        single = next((r["fused_total"]["best"] for r in result["offline"] if r["seeds"] == 1), None)
        for r in result["offline"]:
            r["efficiency_vs_1_seed"] = r["fused_total"]["best"] / (r["seeds"] * single) if single else None
        del dataset
        lap("offline")
    if "online" not in bc.skip or "components" not in bc.skip or "grid" not in bc.skip:
        with tempfile.TemporaryDirectory(prefix="pex-bench-") as tmp, \
                LocalAntMaze(bc, Path(tmp) / "data", log) as data:
            if "components" not in bc.skip:
                result["components"] = bench_components(bc, data, ceiling.windows(["update shape"]), log)
                compile_s.update({f"components {k}": v for k, v in result["components"]["device"]["compile_s"].items()})
                lap("components")
            if "online" not in bc.skip:
                result["engine"] = bench_engine(bc, data, Path(tmp) / "runs", log)
                lap("online engine")
            if "grid" not in bc.skip:
                result["grid"] = bench_grid(bc, data, Path(tmp) / "grid", log)
                lap("grid")
            result["antmaze_data"] = {"steps_per_task": max(bc.engine_data_steps, bc.engine_data_episode_steps),
                                      "episode_steps": bc.engine_data_episode_steps, "generated_s": data.generated_s}
    if "act" not in bc.skip:
        result["act"] = bench_act(bc, config, bc.algos[0])
        log(f"act {bc.algos[0]}: {bm(result['act']['act_per_s'])} /s")
        compile_s[f"act {bc.algos[0]}"] = result["act"]["compile_s"]
        lap("act")
    if reference is not None:
        threads = bc.reference_threads or sorted({1, result["machine"]["cpu_affinity"] or 1})
        device = "cpu" if jax.default_backend() == "cpu" else "auto"
        log(f"reference: starting its worker (torch {reference['torch']}, {reference['dir']})")
        with ref_pex.ReferenceWorker(reference["python"], reference["dir"], obs_dim=bc.obs_dim, act_dim=bc.act_dim,
                                     hidden_dims=bc.hidden_dims, batch_size=bc.batch_size,
                                     hp=reference_hparams(config), threads=max(threads), device=device,
                                     dataset_size=bc.dataset_size, buffer_rows=bc.reference_buffer_rows,
                                     buffer_capacity=bc.buffer_capacity) as worker:
            result["side_by_side"] = bench_side_by_side(bc, config, worker, threads, log)
        result["side_by_side"]["reference"]["python_path"] = reference["python"]
        compile_s.update({f"side by side {k}": v for k, v in result["side_by_side"]["compile_s"].items()})
        ceiling.measure(1)
        lap("reference")
    if "multitask" not in bc.skip and bc.tasks > 0:
        result["multitask"] = bench_multitask(bc, config, bc.tasks, min(bc.seeds))
        t = result["multitask"]
        log(f"multitask {bc.tasks} tasks: {bm(t['multitask_updates_per_s_total'])} upd/s total, "
            f"x{t['ratio_to_sequential']['best']:.2f} vs one call per task")
        compile_s.update({f"multitask {k}": v for k, v in t["compile_s"].items()})
        lap("multitask")
    ceiling.measure()
    lap("end")
    result["ceiling"] = ceiling.result()
    attach_fractions(result)
    if result.get("components"):
        result["projection"] = projection(result["components"])  # for the record; bench.md recomputes it
    result["compile_s"] = compile_s
    result["memory"] = memory_info()
    result["load_after"] = load_average()
    result["part_s"] = part_s
    if bc.check_scaling > 0 and result.get("offline"):
        check = scaling_check(result["offline"], bc.check_scaling)
        if check is not None:
            result["scaling_check"] = check
    for line in summary_lines(result):
        log(line)
    return result


def write(result: dict, out: str | Path) -> tuple[Path, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "bench.json", out / "bench.md"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    md_path.write_text(to_markdown(result))
    return json_path, md_path


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _sizes(text: str) -> list[str]:
    sizes = [x.strip() for x in text.split(",") if x.strip()]
    try:
        for s in sizes:
            parse_size(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if not sizes:
        raise argparse.ArgumentTypeError(f"expected TASKSxSEEDS[,...], got {text!r}")
    return sizes


def _dims(text: str) -> tuple[int, ...]:
    return tuple(_int_list(text))


def parse_args(argv: Sequence[str] | None) -> BenchConfig:
    p = argparse.ArgumentParser(prog="python -m pex_jax.tools.bench", description=PACKAGE_DOC.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench_out", help="output directory for bench.json and bench.md")
    p.add_argument("--quick", action="store_true", help="test-sized run: tiny nets, few steps")
    p.add_argument("--seeds", type=_int_list, help="seed counts for the offline runs (default 1,4,16)")
    p.add_argument("--algos", help="online algorithm of the engine runs and of action selection (the first; "
                                   "default pex)")
    p.add_argument("--updates", type=int, help="offline updates per timing window for one seed")
    p.add_argument("--reps", type=int, help="timing windows per figure")
    p.add_argument("--tasks", type=int, help="tasks in the offline multitask run (0 skips it)")
    p.add_argument("--dataset-size", type=int, help="offline dataset rows (synthetic data)")
    p.add_argument("--buffer-capacity", type=int, help="replay rows per agent (device-side figures)")
    p.add_argument("--shard", action="store_true", help="split seeds over all local devices when they divide")
    p.add_argument("--skip", default="", help=f"comma-separated parts to skip: {','.join(PARTS)}")
    p.add_argument("--check-scaling", type=float, default=0.0,
                   help="exit 1 unless offline total(S) >= this x S x total(1) for the largest S (GPU check)")
    e = p.add_argument_group("the online engine (whole online phase, workers off vs on) and its components")
    e.add_argument("--engine-sizes", type=_sizes, help="TASKSxSEEDS of the whole-phase runs (default 1x3,3x3,6x10)")
    e.add_argument("--engine-hidden", type=_dims, help="their hidden layer sizes (default 64,64)")
    e.add_argument("--acceptance", help="TASKSxSEEDS of the acceptance figure, '' skips it (default 1x10)")
    e.add_argument("--acceptance-hidden", type=_dims, help="its hidden layer sizes (default 64,64)")
    e.add_argument("--engine-eval-every", type=int, help="env steps between evaluations (default 1250)")
    e.add_argument("--engine-eval-episodes", type=int, help="episodes per evaluation (default 1)")
    e.add_argument("--engine-log-every", type=int, help="env steps between log rows (default 250)")
    e.add_argument("--engine-warmup", type=int, help="env steps before the timed window (default 500)")
    e.add_argument("--engine-cycles", type=int, help="evaluation intervals in the timed window (default 1)")
    e.add_argument("--engine-reps", type=int, help="runs per mode, alternating (default 2)")
    e.add_argument("--engine-env-workers", type=int, help="env_workers of the 'workers on' runs (default -1)")
    e.add_argument("--engine-eval-workers", type=int, help="eval_workers of the 'workers on' runs (default -1)")
    e.add_argument("--engine-lanes", type=int,
                   help="pipeline_lanes of the 'workers on' runs (default: the engine's)")
    e.add_argument("--engine-data-steps", type=int, help="rows of each generated AntMaze dataset (default 10000)")
    e.add_argument("--grid-points", type=int, help="grid figure: inverse temperatures in one process (default 4)")
    e.add_argument("--grid-seeds", type=int, help="grid figure: seeds per point (default 3)")
    e.add_argument("--grid-reps", type=int, help="grid figure: runs per side, alternating (default 1)")
    e.add_argument("--suite", help="TASKSxSEEDS of the per-component shapes (default 6x10)")
    e.add_argument("--pool-envs", type=_int_list, help="env counts of the pool comparison (default 6,30,60)")
    e.add_argument("--pool-workers", type=_int_list, help="EnvPool worker counts (default 1, cores - 1, cores)")
    old = p.add_argument_group("options of the bench before the engine, kept for old command lines")
    old.add_argument("--online-seeds", type=_int_list, help="same as --engine-sizes 1xS,... for each S")
    old.add_argument("--online-steps", type=int, help="ignored: the engine's window is set by --engine-eval-every, "
                                                       "--engine-warmup and --engine-cycles")
    old.add_argument("--env", help="'none': same as --skip online,components")
    r = p.add_argument_group("the reference PyTorch PEX, side by side (make bench-reference)")
    r.add_argument("--reference", default="", metavar="PYTHON",
                   help="Python of a venv with torch and numpy (never the project's); 'auto': .venv-ref/bin/python "
                        "when it exists")
    r.add_argument("--reference-src", default="", metavar="PATH",
                   help="a clone, bare git dir or source tree of github.com/Haichao-Zhang/PEX (default: git clone)")
    r.add_argument("--reference-commit", default=ref_pex.REF_COMMIT, help="its commit (default %(default)s)")
    r.add_argument("--reference-dir", default="", help="where its code is put (default .ref/PEX-<commit>)")
    r.add_argument("--reference-threads", type=_int_list, help="torch thread counts to time (default 1 and the cores)")
    r.add_argument("--reference-window", type=float, help="seconds per side-by-side window (default 3)")
    r.add_argument("--reference-reps", type=int, help="windows per side and figure (default 4)")
    a = p.parse_args(argv)
    overrides: dict[str, Any] = {"out": a.out, "shard": a.shard, "check_scaling": a.check_scaling,
                                 "skip": [s for s in a.skip.split(",") if s], "reference": a.reference,
                                 "reference_src": a.reference_src, "reference_commit": a.reference_commit,
                                 "reference_dir": a.reference_dir}
    unknown = set(overrides["skip"]) - set(PARTS)
    if unknown:
        p.error(f"unknown --skip parts: {', '.join(sorted(unknown))}")
    if a.env is not None:
        if a.env != "none":
            p.error("--env takes only 'none' now (the engine runs on the D4RL AntMaze env)")
        overrides["skip"] = sorted(set(overrides["skip"]) | {"online", "components"})
    if a.algos:
        algos = [x for x in a.algos.split(",") if x]
        bad = [x for x in algos if x not in ALGORITHMS or x == "offline"]
        if bad:
            p.error(f"unknown online algorithms {bad}; choose from pex, direct, buffer, scratch")
        overrides["algos"] = algos
    if a.online_seeds:
        overrides["engine_sizes"] = [f"1x{s}" for s in a.online_seeds]
    if a.online_steps is not None:
        print("note: --online-steps is ignored; the engine's window is set by --engine-eval-every, --engine-warmup "
              "and --engine-cycles", file=sys.stderr)
    if a.suite:
        try:
            overrides["suite_tasks"], overrides["suite_seeds"] = parse_size(a.suite)
        except ValueError as e:
            p.error(str(e))
    for name, value in (("reference_threads", a.reference_threads), ("reference_window_s", a.reference_window),
                        ("reference_reps", a.reference_reps)):
        if value is not None:
            overrides[name] = value
    if a.acceptance is not None:
        if a.acceptance:
            try:
                parse_size(a.acceptance)
            except ValueError as e:
                p.error(str(e))
        overrides["acceptance"] = a.acceptance
    for name in ("seeds", "updates", "reps", "tasks", "dataset_size", "buffer_capacity", "engine_sizes",
                 "engine_hidden", "acceptance_hidden", "engine_eval_every", "engine_eval_episodes", "engine_log_every",
                 "engine_warmup", "engine_cycles", "engine_reps", "engine_env_workers", "engine_eval_workers",
                 "engine_lanes", "engine_data_steps", "pool_envs", "pool_workers", "grid_points", "grid_seeds",
                 "grid_reps"):
        if getattr(a, name) is not None:
            overrides[name] = getattr(a, name)
    bc = BenchConfig.quick_config(**overrides) if a.quick else BenchConfig(**overrides)
    try:
        check_cadence(bc)
    except ValueError as e:
        p.error(str(e))
    return bc


def main(argv: Sequence[str] | None = None) -> int:
    bc = parse_args(argv)
    try:
        result = run(bc, log=lambda s: print(s, flush=True))
    except ref_pex.RefBenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    json_path, md_path = write(result, bc.out)
    print(f"wrote {json_path} and {md_path}")
    check = result.get("scaling_check")
    if check is not None and not check["passed"]:
        print(f"seed scaling check FAILED: total {check['total']:.0f} < required {check['required']:.0f}")
        return 1
    return 0
