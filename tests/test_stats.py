"""Interval estimates (rliable) against hand-computed values, and the report section built from them."""

import numpy as np
import pytest

from pex_jax.tools import stats
from pex_jax.tools.report import interval_section

# 3 runs x 2 tasks
A = np.array([[0.1, 0.5], [0.2, 0.6], [0.3, 0.9]])
B = np.array([[0.05, 0.4], [0.15, 0.45], [0.25, 0.7]])


def test_iqm_mean_and_improvement_probability_match_the_hand_computed_values():
    est = stats.aggregate_intervals({"A": A, "B": B}, reps=500)
    # IQM: the 6 values sorted, 25% (one value) cut at each end: mean(0.2, 0.3, 0.5, 0.6)
    assert est["A"]["iqm"].point == pytest.approx(0.4)
    assert est["A"]["mean"].point == pytest.approx((0.2 + 2.0 / 3.0) / 2)  # the mean of the task means
    # task 1: A beats B in 6 of 9 pairs, task 2 in 7 of 9; averaged over tasks
    p = stats.improvement_probability(A, B, reps=500)
    assert p.point == pytest.approx((6 / 9 + 7 / 9) / 2)
    for interval in (est["A"]["iqm"], est["B"]["mean"], p):
        assert interval.low <= interval.point <= interval.high


def test_the_per_resample_statistics_equal_rliables_bit_for_bit():
    from rliable import metrics

    rng = np.random.default_rng(0)
    for runs_x, runs_y, tasks in ((3, 3, 1), (3, 5, 2), (10, 10, 3), (7, 4, 5)):
        x = rng.integers(0, 6, (runs_x, tasks)) * 10.0 / 3.0  # few distinct values: ties within and across
        y = rng.integers(0, 6, (runs_y, tasks)) * 10.0 / 3.0
        assert stats.iqm(x) == metrics.aggregate_iqm(x)
        assert stats.probability_of_improvement(x, y) == metrics.probability_of_improvement(x, y)
        assert stats.probability_of_improvement(x, x) == metrics.probability_of_improvement(x, x) == 0.5
        u = rng.normal(size=(runs_x, tasks))
        assert stats.iqm(u) == metrics.aggregate_iqm(u)
    nan = np.array([[1.0, np.nan], [2.0, 3.0]])
    assert np.isnan(stats.probability_of_improvement(nan, nan + 1)) and np.isnan(
        metrics.probability_of_improvement(nan, nan + 1))


def test_estimates_are_reproducible_and_leave_the_global_generator_alone():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    first = stats.aggregate_intervals({"A": A}, reps=300)
    assert (np.random.get_state()[1] == before).all()
    assert stats.aggregate_intervals({"A": A}, reps=300) == first


def test_the_report_section_reads_a_clear_difference_and_refuses_an_unsupported_one(tmp_path):
    finals = {"pex": {"t1": {0: 10.0, 1: 12.0, 2: 11.0}, "t2": {0: 50.0, 1: 40.0, 2: 60.0}},
              "direct": {"t1": {0: 80.0, 1: 90.0, 2: 85.0}, "t2": {0: 45.0, 1: 55.0, 2: 50.0}}}
    md = "\n".join(interval_section(finals, tmp_path, {"pex": (0, 0, 1), "direct": (1, 0, 0)}))
    assert "| t1 | P(pex > direct) | 0.00 [0.00, 0.00] | supports X < Y |" in md
    t2 = next(line for line in md.splitlines() if line.startswith("| t2 | P(pex > direct)"))
    assert "no difference supported" in t2
    assert "| all tasks | pex | 3 |" in md and (tmp_path / "performance_profiles.png").stat().st_size > 0
