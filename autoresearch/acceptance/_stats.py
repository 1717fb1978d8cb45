"""Small statistics for acceptance decisions, without scipy.

scipy is not a core dependency, so the Student-t tail is computed from the regularized
incomplete beta function (a continued fraction, standard library only); the tests check it
against scipy. The bootstrap uses numpy, a core dependency.
Every function takes plain sequences of floats, larger-is-better unless it says otherwise.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

# Continued-fraction settings: 300 terms reach 1e-15 for every df a loop can produce.
_CF_MAX_TERMS = 300
_CF_EPS = 1e-15
_CF_TINY = 1e-300
# Above this many degrees of freedom the t tail is the normal one to ~1e-9 (relative), and
# the continued fraction starts to lose digits.
_NORMAL_DF = 1e9
DEFAULT_BOOTSTRAP_RESAMPLES = 2000


def mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("mean of no values")
    return math.fsum(values) / len(values)


def sample_variance(values: Sequence[float]) -> float:
    """Unbiased variance (n - 1 in the denominator); needs at least two values."""
    n = len(values)
    if n < 2:
        raise ValueError(f"a sample variance needs at least 2 values, got {n}")
    m = mean(values)
    return math.fsum((v - m) ** 2 for v in values) / (n - 1)


def estimate_sigma(values: Sequence[float]) -> float | None:
    """Sample standard deviation of repeated runs of one thing; None below two runs."""
    if len(values) < 2:
        return None
    return math.sqrt(sample_variance(values))


def successive_difference_sigma(values: Sequence[float]) -> float | None:
    """The noise of one run from runs of one thing taken in order: the von Neumann (MSSD)
    estimator, sigma^2 = sum((x[i+1] - x[i])^2) / (2 (n - 1)). Unlike the sample standard
    deviation it barely grows when the mean drifts slowly across the runs, so a load that
    shifted every run's mean between them does not pass for noise. NaNs (failed runs) are
    left out; None below two runs."""
    xs = [v for v in values if v == v]
    if len(xs) < 2:
        return None
    return math.sqrt(
        math.fsum((b - a) ** 2 for a, b in itertools.pairwise(xs)) / (2 * (len(xs) - 1))
    )


def pooled_sigma(groups: Iterable[Sequence[float]]) -> float | None:
    """Noise of one run, pooled over groups of runs of different things (e.g. the runs of
    each incumbent): the within-group spread, so true differences between groups do not
    count as noise. Groups of one run add nothing. None when no group has two runs."""
    sum_sq = 0.0
    dof = 0
    for group in groups:
        if len(group) < 2:
            continue
        m = mean(group)
        sum_sq += math.fsum((v - m) ** 2 for v in group)
        dof += len(group) - 1
    if dof == 0:
        return None
    return math.sqrt(sum_sq / dof)


def normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def normal_quantile(q: float) -> float:
    """The x with normal_cdf(x) == q, for 0 < q < 1 (the one-sided z bar of p = 1 - q)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"a normal quantile needs 0 < q < 1, got {q}")
    return NormalDist().inv_cdf(q)


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    # Lentz's method for the continued fraction of I_x(a, b).
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _CF_TINY else _CF_TINY)
    h = d
    for m in range(1, _CF_MAX_TERMS + 1):
        m2 = 2 * m
        for aa in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _CF_TINY else _CF_TINY)
            c = 1.0 + aa / c
            c = c if abs(c) > _CF_TINY else _CF_TINY
            step = d * c
            h *= step
        if abs(step - 1.0) < _CF_EPS:
            break
    return h


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for a, b > 0 and 0 <= x <= 1."""
    if a <= 0 or b <= 0:
        raise ValueError(f"regularized_beta needs a, b > 0, got a={a}, b={b}")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    # The fraction converges fast only on one side of the mean; use symmetry on the other.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def student_t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` (possibly fractional) degrees of freedom."""
    if df <= 0 or math.isnan(df):
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if math.isnan(t):
        raise ValueError("t is NaN")
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    if df > _NORMAL_DF:
        return 1.0 - normal_cdf(t)
    # Both-tails mass beyond |t| is I_{df/(df+t^2)}(df/2, 1/2).
    tails = regularized_beta(df / 2.0, 0.5, df / (df + t * t))
    return 0.5 * tails if t > 0 else 1.0 - 0.5 * tails


def student_t_cdf(t: float, df: float) -> float:
    return 1.0 - student_t_sf(t, df)


@dataclass(frozen=True)
class WelchResult:
    """Welch's t-test of H1: mean(a) > mean(b). ``p`` is one-sided."""

    t: float
    df: float
    p: float
    diff: float


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> WelchResult:
    """One-sided Welch's t-test that ``a`` has the larger mean (unequal variances).

    Needs two values on each side. When both samples have zero spread the answer is
    exact: p = 0 if mean(a) > mean(b), 1 if below, 0.5 if equal.
    """
    if len(a) < 2 or len(b) < 2:
        raise ValueError(
            f"Welch's t-test needs at least 2 values per side, got {len(a)} and {len(b)}"
        )
    diff = mean(a) - mean(b)
    va, vb = sample_variance(a) / len(a), sample_variance(b) / len(b)
    se2 = va + vb
    if se2 == 0.0:
        p = 0.0 if diff > 0 else 1.0 if diff < 0 else 0.5
        return WelchResult(math.copysign(math.inf, diff) if diff else 0.0, math.inf, p, diff)
    # Welch-Satterthwaite; a zero-variance side contributes no term.
    denom = sum(v * v / (len(s) - 1) for v, s in ((va, a), (vb, b)) if v > 0)
    df = se2 * se2 / denom
    t = diff / math.sqrt(se2)
    return WelchResult(t, df, student_t_sf(t, df), diff)


def bootstrap_p_better(
    a: Sequence[float],
    b: Sequence[float],
    resamples: int = DEFAULT_BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> float:
    """P(mean(a) > mean(b)) under independent resampling of each side, ties counted half.

    Seeded, so a decision replays the same. With a handful of runs the bootstrap sees few
    distinct resamples and is overconfident; pair it with enough runs.
    """
    if not a or not b:
        raise ValueError("bootstrap_p_better needs at least one value per side")
    if resamples < 1:
        raise ValueError(f"resamples must be positive, got {resamples}")
    # numpy (a core dependency) makes 2000 resamples cost microseconds, not milliseconds.
    rng = np.random.default_rng(seed)
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ma = xa[rng.integers(0, len(xa), size=(resamples, len(xa)))].mean(axis=1)
    mb = xb[rng.integers(0, len(xb), size=(resamples, len(xb)))].mean(axis=1)
    return float((np.sum(ma > mb) + 0.5 * np.sum(ma == mb)) / resamples)


def z_test_p(diff: float, sigma: float, n_a: int, n_b: int) -> float:
    """One-sided p of H1: mean difference > 0, for means of ``n_a`` and ``n_b`` runs whose
    per-run noise ``sigma`` is known (calibrated)."""
    if sigma <= 0:
        return 0.0 if diff > 0 else 1.0 if diff < 0 else 0.5
    se = sigma * math.sqrt(1.0 / n_a + 1.0 / n_b)
    return 1.0 - normal_cdf(diff / se)


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of no values")
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2.0


def median_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free interval of the median: the order statistics (x_(k), x_(n+1-k))
    with the largest k whose coverage, 1 - 2 P(Binomial(n, 1/2) < k) (the sign test), is
    at least ``confidence``. (-inf, inf) when even (min, max) falls short (n < 6 at 95%)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    s = sorted(values)
    n = len(s)
    best = None
    below = 0.0  # P(B < k)
    for k in range(1, n // 2 + 1):
        below += math.comb(n, k - 1) / 2.0**n
        if 1.0 - 2.0 * below >= confidence:
            best = k
        else:
            break
    if best is None:
        return -math.inf, math.inf
    return s[best - 1], s[n - best]


def paired_t_p(diffs: Sequence[float]) -> float:
    """One-sided p of H1: mean(diffs) > 0 (a one-sample t-test on paired differences);
    needs two differences. Zero spread: p is 0, 1 or 0.5 by the sign of the mean."""
    n = len(diffs)
    if n < 2:
        raise ValueError(f"a paired t-test needs at least 2 differences, got {n}")
    m = mean(diffs)
    var = sample_variance(diffs)
    if var == 0.0:
        return 0.0 if m > 0 else 1.0 if m < 0 else 0.5
    return student_t_sf(m / math.sqrt(var / n), n - 1)
