"""Training envs of every (task, seed) of a run, stepped in-process or in worker processes.

The online engine steps all agents' envs together once per env step. `LocalEnvs` steps them one
by one in the training process (`--config.env_workers=0`); `EnvPool` spreads them over worker
processes, several envs per worker, with actions and results in shared memory, so one step costs
one message per worker instead of one pickle per env. Both run the same `step_one` per env, so they
give identical transitions for the same seeds (tests/test_online_engine.py).

Autoreset is SAME_STEP, as gymnasium's vector envs: an env whose episode ends is reset at once,
the step returns the reset observation, and the episode's true last observation is kept in
`final_obs` for bootstrapping.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import traceback
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any

import numpy as np

from pex_jax.data.observations import flatten_observation
from pex_jax.errors import PexError


class WorkerError(PexError):
    """An env worker crashed, hung or raised; the message names the task, seed, env and step."""


@dataclass(frozen=True)
class EnvSlot:
    """Which (task, seed) an env belongs to; `label` is what error lines call it."""

    task: Any  # pex_jax.envs.task.Task
    seed: int

    @property
    def label(self) -> str:
        return f"task {self.task.name}, seed {self.seed}"


@dataclass
class StepResult:
    """One step of every env, in slot order."""

    obs: np.ndarray  # (n, obs_dim) float32: what the policy acts on next (the reset obs where an episode ended)
    final_obs: np.ndarray  # (n, obs_dim) float32: the step's true next observation
    reward: np.ndarray  # (n,) float64
    terminated: np.ndarray  # (n,) bool
    truncated: np.ndarray  # (n,) bool
    success: np.ndarray  # (n,) bool: the step's info["success"]

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


def make_slot_env(slot: EnvSlot):
    """The env of one slot, seeded as `make_env(task, seed)` seeds it."""
    from pex_jax.envs.task import make_env

    return make_env(slot.task, int(slot.seed))


def step_one(env, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, bool, bool, bool]:
    """Step one env with SAME_STEP autoreset: (obs, final_obs, reward, terminated, truncated, success)."""
    next_obs, reward, terminated, truncated, info = env.step(action)
    final = flatten_observation(next_obs)
    obs = final
    if terminated or truncated:
        obs = flatten_observation(env.reset()[0])
    return obs, final, float(reward), bool(terminated), bool(truncated), bool(info.get("success", False))


def reset_seed(seed: int, step: int) -> int:
    """The reset seed of an env at a checkpoint boundary: derived from (seed, env step) only."""
    return int(seed) * 1_000_003 + int(step)


class _Arrays:
    """Named numpy views of one shared-memory block (or of plain memory for `LocalEnvs`)."""

    def __init__(self, n: int, obs_dim: int, act_dim: int, buf: memoryview | None = None):
        layout = [("actions", np.float32, (n, act_dim)), ("obs", np.float32, (n, obs_dim)),
                  ("final_obs", np.float32, (n, obs_dim)), ("reward", np.float64, (n,)),
                  ("terminated", np.bool_, (n,)), ("truncated", np.bool_, (n,)), ("success", np.bool_, (n,))]
        self.nbytes = sum(int(np.prod(shape)) * np.dtype(dt).itemsize for _, dt, shape in layout) + 8 * len(layout)
        if buf is None:
            buf = memoryview(bytearray(self.nbytes))
        offset = 0
        for name, dt, shape in layout:
            offset = (offset + 7) // 8 * 8
            view = np.ndarray(shape, dtype=dt, buffer=buf, offset=offset)
            setattr(self, name, view)
            offset += view.nbytes

    def result(self, lo: int = 0, hi: int | None = None) -> StepResult:
        """A copy of the results of envs [lo, hi)."""
        sl = slice(lo, hi)
        return StepResult(self.obs[sl].copy(), self.final_obs[sl].copy(), self.reward[sl].copy(),
                          self.terminated[sl].copy(), self.truncated[sl].copy(), self.success[sl].copy())


def _run_envs(envs, arrays: _Arrays, lo: int, command: tuple) -> None:
    """Execute one command on this block of envs (slots [lo, lo + len(envs))), results into `arrays`.

    ("step", a, b) steps the block's slots in [a, b); ("reset", seeds) resets the whole block."""
    if command[0] == "step":
        for i in range(command[1], command[2]):
            (arrays.obs[i], arrays.final_obs[i], arrays.reward[i], arrays.terminated[i], arrays.truncated[i],
             arrays.success[i]) = step_one(envs[i - lo], arrays.actions[i])
    elif command[0] == "reset":
        for j, (env, seed) in enumerate(zip(envs, command[1], strict=True)):
            arrays.obs[lo + j] = flatten_observation(env.reset(seed=int(seed))[0])
    else:
        raise ValueError(f"unknown env command {command[0]!r}")


class LocalEnvs:
    """All envs in the training process, stepped one after another (`env_workers=0`)."""

    def __init__(self, slots: list[EnvSlot], obs_dim: int, act_dim: int):
        self.slots = slots
        self.arrays = _Arrays(len(slots), obs_dim, act_dim)
        self.envs = [make_slot_env(s) for s in slots]
        self._pending: dict[int, int] = {}

    def reset(self, seeds: list[int], step: int = 0) -> np.ndarray:
        _run_envs(self.envs, self.arrays, 0, ("reset", list(seeds)))
        return self.arrays.obs.copy()

    def step_async(self, actions: np.ndarray, first: int = 0) -> None:
        """Queue a step of slots [first, first + len(actions)); in-process it runs in `step_wait`."""
        self.arrays.actions[first:first + len(actions)] = actions
        self._pending[first] = first + len(actions)

    def step_wait(self, step: int = -1, first: int = 0) -> StepResult:
        end = self._pending.pop(first)
        _run_envs(self.envs, self.arrays, 0, ("step", first, end))
        return self.arrays.result(first, end)

    def step(self, actions: np.ndarray, step: int = -1) -> StepResult:
        self.step_async(actions)
        return self.step_wait(step)

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _worker_main(conn, shm_name: str, n: int, obs_dim: int, act_dim: int, lo: int, slots: list[EnvSlot]) -> None:
    """Worker process: build its envs, then answer step/reset commands until told to close.

    SIGINT / SIGTERM are the trainer's to handle (it checkpoints, then closes the workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    shm = shared_memory.SharedMemory(name=shm_name)
    envs, arrays = [], None
    try:
        arrays = _Arrays(n, obs_dim, act_dim, shm.buf)
        try:
            envs = [make_slot_env(s) for s in slots]
            conn.send(("ok", None))
        except Exception as e:  # noqa: BLE001 - reported to the parent as one line
            conn.send(("error", (0, f"{type(e).__name__}: {e}")))
            return
        while True:
            command = conn.recv()
            if command[0] == "close":
                break
            try:
                _run_envs(envs, arrays, lo, command)
                conn.send(("ok", None))
            except Exception as e:  # noqa: BLE001
                last = traceback.extract_tb(e.__traceback__)[-1]
                conn.send(("error", (0, f"{type(e).__name__}: {e} ({os.path.basename(last.filename)}:{last.lineno})")))
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        for env in envs:
            env.close()
        del arrays
        shm.close()


class EnvPool:
    """Envs spread over `num_workers` processes in contiguous blocks; one message per worker per step.

    Actions go into shared memory, every worker steps its block and writes the results back; the
    parent reads them once all workers have answered. A worker that dies, raises or does not answer
    within `timeout` seconds ends the run with one `WorkerError` line naming the task, seed and step.
    """

    def __init__(self, slots: list[EnvSlot], obs_dim: int, act_dim: int, num_workers: int, timeout: float = 600.0):
        n = len(slots)
        self.slots, self.timeout = slots, float(timeout)
        num_workers = max(1, min(int(num_workers), n))
        self._shm = shared_memory.SharedMemory(create=True, size=_Arrays(n, obs_dim, act_dim).nbytes)
        self.arrays = _Arrays(n, obs_dim, act_dim, self._shm.buf)
        bounds = np.linspace(0, n, num_workers + 1).round().astype(int)
        self.blocks = [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
        ctx = mp.get_context("spawn")
        self._conns, self._procs = [], []
        for lo, hi in self.blocks:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(child, self._shm.name, n, obs_dim, act_dim, lo,
                                                          slots[lo:hi]), daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        self._closed = False
        self._pending: dict[int, tuple[int, list[int]]] = {}
        self._gather("starting its envs", step=0, timeout=max(self.timeout, 300.0))  # imports take a while

    def _gather(self, what: str, step: int, timeout: float | None = None, workers: list[int] | None = None) -> None:
        """Wait for the answer of each worker in `workers` (default all); one error line if one fails."""
        timeout = self.timeout if timeout is None else timeout
        for w in range(len(self._conns)) if workers is None else workers:
            conn, proc = self._conns[w], self._procs[w]
            lo, hi = self.blocks[w]
            where = f"env worker {w} (envs {lo}-{hi - 1}: {self.slots[lo].label} .. {self.slots[hi - 1].label})"
            if not conn.poll(timeout):
                self.close(kill=True)
                raise WorkerError(f"{where} did not answer within {timeout:.0f} s while {what} at env step "
                                  f"{step}; rerun with --config.resume=auto to continue from the last checkpoint")
            try:
                status, payload = conn.recv()
            except (EOFError, OSError):
                code = proc.exitcode
                self.close(kill=True)
                raise WorkerError(f"{where} died (exit code {code}) while {what} at env step {step}; rerun with "
                                  f"--config.resume=auto to continue from the last checkpoint") from None
            if status == "error":
                self.close(kill=True)
                raise WorkerError(f"{where} failed while {what} at env step {step}: {payload[1]}; rerun with "
                                  f"--config.resume=auto to continue from the last checkpoint")

    def _send(self, command: tuple, conns=None) -> None:
        """Send without raising: a dead worker is reported by `_gather`, with its task, seed and step."""
        for conn, cmd in zip(conns or self._conns, command if conns else [command] * len(self._conns), strict=True):
            try:
                conn.send(cmd)
            except (BrokenPipeError, ConnectionResetError, OSError):
                pass

    def reset(self, seeds: list[int], step: int = 0) -> np.ndarray:
        self._send([("reset", [int(s) for s in seeds[lo:hi]]) for lo, hi in self.blocks], self._conns)
        self._gather("resetting", step)
        return self.arrays.obs.copy()

    def step_async(self, actions: np.ndarray, first: int = 0) -> None:
        """Start a step of slots [first, first + len(actions)): one message to each worker holding some."""
        end = first + len(actions)
        self.arrays.actions[first:end] = actions
        workers = [w for w, (lo, hi) in enumerate(self.blocks) if lo < end and first < hi]
        self._send([("step", max(first, self.blocks[w][0]), min(end, self.blocks[w][1])) for w in workers],
                   [self._conns[w] for w in workers])
        self._pending[first] = (end, workers)

    def step_wait(self, step: int = -1, first: int = 0) -> StepResult:
        end, workers = self._pending.pop(first)
        self._gather("stepping", step, workers=workers)
        return self.arrays.result(first, end)

    def step(self, actions: np.ndarray, step: int = -1) -> StepResult:
        self.step_async(actions)
        return self.step_wait(step)

    def close(self, kill: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        for conn, proc in zip(self._conns, self._procs, strict=True):
            if not kill and proc.is_alive():
                try:
                    conn.send(("close",))
                except (BrokenPipeError, OSError):
                    pass
        for proc in self._procs:
            proc.join(timeout=0 if kill else 10)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        for conn in self._conns:
            conn.close()
        del self.arrays
        self._shm.close()
        self._shm.unlink()


def default_workers(requested: int, num_envs: int) -> int:
    """`--config.env_workers`: -1 = all cores but one (at most one per env), 0 = in-process."""
    if requested < 0:
        requested = max(1, (os.cpu_count() or 2) - 1)
    return min(int(requested), num_envs)


def make_envs(slots: list[EnvSlot], obs_dim: int, act_dim: int, workers: int, timeout: float = 600.0):
    """`LocalEnvs` for `workers == 0`, else an `EnvPool` of that many processes."""
    if workers <= 0:
        return LocalEnvs(slots, obs_dim, act_dim)
    return EnvPool(slots, obs_dim, act_dim, workers, timeout)
