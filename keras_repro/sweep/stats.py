"""Statistics of a sweep: bootstrap intervals, t-tests, `SweepSummary`, `SweepComparison`.

The intervals are percentile bootstrap intervals of the mean (one sweep),
of the difference of two means (two sweeps, resampled independently), or of
the mean per-seed difference (two sweeps over the same seeds, paired). The
resamples are drawn by a NumPy generator seeded from ``derive_seed(
bootstrap_seed, "bootstrap", ...)`` and the values are sorted first, so the
same values give the same interval every time, in any order. Beside the
interval, a comparison gives the two-sided p-value of Welch's t-test
(unpaired) or of the paired t-test, and a summary the interquartile mean
(the mean of the middle half, as rliable reports it).

Example:

```python
import numpy as np
from keras_repro.sweep import stats

summary = stats.summarize("acc", np.array([0.71, 0.74, 0.69, 0.80]), n_failed=0)
print(summary)
```
"""

from __future__ import annotations

import math
from dataclasses import asdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from keras_repro import _validate
from keras_repro.seeds import derive_seed
from keras_repro.seeds import validate_seed

# `summarize`, `compare_means` and `check_bootstrap_args` are the statistics
# behind `SweepResult.summary` and `SweepResult.compare`, which check the
# arguments (`check_bootstrap_args`) before calling them.
__all__ = ["SweepComparison", "SweepSummary"]

# Bootstrap resamples are drawn in chunks of about this many indices, so
# memory stays bounded however many seeds a sweep has.
_CHUNK_ELEMENTS = 1 << 20


def format_number(value: float) -> str:
    """A number in 4 significant digits, or ``"nan"``."""
    return "nan" if math.isnan(value) else f"{value:.4g}"


@dataclass(frozen=True)
class SweepSummary:
    """Summary statistics of one metric over the successful seeds of a sweep.

    ``std`` is the sample standard deviation (``ddof=1``); ``ci_low`` and
    ``ci_high`` bound the percentile bootstrap confidence interval of the
    mean; ``iqm`` is the interquartile mean (`interquartile_mean`). With
    fewer than two successful seeds ``std`` and the interval are NaN.
    """

    metric: str
    n: int
    n_failed: int
    mean: float
    std: float
    median: float
    min: float
    max: float
    ci_low: float
    ci_high: float
    confidence: float
    iqm: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict."""
        return asdict(self)

    def __str__(self) -> str:
        failed = f", {self.n_failed} failed" if self.n_failed else ""
        return (
            f"{self.metric} over {self.n} seeds{failed}: mean {format_number(self.mean)} "
            f"({self.confidence:.0%} CI {format_number(self.ci_low)} .. {format_number(self.ci_high)}), "
            f"std {format_number(self.std)}, median {format_number(self.median)}, "
            f"IQM {format_number(self.iqm)}, min {format_number(self.min)}, max {format_number(self.max)}"
        )


@dataclass(frozen=True)
class SweepComparison:
    """Difference of one metric's mean between two sweeps, with its interval.

    ``difference`` is ``mean(other) - mean(self)`` for ``self.compare(other)``;
    ``ci_low`` and ``ci_high`` bound its percentile bootstrap confidence
    interval: the two sweeps resampled independently, or, when ``paired``,
    the per-seed differences resampled (``n_self == n_other`` is then the
    number of pairs). ``p_value`` is the two-sided p-value of Welch's t-test
    (paired: of the paired t-test). ``larger_than_noise`` is True when the
    interval excludes zero; ``verdict`` says it in words.
    """

    metric: str
    mean_self: float
    mean_other: float
    difference: float
    ci_low: float
    ci_high: float
    confidence: float
    n_self: int
    n_other: int
    larger_than_noise: bool
    verdict: str
    p_value: float = float("nan")
    paired: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict."""
        return asdict(self)

    def __str__(self) -> str:
        return self.verdict


def interquartile_mean(values: np.ndarray) -> float:
    """The mean of the middle half: a quarter of the values cut from each end.

    ``int(n / 4)`` values are cut from each end of the sorted values (as
    ``scipy.stats.trim_mean(values, 0.25)``); NaN for no values.
    """
    values = np.sort(np.asarray(values, dtype=np.float64))
    if len(values) == 0:
        return float("nan")
    cut = int(0.25 * len(values))
    return float(values[cut : len(values) - cut].mean())


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, h = 1e-300, 1.0
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_test_p_value(t: float, df: float) -> float:
    """Two-sided p-value of Student's t statistic `t` with `df` degrees of freedom."""
    if math.isnan(t) or math.isnan(df) or df <= 0:
        return float("nan")
    if math.isinf(t):
        return 0.0
    return _regularized_beta(df / 2.0, 0.5, df / (df + t * t))


def welch_t_test(mine: np.ndarray, theirs: np.ndarray) -> float:
    """Two-sided p-value of Welch's t-test of ``mean(theirs) != mean(mine)``."""
    var_mine, var_theirs = np.var(mine, ddof=1) / len(mine), np.var(theirs, ddof=1) / len(theirs)
    spread = var_mine + var_theirs
    difference = float(np.mean(theirs) - np.mean(mine))
    if spread == 0:
        return 1.0 if difference == 0 else 0.0
    df = spread**2 / (var_mine**2 / (len(mine) - 1) + var_theirs**2 / (len(theirs) - 1))
    return t_test_p_value(difference / math.sqrt(spread), df)


def paired_t_test(differences: np.ndarray) -> float:
    """Two-sided p-value of the paired t-test: is the mean per-seed difference zero?"""
    spread = float(np.std(differences, ddof=1))
    mean = float(np.mean(differences))
    if spread == 0:
        return 1.0 if mean == 0 else 0.0
    return t_test_p_value(mean / (spread / math.sqrt(len(differences))), len(differences) - 1)


def check_bootstrap_args(confidence: float, resamples: int, bootstrap_seed: int) -> int:
    """Checks the bootstrap arguments; returns the validated `bootstrap_seed`.

    Raises:
        ValueError: `confidence` is not in (0, 1) or `resamples` is not a
            positive integer.
        TypeError / ValueError: `bootstrap_seed` is not a valid seed.
    """
    _validate.check_real(
        "confidence",
        confidence,
        greater_than=0,
        less_than=1,
        allowed="confidence must be a number strictly between 0 and 1, e.g. 0.95",
    )
    _validate.check_int("resamples", resamples, minimum=1, allowed="resamples must be a positive integer, e.g. 10_000")
    return validate_seed(bootstrap_seed)


def _bootstrap_means(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `resamples` resamples (with replacement) of `values`."""
    values = np.sort(values)  # the interval depends on the values, not their order
    n = len(values)
    means = np.empty(resamples)
    chunk = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    return means


def _percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    return float(low), float(high)


def _bootstrap_rng(bootstrap_seed: int, *path: str) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(derive_seed(bootstrap_seed, "bootstrap", *path)))


def summarize(
    metric: str,
    values: np.ndarray,
    n_failed: int,
    confidence: float = 0.95,
    resamples: int = 10_000,
    bootstrap_seed: int = 0,
) -> SweepSummary:
    """Mean, spread and a bootstrap confidence interval of the mean of `values`.

    Args:
        metric: the metric's name.
        values: the successful seeds' values (at least one).
        n_failed: how many seeds of the sweep failed.
        confidence: coverage of the interval, in (0, 1).
        resamples: number of bootstrap resamples, a positive integer.
        bootstrap_seed: seed of the resampling, a valid seed.

    Returns:
        A `SweepSummary`.
    """
    nan = float("nan")
    low = high = std = nan
    if len(values) >= 2:
        std = float(np.std(values, ddof=1))
        means = _bootstrap_means(values, resamples, _bootstrap_rng(bootstrap_seed))
        low, high = _percentile_interval(means, confidence)
    return SweepSummary(
        metric=metric,
        n=len(values),
        n_failed=n_failed,
        mean=float(np.mean(values)),
        std=std,
        median=float(np.median(values)),
        min=float(np.min(values)),
        max=float(np.max(values)),
        ci_low=low,
        ci_high=high,
        confidence=float(confidence),
        iqm=interquartile_mean(values),
    )


def compare_means(
    metric: str,
    mine: np.ndarray,
    theirs: np.ndarray,
    confidence: float = 0.95,
    resamples: int = 10_000,
    bootstrap_seed: int = 0,
    paired: bool = False,
) -> SweepComparison:
    """Whether ``mean(theirs) - mean(mine)`` is larger than seed noise.

    Args:
        metric: the metric's name.
        mine, theirs: the two sweeps' values (at least two each); with
            `paired`, the same seeds in the same order.
        confidence: coverage of the interval, in (0, 1).
        resamples: number of bootstrap resamples, a positive integer.
        bootstrap_seed: seed of the resampling, a valid seed.
        paired: resample the per-seed differences instead of each sweep.

    Returns:
        A `SweepComparison`.
    """
    if paired:
        differences = theirs - mine
        means = _bootstrap_means(differences, resamples, _bootstrap_rng(bootstrap_seed, "compare", "paired"))
        low, high = _percentile_interval(means, confidence)
        p_value = paired_t_test(differences)
        test, seeds = "paired t-test", f"{len(mine)} paired seeds"
    else:
        rng = _bootstrap_rng(bootstrap_seed, "compare")
        mine_means = _bootstrap_means(mine, resamples, rng)
        theirs_means = _bootstrap_means(theirs, resamples, rng)
        low, high = _percentile_interval(theirs_means - mine_means, confidence)
        p_value = welch_t_test(mine, theirs)
        test, seeds = "Welch's t-test", f"{len(mine)} and {len(theirs)} seeds"
    difference = float(np.mean(theirs) - np.mean(mine))
    larger = low > 0 or high < 0
    head = (
        f"{metric}: mean {format_number(float(np.mean(mine)))} -> {format_number(float(np.mean(theirs)))}, "
        f"difference {format_number(difference)} ({confidence:.0%} CI {format_number(low)} .. {format_number(high)}"
        f"{', paired' if paired else ''}; {test} p = {format_number(p_value)})"
    )
    if larger:
        direction = "higher" if difference > 0 else "lower"
        verdict = f"{head} is larger than seed noise: the other configuration is {direction}, over {seeds}."
    else:
        verdict = f"{head} is within seed noise: {seeds} cannot tell the two configurations apart."
    return SweepComparison(
        metric=metric,
        mean_self=float(np.mean(mine)),
        mean_other=float(np.mean(theirs)),
        difference=difference,
        ci_low=low,
        ci_high=high,
        confidence=float(confidence),
        n_self=len(mine),
        n_other=len(theirs),
        larger_than_noise=bool(larger),
        verdict=verdict,
        p_value=float(p_value),
        paired=paired,
    )
