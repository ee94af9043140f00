"""The ceiling every rate is held against, measured in the same run: XLA's f32 matmul throughput on this
device, and the FLOPs of each timed executable from XLA's cost analysis.

A rate's fraction of the ceiling = rate x FLOPs each / peak. It says how much of the machine a figure
uses, and so how much is left, without dividing by a number from another machine or another run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pex_jax.tools.bench.config import BenchConfig
from pex_jax.tools.bench.harness import rate_stats


def cost_flops(compiled) -> float | None:
    """FLOPs of one call of a compiled executable, from XLA's cost analysis (None where unavailable).

    XLA counts a while loop's body once, so this is taken from executables without a scan over updates.
    """
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - backends without cost analysis raise various errors
        return None
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    flops = cost.get("flops") if cost else None
    return float(flops) if flops and flops > 0 else None


def per_seed(flops: float | None, num_seeds: int) -> float | None:
    return flops / num_seeds if flops else None


def fraction_of_ceiling(rate: float, flops: float | None, peak_gflops: float | None) -> float | None:
    """rate (updates or steps per second) x FLOPs each / peak FLOP/s; None without either number."""
    if not flops or not peak_gflops:
        return None
    return rate * flops / (peak_gflops * 1e9)


class MatmulCeiling:
    """XLA's f32 matmul throughput on the default device: (m, n) @ (n, n) chained `inner` times per call.

    Two sizes: the update's (batch x widest layer, the shape of most of its matmuls) and a large square
    one. `measure(reps)` runs `reps` interleaved windows of each. The run measures `bc.reps` windows of
    each at the start and at the end, and interleaves more with the offline windows (both sizes) and the
    engine's device-call windows (update shape), so that the peak is sampled under the same load as the
    rates; the peak is the best window of all.
    """

    def __init__(self, bc: BenchConfig):
        accelerator = jax.default_backend() != "cpu"
        large = bc.large_matmul or (8192 if accelerator else 2048)
        target = (1e9 if bc.quick else 5e11) if accelerator else (2e7 if bc.quick else 2e9)  # FLOPs per call
        shapes = {"update shape": (bc.batch_size, max(bc.hidden_dims)), "large": (large, large)}
        self.window_s, self.reps, self.sizes, self.calls, self.rates = bc.ceiling_window_s, bc.reps, {}, {}, {}
        rng = np.random.default_rng(0)
        for name, (m, n) in shapes.items():
            inner = max(1, int(np.ceil(target / (2.0 * m * n * n))))
            x = jnp.asarray(rng.normal(size=(m, n)).astype(np.float32))
            w = jnp.asarray((rng.normal(size=(n, n)) / np.sqrt(n)).astype(np.float32))  # keeps |x| about constant
            fn = jax.jit(lambda x, w, inner=inner: jax.lax.fori_loop(0, inner, lambda _, y: y @ w, x))
            compiled = fn.lower(x, w).compile()
            compiled(x, w).block_until_ready()  # warm-up
            self.sizes[name] = {"m": m, "k": n, "n": n, "chained": inner, "flops_per_call": 2.0 * m * n * n * inner}
            self.calls[name] = (compiled, x, w)
            self.rates[name] = []

    def _window(self, name: str) -> None:
        compiled, x, w = self.calls[name]
        calls, t0 = 0, time.perf_counter()
        while True:
            compiled(x, w).block_until_ready()
            calls += 1
            dt = time.perf_counter() - t0
            if dt >= self.window_s:
                break
        self.rates[name].append(calls * self.sizes[name]["flops_per_call"] / dt / 1e9)

    def windows(self, names: Sequence[str] | None = None) -> dict[str, Callable[[], None]]:
        """Matmul windows to interleave with a part's own windows (A B C ... C B A)."""
        return {f"matmul {name}": (lambda name=name: self._window(name)) for name in (names or self.calls)}

    def measure(self, reps: int | None = None) -> None:
        names = list(self.calls)
        for r in range(self.reps if reps is None else reps):
            for name in names if r % 2 == 0 else names[::-1]:
                self._window(name)

    def result(self) -> dict:
        matmul = {name: {**self.sizes[name], **rate_stats(self.rates[name])} for name in self.calls}
        peak_from = max(matmul, key=lambda k: matmul[k]["best"])
        return {"unit": "GFLOP/s", "window_s": self.window_s, "matmul": matmul,
                "peak_gflops": matmul[peak_from]["best"], "peak_from": peak_from}
