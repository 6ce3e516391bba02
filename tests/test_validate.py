"""Argument checks: one message form, TypeError for a wrong type, ValueError for a wrong value."""

import math
import os
import re
from pathlib import Path

import numpy as np
import pytest

from keras_repro import _validate


def _exact(message):
    return "^" + re.escape(message) + "$"


# ---------------------------------------------------------------- check_int


@pytest.mark.parametrize("value", [0, 5, np.int64(5), np.uint8(5), np.int32(0)])
def test_check_int_accepts_python_and_numpy_integers_and_returns_an_int(value):
    out = _validate.check_int("n", value, minimum=0)
    assert out == int(value) and type(out) is int


@pytest.mark.parametrize("value", [True, False, np.bool_(True), 1.0, np.float32(2), "3", None, [1], 1 + 0j])
def test_check_int_rejects_non_integers_with_a_type_error(value):
    with pytest.raises(TypeError) as e:
        _validate.check_int("batch_size", value, minimum=1)
    assert str(e.value) == (
        f"Invalid batch_size: {value!r} (of type {type(value).__name__}). batch_size must be an integer >= 1."
    )


def test_check_int_range_messages():
    with pytest.raises(ValueError, match=_exact("Invalid batch_size: 0. batch_size must be an integer >= 1.")):
        _validate.check_int("batch_size", 0, minimum=1)
    with pytest.raises(ValueError, match=_exact("Invalid k: 11. k must be an integer in [0, 10].")):
        _validate.check_int("k", 11, minimum=0, maximum=10)
    with pytest.raises(ValueError, match=_exact("Invalid k: 3. k must be an integer <= 2.")):
        _validate.check_int("k", 3, maximum=2)
    # A NumPy value out of range is shown as the Python int it stands for.
    with pytest.raises(ValueError, match=_exact("Invalid k: -5. k must be an integer >= 0.")):
        _validate.check_int("k", np.int64(-5), minimum=0)
    with pytest.raises(TypeError, match=_exact("Invalid seed: '3' (of type str). A seed must be 0 or 1.")):
        _validate.check_int("seed", "3", allowed="A seed must be 0 or 1")
    assert _validate.check_int("k", -(2**70)) == -(2**70)


def test_is_integer():
    assert _validate.is_integer(3) and _validate.is_integer(np.int16(3))
    assert not any(_validate.is_integer(v) for v in (True, np.bool_(False), 3.0, "3", None))


# ---------------------------------------------------------------- check_real


def test_check_real():
    assert _validate.check_real("scale", 2, greater_than=0) == 2.0
    assert type(_validate.check_real("scale", np.float32(0.5), greater_than=0)) is float
    with pytest.raises(TypeError, match=_exact("Invalid scale: '1' (of type str). scale must be a finite number > 0.")):
        _validate.check_real("scale", "1", greater_than=0)
    with pytest.raises(TypeError, match=r"^Invalid scale: True \(of type bool\)"):
        _validate.check_real("scale", True, greater_than=0)
    for bad in (0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match=_exact(f"Invalid scale: {bad!r}. scale must be a finite number > 0.")):
            _validate.check_real("scale", bad, greater_than=0)
    message = "Invalid confidence: 1.0. confidence must be a finite number > 0 and < 1."
    with pytest.raises(ValueError, match=_exact(message)):
        _validate.check_real("confidence", 1.0, greater_than=0, less_than=1)
    assert _validate.check_real("p", 1, minimum=0, maximum=1) == 1.0
    with pytest.raises(ValueError, match=_exact("Invalid p: -0.5. p must be a finite number >= 0 and <= 1.")):
        _validate.check_real("p", -0.5, minimum=0, maximum=1)


# ---------------------------------------------------------------- check_bool, check_choice


def test_check_bool_refuses_integers():
    assert _validate.check_bool("strict", np.bool_(True)) is True
    assert _validate.check_bool("strict", False) is False
    for bad in (0, 1, "True", None):
        with pytest.raises(
            TypeError,
            match=_exact(f"Invalid strict: {bad!r} (of type {type(bad).__name__}). strict must be True or False."),
        ):
            _validate.check_bool("strict", bad)


def test_check_choice():
    allowed = ("raise", "warn")
    assert _validate.check_choice("on_mismatch", "warn", allowed) == "warn"
    with pytest.raises(ValueError, match=_exact("Invalid on_mismatch: 'ignore'. Allowed values: 'raise', 'warn'.")):
        _validate.check_choice("on_mismatch", "ignore", allowed)
    with pytest.raises(
        TypeError, match=_exact("Invalid on_mismatch: None (of type NoneType). Allowed values: 'raise', 'warn'.")
    ):
        _validate.check_choice("on_mismatch", None, allowed)
    with pytest.raises(TypeError):
        _validate.check_choice("on_mismatch", ["raise"], allowed)  # unhashable: still a clear error
    assert _validate.check_choice("n", 2, (1, 2, 3)) == 2
    with pytest.raises(ValueError, match=_exact("Invalid n: 4. Allowed values: 1, 2, 3.")):
        _validate.check_choice("n", 4, (1, 2, 3))


# ---------------------------------------------------------------- check_path, check_callable, check_instance


def test_check_path():
    assert _validate.check_path("trace", "a/b.jsonl") == Path("a/b.jsonl")
    assert _validate.check_path("trace", Path("x")) == Path("x")
    assert _validate.check_path("trace", None, allow_none=True) is None
    with pytest.raises(
        TypeError, match=_exact("Invalid trace: None (of type NoneType). trace must be a path (a str or os.PathLike).")
    ):
        _validate.check_path("trace", None)
    with pytest.raises(
        TypeError, match=_exact("Invalid trace: 3 (of type int). trace must be a path (a str or os.PathLike), or None.")
    ):
        _validate.check_path("trace", 3, allow_none=True)
    with pytest.raises(TypeError, match="of type bytes"):
        _validate.check_path("trace", b"a")
    with pytest.raises(ValueError, match=_exact("Invalid trace: ''. trace must be a path (a str or os.PathLike).")):
        _validate.check_path("trace", "")

    class BytesPath(os.PathLike):
        def __fspath__(self):
            return b"a"

    with pytest.raises(TypeError, match="of type BytesPath"):
        _validate.check_path("trace", BytesPath())


def test_check_callable_and_instance():
    assert _validate.check_callable("fn", len, "a function") is len
    with pytest.raises(TypeError, match=_exact("Invalid fn: 3 (of type int). fn must be callable: a function.")):
        _validate.check_callable("fn", 3, "a function")
    assert _validate.check_instance("name", "a", str, "Expected a string") == "a"
    with pytest.raises(TypeError, match=_exact("Invalid name: 1 (of type int). Expected a string.")):
        _validate.check_instance("name", 1, str, "Expected a string")


def test_long_values_are_shortened_in_messages():
    with pytest.raises(TypeError) as e:
        _validate.check_int("n", list(range(1000)))
    assert len(str(e.value)) < 300 and str(e.value).startswith("Invalid n: [0, 1, 2")


# ---------------------------------------------------------------- check_every


@pytest.mark.parametrize(
    "value, expected",
    [("epoch", "epoch"), ("batch", "batch"), (1, "batch"), ("1", "batch"), (5, 5), ("25", 25), (np.int64(3), 3)],
)
def test_check_every_accepts_names_numbers_and_digit_strings(value, expected):
    out = _validate.check_every(value)
    assert out == expected and type(out) is type(expected)


@pytest.mark.parametrize(
    "value, error",
    [
        (0, ValueError),
        (-2, ValueError),
        ("0", ValueError),
        ("-2", ValueError),
        ("Epoch", ValueError),
        ("2.5", ValueError),
        ("", ValueError),
        ("\u0663", ValueError),  # a non-ASCII digit: int() would accept it
        (True, TypeError),
        (2.0, TypeError),
        (None, TypeError),
    ],
)
def test_check_every_rejects_with_one_message(value, error):
    with pytest.raises(error) as e:
        _validate.check_every(value)
    kind = f" (of type {type(value).__name__})" if error is TypeError else ""
    assert str(e.value) == f"Invalid every: {value!r}{kind}. {_validate.EVERY_ALLOWED}."


def test_check_every_names_the_argument():
    with pytest.raises(ValueError, match=r"^Invalid save_freq: 0\."):
        _validate.check_every(0, name="save_freq")
