"""The standard-library statistics against scipy (a dev dependency)."""

from __future__ import annotations

import math
import random

import pytest
from scipy import special, stats

from autoresearch.acceptance._stats import (
    bootstrap_p_better,
    estimate_sigma,
    mean,
    normal_cdf,
    normal_quantile,
    pooled_sigma,
    regularized_beta,
    sample_variance,
    student_t_cdf,
    student_t_sf,
    welch_t_test,
    z_test_p,
)


@pytest.mark.parametrize("df", [0.7, 1.0, 1.9, 2.0, 3.3, 7.0, 29.5, 120.0, 5e4, 1e8, 1e12])
@pytest.mark.parametrize("t", [-40.0, -6.0, -2.1, -0.3, 0.0, 0.05, 1.0, 2.92, 5.5, 30.0])
def test_student_t_tail_matches_scipy(t: float, df: float) -> None:
    expected = stats.t.sf(t, df)
    got = student_t_sf(t, df)
    # Relative in the far tail, where p-values decide keeps at small alpha.
    assert got == pytest.approx(expected, rel=1e-7, abs=1e-12)
    assert student_t_cdf(t, df) == pytest.approx(stats.t.cdf(t, df), rel=1e-7, abs=1e-12)


def test_student_t_edges() -> None:
    assert student_t_sf(math.inf, 3) == 0.0
    assert student_t_sf(-math.inf, 3) == 1.0
    with pytest.raises(ValueError, match="degrees of freedom"):
        student_t_sf(1.0, 0)
    with pytest.raises(ValueError, match="NaN"):
        student_t_sf(math.nan, 4)


def test_regularized_beta_matches_scipy() -> None:
    rng = random.Random(3)
    for _ in range(300):
        a, b, x = rng.uniform(0.1, 60), rng.uniform(0.1, 60), rng.random()
        assert regularized_beta(a, b, x) == pytest.approx(special.betainc(a, b, x), abs=1e-11)
    assert regularized_beta(2, 3, 0.0) == 0.0
    assert regularized_beta(2, 3, 1.0) == 1.0
    with pytest.raises(ValueError, match="a, b > 0"):
        regularized_beta(0, 1, 0.5)


def test_welch_matches_scipy() -> None:
    rng = random.Random(7)
    for _ in range(200):
        a = [rng.gauss(0.3, rng.uniform(0.1, 2)) for _ in range(rng.randint(2, 12))]
        b = [rng.gauss(0.0, rng.uniform(0.1, 2)) for _ in range(rng.randint(2, 12))]
        ref = stats.ttest_ind(a, b, equal_var=False, alternative="greater")
        got = welch_t_test(a, b)
        assert got.t == pytest.approx(ref.statistic, rel=1e-9)
        assert got.df == pytest.approx(ref.df, rel=1e-9)
        assert got.p == pytest.approx(ref.pvalue, rel=1e-7, abs=1e-12)
        assert got.diff == pytest.approx(mean(a) - mean(b))


def test_welch_zero_spread_and_one_sided_zero() -> None:
    assert welch_t_test([2.0, 2.0], [1.0, 1.0]).p == 0.0
    assert welch_t_test([1.0, 1.0], [2.0, 2.0]).p == 1.0
    assert welch_t_test([1.0, 1.0], [1.0, 1.0]).p == 0.5
    # One side without spread: its term drops out of the Welch-Satterthwaite df.
    one_sided = welch_t_test([1.0, 1.2, 0.8], [0.0, 0.0, 0.0])
    ref = stats.ttest_1samp([1.0, 1.2, 0.8], 0.0, alternative="greater")
    assert one_sided.p == pytest.approx(ref.pvalue, rel=1e-9)
    assert one_sided.df == pytest.approx(2.0)


def test_welch_needs_two_values_per_side() -> None:
    with pytest.raises(ValueError, match="at least 2 values per side, got 1 and 3"):
        welch_t_test([1.0], [1.0, 2.0, 3.0])


def test_bootstrap_is_seeded_and_sensible() -> None:
    a, b = [1.0, 1.1, 0.9, 1.05], [0.0, 0.1, -0.1, 0.05]
    assert bootstrap_p_better(a, b) == 1.0
    assert bootstrap_p_better(b, a) == 0.0
    assert bootstrap_p_better([1.0, 1.0], [1.0, 1.0]) == 0.5
    rng = random.Random(11)
    x = [rng.gauss(0.2, 1) for _ in range(8)]
    y = [rng.gauss(0.0, 1) for _ in range(8)]
    assert bootstrap_p_better(x, y, seed=5) == bootstrap_p_better(x, y, seed=5)
    # Swapping the sides complements the probability (ties count half either way).
    assert bootstrap_p_better(x, y, seed=5) + bootstrap_p_better(y, x, seed=5) == pytest.approx(
        1.0, abs=0.05
    )
    with pytest.raises(ValueError, match="at least one value"):
        bootstrap_p_better([], [1.0])
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_p_better([1.0], [1.0], resamples=0)


def test_sigma_estimates() -> None:
    assert estimate_sigma([1.0]) is None
    assert estimate_sigma([1.0, 3.0]) == pytest.approx(math.sqrt(2.0))
    assert sample_variance([1.0, 2.0, 3.0, 4.0]) == pytest.approx(stats.tvar([1, 2, 3, 4]))
    with pytest.raises(ValueError, match="at least 2"):
        sample_variance([1.0])
    # Differences between groups are not noise; single runs add no degrees of freedom.
    assert pooled_sigma([[10.0, 12.0], [100.0, 102.0], [7.0]]) == pytest.approx(math.sqrt(2.0))
    assert pooled_sigma([[1.0], [2.0]]) is None
    groups = [[1.0, 2.0, 4.0], [5.0, 5.5]]
    dof = 2 + 1
    ss = sum(sum((v - mean(g)) ** 2 for v in g) for g in groups)
    assert pooled_sigma(groups) == pytest.approx(math.sqrt(ss / dof))


def test_z_test_and_normal() -> None:
    assert normal_cdf(1.3) == pytest.approx(stats.norm.cdf(1.3), rel=1e-12)
    p = z_test_p(0.5, 1.0, 4, 12)
    assert p == pytest.approx(stats.norm.sf(0.5 / math.sqrt(1 / 4 + 1 / 12)), rel=1e-9)
    assert z_test_p(1.0, 0.0, 1, 1) == 0.0
    assert z_test_p(-1.0, 0.0, 1, 1) == 1.0


def test_normal_quantile_inverts_the_cdf() -> None:
    for q in (0.001, 0.03, 0.5, 0.97):
        assert normal_quantile(q) == pytest.approx(stats.norm.ppf(q), rel=1e-9)
        assert normal_cdf(normal_quantile(q)) == pytest.approx(q, rel=1e-9)
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError):
            normal_quantile(bad)
