"""Warnings that point at the user's line, not inside keras_repro, Keras or TensorFlow.

A keras_repro warning is raised from wherever the condition is found: a
callback hook inside `fit`, a seeding call inside `SeededModel.fit`, a
sweep's worker loop. A fixed ``stacklevel`` points at the right line from
one caller only; `warn` walks the stack to the first frame outside these
packages instead, so the warning names the user's line (``model.fit(...)``,
``kr.sweep(...)``) however deep it was raised.
"""

from __future__ import annotations

import inspect
import os
import sys
import warnings

__all__ = ["warn"]

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep  # keras_repro/


def _internal_prefixes() -> tuple[str, ...]:
    prefixes = [_PACKAGE]
    for name in ("keras", "tensorflow", "jax", "torch"):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__file__", None):
            prefixes.append(os.path.dirname(os.path.abspath(module.__file__)) + os.sep)
    return tuple(prefixes)


def warn(message: str, category: type[Warning]) -> None:
    """Warns with `category`, attributed to the first caller outside keras_repro and the frameworks."""
    prefixes = _internal_prefixes()
    frame = inspect.currentframe().f_back
    level = 2  # the caller of this function
    while frame is not None and (
        os.path.abspath(frame.f_code.co_filename).startswith(prefixes) or frame.f_code.co_filename.startswith("<frozen")
    ):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
