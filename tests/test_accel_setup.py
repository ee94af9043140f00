"""Accelerator set-up on a CPU: which jax wheels `make ACCEL=...` installs (and that a switch reinstalls),
`SYSTEM_JAX` for a preinstalled image, what `make gpu-wheels` would carry, and the device line / mismatch
warning printed first at start-up.

The Makefile is read with `make -n` against a throwaway venv directory (nothing is installed); the
`registry` tests resolve the same requirements against the package registry with `pip --dry-run`.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pex_jax.device import DeviceInfo, device_line, mismatch_line

ROOT = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make")
needs_make = pytest.mark.skipif(MAKE is None, reason="needs make")
JAX_PIN = re.search(r"^jax==(\S+)", (ROOT / "requirements.txt").read_text(), re.M).group(1)
PLUGINS = {"cuda12": ["jax-cuda12-plugin", "jax-cuda12-pjrt"], "cuda13": ["jax-cuda13-plugin", "jax-cuda13-pjrt"],
           "tpu": ["libtpu"]}
ALL_PLUGINS = sum(PLUGINS.values(), [])
UNREACHABLE = ("Failed to establish a new connection", "Temporary failure in name resolution", "Network is unreachable",
               "Max retries exceeded", "ProxyError", "Connection refused", "timed out", "No route to host")


def make_n(tmp_path, *args, accel_file=None, stamp=True, path_prefix=None, wheels=False):
    """`make -n <args>` with VENV in tmp_path (its stamp fresh unless stamp=False); returns (rc, output)."""
    venv = tmp_path / "venv"
    venv.mkdir(exist_ok=True)
    if stamp:
        (venv / ".installed").touch()
    if accel_file:
        (venv / ".accel").write_text(accel_file + "\n")
    wheel_dir = tmp_path / "whl"
    wheel_dir.mkdir(exist_ok=True)
    if wheels:
        (wheel_dir / "dummy-1.0-py3-none-any.whl").touch()
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "ACCEL", "SYSTEM_JAX", "OUT", "PYTHONPATH")}
    if path_prefix:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env['PATH']}"
    done = subprocess.run([MAKE, "-n", "--no-print-directory", "-C", str(ROOT), f"VENV={venv}",
                           f"WHEELS={wheel_dir}", f"SITE={tmp_path / 'site'}", *args],
                          env=env, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout + done.stderr


def install_line(out: str) -> str | None:
    return next((line for line in out.splitlines() if "pip install -q -r requirements.txt" in line), None)


def stale_plugins(out: str) -> list[str]:
    line = next((line for line in out.splitlines() if "grep -xF" in line), "")
    return re.findall(r"-e (\S+)", line)


@needs_make
@pytest.mark.parametrize("args, accel_file", [((), None), (("ACCEL=cpu",), None), ((), "cpu"),
                                              (("ACCEL=cpu",), "cpu")])
def test_cpu_venv_runs_make_test_as_before_without_reinstalling(tmp_path, args, accel_file):
    rc, out = make_n(tmp_path, "test", *args, accel_file=accel_file)
    assert rc == 0, out
    assert install_line(out) is None and "pip" not in out
    assert "JAX_PLATFORMS=${JAX_PLATFORMS:-cpu}" in out and "bin/python -m pytest" in out


@needs_make
@pytest.mark.parametrize("accel", ["cuda12", "cuda13", "tpu"])
def test_accel_installs_jax_extra_at_the_pin_and_removes_other_plugins(tmp_path, accel):
    rc, out = make_n(tmp_path, "test", f"ACCEL={accel}")
    assert rc == 0, out
    assert f'-r requirements.txt "jax[{accel}]=={JAX_PIN}"' in install_line(out)
    assert f"echo {accel} > {tmp_path / 'venv'}/.accel" in out
    assert sorted(stale_plugins(out)) == sorted(p for p in ALL_PLUGINS if p not in PLUGINS[accel])
    # the venv remembers it: a later `make test` without ACCEL keeps the accelerator wheels
    rc, out = make_n(tmp_path, "test", accel_file=accel)
    assert rc == 0 and install_line(out) is None, out
    # and ACCEL=cpu switches back: plain requirements.txt, every accelerator plugin removed
    rc, out = make_n(tmp_path, "test", "ACCEL=cpu", accel_file=accel)
    assert install_line(out).rstrip().endswith("-r requirements.txt"), out
    assert sorted(stale_plugins(out)) == sorted(ALL_PLUGINS)


def fake_nvidia_smi(tmp_path, cuda: str | None, rc: int = 0) -> Path:
    """A folder holding an `nvidia-smi` that prints a header with `CUDA Version: <cuda>` and exits rc."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    header = f"CUDA Version: {cuda}" if cuda else "no version here"
    (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\necho '| NVIDIA-SMI 580.1   Driver Version: 580.1   {header} |'\n"
                                        f"exit {rc}\n")
    (bin_dir / "nvidia-smi").chmod(0o755)
    return bin_dir


NO_GPU = {"cuda": None, "rc": 9}  # nvidia-smi there but failing, as on a machine with the driver and no GPU


@needs_make
@pytest.mark.parametrize("smi, expected", [({"cuda": "13.0"}, "cuda13"), ({"cuda": "12.4"}, "cuda12"),
                                           (NO_GPU, "cpu")])
def test_accel_auto_follows_nvidia_smi(tmp_path, smi, expected):
    rc, out = make_n(tmp_path, "test", "ACCEL=auto", path_prefix=fake_nvidia_smi(tmp_path, **smi))
    assert rc == 0, out
    if expected == "cpu":
        assert install_line(out) is None
    else:
        assert f'"jax[{expected}]=={JAX_PIN}"' in install_line(out)


# --- a new venv on a GPU machine (no .venv/.accel, no stamp) ---

@needs_make
@pytest.mark.parametrize("cuda, expected", [("13.0", "cuda13"), ("12.4", "cuda12")])
def test_new_venv_on_a_gpu_machine_gets_the_cuda_wheels_and_says_why(tmp_path, cuda, expected):
    rc, out = make_n(tmp_path, "test", stamp=False, path_prefix=fake_nvidia_smi(tmp_path, cuda))
    assert rc == 0, out
    assert f'"jax[{expected}]=={JAX_PIN}"' in install_line(out)
    assert f"echo {expected} > {tmp_path / 'venv'}/.accel" in out
    assert (f"ACCEL={expected} (new venv; auto: nvidia-smi shows CUDA {cuda}; ACCEL=cpu for CPU-only jax): "
            f"installing jax[{expected}]=={JAX_PIN}") in out


@needs_make
@pytest.mark.parametrize("smi", [NO_GPU, None], ids=["nvidia-smi-fails", "no-nvidia-smi"])
def test_new_venv_without_a_gpu_builds_exactly_the_cpu_venv_as_before(tmp_path, smi):
    prefix = fake_nvidia_smi(tmp_path, **smi) if smi else None  # None: the PATH as is (CI has no nvidia-smi)
    if smi is None and shutil.which("nvidia-smi"):
        pytest.skip("this machine has an nvidia-smi")
    rc, out = make_n(tmp_path, "test", stamp=False, path_prefix=prefix)
    rc_cpu, out_cpu = make_n(tmp_path, "test", "ACCEL=cpu", stamp=False, path_prefix=prefix)
    assert rc == rc_cpu == 0 and out == out_cpu, out
    assert install_line(out).rstrip().endswith("-r requirements.txt") and "installing jax" not in out


@needs_make
@pytest.mark.parametrize("cuda, found", [("11.4", "11.4"), (None, "?")])
def test_gpu_without_a_usable_cuda_version_stops_with_one_line_naming_accel(tmp_path, cuda, found):
    smi = fake_nvidia_smi(tmp_path, cuda)
    for args in ((), ("ACCEL=auto",)):
        rc, out = make_n(tmp_path, "test", *args, stamp=False, path_prefix=smi)
        assert rc != 0 and "pip" not in out
        line = (f"*** ACCEL: nvidia-smi shows a GPU but no CUDA version >= 12 (found: {found}); pick jax's wheels "
                f"with ACCEL=cuda13, ACCEL=cuda12 or ACCEL=cpu.  Stop.")
        assert re.fullmatch(r"Makefile:\d+: " + re.escape(line), out.strip()), out
    # an explicit choice builds; help and clean don't need one
    rc, out = make_n(tmp_path, "test", "ACCEL=cpu", stamp=False, path_prefix=smi)
    assert rc == 0 and install_line(out).rstrip().endswith("-r requirements.txt"), out
    for goal in ("help", "clean"):
        assert make_n(tmp_path, goal, stamp=False, path_prefix=smi)[0] == 0


@needs_make
def test_explicit_accel_cpu_builds_a_cpu_venv_on_a_gpu_machine(tmp_path):
    rc, out = make_n(tmp_path, "test", "ACCEL=cpu", stamp=False, path_prefix=fake_nvidia_smi(tmp_path, "12.4"))
    assert rc == 0 and install_line(out).rstrip().endswith("-r requirements.txt"), out
    assert f"echo cpu > {tmp_path / 'venv'}/.accel" in out and "jax[" not in out


@needs_make
@pytest.mark.parametrize("accel_file, smi", [("cpu", {"cuda": "12.4"}), (None, {"cuda": "13.0"}),
                                             ("cuda13", NO_GPU)])
def test_existing_venv_keeps_its_recorded_accel_whatever_nvidia_smi_shows(tmp_path, accel_file, smi):
    # accel_file None: a venv built before .venv/.accel existed, which is cpu
    rc, out = make_n(tmp_path, "test", accel_file=accel_file, path_prefix=fake_nvidia_smi(tmp_path, **smi))
    assert rc == 0 and install_line(out) is None and "pip" not in out, out


@needs_make
@pytest.mark.parametrize("goal", ["demo", "antmaze", "study", "bench", "gpu-check"])
def test_cpu_venv_on_a_gpu_machine_says_so_before_a_run(tmp_path, goal):
    smi = fake_nvidia_smi(tmp_path, "12.4")
    rc, out = make_n(tmp_path, goal, accel_file="cpu", path_prefix=smi)
    assert rc == 0, out
    assert out.splitlines()[0] == (f"note: {tmp_path / 'venv'} is CPU-only (ACCEL=cpu) but nvidia-smi shows a GPU, "
                                   f"so this runs on the CPU; `make {goal} ACCEL=auto` switches it to jax's CUDA "
                                   f"wheels")
    assert out.count("note:") == 1


@needs_make
def test_no_cpu_venv_note_when_cpu_was_asked_for_when_testing_or_without_a_gpu(tmp_path):
    smi = fake_nvidia_smi(tmp_path, "12.4")
    assert "note:" not in make_n(tmp_path, "demo", "ACCEL=cpu", accel_file="cpu", path_prefix=smi)[1]
    assert "note:" not in make_n(tmp_path, "test", accel_file="cpu", path_prefix=smi)[1]
    assert "note:" not in make_n(tmp_path, "demo", accel_file="cuda12", path_prefix=smi)[1]
    no_gpu = fake_nvidia_smi(tmp_path / "no-gpu", **NO_GPU)
    assert "note:" not in make_n(tmp_path, "demo", accel_file="cpu", path_prefix=no_gpu)[1]


@needs_make
def test_help_states_the_new_venv_default_and_the_recorded_accel(tmp_path):
    rc, out = make_n(tmp_path, "help", stamp=False)
    assert "now no venv; a new venv is auto: CUDA where nvidia-smi works, else cpu" in out
    rc, out = make_n(tmp_path, "help", accel_file="cuda12")
    assert "now cuda12; a new venv is auto" in out


@needs_make
def test_unknown_accel_stops_with_the_choices(tmp_path):
    rc, out = make_n(tmp_path, "test", "ACCEL=rocm")
    assert rc != 0 and "ACCEL=rocm is not one of: cpu cuda12 cuda13 tpu auto" in out


@needs_make
def test_gpu_check_uses_python3s_own_jax_and_the_carried_wheels_when_there_is_no_venv(tmp_path):
    rc, out = make_n(tmp_path, "gpu-check", f"PYTHON={sys.executable}", stamp=False, wheels=True)
    assert rc == 0, out
    assert f"--target {tmp_path / 'site'} {tmp_path / 'whl'}/*.whl" in out and "--no-index" in out
    assert f"{sys.executable} experiments/gpu_check.py --out bench_out/gpu_check" in out
    assert "-m venv" not in out
    # with a built venv the same command runs in it, and the wheels are left alone
    rc, out = make_n(tmp_path, "gpu-check", f"PYTHON={sys.executable}", stamp=True, wheels=True)
    assert rc == 0 and "--target" not in out and f"{tmp_path / 'venv'}/bin/python experiments/gpu_check.py" in out


def _dry_run(tmp_path, *reqs, extra=()):
    """pip's resolution of `reqs` (no install); skips the test when the registry can't be reached."""
    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                           "--report", str(report), *extra, *reqs], capture_output=True, text=True, timeout=900)
    if done.returncode != 0 and any(s in done.stdout + done.stderr for s in UNREACHABLE):
        pytest.skip("package registry unreachable")
    assert done.returncode == 0, done.stderr[-3000:]
    return {i["metadata"]["name"].lower(): i["metadata"] for i in json.loads(report.read_text())["install"]}


def _requirement(tmp_path, accel):
    rc, out = make_n(tmp_path, "test", f"ACCEL={accel}")
    return re.search(r'"(jax\[[a-z0-9]+\]==[^"]+)"', install_line(out)).group(1)


@needs_make
@pytest.mark.registry
@pytest.mark.parametrize("accel", ["cuda12", "cuda13", "tpu"])
def test_makefile_requirement_resolves_to_the_accelerator_wheels_at_the_pin(tmp_path, accel):
    req = _requirement(tmp_path, accel)
    jax_meta = _dry_run(tmp_path, req, extra=["--no-deps"])["jax"]
    assert jax_meta["version"] == JAX_PIN
    needs = [r.split(";")[0].strip() for r in jax_meta["requires_dist"] if f'extra == "{accel}"' in r]
    assert f"jaxlib<={JAX_PIN},>={JAX_PIN}" in [n.replace(" ", "") for n in needs]
    plugin_reqs = [re.sub(r"\[[^\]]*\]", "", n) for n in needs if n.startswith(("jax-cuda", "libtpu"))]
    assert plugin_reqs, needs
    resolved = _dry_run(tmp_path, *plugin_reqs, extra=["--no-deps"])
    if accel == "tpu":
        assert "libtpu" in resolved
        return
    plugin = resolved[f"jax-{accel}-plugin"]
    assert plugin["version"] == JAX_PIN
    pjrt = [r.split(";")[0].strip() for r in plugin["requires_dist"] if r.startswith(f"jax-{accel}-pjrt")]
    assert _dry_run(tmp_path, *pjrt, extra=["--no-deps"])[f"jax-{accel}-pjrt"]["version"] == JAX_PIN


@needs_make
@pytest.mark.registry
@pytest.mark.slow
def test_accel_cuda12_resolves_the_whole_requirement_set_with_nvidia_libraries(tmp_path):
    installed = _dry_run(tmp_path, "-r", str(ROOT / "requirements.txt"), _requirement(tmp_path, "cuda12"))
    assert {n: installed[n]["version"] for n in ("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda12-pjrt")} == \
        dict.fromkeys(("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda12-pjrt"), JAX_PIN)
    assert {"nvidia-cublas-cu12", "nvidia-cudnn-cu12", "nvidia-cuda-runtime-cu12"} <= set(installed)
    assert not any(n.startswith(("jax-cuda13", "libtpu")) for n in installed)


@pytest.mark.registry
def test_the_wheels_gpu_wheels_carries_exist_for_the_lent_machines_python(tmp_path):
    from experiments.gpu_check import CARRY, WHEEL_PLATFORMS, _norm, installed_versions, read_pins

    pins, have = read_pins(), installed_versions(CARRY)
    reqs = [f"{n}=={pins.get(_norm(n)) or have[n]}" for n in CARRY]
    plats = [a for p in WHEEL_PLATFORMS for a in ("--platform", p)]
    resolved = _dry_run(tmp_path, *reqs, extra=["--no-deps", "--only-binary=:all:", "--python-version", "3.12",
                                                "--implementation", "cp", *plats, "--target", str(tmp_path / "t")])
    assert {_norm(n) for n in resolved} == {_norm(n) for n in CARRY}
    assert pins["jax"] == JAX_PIN and pins["minari"]


# --- the device line and the mismatch warning ---

def _info(platform="cpu", wheels=None, accel=None, jax_platforms=""):
    kind = {"cpu": "cpu", "gpu": "NVIDIA H200", "tpu": "TPU v5 lite"}[platform]
    return DeviceInfo(platform, kind, 1, JAX_PIN, wheels or {}, accel, jax_platforms)


def test_cuda_wheels_without_a_gpu_give_one_warning_line_naming_the_device_found():
    line = mismatch_line(_info("cpu", {"jax-cuda12-plugin": JAX_PIN}, "cuda12"), nvidia_smi=False)
    assert line == ("warning: jax-cuda12-plugin (ACCEL=cuda12) but JAX found no GPU: running on cpu (cpu x1); "
                    "check `nvidia-smi` and the NVIDIA driver, or rebuild the CPU venv with `make test ACCEL=cpu`")
    # wheels installed by hand (no .venv/.accel) and a TPU request are caught the same way
    assert "JAX found no GPU: running on cpu" in mismatch_line(_info("cpu", {"jax-cuda13-plugin": "1"}))
    assert "JAX found no TPU: running on cpu" in mismatch_line(_info("cpu", {"libtpu": "0.0.42"}, "tpu"))
    assert "JAX found no GPU" in mismatch_line(_info("cpu", {}, "cuda13"), nvidia_smi=False)


def test_no_warning_when_the_device_matches_or_the_cpu_was_chosen():
    assert mismatch_line(_info("gpu", {"jax-cuda12-plugin": JAX_PIN}, "cuda12")) is None
    assert mismatch_line(_info("tpu", {"libtpu": "0.0.42"}, "tpu")) is None
    assert mismatch_line(_info("cpu", {"jax-cuda12-plugin": JAX_PIN}, "cuda12", jax_platforms="cpu")) is None
    assert mismatch_line(_info("cpu"), nvidia_smi=False) is None
    assert mismatch_line(_info("cpu", accel="cpu"), nvidia_smi=False) is None


def test_gpu_present_but_cpu_only_jax_gives_a_note():
    note = mismatch_line(_info("cpu"), nvidia_smi=True)
    assert note.startswith("note: nvidia-smi is on this machine but jax has no CUDA wheels") and "ACCEL=cuda12" in note
    assert mismatch_line(_info("cpu", jax_platforms="cpu"), nvidia_smi=True) is None


def test_device_line_names_platform_kind_versions_and_wheels():
    assert device_line(_info("gpu", {"jax-cuda12-plugin": JAX_PIN}, "cuda12")) == (
        f"pex-jax: device gpu (NVIDIA H200 x1), jax {JAX_PIN}, accelerator wheels: jax-cuda12-plugin {JAX_PIN} "
        f"(ACCEL=cuda12)")
    assert device_line(_info("cpu", jax_platforms="cpu")).endswith("accelerator wheels: none (CPU-only jax), "
                                                                   "JAX_PLATFORMS=cpu")


def test_cli_prints_the_device_first_and_the_mismatch_before_anything_else(tmp_path):
    code = ("import pex_jax.device as d\n"
            f"d.installed_accelerator_wheels = lambda: {{'jax-cuda12-plugin': '{JAX_PIN}'}}\n"
            "from pex_jax.train import main\n"
            "raise SystemExit(main(['pex_jax.train']))\n")
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}  # let JAX pick, with no GPU visible
    env["CUDA_VISIBLE_DEVICES"] = ""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1
    assert done.stdout.splitlines()[0].startswith("pex-jax: device cpu (") and "jax-cuda12-plugin" in done.stdout
    ours = [line for line in done.stderr.splitlines() if line.startswith(("warning:", "error:"))]
    assert ours[0].startswith("warning: jax-cuda12-plugin (installed) but JAX found no GPU: running on cpu")
    assert ours[1].startswith("error: no config given") and len(ours) == 2


# --- configure_runtime: GPU memory and matmul precision, each in a fresh process (this one's JAX is untouched) ---

RUNTIME_VARS = ("XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_MEM_FRACTION",
                "JAX_DEFAULT_MATMUL_PRECISION", "PEX_JAX_MATMUL_PRECISION")


def run_configure(code: str, **env_vars: str) -> subprocess.CompletedProcess:
    """Run `code` after `from pex_jax.device import configure_runtime` in a child with only env_vars set of
    RUNTIME_VARS; it prints the variables as JSON with `show()`."""
    env = {k: v for k, v in os.environ.items() if k not in RUNTIME_VARS}
    env.update(env_vars, JAX_PLATFORMS="cpu")
    prelude = ("import json, os, sys\nfrom pex_jax.device import configure_runtime\n"
               f"def show(): print(json.dumps({{k: os.environ.get(k) for k in {RUNTIME_VARS!r}}}))\n")
    return subprocess.run([sys.executable, "-c", prelude + code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def shown(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("role, fraction", [("runner", None), ("worker", "0.2"), ("test", "0.2")])
def test_configure_runtime_turns_off_preallocation_caps_workers_and_picks_full_f32(role, fraction):
    done = run_configure(f"configure_runtime({role!r}); assert 'jax' not in sys.modules; show()")
    assert shown(done) == {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "XLA_CLIENT_MEM_FRACTION": fraction,
                           "XLA_PYTHON_CLIENT_MEM_FRACTION": None, "JAX_DEFAULT_MATMUL_PRECISION": "highest",
                           "PEX_JAX_MATMUL_PRECISION": None}


def test_configure_runtime_keeps_the_values_the_user_set():
    user = {"XLA_PYTHON_CLIENT_PREALLOCATE": "true", "XLA_PYTHON_CLIENT_MEM_FRACTION": ".5",
            "JAX_DEFAULT_MATMUL_PRECISION": "default"}
    got = shown(run_configure("configure_runtime('worker'); show()", **user))
    # the new name stays unset beside the old one: jaxlib refuses both
    assert got == {**dict.fromkeys(RUNTIME_VARS), **user}
    got = shown(run_configure("configure_runtime('test'); show()", XLA_CLIENT_MEM_FRACTION=".3"))
    assert got["XLA_CLIENT_MEM_FRACTION"] == ".3" and got["XLA_PYTHON_CLIENT_MEM_FRACTION"] is None


def test_matmul_precision_reaches_jax_whether_imported_before_or_after():
    lowered = ("import jax, jax.numpy as jnp\n"
               "text = jax.jit(jnp.dot).lower(jnp.ones((2, 3)), jnp.ones((3, 4))).as_text()\n"
               "print(jax.config.jax_default_matmul_precision, 'precision = [HIGHEST, HIGHEST]' in text)\n")
    done = run_configure("configure_runtime()\n" + lowered)
    assert done.returncode == 0 and done.stdout.split() == ["highest", "True"], done.stderr[-3000:]
    done = run_configure("import jax\nconfigure_runtime()\n" + lowered, PEX_JAX_MATMUL_PRECISION="High")
    assert done.returncode == 0 and done.stdout.split() == ["high", "False"], done.stderr[-3000:]
    # the project's variable wins over JAX's own
    done = run_configure("configure_runtime(); show()", PEX_JAX_MATMUL_PRECISION="default",
                         JAX_DEFAULT_MATMUL_PRECISION="highest")
    assert shown(done)["JAX_DEFAULT_MATMUL_PRECISION"] == "default"


def test_configure_runtime_refuses_unknown_roles_and_precisions_and_changes_nothing():
    code = ("for kw in ({'role': 'evaluator'}, {}):\n"
            "    try:\n        configure_runtime(**kw)\n    except ValueError as e:\n        print(e)\n"
            "    else:\n        raise SystemExit('accepted ' + repr(kw))\n"
            "show()\n")
    done = run_configure(code, PEX_JAX_MATMUL_PRECISION="tf32")
    assert done.stdout.splitlines()[:2] == ["role='evaluator' is not one of: runner, worker, test",
                                            "PEX_JAX_MATMUL_PRECISION=tf32 is not one of: default, high, highest"]
    assert shown(done) == {**dict.fromkeys(RUNTIME_VARS), "PEX_JAX_MATMUL_PRECISION": "tf32"}


def test_configure_runtime_after_the_backend_started_warns_the_memory_settings_come_too_late():
    done = run_configure("import jax\njax.devices()\nconfigure_runtime()\nshow()")
    assert shown(done)["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert [line for line in done.stderr.splitlines() if line.startswith("warning:")] == [
        "warning: configure_runtime() ran after JAX started its backend: the GPU memory settings apply to new "
        "processes only"]
    # nothing to change, nothing to say
    done = run_configure("import jax\njax.devices()\nconfigure_runtime()", XLA_PYTHON_CLIENT_PREALLOCATE="false")
    assert done.returncode == 0 and "warning:" not in done.stderr


def test_gpu_check_runs_the_accel_tests_in_one_process_through_make(tmp_path, monkeypatch):
    from experiments import gpu_check

    calls = []
    monkeypatch.setattr(gpu_check, "run_step", lambda cmd, log, timeout, env=None: calls.append(cmd) or {"rc": 0})
    monkeypatch.setenv("MAKELEVEL", "1")
    gpu_check.step_tests(gpu_check.Log(tmp_path / "log"), 60, tmp_path)
    (cmd,) = calls
    # xdist workers would each claim the accelerator: make test's TEST_WORKERS must be 0 there
    assert cmd[:3] == ["make", "--no-print-directory", "test"] and "TEST_WORKERS=0" in cmd and "TEST_PLATFORMS=" in cmd


@needs_make
def test_make_test_runs_one_xdist_worker_per_core_unless_told(tmp_path, monkeypatch):
    monkeypatch.delenv("TEST_WORKERS", raising=False)
    rc, out = make_n(tmp_path, "test")
    assert rc == 0 and '-n auto --dist worksteal' in out and "import xdist" in out  # no xdist: one process
    rc, out = make_n(tmp_path, "test", "TEST_WORKERS=0")
    assert rc == 0 and '-n 0 --dist worksteal' in out
