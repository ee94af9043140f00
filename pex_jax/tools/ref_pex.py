"""The reference PyTorch PEX, timed in the same run as pex-jax (`make bench-reference`).

One file, two halves:

- **In the project's venv** (standard library only): `prepare_source` puts the reference's code at a
  pinned commit into a directory (from a path the user gives, or a `git clone` when the network allows),
  and `ReferenceWorker` starts a child process in the reference's own venv (torch, numpy; never the
  project's venv) that runs one timing window per request. `pex_jax.tools.bench` alternates those windows
  with its own (A B B A ...), so a burst of load hits both sides alike.
- **In the reference's venv**: `serve` (run as a script: `python pex_jax/tools/ref_pex.py serve ...`;
  it imports nothing from pex_jax) builds the reference's own `IQL` and `PEX` classes, networks,
  `ReplayMemory` and batch samplers at the shapes it is given and times them.

    python -m pex_jax.tools.ref_pex fetch --dest .ref/PEX-b0ae11e [--src PATH] [--commit b0ae11e]

Nothing of the reference is edited on disk or kept in this repository. To run on a CPU without d4rl or
gym, `pex/utils/util.py` is executed from its source text with these replacements, each of which must
match exactly once (every one applied is listed in the bench output):
- `import d4rl` and `import gym` become `= None` when the package is not installed (only
  `get_env_and_dataset` and `eval_policy` use them; nothing timed does);
- `sample_batch`'s hard-coded `v[indices].cuda()` becomes `.to(DEFAULT_DEVICE)` when the reference runs
  on the CPU (with `CUDA_VISIBLE_DEVICES=""` set before torch is imported, so that `DEFAULT_DEVICE`, chosen
  by `torch.cuda.is_available()`, is the CPU even with a CUDA build of torch).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REF_URL = "https://github.com/Haichao-Zhang/PEX.git"
REF_COMMIT = "b0ae11e"  # "Update README", the last commit of the reference repository
MARKER = ".pex_ref.json"  # written into the prepared directory: where the code came from, which commit
FIGURES = ("offline", "pex_update", "online_step", "act")


class RefBenchError(RuntimeError):
    """The reference could not be prepared or run; the message says what to do."""


# --- Getting the code (project venv) ---


def _git(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-c", "safe.directory=*", *args], capture_output=True, timeout=600, **kw)


def _extract(repo: Path, commit: str, dest: Path) -> str:
    """`git archive` of `commit` from a clone or bare git dir into dest; returns the full commit id."""
    rev = _git(["-C", str(repo), "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"], text=True)
    if rev.returncode != 0:
        head = _git(["-C", str(repo), "rev-parse", "--short", "HEAD"], text=True).stdout.strip()
        raise RefBenchError(f"commit {commit} is not in the git repository {repo} (its HEAD is {head or '?'}); "
                             f"pass a clone that has it, or REF_COMMIT={head or '<commit>'} to time that one")
    full = rev.stdout.strip()
    with tempfile.TemporaryFile() as tar:
        archive = subprocess.run(["git", "-c", "safe.directory=*", "-C", str(repo), "archive", "--format=tar", full],
                                 stdout=tar, stderr=subprocess.PIPE, timeout=600)
        if archive.returncode != 0:
            raise RefBenchError(f"git archive {full[:7]} failed in {repo}: {archive.stderr.decode().strip()}")
        tar.seek(0)
        with tarfile.open(fileobj=tar) as t:
            t.extractall(dest, filter="data")
    return full


def prepare_source(dest: str | Path, commit: str = REF_COMMIT, src: str | Path | None = None,
                   url: str = REF_URL, log=print) -> dict:
    """The reference's code at `commit` in `dest`; returns what the marker file records.

    `src`: a clone or bare git directory (the commit is taken from it), or a plain source tree (taken as
    is; its commit cannot be checked). Without `src`, `git clone url`. Reuses `dest` when it already holds
    the same commit from the same place.
    """
    dest = Path(dest)
    origin = str(Path(src).resolve()) if src else url
    marker = dest / MARKER
    if marker.is_file():
        info = json.loads(marker.read_text())
        if info.get("requested") == commit and info.get("origin") == origin:
            return info
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if src:
            path = Path(src)
            if not path.exists():
                raise RefBenchError(f"REF_SRC={src} does not exist")
            is_git = _git(["-C", str(path), "rev-parse", "--git-dir"], text=True).returncode == 0
            if is_git:
                full = _extract(path, commit, tmp)
            elif (path / "pex" / "algorithms" / "pex.py").is_file():
                shutil.copytree(path, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".git", "__pycache__"))
                known = json.loads((path / MARKER).read_text()).get("commit") if (path / MARKER).is_file() else None
                full = f"{known} (per {path / MARKER})" if known else f"unknown (plain source tree; {commit} requested)"
            else:
                raise RefBenchError(f"REF_SRC={src} is neither a git repository nor a PEX source tree "
                                     "(no pex/algorithms/pex.py)")
        else:
            log(f"cloning {url} for the reference at {commit}")
            with tempfile.TemporaryDirectory() as clone:
                try:
                    done = _git(["clone", "--quiet", "--no-checkout", url, clone], text=True,
                                env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
                except subprocess.TimeoutExpired:
                    done = subprocess.CompletedProcess([], 1, "", "timed out after 600 s")
                if done.returncode != 0:
                    why = (done.stderr.strip().splitlines() or ["no message"])[-1]
                    raise RefBenchError(f"cannot get the reference PEX at {commit}: git clone {url} failed ({why}); "
                                         "without network pass REF_SRC=<a clone, bare git dir or source tree of it>")
                full = _extract(Path(clone), commit, tmp)
        if not (tmp / "pex" / "algorithms" / "pex.py").is_file():
            raise RefBenchError(f"{origin} at {commit} has no pex/algorithms/pex.py: not the PEX reference")
        info = {"requested": commit, "commit": full, "origin": origin, "prepared": time.strftime("%Y-%m-%d %H:%M:%S")}
        (tmp / MARKER).write_text(json.dumps(info, indent=1) + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
        log(f"reference PEX {full[:7] if len(full) == 40 else full} from {origin} in {dest}")
        return info
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_python(python: str) -> str:
    """The torch version in the reference's venv; RefBenchError when it has no torch."""
    try:
        done = subprocess.run([python, "-c", "import numpy, torch; print(torch.__version__)"], capture_output=True,
                              text=True, timeout=300, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    except OSError as e:
        raise RefBenchError(f"cannot run the reference's Python {python}: {e}; `make bench-reference` builds "
                             ".venv-ref") from None
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["?"])[-1]
        raise RefBenchError(f"{python} cannot import torch and numpy ({why}); `make bench-reference` builds .venv-ref "
                            "with them")
    return done.stdout.strip()


# --- The worker process (client side, project venv) ---


class ReferenceWorker:
    """A `serve` process in the reference's venv; `window(figure, seconds)` times one window there."""

    def __init__(self, python: str, ref_dir: str | Path, *, obs_dim: int, act_dim: int, hidden_dims, batch_size: int,
                 hp: dict, threads: int, device: str = "cpu", dataset_size: int = 1_000_000,
                 buffer_rows: int = 100_000, buffer_capacity: int = 1_000_000):
        cmd = [python, str(Path(__file__).resolve()), "serve", "--dir", str(ref_dir), "--obs-dim", str(obs_dim),
               "--act-dim", str(act_dim), "--hidden", ",".join(str(h) for h in hidden_dims),
               "--batch", str(batch_size), "--threads", str(threads), "--device", device,
               "--dataset-size", str(dataset_size), "--buffer-rows", str(buffer_rows),
               "--buffer-capacity", str(buffer_capacity), "--hp", json.dumps(hp)]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        if device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=env)
        self.info = self._receive()

    def _receive(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RefBenchError(f"the reference worker exited (code {self.proc.wait()}); its messages are above")
        msg = json.loads(line)
        if "error" in msg:
            raise RefBenchError(f"reference worker: {msg['error']}")
        return msg

    def window(self, figure: str, seconds: float, threads: int) -> tuple[int, float]:
        """Calls of `figure` made in one window of at least `seconds` on `threads` torch threads, and its length."""
        request = {"cmd": "window", "figure": figure, "seconds": seconds, "threads": threads}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        msg = self._receive()
        return msg["calls"], msg["seconds"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- The worker process (server side, reference venv: torch, numpy) ---


def _replace_once(text: str, old: str, new: str, where: str) -> str:
    if text.count(old) != 1:
        raise RefBenchError(f"{where}: expected exactly one {old!r} ({text.count(old)} found); "
                             "the reference changed, so the CPU patches need a look")
    return text.replace(old, new)


def load_reference(ref_dir: Path, on_cpu: bool):
    """Import the reference's modules with the patches in the module docstring; returns (modules, patches)."""
    import importlib
    import importlib.util
    import types

    path = ref_dir / "pex" / "utils" / "util.py"
    text, patches = path.read_text(), []
    for name in ("d4rl", "gym"):
        if importlib.util.find_spec(name) is None:
            stub = f"{name} = None  # pex-jax bench: not installed\n"
            text = _replace_once(text, f"import {name}\n", stub, str(path))
            patches.append(f"pex/utils/util.py: 'import {name}' -> '{name} = None' ({name} is not installed; "
                           "only get_env_and_dataset and eval_policy use it, nothing timed)")
    import torch

    on_cpu = on_cpu or not torch.cuda.is_available()
    if on_cpu:
        text = _replace_once(text, "v[indices].cuda()", "v[indices].to(DEFAULT_DEVICE)", str(path))
        patches.append("pex/utils/util.py sample_batch: 'v[indices].cuda()' -> 'v[indices].to(DEFAULT_DEVICE)' "
                       "(hard-coded CUDA; the run is on the CPU)")
    sys.path.insert(0, str(ref_dir))
    importlib.import_module("pex.utils")  # namespace packages: the reference has no __init__.py files
    spec = importlib.util.spec_from_file_location("pex.utils.util", path)
    util = importlib.util.module_from_spec(spec)
    sys.modules["pex.utils.util"] = util
    exec(compile(text, str(path), "exec"), util.__dict__)  # noqa: S102 - the reference's own source, patched as listed
    if on_cpu and util.DEFAULT_DEVICE.type != "cpu":
        raise RefBenchError(f"DEFAULT_DEVICE is {util.DEFAULT_DEVICE}; CUDA_VISIBLE_DEVICES must be set before torch")
    from pex.algorithms.iql import IQL
    from pex.algorithms.pex import PEX
    from pex.networks.policy import GaussianPolicy
    from pex.networks.value_functions import DoubleCriticNetwork, ValueNetwork

    if not on_cpu:
        util.set_default_device()  # what main_offline.py / main_online.py do when CUDA is available
    mods = types.SimpleNamespace(torch=torch, util=util, IQL=IQL, PEX=PEX, GaussianPolicy=GaussianPolicy,
                                 DoubleCriticNetwork=DoubleCriticNetwork, ValueNetwork=ValueNetwork)
    return mods, patches


class _Timed:
    """The reference's objects at the requested shapes, and one callable per figure."""

    def __init__(self, m, a):
        import random
        import types

        import numpy as np

        torch, util = m.torch, m.util
        hidden = [int(h) for h in a.hidden.split(",")]
        if len(set(hidden)) != 1:
            raise RefBenchError(f"the reference's networks have equal hidden layers; got {hidden}")
        width, depth, hp = hidden[0], len(hidden), json.loads(a.hp)
        torch.set_num_threads(a.threads)  # the reference's scripts use 1; the bench gives it the cores XLA gets
        torch.manual_seed(0)
        random.seed(0)
        np.random.seed(0)
        rng = np.random.default_rng(0)
        n, obs_dim, act_dim = a.dataset_size, a.obs_dim, a.act_dim
        # What get_env_and_dataset returns for AntMaze: torchified float32 rows, rewards already r - 1,
        # bool terminals (d4rl.qlearning_dataset). Speed does not depend on the values.
        self.dataset = {
            "observations": util.torchify(rng.normal(size=(n, obs_dim)).astype(np.float32)),
            "actions": util.torchify(rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32)),
            "next_observations": util.torchify(rng.normal(size=(n, obs_dim)).astype(np.float32)),
            "rewards": util.torchify((rng.random(n) < 0.01).astype(np.float32) - 1.0),
            "terminals": util.torchify(rng.random(n) < 0.01),
        }
        space = types.SimpleNamespace(low=-np.ones(act_dim, np.float32), high=np.ones(act_dim, np.float32))

        def parts():
            return dict(
                critic=m.DoubleCriticNetwork(obs_dim, act_dim, hidden_dim=width, n_hidden=depth),
                vf=m.ValueNetwork(obs_dim, hidden_dim=width, n_hidden=depth),
                policy=m.GaussianPolicy(obs_dim, act_dim, hidden_dim=width, n_hidden=depth, action_space=space,
                                        scale_distribution=False, state_dependent_std=False),
                optimizer_ctor=lambda params: torch.optim.Adam(params, lr=hp["lr"]),
                tau=hp["expectile"], beta=hp["beta"], discount=hp["discount"], target_update_rate=hp["target_rate"],
            )

        self.iql = m.IQL(max_steps=hp["offline_steps"], **parts())  # as main_offline.py builds it
        with tempfile.TemporaryDirectory() as tmp:  # as main_online.py --algorithm pex: from an offline checkpoint
            ckpt = os.path.join(tmp, "offline_ckpt")
            torch.save(self.iql.state_dict(), ckpt)
            self.pex = m.PEX(ckpt_path=ckpt, inv_temperature=hp["inv_temperature"], **parts())
        self.memory = util.ReplayMemory(a.buffer_capacity, 0)
        obs = rng.normal(size=(a.buffer_rows + 1, obs_dim))  # float64, as gym's AntMaze returns observations
        for i in range(a.buffer_rows):
            self.memory.push(obs[i], rng.uniform(-1, 1, act_dim).astype(np.float32), -1.0, obs[i + 1], 0.0)
        self.recorded = [rng.normal(size=obs_dim) for _ in range(64)]  # env excluded: replayed observations
        self.i, self.state = 0, self.recorded[0]
        self.m, self.batch = m, a.batch
        self.fns = {"offline": self.offline, "pex_update": self.pex_update, "online_step": self.online_step,
                    "act": self.act}
        for fn in self.fns.values():  # warm-up: first-call allocations
            for _ in range(3):
                fn()

    def offline(self):  # main_offline.py's loop body
        self.iql.update(**self.m.util.sample_batch(self.dataset, self.batch))

    def pex_update(self):  # main_online.py's update, double buffer (half dataset, half online memory)
        u = self.m.util
        self.pex.update(*u.get_batch_from_dataset_and_buffer(self.dataset, self.memory, self.batch, True))

    def _select(self, state):  # main_online.py: grad mode on, evaluate=False
        u = self.m.util
        return self.pex.select_action(u.torchify(state).to(u.DEFAULT_DEVICE)).detach().cpu().numpy()

    def act(self):
        return self._select(self.state)

    def online_step(self):  # main_online.py's loop body at UTD 1 without env.step (replayed observations)
        action = self._select(self.state)
        self.pex_update()
        self.i = (self.i + 1) % len(self.recorded)
        next_state = self.recorded[self.i]
        self.memory.push(self.state, action, -1.0, next_state, 0.0)  # reward_transformer(r) = r - 1 for AntMaze
        self.state = next_state

    def window(self, figure: str, seconds: float) -> tuple[int, float]:
        fn, calls = self.fns[figure], 0
        t0 = time.perf_counter()
        while True:
            fn()
            calls += 1
            dt = time.perf_counter() - t0
            if dt >= seconds:
                return calls, dt


def serve(argv=None) -> int:
    p = argparse.ArgumentParser(prog="ref_pex.py serve")
    p.add_argument("--dir", required=True, help="the prepared reference source tree")
    p.add_argument("--obs-dim", type=int, default=29)
    p.add_argument("--act-dim", type=int, default=8)
    p.add_argument("--hidden", default="256,256")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--device", choices=("cpu", "auto"), default="cpu")
    p.add_argument("--dataset-size", type=int, default=1_000_000)
    p.add_argument("--buffer-rows", type=int, default=100_000)
    p.add_argument("--buffer-capacity", type=int, default=1_000_000)
    p.add_argument("--hp", default=json.dumps({"lr": 3e-4, "expectile": 0.7, "beta": 10.0, "discount": 0.99,
                                               "target_rate": 0.005, "inv_temperature": 10.0,
                                               "offline_steps": 1_000_000}))
    a = p.parse_args(argv)
    if a.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch is imported
    # Replies go to the original stdout; anything else printed (torch warnings, the reference's prints) to stderr.
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(msg: dict) -> None:
        channel.write(json.dumps(msg) + "\n")

    ref_dir = Path(a.dir)
    try:
        t0 = time.perf_counter()
        m, patches = load_reference(ref_dir, on_cpu=a.device == "cpu")
        timed = _Timed(m, a)
        marker = ref_dir / MARKER
        source = json.loads(marker.read_text()) if marker.is_file() else {}
        send({"ready": True, "torch": m.torch.__version__, "python": sys.version.split()[0],
              "device": str(m.util.DEFAULT_DEVICE), "threads": m.torch.get_num_threads(), "patches": patches,
              "commit": source.get("commit", "unknown"), "origin": source.get("origin", str(ref_dir)),
              "dataset_rows": a.dataset_size, "buffer_rows": a.buffer_rows, "setup_s": time.perf_counter() - t0})
    except Exception as e:  # noqa: BLE001 - reported to the parent, which stops the bench with it
        send({"error": f"{type(e).__name__}: {e}"})
        return 1
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("cmd") == "quit":
            break
        if req.get("cmd") == "window" and req.get("figure") in timed.fns:
            threads = int(req.get("threads") or a.threads)
            if m.torch.get_num_threads() != threads:
                m.torch.set_num_threads(threads)
            calls, seconds = timed.window(req["figure"], float(req["seconds"]))
            send({"calls": calls, "seconds": seconds})
        else:
            send({"error": f"unknown request {req}"})
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        return serve(argv[1:])
    p = argparse.ArgumentParser(prog="python -m pex_jax.tools.ref_pex", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="put the reference's code at a pinned commit into --dest")
    f.add_argument("--dest", required=True)
    f.add_argument("--commit", default=REF_COMMIT)
    f.add_argument("--src", default="", help="a clone, bare git dir or source tree (default: git clone)")
    f.add_argument("--url", default=REF_URL)
    sub.add_parser("serve", help="the timing worker (run by pex_jax.tools.bench in the reference's venv)")
    a = p.parse_args(argv)
    try:
        prepare_source(a.dest, a.commit, a.src or None, a.url)
    except RefBenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
