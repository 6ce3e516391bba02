"""How far apart two runs are, record by record, once they differ.

A digest says whether two values are equal, not by how much they differ. So
each trace record also stores, for each floating-point variable, its sum and
its L2 norm in float64 (`summarize`, in the record's ``"summaries"``, in the
order of its ``"variables"``). From the first divergence on, `drift` compares
the two runs' records: at each record, the relative difference of the norms
of every variable whose digest differs, the largest first. A difference that
stays near 1e-7 (a reduction summed in another order) then reads differently
from one that grows to 1e-1 (a run that went elsewhere). `plot_drift` draws
it; ``keras-repro diff A B --plot drift.png`` does both.

Example:

```python
from keras_repro.drift import relative_difference, summarize

a = np.ones(1000, "float32")
b = a.copy()
b[0] += 1e-3
relative_difference(summarize(a), summarize(b))  # about 1e-6
```
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from keras_repro import _files
from keras_repro import _validate
from keras_repro._summary import decode
from keras_repro._summary import summarize
from keras_repro.divergence import where

__all__ = ["Drift", "DriftPoint", "drift", "plot_drift", "relative_difference", "summarize"]

_SHOWN = 3  # variables named per record in a description


def relative_difference(a: Sequence[Any] | None, b: Sequence[Any] | None) -> float | None:
    """How far apart two summaries' norms are: ``|na - nb| / max(na, nb)``.

    0.0 when the norms are equal (also when both are zero), NaN when either
    is not finite and they are not the same, None when either summary is
    missing (a variable with no float summary, or a trace written before
    traces had them).
    """
    if a is None or b is None:
        return None
    na, nb = decode(a[1]), decode(b[1])
    if na == nb or (math.isnan(na) and math.isnan(nb)):
        return 0.0
    if not (math.isfinite(na) and math.isfinite(nb)):
        return math.nan
    return abs(na - nb) / max(abs(na), abs(nb))


@dataclasses.dataclass(frozen=True)
class DriftPoint:
    """How far apart two runs are at one record.

    Attributes:
        where: the record, as `keras_repro.divergence.where` says it.
        step: the training step at the record, when known.
        differences: ``(path, relative norm difference)`` of each float
            variable whose digest differs, the largest first (NaN first of
            all: a run that blew up).
    """

    where: str
    step: int | None
    differences: tuple[tuple[str, float], ...]

    @property
    def largest(self) -> float:
        """The largest relative difference at this record (0.0 when none is known)."""
        return self.differences[0][1] if self.differences else 0.0

    def describe(self) -> str:
        """E.g. ``fit 0, end of epoch 2, step 8: 3.1e-07 dense/kernel, 1.2e-07 dense/bias``."""
        at = self.where + (f", step {self.step}" if self.step is not None else "")
        if not self.differences:
            return f"{at}: the differing variables have no float summary"
        shown = ", ".join(f"{value:.2g} {path}" for path, value in self.differences[:_SHOWN])
        more = f" and {len(self.differences) - _SHOWN} more" if len(self.differences) > _SHOWN else ""
        return f"{at}: {shown}{more}"


@dataclasses.dataclass(frozen=True)
class Drift:
    """How far apart two runs are at each record from their first divergence on.

    Attributes:
        points: one `DriftPoint` per record pair with float summaries, in
            trace order, from the first divergence to the end of the shorter
            trace.
    """

    points: tuple[DriftPoint, ...]

    def describe(self) -> str:
        """One line: the relative norm difference at the first divergence and at the last record."""
        first, last = self.points[0], self.points[-1]
        text = f"relative difference of the norms at {first.describe()}"
        if len(self.points) > 1:
            text += f"; at the last record, {last.describe()}"
        return text

    def table(self) -> str:
        """One line per record, as ``keras-repro diff`` prints it."""
        return "\n".join(point.describe() for point in self.points)


def _order(item: tuple[str, float]) -> tuple[bool, float]:
    return (not math.isnan(item[1]), -item[1] if not math.isnan(item[1]) else 0.0)


def _point(a: Mapping[str, Any], b: Mapping[str, Any]) -> DriftPoint | None:
    summaries_a, summaries_b = a.get("summaries"), b.get("summaries")
    if summaries_a is None or summaries_b is None:
        return None
    table_a = {path: (digest, s) for (path, digest), s in zip(a.get("variables") or (), summaries_a)}
    differences = []
    for (path, digest), summary_b in zip(b.get("variables") or (), summaries_b):
        if path in table_a and table_a[path][0] != digest:
            value = relative_difference(table_a[path][1], summary_b)
            if value is not None:
                differences.append((path, value))
    return DriftPoint(where(a), a.get("step"), tuple(sorted(differences, key=_order)))


def drift(
    records_a: Sequence[Mapping[str, Any]], records_b: Sequence[Mapping[str, Any]], start: int = 0
) -> Drift | None:
    """How far apart two runs' records are, from record index `start` on.

    Args:
        records_a: the reference run's trace records (``Trace.records``).
        records_b: the other run's.
        start: the index of the first record to compare (the divergence).

    Returns:
        A `Drift` over the record pairs from `start` to the end of the
        shorter trace that both carry float summaries (batch records carry
        them once per epoch), or None when none does (traces written before
        records had them).
    """
    start = _validate.check_int("start", start, minimum=0)
    points = [_point(a, b) for a, b in zip(records_a[start:], records_b[start:])]
    points = [p for p in points if p is not None]
    return Drift(tuple(points)) if points else None


def plot_drift(result: Drift, path: _files.PathLike, top: int = 5) -> None:
    """Draws the relative norm difference per record to an image file (matplotlib).

    One line per variable, for the `top` variables with the largest
    difference anywhere, on a log scale, against the training step (the
    record's position when a step is missing or goes back). A difference of zero is drawn
    at the bottom of the axis.

    Args:
        result: a `Drift` (``diff_traces(a, b).drift``).
        path: the image file; its suffix picks the format (``.png``, ``.svg``, ``.pdf``).
        top: how many variables to draw.

    Raises:
        ImportError: matplotlib is not installed (``pip install matplotlib``).
        ValueError: matplotlib cannot write images of the suffix of `path`.
    """
    result = _validate.check_instance("result", result, Drift, "Expected a Drift (diff_traces(a, b).drift)")
    path = _validate.check_path("path", path)
    top = _validate.check_int("top", top, minimum=1)
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError("plot_drift needs matplotlib: pip install matplotlib") from error
    largest: dict[str, float] = {}
    for point in result.points:
        for name, value in point.differences:
            value = math.inf if math.isnan(value) else value
            largest[name] = max(largest.get(name, 0.0), value)
    names = sorted(largest, key=lambda name: -largest[name])[:top]
    steps = [p.step for p in result.points]
    # Against the training step, unless a step is missing or goes back (a
    # recompiled optimizer in a later fit): then against the record.
    by_step = all(s is not None for s in steps) and all(a <= b for a, b in zip(steps, steps[1:]))
    xs = steps if by_step else list(range(len(result.points)))
    positive = [v for p in result.points for _, v in p.differences if v > 0 and math.isfinite(v)]
    floor = min(positive) / 10 if positive else 1e-16
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.add_subplot()
    for name in names:
        values = [dict(p.differences).get(name) for p in result.points]
        ys = [math.nan if v is None or math.isnan(v) else max(v, floor) for v in values]
        axes.plot(xs, ys, marker="o", markersize=3, label=name)
    axes.set_yscale("log")
    axes.set_xlabel("training step" if by_step else "record (from the divergence)")
    axes.set_ylabel("relative difference of the norms")
    axes.set_title(f"Two runs apart from {result.points[0].where} on")
    if names:
        axes.legend(fontsize="small")
    _files.write_figure(figure, path)
