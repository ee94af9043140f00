"""`make gpu-check`: the accelerator acceptance run as one prepared command, under 10 minutes on one GPU.

Steps, each in its own process under a time limit; the report is rewritten after every step, so a
step that fails or runs out of time still leaves the others' results:

1. device: the line `pex_jax.device` prints first in every run (platform, device kind, jax and plugin
   versions), a warning if accelerator wheels are installed but JAX runs elsewhere, the installed
   versions against requirements.txt's pins, and the imports the later steps need.
2. tests: `make test TEST_PLATFORMS= ARGS="tests/test_accel.py -m accel"` on the default device:
   every algorithm compiled and stepped, and the runner end to end (offline -> pex).
3. bench: `python -m pex_jax.tools.bench --seeds 1,10 --check-scaling 0.8 --algos pex` (AntMaze shapes): fails
   when 10 seeds in one call reach less than 0.8 x 10 x the single-seed total; also the figure for
   several tasks in one call against one call per task.
4. pretrain: `python -m pex_jax.pretrain` on two generated PointMaze datasets, 10 seeds each, in one call.

On a CPU (JAX found no accelerator) every size shrinks so that the whole run takes minutes, and the
scaling verdict is reported without failing the check: a CPU's total does not grow with the seed
count (docs/performance.md).

Outputs, flat in --out: gpu_check.json, gpu_check.md, gpu_check.log, bench.json, bench.md.

On a lent CUDA machine with JAX preinstalled and no registry (docs/performance.md, "GPU procedure"):
`make gpu-wheels` here downloads the wheels of the packages such an image lacks into .whl/; there,
`make gpu-check` with .whl carried finds no venv and the wheels, installs them into /tmp/pex-jax-site
and runs python3's own jax (SYSTEM_JAX=1).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Packages the check needs that a CUDA image with JAX, Flax, Optax, Chex, NumPy, h5py, pytest, absl,
# PyYAML, tqdm, Jinja2, imageio, typer and huggingface_hub lacks (KINDS.md's list for nvidia-h200):
# requirements.txt's pins, and this venv's versions for the unpinned ones (mujoco-core must match mujoco).
CARRY = ("ml-collections", "gymnasium", "farama-notifications", "gymnasium-robotics", "pettingzoo", "mujoco",
         "mujoco-core", "glfw", "pyopengl", "minari")
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                   "manylinux1_x86_64")
NEEDED_MODULES = ("jax", "flax", "optax", "chex", "ml_collections", "numpy", "gymnasium", "gymnasium_robotics",
                  "mujoco", "minari", "h5py", "absl", "yaml", "tqdm", "pytest")

# Sizes: "full" on an accelerator (the acceptance), "small" on a CPU (same code paths, minutes).
PROFILES = {
    "full": {
        "bench": ["--algos", "pex", "--skip", "online", "--pool-envs", "60"],
        "pretrain": {"tasks": "umaze,medium", "seeds": "0-9", "n_seeds": 10, "steps": 5000, "per_call": 1000,
                     "data_steps": 10000},
        "timeouts": {"tests": 180, "bench": 300, "pretrain": 180},
    },
    "small": {
        "bench": ["--algos", "pex", "--skip", "online", "--pool-envs", "60", "--updates", "20", "--reps", "1",
                  "--tasks", "2",
                  "--dataset-size", "50000", "--buffer-capacity", "20000"],
        "pretrain": {"tasks": "umaze,medium", "seeds": "0-1", "n_seeds": 2, "steps": 500, "per_call": 250,
                     "data_steps": 5000},
        "timeouts": {"tests": 270, "bench": 240, "pretrain": 150},
    },
}
MIN_STEP_S = 45  # time kept back for each later step when an earlier one may run long

PROBE = """
import json
from pex_jax import device
info = device.device_info()
print(json.dumps({"line": device.device_line(info), "mismatch": device.mismatch_line(info),
                  "platform": info.platform, "kind": info.kind, "count": info.count, "jax": info.jax_version,
                  "wheels": info.wheels, "accel": info.accel}))
"""


class Log:
    """Print and keep everything in gpu_check.log."""

    def __init__(self, path: Path):
        self.file = path.open("w", buffering=1)

    def __call__(self, text: str = "") -> None:
        print(text, flush=True)
        self.file.write(text + "\n")


def read_pins(path: Path = ROOT / "requirements.txt") -> dict[str, str]:
    """{normalised name: version} of requirements.txt's `name==version` lines (extras dropped)."""
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*==\s*([^\s;#]+)", line)
        if m:
            pins[_norm(m.group(1))] = m.group(3)
    return pins


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_versions(names) -> dict[str, str | None]:
    import importlib.metadata

    found = {}
    for n in names:
        try:
            found[n] = importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            found[n] = None
    return found


def missing_modules(modules=NEEDED_MODULES) -> list[str]:
    import importlib.util

    return [m for m in modules if importlib.util.find_spec(m) is None]


def install_carried_wheels(log: Log, wheels: Path = ROOT / ".whl", site: Path = Path("/tmp/pex-jax-site")) -> bool:
    """Without make (which does this for SYSTEM_JAX=1): install the carried wheels into `site`, put it on the path."""
    found = sorted(wheels.glob("*.whl"))
    if not found:
        return False
    log(f"installing {len(found)} carried wheels from {wheels} into {site}")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                           "--no-cache-dir", "--upgrade", "--target", str(site), *map(str, found)])
    if done.returncode != 0:
        return False
    os.environ["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    sys.path[:0] = [str(site)]
    import importlib

    importlib.invalidate_caches()
    return True


def run_step(cmd: list[str], log: Log, timeout: float, env: dict | None = None) -> dict:
    """Run `cmd` from the repo root, streaming its output into the log; kill its process group on timeout."""
    log(f"$ {' '.join(cmd)}   (limit {timeout:.0f} s)")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", start_new_session=True)
    tail: list[str] = []

    def pump():
        for line in proc.stdout:
            line = line.rstrip("\n")
            log(line)
            tail.append(line)
            del tail[:-40]

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)  # the group this call started (new session), nothing else
        rc = proc.wait()
    reader.join(timeout=10)
    wall = time.perf_counter() - t0
    log(f"-> rc {rc}{' (timed out)' if timed_out else ''}, {wall:.1f} s")
    return {"cmd": cmd, "rc": rc, "timed_out": timed_out, "wall_s": round(wall, 1), "tail": tail[-8:]}


def _child_env(**extra) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": os.environ.get("WANDB_MODE", "disabled")}
    env.update(extra)
    return env


def probe_device(log: Log) -> dict:
    """The device line, in a child process (this one never initialises a backend: it would hold GPU memory)."""
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=_child_env(), capture_output=True,
                          text=True, timeout=300)
    if done.returncode != 0:
        log(done.stdout + done.stderr)
        return {"error": (done.stderr.strip().splitlines() or ["device probe failed"])[-1]}
    info = json.loads(done.stdout.strip().splitlines()[-1])
    log(info["line"])
    if info["mismatch"]:
        log(info["mismatch"])
    return info


def nvidia_smi() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or done.stderr.strip() or None


def junit_summary(path: Path) -> dict:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return {}
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return {}
    cases = [{"name": c.get("name"), "time_s": round(float(c.get("time", 0)), 2),
              "outcome": ("failed" if c.find("failure") is not None or c.find("error") is not None
                          else "skipped" if c.find("skipped") is not None else "passed")}
             for c in suite.iter("testcase")]
    return {"tests": len(cases), "passed": sum(c["outcome"] == "passed" for c in cases),
            "failed": sum(c["outcome"] == "failed" for c in cases),
            "skipped": sum(c["outcome"] == "skipped" for c in cases), "cases": cases}


def step_tests(log: Log, timeout: float, work: Path) -> dict:
    junit = work / "junit.xml"
    # Only the accel module is collected: other test modules import packages a preinstalled image may lack (wandb).
    pytest_args = f"tests/test_accel.py -m accel -p no:cacheprovider --junitxml={junit}"
    if os.environ.get("MAKELEVEL") and shutil.which("make"):  # called by make: go through `make test` itself
        # one process: each xdist worker would claim the accelerator (and most of its memory) for itself
        cmd = ["make", "--no-print-directory", "test", "TEST_PLATFORMS=", "TEST_WORKERS=0", f"ARGS={pytest_args}"]
    else:  # the same command `make test` runs
        cmd = [sys.executable, "-m", "pytest", *pytest_args.split()]
    r = run_step(cmd, log, timeout, _child_env())
    r.update(junit_summary(junit))
    r["ok"] = r["rc"] == 0 and r.get("tests", 0) > 0 and r.get("failed", 0) == 0
    return r


def step_bench(log: Log, timeout: float, out: Path, profile: dict, accelerator: bool) -> dict:
    for name in ("bench.json", "bench.md"):
        (out / name).unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pex_jax.tools.bench", "--seeds", "1,10", "--check-scaling", "0.8", "--out", str(out),
           *profile["bench"]]
    r = run_step(cmd, log, timeout, _child_env(XLA_PYTHON_CLIENT_PREALLOCATE="false"))
    try:
        bench = json.loads((out / "bench.json").read_text())
    except (OSError, ValueError):
        r["ok"] = False
        return r
    check = bench.get("scaling_check")
    r["scaling_check"] = check
    try:  # a summary for the report; bench.json itself has every figure
        r["offline"] = [{"seeds": o["seeds"], "total_best": o["fused_total"]["best"],
                         "per_seed_best": o["fused_per_seed"]["best"]} for o in bench.get("offline", [])]
        mt = bench.get("multitask")
        if mt:
            r["multitask"] = {"tasks": (bench.get("config") or {}).get("tasks"),
                              "updates_per_s_total": mt["multitask_updates_per_s_total"],
                              "ratio_to_sequential": mt["ratio_to_sequential"]}
        r["compile_s_total"] = round(sum(bench.get("compile_s", {}).values()), 1)
    except (KeyError, TypeError, AttributeError) as e:
        r["summary_error"] = f"bench.json has another layout: {e!r}"
    r["memory"] = bench.get("memory")
    r["machine"] = bench.get("machine")
    scaled = bool(check and check["passed"])
    r["ok"] = scaled or (not accelerator and check is not None)  # a CPU is not expected to scale
    r["scaling_required"] = accelerator
    return r


def step_pretrain(log: Log, timeout: float, work: Path, profile: dict) -> dict:
    p = profile["pretrain"]
    env = _child_env(MINARI_DATASETS_PATH=str(work / "minari"), HF_HUB_OFFLINE="1")
    t0 = time.perf_counter()
    results = {}
    for maze in p["tasks"].split(","):
        results[f"generate {maze}"] = run_step(
            [sys.executable, "-m", "pex_jax.datagen.pointmaze", f"--maze={maze}", f"--steps={p['data_steps']}",
             "--ref-episodes=2", "--no-progress"], log, max(30.0, timeout - (time.perf_counter() - t0)), env)
        if results[f"generate {maze}"]["rc"] != 0:
            return {"ok": False, "steps": results, "wall_s": round(time.perf_counter() - t0, 1)}
    run_dir = work / "pretrain"
    cmd = [sys.executable, "-m", "pex_jax.pretrain", "--config=experiments/configs/pointmaze.py",
           f"--tasks={p['tasks']}", f"--config.seeds={p['seeds']}", f"--config.offline_steps={p['steps']}",
           f"--config.updates_per_call={p['per_call']}", f"--config.offline_eval_every={p['steps']}",
           f"--config.log_every={p['per_call']}", "--config.eval_episodes=1", "--config.eval_parallel_envs=1",
           "--config.progress=False", "--config.download=False", f"--config.run_dir={run_dir}"]
    r = run_step(cmd, log, max(30.0, timeout - (time.perf_counter() - t0)), env)
    tasks, seeds = p["tasks"].split(","), p["n_seeds"]
    scores = {}
    for t in tasks:
        try:
            summary = json.loads((run_dir / f"pointmaze-{t}" / "offline" / "summary.json").read_text())
            scores[t] = summary["mean"]["final/normalized_score"]
        except (OSError, ValueError, KeyError):
            scores[t] = None
    updates = len(tasks) * seeds * p["steps"]
    r.update({"tasks": tasks, "seeds": seeds, "offline_steps": p["steps"], "updates_total": updates,
              "updates_per_s_end_to_end": round(updates / r["wall_s"], 1) if r["wall_s"] else None,
              "final_scores_mean": scores, "data": results})
    r["ok"] = r["rc"] == 0 and all(v is not None for v in scores.values())
    return r


def to_markdown(report: dict) -> str:
    d = report.get("device", {})
    lines = ["# gpu-check", "", f"Verdict: **{report.get('verdict', 'incomplete')}** "
             f"({report.get('wall_s', '?')} s, profile `{report.get('profile')}`)", "",
             f"- device: `{d.get('line', d.get('error', '?'))}`"]
    if d.get("mismatch"):
        lines.append(f"- **{d['mismatch']}**")
    if report.get("nvidia_smi"):
        lines.append(f"- nvidia-smi: {report['nvidia_smi']}")
    lines.append(f"- python: {report.get('python')} ({'SYSTEM_JAX=1' if report.get('system_jax') else 'venv'})")
    if report.get("missing_modules"):
        lines.append(f"- **missing modules: {', '.join(report['missing_modules'])}** (carry wheels: `make gpu-wheels`)")
    diff = report.get("versions_off_pin") or {}
    if diff:
        lines.append("- versions off requirements.txt's pins: "
                     + ", ".join(f"{k} {v['installed']} (pin {v['pinned']})" for k, v in sorted(diff.items())))
    lines += ["", "| step | result | wall s | detail |", "|---|---|---|---|"]
    for name, s in report.get("steps", {}).items():
        lines.append(f"| {name} | {'ok' if s.get('ok') else 'FAILED'}{' (timed out)' if s.get('timed_out') else ''} "
                     f"| {s.get('wall_s', '')} | {_detail(name, s)} |")
    lines += ["", "Files: gpu_check.json (everything above and per-test times), gpu_check.log (all output), "
              "bench.json and bench.md (`python -m pex_jax.tools.bench`).", ""]
    return "\n".join(lines)


def _detail(name: str, s: dict) -> str:
    if name == "tests":
        return f"{s.get('passed', 0)}/{s.get('tests', 0)} accel tests passed, {s.get('failed', 0)} failed"
    if name == "bench":
        c = s.get("scaling_check")
        if not c:
            return "no scaling check (bench.json missing)"
        text = (f"offline total {c['total']:.0f} upd/s at {c['seeds']} seeds vs {c['single']:.0f} at 1: efficiency "
                f"{c['efficiency']:.2f} (need {c['required_fraction']}): {'pass' if c['passed'] else 'fail'}"
                f"{'' if s.get('scaling_required') else ' (CPU: not required)'}")
        mt = s.get("multitask")
        if mt:
            text += (f"; {mt['tasks']} tasks in one call {mt['updates_per_s_total']['best']:.0f} upd/s, "
                     f"x{mt['ratio_to_sequential']['best']:.2f} vs one call per task")
        return text + f"; compile {s.get('compile_s_total')} s"
    if name == "pretrain":
        return (f"{len(s.get('tasks', []))} tasks x {s.get('seeds')} seeds x {s.get('offline_steps')} updates in one "
                f"process: {s.get('updates_per_s_end_to_end')} upd/s end to end (compile and eval included); "
                f"scores {s.get('final_scores_mean')}")
    return ""


def write_report(report: dict, out: Path) -> None:
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "gpu_check.md").write_text(to_markdown(report))


def check(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "gpu_check.log")
    t_start = time.perf_counter()
    report: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "python": sys.executable,
                    "system_jax": os.environ.get("SYSTEM_JAX") == "1", "steps": {}}
    log(f"== gpu-check -> {out}")
    report["nvidia_smi"] = nvidia_smi()
    report["missing_modules"] = missing_modules()
    if report["missing_modules"] and install_carried_wheels(log):
        report["missing_modules"] = missing_modules()
    if report["missing_modules"]:
        log(f"error: missing Python modules {report['missing_modules']}: on a machine without registry access bring "
            f"them as wheels (`make gpu-wheels` where pip works, then carry .whl); elsewhere `make gpu-check` builds "
            f".venv")
        report["verdict"] = "FAILED (missing modules)"
        write_report(report, out)
        return 2
    report["device"] = info = probe_device(log)
    pins = read_pins()
    installed = installed_versions(sorted(pins))
    report["versions"] = {k: {"installed": v, "pinned": pins[k]} for k, v in installed.items()}
    report["versions_off_pin"] = {k: v for k, v in report["versions"].items()
                                  if v["installed"] is not None and v["installed"] != v["pinned"]}
    if report["versions_off_pin"]:
        log("versions off the pins: " + ", ".join(f"{k} {v['installed']} (pin {v['pinned']})"
                                                  for k, v in sorted(report["versions_off_pin"].items())))
    accelerator = info.get("platform") not in (None, "cpu")
    profile_name = args.size if args.size != "auto" else ("full" if accelerator else "small")
    profile = PROFILES[profile_name]
    report["profile"] = profile_name
    report["budget_s"] = budget = args.budget or (480.0 if profile_name == "full" else 540.0)
    deadline = t_start + budget
    log(f"profile {profile_name}, budget {budget:.0f} s")
    write_report(report, out)
    if "error" in info:
        report["verdict"] = "FAILED (no device)"
        write_report(report, out)
        return 1

    steps = [s for s in ("tests", "bench", "pretrain") if s not in args.skip]
    with tempfile.TemporaryDirectory(prefix="pex-gpu-check-") as tmp:
        work = Path(tmp)
        for i, name in enumerate(steps):
            left = deadline - time.perf_counter() - MIN_STEP_S * (len(steps) - i - 1)
            timeout = max(MIN_STEP_S, min(profile["timeouts"][name], left))
            log(f"\n== {name}")
            if name == "tests":
                r = step_tests(log, timeout, work)
            elif name == "bench":
                r = step_bench(log, timeout, out, profile, accelerator)
            else:
                r = step_pretrain(log, timeout, work, profile)
            report["steps"][name] = r
            report["wall_s"] = round(time.perf_counter() - t_start, 1)
            write_report(report, out)

    ok = all(s.get("ok") for s in report["steps"].values()) and not (info.get("mismatch") or "").startswith("warning")
    where = f"{info.get('platform')} ({info.get('kind')})"
    report["verdict"] = ("PASS" if ok else "FAILED") + f" on {where}"
    report["wall_s"] = round(time.perf_counter() - t_start, 1)
    write_report(report, out)
    log(f"\n{to_markdown(report)}")
    log(f"gpu-check: {report['verdict']} in {report['wall_s']} s; report {out / 'gpu_check.md'}")
    return 0 if ok else 1


def download_wheels(dest: str, python_version: str) -> int:
    """Wheels (x86-64 Linux, CPython `python_version`) of CARRY, for a machine whose image lacks them."""
    pins = read_pins()
    have = installed_versions(CARRY)
    reqs = []
    for name in CARRY:
        version = pins.get(_norm(name)) or have[name]
        if version is None:
            print(f"error: no pin and no installed version for {name}; install the venv first (make test)")
            return 1
        reqs.append(f"{name}=={version}")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
           python_version, "--implementation", "cp", *(a for p in WHEEL_PLATFORMS for a in ("--platform", p)),
           "-d", dest, *reqs]
    print("$ " + " ".join(cmd), flush=True)
    if subprocess.run(cmd).returncode != 0:
        return 1
    dest_path = Path(dest).resolve()
    git_info = ROOT / ".git" / "info"
    if dest_path.parent == ROOT and (ROOT / ".git").is_dir():  # keep the wheels out of git and of uncarried trees
        git_info.mkdir(exist_ok=True)
        exclude = git_info / "exclude"
        entry = f"/{dest_path.name}/"
        lines = exclude.read_text().splitlines() if exclude.exists() else []
        if entry not in lines:
            with exclude.open("a") as f:
                f.write(("" if not lines or lines[-1] == "" else "\n") + entry + "\n")
    size = sum(f.stat().st_size for f in dest_path.glob("*.whl"))
    print(f"{len(list(dest_path.glob('*.whl')))} wheels, {size / 2**20:.1f} MiB in {dest}; on the lent machine run "
          f"`make gpu-check` with `{dest_path.name}` carried (the working tree and carried paths must stay under "
          f"64 MiB)")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "bench_out" / "gpu_check"))
    p.add_argument("--budget", type=float, help="seconds for all steps together (default 480 on an accelerator, "
                   "540 on a CPU)")
    p.add_argument("--size", choices=["auto", "full", "small"], default="auto",
                   help="full on an accelerator, small on a CPU (auto)")
    p.add_argument("--skip", default="", help="comma-separated steps to skip: tests,bench,pretrain")
    p.add_argument("--download-wheels", metavar="DIR", help="only download the wheels to carry into DIR, then stop")
    p.add_argument("--python-version", default="3.12", help="the target machine's Python, for --download-wheels")
    args = p.parse_args(argv)
    args.skip = [s for s in args.skip.split(",") if s]
    if set(args.skip) - {"tests", "bench", "pretrain"}:
        p.error(f"unknown --skip steps {args.skip}")
    if args.download_wheels:
        return download_wheels(args.download_wheels, args.python_version)
    return check(args)


if __name__ == "__main__":
    sys.exit(main())
