"""The device JAX runs on, printed first, and one warning line when the accelerator wheels don't match it.

`make <target> ACCEL=cuda12|cuda13|tpu` installs jax's accelerator plugin at the pinned jax version and
records the choice in `.venv/.accel`. When such wheels are installed but JAX finds no such device, JAX
falls back to the CPU with only a log line among others; a 10-seed run then takes hours instead of
minutes. `announce()` (called by the `train` and `pretrain` CLIs before anything else) prints

    pex-jax: device gpu (NVIDIA H200 x1), jax 0.10.2, accelerator wheels: jax-cuda12-plugin 0.10.2 (ACCEL=cuda12)

and, on a mismatch, one `warning:` line on stderr naming the device JAX found instead.

`configure_runtime(role)` sets what JAX reads when it starts its backend: no preallocation of 75% of the
GPU (so evaluation workers and tests can share the GPU with a run) and full float32 matmuls (results
agree with the CPU's to rounding; TF32 would not). Values already in the environment are kept.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

# jax's accelerator plugins -> the `jax.devices()[0].platform` each one provides.
PLUGIN_PLATFORM = {
    "jax-cuda12-plugin": "gpu",
    "jax-cuda13-plugin": "gpu",
    "libtpu": "tpu",
    "libtpu-nightly": "tpu",
}
ACCEL_PLATFORM = {"cpu": "cpu", "cuda12": "gpu", "cuda13": "gpu", "tpu": "tpu"}
PLATFORM_NAME = {"gpu": "GPU", "tpu": "TPU", "cpu": "CPU"}


@dataclass
class DeviceInfo:
    platform: str  # jax.devices()[0].platform: cpu, gpu or tpu
    kind: str  # device_kind, e.g. "NVIDIA H200" or "cpu"
    count: int
    jax_version: str
    wheels: dict[str, str] = field(default_factory=dict)  # installed accelerator plugins -> version
    accel: str | None = None  # what the venv was built for (.venv/.accel), if recorded
    jax_platforms: str = ""  # the JAX_PLATFORMS environment variable, if set


def installed_accelerator_wheels() -> dict[str, str]:
    """{distribution: version} of the jax accelerator plugins installed in this environment."""
    found = {}
    for name in PLUGIN_PLATFORM:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def recorded_accel(prefix: str | os.PathLike | None = None) -> str | None:
    """The ACCEL value the Makefile built this venv with (`<venv>/.accel`), or None outside such a venv."""
    path = Path(prefix if prefix is not None else sys.prefix) / ".accel"
    try:
        value = path.read_text().strip()
    except OSError:
        return None
    return value or None


def device_info() -> DeviceInfo:
    import jax

    devices = jax.devices()
    return DeviceInfo(platform=devices[0].platform, kind=str(devices[0].device_kind), count=len(devices),
                      jax_version=jax.__version__, wheels=installed_accelerator_wheels(), accel=recorded_accel(),
                      jax_platforms=os.environ.get("JAX_PLATFORMS", ""))


def device_line(info: DeviceInfo) -> str:
    wheels = ", ".join(f"{k} {v}" for k, v in sorted(info.wheels.items())) or "none (CPU-only jax)"
    extra = f" (ACCEL={info.accel})" if info.accel else ""
    forced = f", JAX_PLATFORMS={info.jax_platforms}" if info.jax_platforms else ""
    return (f"pex-jax: device {info.platform} ({info.kind} x{info.count}), jax {info.jax_version}, "
            f"accelerator wheels: {wheels}{extra}{forced}")


def _expected_platforms(info: DeviceInfo) -> set[str]:
    expected = {PLUGIN_PLATFORM[w] for w in info.wheels if w in PLUGIN_PLATFORM}
    if info.accel in ACCEL_PLATFORM and info.accel != "cpu":
        expected.add(ACCEL_PLATFORM[info.accel])
    return expected


def _forced_elsewhere(info: DeviceInfo, expected: set[str]) -> bool:
    """JAX_PLATFORMS names platforms and none of the expected ones: the user chose that device."""
    if not info.jax_platforms.strip():
        return False
    names = {p.strip().lower() for p in info.jax_platforms.split(",") if p.strip()}
    aliases = {"gpu": {"gpu", "cuda", "rocm"}, "tpu": {"tpu"}}
    return not any(names & aliases.get(p, {p}) for p in expected)


def mismatch_line(info: DeviceInfo, nvidia_smi: bool | None = None) -> str | None:
    """One `warning:` line when accelerator wheels were asked for but JAX runs elsewhere (else None).

    Also a `note:` when `nvidia-smi` exists but jax has no CUDA wheels and runs on the CPU.
    """
    expected = _expected_platforms(info)
    if expected:
        if info.platform in expected or _forced_elsewhere(info, expected):
            return None
        want = "/".join(PLATFORM_NAME[p] for p in sorted(expected))
        asked = ", ".join(sorted(info.wheels)) or "accelerator wheels"
        how = f"ACCEL={info.accel}" if info.accel and info.accel != "cpu" else "installed"
        check = "`nvidia-smi` and the NVIDIA driver" if "gpu" in expected else "the TPU runtime"
        return (f"warning: {asked} ({how}) but JAX found no {want}: running on {info.platform} ({info.kind} "
                f"x{info.count}); check {check}, or rebuild the CPU venv with `make test ACCEL=cpu`")
    if nvidia_smi is None:
        nvidia_smi = shutil.which("nvidia-smi") is not None
    if info.platform == "cpu" and nvidia_smi and not info.jax_platforms.strip():
        return ("note: nvidia-smi is on this machine but jax has no CUDA wheels: running on cpu; build the venv "
                "with `make <target> ACCEL=cuda12` (or cuda13, or ACCEL=auto)")
    return None


def announce(out=None, err=None) -> DeviceInfo:
    """Print the device line (stdout) and any mismatch line (stderr); returns what was found."""
    info = device_info()
    print(device_line(info), file=out or sys.stdout, flush=True)
    line = mismatch_line(info)
    if line:
        print(line, file=err or sys.stderr, flush=True)
    return info


# --- what JAX reads when it starts: GPU memory and float32 matmul precision ---

# The largest fraction of the GPU's memory each kind of process may grow to (XLA_CLIENT_MEM_FRACTION;
# with preallocation off it is a ceiling, not an allocation). The runner keeps JAX's own limit; workers
# and tests hold small networks and batches, and a cap keeps one of them from starving the run.
MEMORY_FRACTION: dict[str, str | None] = {"runner": None, "worker": "0.2", "test": "0.2"}
# Both names are read by jaxlib; setting both is an error there, so a user's value under either is kept.
MEM_FRACTION_VARS = ("XLA_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_MEM_FRACTION")
PRECISION_VAR = "PEX_JAX_MATMUL_PRECISION"
MATMUL_PRECISIONS = ("default", "high", "highest")  # default: TF32 on Ampere/Hopper; highest: full float32
# Full float32: the updates here are launch-bound (2x256 MLPs, batch 256), so TF32 saves little and would
# move GPU results ~1e-3 away from the CPU's (docs/performance.md, "GPU defaults").
MATMUL_PRECISION = "highest"


def _backend_started() -> bool:
    xla_bridge = sys.modules.get("jax._src.xla_bridge")
    started = getattr(xla_bridge, "backends_are_initialized", None)
    return bool(started and started())


def configure_runtime(role: str = "runner") -> dict[str, str | None]:
    """Set JAX's GPU memory and matmul precision for this process; call before JAX starts its backend.

    That is: before the first `jax.devices()` or array (importing jax is fine). Environment values the
    user set, or a parent process passed on, are kept. `PEX_JAX_MATMUL_PRECISION=default|high|highest`
    overrides the precision. Returns the settings in effect (None: JAX's own default).
    """
    env = os.environ
    if role not in MEMORY_FRACTION:
        raise ValueError(f"role={role!r} is not one of: {', '.join(MEMORY_FRACTION)}")
    chosen = env.get(PRECISION_VAR, "").strip().lower()
    if chosen and chosen not in MATMUL_PRECISIONS:
        raise ValueError(f"{PRECISION_VAR}={chosen} is not one of: {', '.join(MATMUL_PRECISIONS)}")
    changed = False
    if "XLA_PYTHON_CLIENT_PREALLOCATE" not in env:
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
        changed = True
    fraction = MEMORY_FRACTION[role]
    if fraction is not None and not any(env.get(v) for v in MEM_FRACTION_VARS):
        env[MEM_FRACTION_VARS[0]] = fraction
        changed = True

    if chosen or not env.get("JAX_DEFAULT_MATMUL_PRECISION"):
        # jax reads the variable on import; an already imported jax takes it through its config
        env["JAX_DEFAULT_MATMUL_PRECISION"] = chosen or MATMUL_PRECISION
        if "jax" in sys.modules:
            sys.modules["jax"].config.update("jax_default_matmul_precision", env["JAX_DEFAULT_MATMUL_PRECISION"])

    if changed and _backend_started():
        print("warning: configure_runtime() ran after JAX started its backend: the GPU memory settings "
              "apply to new processes only", file=sys.stderr, flush=True)
    return {"XLA_PYTHON_CLIENT_PREALLOCATE": env["XLA_PYTHON_CLIENT_PREALLOCATE"],
            "mem_fraction": next((env[v] for v in MEM_FRACTION_VARS if env.get(v)), None),
            "matmul_precision": env["JAX_DEFAULT_MATMUL_PRECISION"]}
