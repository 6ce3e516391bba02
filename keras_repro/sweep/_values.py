"""The values a sweep takes and records: its seeds and the metrics of a run.

`sweep` and `SweepResult` accept seeds and metrics through the same two
checks, so a result built by hand, loaded from a file or collected from
workers holds the same kind of values: distinct integer seeds and finite
Python floats.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

import numpy as np

from keras_repro.seeds import derive_seed
from keras_repro.seeds import validate_seed

#: Name under which a plain number returned by ``fn(seed)`` is stored.
DEFAULT_METRIC = "value"

Metrics = float | Mapping[str, float]


def short_repr(value: Any) -> str:
    """``repr(value)``, cut to 80 characters for error messages."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def to_metric(value: Any, name: str) -> float:
    """Converts one metric value to a finite Python float, or raises.

    Args:
        value: a Python, NumPy or 0-d tensor real scalar.
        name: the metric's name, for the error message.

    Returns:
        The value as a Python `float`.

    Raises:
        TypeError: `value` is a bool or not a real scalar.
        ValueError: `value` is not finite.
    """
    where = "fn(seed) returned" if name == DEFAULT_METRIC else f"metric {name!r} is"
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"{where} a bool ({value!r}); metrics must be real numbers: return float(x) if you mean 1.0/0.0."
        )
    if isinstance(value, numbers.Real):
        result = float(value)
    else:
        from keras_repro.fingerprint import to_numpy

        try:
            array = to_numpy(value)  # also a torch tensor that requires grad
        except Exception:  # noqa: BLE001 - any failure means "not a number"
            array = None
        if array is None or array.ndim != 0 or array.dtype.kind not in "iuf":
            raise TypeError(
                f"{where} {type(value).__name__} {short_repr(value)}; metrics "
                "must be real numbers (Python, NumPy or 0-d tensor scalars), "
                "e.g. history.history['val_loss'][-1]."
            )
        result = float(array)
    if not math.isfinite(result):
        raise ValueError(f"{where} {result}: metrics must be finite (did training diverge?).")
    return result


def to_metrics(value: Any) -> dict[str, float]:
    """Converts what ``fn(seed)`` returned to ``{name: float}``, or raises.

    Args:
        value: a real scalar (stored under `DEFAULT_METRIC`) or a non-empty
            mapping of metric names to real scalars.

    Returns:
        A dict of metric names to Python floats.

    Raises:
        TypeError: a name is not a string, or a value is not a real scalar.
        ValueError: the mapping is empty, or a value is not finite.
    """
    if isinstance(value, Mapping):
        if not value:
            raise ValueError("fn(seed) returned an empty dict; return at least one metric.")
        metrics = {}
        for name, item in value.items():
            if not isinstance(name, str):
                raise TypeError(
                    f"fn(seed) returned a dict with key {name!r} of type "
                    f"{type(name).__name__}; metric names must be strings."
                )
            metrics[name] = to_metric(item, name)
        return metrics
    return {DEFAULT_METRIC: to_metric(value, DEFAULT_METRIC)}


def resolve_seeds(seeds: int | Iterable[int], root_seed: int) -> tuple[list[int], int | None]:
    """The seeds of a sweep, and the root they were derived from.

    Args:
        seeds: a number of seeds, derived as ``derive_seed(root_seed,
            "sweep", i)``, or an iterable of distinct seeds.
        root_seed: the root of derived seeds; validated either way.

    Returns:
        ``(seeds, root)``: the seeds as Python ints, and `root_seed` when the
        seeds were derived from it, else None.

    Raises:
        TypeError: `seeds` is neither an integer nor an iterable of integers.
        ValueError: a count below 1, an empty iterable, an invalid or a
            repeated seed.
    """
    root_seed = validate_seed(root_seed)
    if isinstance(seeds, bool):
        raise TypeError(f"Invalid seeds: {seeds!r}. Pass a number of seeds (e.g. 30) or an iterable of seeds.")
    if isinstance(seeds, numbers.Integral):
        count = int(seeds)
        if count < 1:
            raise ValueError(
                f"Invalid seeds: {count}. The number of seeds must be a positive "
                "integer (30 or more gives a useful estimate of the spread)."
            )
        return [derive_seed(root_seed, "sweep", i) for i in range(count)], root_seed
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise TypeError(
            f"Invalid seeds: {short_repr(seeds)} (of type {type(seeds).__name__}). "
            "Pass a number of seeds (e.g. 30) or an iterable of integer seeds."
        )
    result: list[int] = []
    for index, seed in enumerate(seeds):
        try:
            result.append(validate_seed(seed))
        except (TypeError, ValueError) as e:
            raise type(e)(f"seeds[{index}]: {e}") from None
    if not result:
        raise ValueError("Invalid seeds: the iterable is empty. Give at least one seed.")
    seen: set[int] = set()
    duplicates = sorted({s for s in result if s in seen or seen.add(s)})
    if duplicates:
        raise ValueError(
            f"Invalid seeds: duplicates {duplicates}. Each seed must appear once; "
            "a repeated seed repeats the same run and would weigh it twice."
        )
    return result, None
