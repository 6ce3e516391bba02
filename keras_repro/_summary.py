"""The float summary a trace record keeps of each variable: its sum and L2 norm.

A digest tells whether two values are equal; the summary tells by how much
they differ (`keras_repro.drift` compares them). Both are computed from the
same read of the variable (`keras_repro.fingerprint.Fingerprinter`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["decode", "summarize"]

_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _encode(value: float) -> float | str:
    """JSON has no NaN or infinity: those are written as strings."""
    if math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def decode(value: Any) -> float:
    """A summary entry as a float (``"nan"``, ``"inf"``, ``"-inf"`` included)."""
    return _NON_FINITE[value] if isinstance(value, str) else float(value)


def summarize(array: Any) -> list[float | str] | None:
    """``[sum, L2 norm]`` of a floating-point array in float64; None for other dtypes.

    Integer state (seed generator states, step counters) has no useful
    distance: it is compared by digest only. NaN and infinity are written as
    the strings ``"nan"``, ``"inf"``, ``"-inf"`` (the form traces store).

    Example:

    ```python
    import numpy as np
    from keras_repro.drift import summarize

    summarize(np.array([3.0, 4.0], "float32"))  # [7.0, 5.0]
    ```
    """
    array = np.asarray(array)
    if array.dtype.kind != "f" and array.dtype.name != "bfloat16":
        return None
    flat = array.reshape(-1).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        return [_encode(float(flat.sum())), _encode(math.sqrt(float(flat @ flat)))]
