"""How every figure is timed: windows that alternate (A B B A ...), best and median over them, compile
timing, and what the machine was doing (model, cores, load average, memory).

Why alternate: the machines this runs on are shared, and other people's load moves a timing by 2x;
alternating short windows of the things compared makes a burst of load hit all of them alike. The
best window is the one least disturbed by other processes; the median says how typical it was.
"""

from __future__ import annotations

import hashlib
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# The engine's modules: their hashes go with every run (the working tree may be ahead of the commit).
ENGINE_FILES = ("online.py", "workers.py", "evaluation.py")


def stats(seconds: Sequence[float], work: float) -> dict[str, float]:
    """Best and median rate over windows that each did `work` units in `seconds[i]`."""
    rates = [work / s for s in seconds]
    return {"best": float(max(rates)), "median": float(np.median(rates)), "windows": len(rates)}


def rate_stats(rates: Sequence[float]) -> dict[str, Any]:
    """Best and median of per-window rates, with the rates themselves."""
    return {"best": float(max(rates)), "median": float(np.median(rates)), "windows": len(rates),
            "rates": [float(r) for r in rates]}


def ratio(a: dict, b: dict) -> dict[str, float]:
    return {"best": a["best"] / b["best"], "median": a["median"] / b["median"]}


def alternation(names: Sequence[str], reps: int) -> list[str]:
    """The window order: names forward, then backward, `reps` times (A B C C B A A B C ...)."""
    names = list(names)
    return [name for r in range(reps) for name in (names if r % 2 == 0 else names[::-1])]


def alternate(windows: dict[str, Callable[[], None]], reps: int) -> dict[str, list[float]]:
    """Run each window `reps` times in `alternation` order; returns the seconds of each run."""
    times: dict[str, list[float]] = {k: [] for k in windows}
    for name in alternation(list(windows), reps):
        t = time.perf_counter()
        windows[name]()
        times[name].append(time.perf_counter() - t)
    return times


def timed_window(fn: Callable[[], Any], seconds: float, finish: Callable[[Any], Any] | None = None
                 ) -> tuple[int, float]:
    """Call `fn` until `seconds` have passed; (calls, elapsed). `finish(last result)` runs inside the window
    (e.g. block until the device is done)."""
    calls, out, t0 = 0, None, time.perf_counter()
    while True:
        out = fn()
        calls += 1
        if time.perf_counter() - t0 >= seconds:
            break
    if finish is not None:
        finish(out)
    return calls, time.perf_counter() - t0


def compile_timed(fn, *args) -> tuple[Any, float]:
    """Ahead-of-time lower + compile; returns the executable and the seconds it took."""
    t = time.perf_counter()
    compiled = fn.lower(*args).compile()
    return compiled, time.perf_counter() - t


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine_info() -> dict:
    import jax

    dev = jax.devices()[0]
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    here = Path(__file__).parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=5, cwd=here).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                    text=True, timeout=5, cwd=here).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", None
    runner = here.parents[1] / "runner"
    engine_files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12]
                    for p in sorted(runner.glob("*.py")) if p.name in ENGINE_FILES}
    return {
        "platform": dev.platform, "device_kind": dev.device_kind, "device_count": jax.device_count(),
        "cpu": cpu, "cpu_count": os.cpu_count(), "cpu_affinity": usable_cores(),
        "jax": jax.__version__, "python": sys.version.split()[0], "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "git_commit": commit, "git_dirty": dirty, "engine_files_sha256": engine_files,
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }


def memory_info() -> dict:
    import jax

    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    try:
        mem = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory stats raise various errors
        mem = None
    device = None
    if mem:
        device = {k: int(v) for k, v in mem.items() if k in ("peak_bytes_in_use", "bytes_in_use", "bytes_limit")}
    return {"peak_rss_mib": rss_kib / 1024.0, "device_memory": device}
