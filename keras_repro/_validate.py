"""Argument checks with one error convention for the whole package.

A wrong type raises `TypeError`, a wrong value of the right type raises
`ValueError`, and both name the argument, echo the value and say what is
allowed, in one form:

- ``Invalid <name>: <value!r> (of type <type>). <what is allowed>.``
  (`TypeError`);
- ``Invalid <name>: <value!r>. <what is allowed>.`` (`ValueError`).

Conventions shared by every check: a `bool` is not an integer (``True`` is
rejected where a count or a seed is expected), NumPy integer scalars are
integers, and each check returns the value converted to the plain Python
type (``int``, ``float``, ``str``, ``pathlib.Path``), so callers store
exactly what was validated.

Example:

```python
from keras_repro import _validate

batch_size = _validate.check_int("batch_size", 32, minimum=1)
every = _validate.check_every("10")   # 10
```
"""

from __future__ import annotations

import math
import numbers
import os
import sys
from collections.abc import Callable
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "EVERY_ALLOWED",
    "check_bool",
    "check_callable",
    "check_choice",
    "check_every",
    "check_instance",
    "check_int",
    "check_path",
    "check_real",
    "is_integer",
    "type_error",
    "value_error",
]

#: What `check_every` accepts, as its error messages say it.
EVERY_ALLOWED = "Allowed: 'epoch', 'batch', or a positive number of batches"

_MAX_REPR = 200


def _show(value: Any) -> str:
    """``repr(value)``, shortened when very long (a whole array, a big dict)."""
    text = repr(value)
    if len(text) > _MAX_REPR:
        text = text[: _MAX_REPR - 5] + " ...>"
    return text


def _sentence(text: str) -> str:
    return text if text.endswith((".", "?", "!")) else text + "."


def type_error(name: str, value: Any, allowed: str) -> TypeError:
    """The `TypeError` for `value`, of the wrong type for argument `name`.

    Args:
        name: the argument's name, as the caller wrote it.
        value: the value received.
        allowed: what is allowed, a sentence (the final period is added).

    Returns:
        ``TypeError("Invalid <name>: <value!r> (of type <type>). <allowed>.")``,
        for the caller to raise.

    Example:

    >>> type_error("seed", "3", "A seed must be an integer in [0, 9]")
    TypeError("Invalid seed: '3' (of type str). A seed must be an integer in [0, 9].")
    """
    return TypeError(f"Invalid {name}: {_show(value)} (of type {type(value).__name__}). {_sentence(allowed)}")


def value_error(name: str, value: Any, allowed: str) -> ValueError:
    """The `ValueError` for `value`, a wrong value for argument `name`.

    Args:
        name: the argument's name, as the caller wrote it.
        value: the value received.
        allowed: what is allowed, a sentence (the final period is added).

    Returns:
        ``ValueError("Invalid <name>: <value!r>. <allowed>.")``, for the
        caller to raise.

    Example:

    >>> value_error("epoch", -1, "epoch must be an integer >= 0")
    ValueError('Invalid epoch: -1. epoch must be an integer >= 0.')
    """
    return ValueError(f"Invalid {name}: {_show(value)}. {_sentence(allowed)}")


def is_integer(value: Any) -> bool:
    """Whether `value` is an integer: a Python int or a NumPy integer scalar, never a bool.

    NumPy is not imported for the check: a NumPy integer can only exist once
    NumPy is loaded.

    Example:

    >>> is_integer(3), is_integer(True), is_integer(3.0)
    (True, False, False)
    """
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Integral):
        return True
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(value, numpy.integer)


def _int_range(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"an integer in [{minimum}, {maximum}]"
    if minimum is not None:
        return f"an integer >= {minimum}"
    if maximum is not None:
        return f"an integer <= {maximum}"
    return "an integer"


def check_int(
    name: str,
    value: Any,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    allowed: str | None = None,
) -> int:
    """Checks that `value` is an integer in ``[minimum, maximum]`` and returns it as an int.

    Args:
        name: the argument's name, for the message.
        value: the value to check: a Python int or NumPy integer (not a bool).
        minimum: the smallest allowed value, if any.
        maximum: the largest allowed value, if any.
        allowed: the sentence saying what is allowed; by default
            ``"<name> must be an integer >= <minimum>"`` (or ``in [min, max]``).

    Returns:
        The value as a Python `int`.

    Raises:
        TypeError: `value` is not an integer (a bool, a float, a string...).
        ValueError: it is out of range; the message shows it as a Python int.

    Example:

    >>> check_int("batch_size", 32, minimum=1)
    32
    >>> check_int("batch_size", 0, minimum=1)
    Traceback (most recent call last):
    ...
    ValueError: Invalid batch_size: 0. batch_size must be an integer >= 1.
    """
    if allowed is None:
        allowed = f"{name} must be {_int_range(minimum, maximum)}"
    if not is_integer(value):
        raise type_error(name, value, allowed)
    number = int(value)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise value_error(name, number, allowed)
    return number


def check_real(
    name: str,
    value: Any,
    *,
    greater_than: float | None = None,
    less_than: float | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    allowed: str | None = None,
) -> float:
    """Checks that `value` is a finite real number in the given bounds and returns it as a float.

    Args:
        name: the argument's name, for the message.
        value: a Python or NumPy int or float (not a bool).
        greater_than: exclusive lower bound, if any.
        less_than: exclusive upper bound, if any.
        minimum: inclusive lower bound, if any.
        maximum: inclusive upper bound, if any.
        allowed: the sentence saying what is allowed; by default built from
            the bounds (``"scale must be a finite number > 0"``).

    Returns:
        The value as a Python `float`.

    Raises:
        TypeError: `value` is not a real number.
        ValueError: it is NaN, infinite or out of bounds.

    Example:

    >>> check_real("scale", 2, greater_than=0)
    2.0
    """
    if allowed is None:
        bounds = [
            f"{op} {bound}"
            for op, bound in ((">", greater_than), (">=", minimum), ("<", less_than), ("<=", maximum))
            if bound is not None
        ]
        allowed = f"{name} must be a finite number" + (f" {' and '.join(bounds)}" if bounds else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise type_error(name, value, allowed)
    number = float(value)
    if (
        not math.isfinite(number)
        or (greater_than is not None and not number > greater_than)
        or (less_than is not None and not number < less_than)
        or (minimum is not None and number < minimum)
        or (maximum is not None and number > maximum)
    ):
        raise value_error(name, value, allowed)
    return number


def check_bool(name: str, value: Any) -> bool:
    """Checks that `value` is a bool (Python or NumPy) and returns it as a Python bool.

    Integers are refused: ``0`` and ``1`` are not accepted as flags, so a
    misplaced positional argument is caught.

    Raises:
        TypeError: `value` is not a bool.

    Example:

    >>> check_bool("strict", True)
    True
    """
    numpy = sys.modules.get("numpy")
    if isinstance(value, bool) or (numpy is not None and isinstance(value, numpy.bool_)):
        return bool(value)
    raise type_error(name, value, f"{name} must be True or False")


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Checks that `value` is one of `allowed` and returns it.

    Args:
        name: the argument's name, for the message.
        value: the value to check.
        allowed: the allowed values (strings, usually), in the order the
            message lists them.

    Returns:
        `value`.

    Raises:
        TypeError: every allowed value is a string and `value` is not.
        ValueError: `value` is not one of them.

    Example:

    >>> check_choice("mode", "fan_in", ("fan_in", "fan_out", "fan_avg"))
    'fan_in'
    """
    allowed = tuple(allowed)
    listed = f"Allowed values: {', '.join(repr(a) for a in allowed)}"
    if allowed and all(isinstance(a, str) for a in allowed) and not isinstance(value, str):
        raise type_error(name, value, listed)
    if value not in allowed:
        raise value_error(name, value, listed)
    return value


def check_path(name: str, value: Any, *, allow_none: bool = False) -> Path | None:
    """Checks that `value` is a file system path (a str or `os.PathLike`) and returns a `Path`.

    Args:
        name: the argument's name, for the message.
        value: a string or path-like object.
        allow_none: whether None is accepted (and returned as is).

    Returns:
        A `pathlib.Path`, or None when `value` is None and `allow_none`.

    Raises:
        TypeError: `value` is not a path (bytes paths are refused too).
        ValueError: it is the empty string.

    Example:

    >>> check_path("trace", "runs/a.jsonl")
    PosixPath('runs/a.jsonl')
    """
    if value is None and allow_none:
        return None
    allowed = f"{name} must be a path (a str or os.PathLike)" + (", or None" if allow_none else "")
    if not isinstance(value, (str, os.PathLike)):
        raise type_error(name, value, allowed)
    text = os.fspath(value)
    if not isinstance(text, str):
        raise type_error(name, value, allowed)
    if not text:
        raise value_error(name, value, allowed)
    return Path(text)


def check_callable(name: str, value: Any, allowed: str) -> Callable:
    """Checks that `value` is callable and returns it.

    Args:
        name: the argument's name, for the message.
        value: the value to check.
        allowed: what the callable must be, e.g. ``"a function epoch -> tf.data.Dataset"``.

    Raises:
        TypeError: `value` is not callable.

    Example:

    >>> check_callable("make_epoch", len, "a function epoch -> tf.data.Dataset") is len
    True
    """
    if not callable(value):
        raise type_error(name, value, f"{name} must be callable: {allowed}")
    return value


def check_instance(name: str, value: Any, types: type | tuple[type, ...], allowed: str) -> Any:
    """Checks that `value` is an instance of `types` and returns it.

    Args:
        name: the argument's name, for the message.
        value: the value to check.
        types: a class or a tuple of classes.
        allowed: what is allowed, e.g. ``"Expected a Keras model or layer"``.

    Raises:
        TypeError: `value` is not an instance of `types`.

    Example:

    >>> check_instance("path", "a", str, "Expected a string")
    'a'
    """
    if not isinstance(value, types):
        raise type_error(name, value, allowed)
    return value


def check_every(value: Any, name: str = "every") -> str | int:
    """Checks a recording or saving frequency: ``'epoch'``, ``'batch'`` or a number of batches.

    A positive int and a string of digits (as a command line gives it) are
    numbers of batches; 1 means every batch and is returned as ``'batch'``,
    so there is one spelling for each frequency.

    Args:
        value: ``'epoch'``, ``'batch'``, a positive int or a string of digits.
        name: the argument's name, for the message.

    Returns:
        ``'epoch'``, ``'batch'``, or an int >= 2.

    Raises:
        TypeError: `value` is neither a string nor an integer.
        ValueError: an unknown string, or an integer < 1.

    Example:

    >>> check_every("epoch"), check_every(1), check_every("25")
    ('epoch', 'batch', 25)
    """
    if isinstance(value, str):
        if value in ("epoch", "batch"):
            return value
        if not (value.isascii() and value.isdigit()):
            raise value_error(name, value, EVERY_ALLOWED)
        number = int(value)
    elif is_integer(value):
        number = int(value)
    else:
        raise type_error(name, value, EVERY_ALLOWED)
    if number < 1:
        raise value_error(name, value, EVERY_ALLOWED)
    return "batch" if number == 1 else number
