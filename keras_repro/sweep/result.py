"""`SweepResult` and `SweepFailure`: the per-seed outcome of a sweep, and its file.

A result holds every seed of a sweep, the metrics of the seeds that
succeeded and a `SweepFailure` for each seed that did not. It summarises
and compares itself (`keras_repro.sweep.stats`), shows itself as a pandas
DataFrame or a matplotlib plot, and is stored as a versioned, checksummed
JSON document whose floats round-trip exactly.

Example:

```python
import keras_repro as kr

result = kr.SweepResult(seeds=[1, 2, 3], metrics={1: {"acc": 0.8}, 2: {"acc": 0.82}, 3: {"acc": 0.79}})
print(result.summary())
```
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import asdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from keras_repro import _files
from keras_repro import _validate
from keras_repro.seeds import validate_seed
from keras_repro.sweep import stats
from keras_repro.sweep._values import resolve_seeds
from keras_repro.sweep._values import to_metrics
from keras_repro.sweep.stats import SweepComparison
from keras_repro.sweep.stats import SweepSummary

__all__ = ["SweepFailure", "SweepResult"]

_FORMAT = "keras_repro.sweep"
_VERSION = 1


@dataclass(frozen=True)
class SweepFailure:
    """One seed whose ``fn(seed)`` raised (or whose worker died).

    Attributes:
        seed: the seed.
        error_type: the exception's class name, e.g. ``"ValueError"``.
        message: ``str(exception)``.
        traceback: the formatted traceback, as text (from the worker where
            the seed ran).
    """

    seed: int
    error_type: str
    message: str
    traceback: str

    def __str__(self) -> str:
        return f"seed {self.seed}: {self.error_type}: {self.message}"


class SweepResult:
    """Per-seed metrics of a sweep, their summary, comparison and storage.

    Built by `sweep` or `SweepResult.load`; can also be built from metrics
    collected elsewhere.

    Args:
        seeds: every seed of the sweep, in order (successful and failed).
        metrics: ``{seed: {name: value}}`` for the successful seeds.
        failures: `SweepFailure` records of the failed seeds.
        root_seed: the root the seeds were derived from, or None.
        seconds: optional ``{seed: run time in seconds}``.

    Attributes:
        seeds: list of every seed, in order.
        metrics: dict ``{seed: {name: float}}`` of the successful seeds.
        failures: list of `SweepFailure`, in seed order.
        root_seed: int or None.
        seconds: dict ``{seed: float}`` of run times of successful seeds.

    Example:

    ```python
    import keras_repro as kr

    result = kr.SweepResult(seeds=[1, 2, 3], metrics={1: {"acc": 0.8}, 2: {"acc": 0.82}, 3: {"acc": 0.79}})
    result.summary().mean
    result.save("sweep.json")
    same = kr.SweepResult.load("sweep.json")
    ```
    """

    def __init__(
        self,
        seeds: Sequence[int],
        metrics: Mapping[int, Mapping[str, float]],
        failures: Sequence[SweepFailure] = (),
        root_seed: int | None = None,
        seconds: Mapping[int, float] | None = None,
    ):
        seed_list, _ = resolve_seeds(list(seeds), 0)
        known = set(seed_list)
        self.seeds: list[int] = seed_list
        self.root_seed: int | None = None if root_seed is None else validate_seed(root_seed)
        self.metrics: dict[int, dict[str, float]] = {}
        failures = list(failures)
        failed = {f.seed for f in failures}
        for seed in seed_list:
            if seed in metrics:
                if seed in failed:
                    raise ValueError(f"Seed {seed} has both metrics and a failure record.")
                entry = metrics[seed]
                if not isinstance(entry, Mapping):
                    raise TypeError(f"metrics[{seed}] must be a dict {{name: value}}, got {type(entry).__name__}.")
                try:
                    self.metrics[seed] = to_metrics(entry)
                except (TypeError, ValueError) as e:
                    raise type(e)(f"metrics[{seed}]: {e}") from None
        unknown = sorted(set(metrics) - known) + sorted(failed - known)
        if unknown:
            raise ValueError(f"Seeds {unknown} have results but are not in seeds.")
        missing = sorted(known - set(self.metrics) - failed)
        if missing:
            raise ValueError(f"Seeds {missing} have neither metrics nor a failure record.")
        order = {s: i for i, s in enumerate(seed_list)}
        self.failures: list[SweepFailure] = sorted(failures, key=lambda f: order[f.seed])
        self.seconds: dict[int, float] = {int(s): float(t) for s, t in (seconds or {}).items() if s in self.metrics}

    # -- access ------------------------------------------------------------

    @property
    def metric_names(self) -> list[str]:
        """Names of the metrics, in first-seen order."""
        names: dict[str, None] = {}
        for entry in self.metrics.values():
            names.update(dict.fromkeys(entry))
        return list(names)

    def _metric(self, metric: str | None) -> str:
        names = self.metric_names
        if metric is None:
            if len(names) == 1:
                return names[0]
            if not names:
                raise ValueError(self._no_results_message())
            raise ValueError(f"This sweep has several metrics {names}; name one, e.g. metric={names[0]!r}.")
        if metric not in names:
            raise ValueError(f"Unknown metric {metric!r}; this sweep has {names}.")
        return metric

    def _no_results_message(self) -> str:
        first = f" First failure:\n{self.failures[0].traceback}" if self.failures else ""
        return f"No seed of this sweep succeeded ({len(self.failures)} of {len(self.seeds)} failed).{first}"

    def values(self, metric: str | None = None) -> np.ndarray:
        """The metric's values over the successful seeds, in seed order.

        Args:
            metric: the metric name; may be left out when there is only one.

        Returns:
            A float64 NumPy array.
        """
        name = self._metric(metric)
        return np.array([self.metrics[s][name] for s in self.seeds if name in self.metrics.get(s, {})])

    def __len__(self) -> int:
        return len(self.seeds)

    def __repr__(self) -> str:
        return (
            f"SweepResult({len(self.seeds)} seeds, {len(self.metrics)} ok, "
            f"{len(self.failures)} failed, metrics {self.metric_names})"
        )

    # -- statistics ----------------------------------------------------------

    def summary(
        self,
        metric: str | None = None,
        *,
        confidence: float = 0.95,
        resamples: int = 10_000,
        bootstrap_seed: int = 0,
    ) -> SweepSummary:
        """Mean, spread and a bootstrap confidence interval of the mean.

        The interval is the percentile bootstrap: `resamples` resamples of
        the successful seeds' values, drawn by a NumPy generator seeded from
        ``derive_seed(bootstrap_seed, "bootstrap")``, so the same values give
        the same interval every time (and in any order).

        Args:
            metric: the metric name; may be left out when there is only one.
            confidence: coverage of the interval, in (0, 1).
            resamples: number of bootstrap resamples.
            bootstrap_seed: seed of the resampling.

        Returns:
            A `SweepSummary`; ``str()`` of it is a one-line report.
        """
        bootstrap_seed = stats.check_bootstrap_args(confidence, resamples, bootstrap_seed)
        name = self._metric(metric)
        values = self.values(name)
        return stats.summarize(
            name,
            values,
            n_failed=len(self.seeds) - len(values),
            confidence=confidence,
            resamples=resamples,
            bootstrap_seed=bootstrap_seed,
        )

    def compare(
        self,
        other: SweepResult,
        metric: str | None = None,
        *,
        confidence: float = 0.95,
        resamples: int = 10_000,
        bootstrap_seed: int = 0,
        paired: bool = False,
    ) -> SweepComparison:
        """Whether `other` differs from this sweep by more than seed noise.

        The difference is ``mean(other) - mean(self)``: positive when `other`
        scores higher. Its confidence interval is the percentile bootstrap
        of the difference of means, each sweep resampled independently; the
        p-value is Welch's t-test's. The difference is "larger than seed
        noise" when the interval excludes zero.

        With ``paired=True`` both sweeps must have run the same seeds: the
        same seed gives both configurations the same initial weights, data
        order and Dropout masks wherever their models share layer paths, so
        the per-seed differences carry less noise than the two sweeps apart.
        The interval is then the bootstrap of the mean per-seed difference
        (over the seeds that succeeded in both), and the p-value the paired
        t-test's. Pairing is valid when the seed is the only thing that
        varies within each sweep; it says nothing more when the two
        configurations share no layer paths (their streams are unrelated).

        Args:
            other: another `SweepResult` with the same metric.
            metric: the metric name; may be left out when there is only one.
            confidence: coverage of the interval, in (0, 1).
            resamples: number of bootstrap resamples.
            bootstrap_seed: seed of the resampling.
            paired: pair the two sweeps seed by seed (see above).

        Raises:
            ValueError: fewer than 2 successful seeds on a side (pairs, when
                paired), or ``paired=True`` and the sweeps ran other seeds.

        Returns:
            A `SweepComparison`; ``str()`` of it is the verdict.

        Example:

        ```python
        baseline = kr.sweep(train_baseline, seeds=30)
        candidate = kr.sweep(train_candidate, seeds=30)
        print(baseline.compare(candidate, "val_accuracy"))
        ```
        """
        if not isinstance(other, SweepResult):
            raise TypeError(f"compare() needs another SweepResult, got {type(other).__name__}.")
        bootstrap_seed = stats.check_bootstrap_args(confidence, resamples, bootstrap_seed)
        paired = _validate.check_bool("paired", paired)
        name = self._metric(metric)
        if paired:
            if list(self.seeds) != list(other.seeds):
                only = sorted(set(self.seeds) ^ set(other.seeds))
                raise ValueError(
                    "compare(paired=True) needs two sweeps over the same seeds in the same order; "
                    f"these differ ({len(self.seeds)} and {len(other.seeds)} seeds"
                    + (f", e.g. {only[:3]} in only one" if only else ", in another order")
                    + "). Run both with the same seeds (and root_seed), or compare unpaired."
                )
            both = [s for s in self.seeds if name in self.metrics.get(s, {}) and name in other.metrics.get(s, {})]
            mine = np.array([self.metrics[s][name] for s in both])
            theirs = np.array([other.metrics[s][name] for s in both])
        else:
            mine, theirs = self.values(name), other.values(name)
        if len(mine) < 2 or len(theirs) < 2:
            sides = "pairs (seeds that succeeded in both)" if paired else "successful seeds on each side"
            raise ValueError(
                f"compare() needs at least 2 {sides} for {name!r} "
                f"(have {len(mine)} and {len(theirs)}); 30 or more is advisable."
            )
        return stats.compare_means(
            name,
            mine,
            theirs,
            confidence=confidence,
            resamples=resamples,
            bootstrap_seed=bootstrap_seed,
            paired=paired,
        )

    # -- views -------------------------------------------------------------

    def to_frame(self):
        """The per-seed metrics as a pandas DataFrame (one row per successful seed).

        The index is the seed (in sweep order), one column per metric.
        Failed seeds are in `failures`, not in the frame.

        Returns:
            A ``pandas.DataFrame``.

        Raises:
            ImportError: pandas is not installed.
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "SweepResult.to_frame() needs pandas: pip install pandas (or pip install 'keras_repro[test]')."
            ) from None
        seeds = [s for s in self.seeds if s in self.metrics]
        frame = pd.DataFrame(
            [self.metrics[s] for s in seeds],
            index=pd.Index(seeds, name="seed"),
            columns=self.metric_names,
        )
        return frame

    def plot(self, metric: str | None = None, ax: Any = None, *, confidence: float = 0.95):
        """Plots each seed's value, the mean and its bootstrap confidence interval.

        Args:
            metric: the metric name; may be left out when there is only one.
            ax: a matplotlib ``Axes`` to draw on; a new figure when None.
            confidence: coverage of the interval.

        Returns:
            The matplotlib ``Axes``.

        Raises:
            ImportError: matplotlib is not installed.
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError("SweepResult.plot() needs matplotlib: pip install 'keras_repro[plot]'.") from None
        summary = self.summary(metric, confidence=confidence)
        values = self.values(summary.metric)
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3.5))
        runs = np.arange(1, len(values) + 1)
        ax.scatter(runs, values, s=18, color="tab:blue", label=f"per seed (n={summary.n})", zorder=3)
        ax.axhline(summary.mean, color="tab:red", label=f"mean {stats.format_number(summary.mean)}")
        if not math.isnan(summary.ci_low):
            ax.axhspan(
                summary.ci_low,
                summary.ci_high,
                color="tab:red",
                alpha=0.15,
                label=f"{confidence:.0%} CI of the mean",
            )
        ax.set_xlabel("run (in seed order)")
        ax.set_ylabel(summary.metric)
        failed = f", {summary.n_failed} failed" if summary.n_failed else ""
        ax.set_title(f"{summary.metric} over {summary.n} seeds{failed}")
        ax.legend(loc="best", fontsize="small")
        return ax

    def save_plot(self, path: _files.PathLike) -> None:
        """Draws `plot` of every metric, one below the other, to an image file (atomically).

        Args:
            path: the image file; its suffix picks the format (``.png``, ``.svg``, ``.pdf``).

        Raises:
            ImportError: matplotlib is not installed.
            ValueError: matplotlib cannot write images of the suffix of `path`.
        """
        path = _validate.check_path("path", path)
        try:
            from matplotlib.figure import Figure
        except ImportError:
            raise ImportError("SweepResult.save_plot() needs matplotlib: pip install matplotlib") from None
        names = self.metric_names
        figure = Figure(figsize=(6, 3 * len(names)), layout="constrained")
        for axes, metric in zip(figure.subplots(len(names), 1, squeeze=False)[:, 0], names):
            self.plot(metric, ax=axes)
        _files.write_figure(figure, path)

    # -- storage -------------------------------------------------------------

    def save(self, path: _files.PathLike) -> None:
        """Writes the result as a versioned JSON document, atomically.

        Args:
            path: the file to write (``.json``).
        """
        body = {
            "seeds": self.seeds,
            "root_seed": self.root_seed,
            "results": [
                {"seed": s, "metrics": self.metrics[s], "seconds": self.seconds.get(s)}
                for s in self.seeds
                if s in self.metrics
            ],
            "failures": [asdict(f) for f in self.failures],
        }
        _files.write_document(path, _FORMAT, _VERSION, body)

    @classmethod
    def load(cls, path: _files.PathLike) -> SweepResult:
        """Reads a result written by `save`.

        Args:
            path: the file.

        Returns:
            The `SweepResult`, with the same seeds and bit-identical metrics.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a sweep result document, or a malformed one; the
                message names the file.
        """
        document = _files.read_document(path, _FORMAT, (_VERSION,))
        try:
            results = document["results"]
            return cls(
                seeds=document["seeds"],
                metrics={r["seed"]: r["metrics"] for r in results},
                failures=[SweepFailure(**f) for f in document["failures"]],
                root_seed=document["root_seed"],
                seconds={r["seed"]: r["seconds"] for r in results if r.get("seconds") is not None},
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: malformed {_FORMAT} document ({type(e).__name__}: {e}).") from None
