"""Interval estimates for few-seed comparisons (Agarwal et al., NeurIPS 2021), computed with `rliable`.

Three seeds give a mean ± std that cannot say whether two algorithms differ. Reports here give instead:
- IQM and mean of the final scores with 95% stratified-bootstrap confidence intervals, per task and, where an
  algorithm covers several tasks, over them (runs resampled within each task);
- the probability of improvement P(X > Y): the chance that a run of X scores above a run of Y (Mann-Whitney,
  ties count half), averaged over tasks, with its bootstrap interval. An interval that contains 0.5 does not
  support a difference;
- performance profiles (the share of runs scoring above tau) as PNG.

rliable draws its resamples from NumPy's global generator; every estimate here seeds it (and restores the
caller's state), so a report is reproducible. The statistics evaluated on each resample are written here with the
same NumPy operations as rliable's (`iqm`, `probability_of_improvement`), without scipy's per-call dispatch, which
took most of a report's time (thousands of resamples x pairs); tests/test_stats.py checks they agree bit for bit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPS = 2000  # bootstrap resamples (rliable's default is 50000; 2000 keeps a report within seconds)
CONFIDENCE = 0.95
SEED = 0


@dataclass(frozen=True)
class Interval:
    point: float
    low: float
    high: float

    def fmt(self, digits: int = 1) -> str:
        return f"{self.point:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def excludes(self, value: float) -> bool:
        return not (self.low <= value <= self.high)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def iqm(scores: np.ndarray) -> float:
    """The 25%-trimmed mean of all runs x tasks: scipy's trim_mean (which rliable's aggregate_iqm calls), same ops."""
    a = np.ravel(np.asarray(scores, float))
    cut = int(0.25 * a.size)
    return np.mean(np.partition(a, (cut, a.size - cut - 1))[cut:a.size - cut])


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) averaged over tasks for (runs, tasks) arrays: rliable's Mann-Whitney U / (n_x n_y), ties count half.

    U of `x` against `y` is the number of pairs with x > y plus half the tied pairs, so it is counted directly."""
    probs = []
    for t in range(x.shape[1]):
        a, b = x[:, t], y[:, t]
        if np.array_equal(a, b):
            probs.append(0.5)
        elif np.isnan(a).any() or np.isnan(b).any():
            probs.append(np.nan)  # scipy's default nan_policy: propagate
        else:
            u = np.count_nonzero(a[:, None] > b[None, :]) + 0.5 * np.count_nonzero(a[:, None] == b[None, :])
            probs.append(u / (a.size * b.size))
    return np.mean(probs)


def aggregate_intervals(scores: dict[str, np.ndarray], reps: int = REPS,
                        seed: int = SEED) -> dict[str, dict[str, Interval]]:
    """{name: (runs, tasks) final scores} -> {name: {"iqm": Interval, "mean": Interval}}.

    IQM: the mean of the middle 50% of all runs x tasks (scipy's trim_mean, 25% cut each side); mean: the mean
    of the per-task means. Intervals: stratified bootstrap (runs resampled within each task)."""
    from rliable import library as rly

    def both(x: np.ndarray) -> np.ndarray:
        return np.array([iqm(x), np.mean(np.mean(x, axis=0), axis=0)])  # rliable's aggregate_mean: mean of task means

    out = {}
    for k, v in scores.items():  # each its own seeded stream: a configuration's interval does not depend on the others
        with _seeded(seed):
            points, cis = rly.get_interval_estimates({k: np.asarray(v, float)}, both, reps=reps,
                                                     confidence_interval_size=CONFIDENCE)
        out[k] = {name: Interval(float(points[k][i]), float(cis[k][0, i]), float(cis[k][1, i]))
                  for i, name in enumerate(("iqm", "mean"))}
    return out


def improvement_probability(x: np.ndarray, y: np.ndarray, reps: int = REPS, seed: int = SEED) -> Interval:
    """P(X > Y) for (runs, tasks) score arrays of X and Y over the same tasks, with its bootstrap interval."""
    from rliable import library as rly

    with _seeded(seed):
        points, cis = rly.get_interval_estimates({"pair": (np.asarray(x, float), np.asarray(y, float))},
                                                 probability_of_improvement, reps=reps,
                                                 confidence_interval_size=CONFIDENCE)
    return Interval(float(np.ravel(points["pair"])[0]), float(np.ravel(cis["pair"][0])[0]),
                    float(np.ravel(cis["pair"][1])[0]))


def performance_profiles_png(scores: dict[str, np.ndarray], path: Path | str, colors: dict[str, tuple] | None = None,
                             top: float = 100.0, reps: int = REPS, seed: int = SEED) -> Path:
    """Performance profiles (share of runs scoring above tau, tau from 0 to `top`) with bootstrap bands, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import library as rly
    from rliable import plot_utils

    taus = np.linspace(0.0, top, 41)
    with _seeded(seed):
        profiles, cis = rly.create_performance_profile({k: np.asarray(v, float) for k, v in scores.items()}, taus,
                                                       reps=reps)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    plot_utils.plot_performance_profiles(profiles, taus, performance_profile_cis=cis, colors=colors, ax=ax,
                                         xlabel=r"normalized score $\tau$", labelsize="medium", ticklabelsize="small",
                                         legend=True)
    ax.set_ylabel(r"fraction of runs with score $> \tau$")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def score_matrix(per_task: dict[str, dict[int, float]], tasks: list[str]) -> tuple[np.ndarray, list[int]]:
    """(runs, tasks) array of the seeds every listed task has (rliable needs equal runs per task)."""
    common = sorted(set.intersection(*(set(per_task[t]) for t in tasks)))
    return np.array([[per_task[t][s] for t in tasks] for s in common], float).reshape(len(common), len(tasks)), common
