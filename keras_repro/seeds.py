"""Seeds: validation, derivation, global seeding and RNG state capture.

Every random stream keras_repro controls is a pure function of a root seed
and a stable path (`derive_seed`). This module is the root of that scheme and
imports neither TensorFlow nor Keras at module import time, so that
`import keras_repro` stays cheap; the backends are touched only when a
function needs them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import sys
import threading
from collections.abc import Iterator
from typing import Any

from keras_repro import _compat
from keras_repro import _validate
from keras_repro import _warnings

__all__ = [
    "MAX_SEED",
    "MAX_DERIVED_SEED",
    "SEED_ENV_VAR",
    "ReproducibilityWarning",
    "derive_seed",
    "get_root_seed",
    "hashseed_set_at_start",
    "initial_environ",
    "isolated_rng",
    "rng_state",
    "seed_everything",
    "set_rng_state",
    "validate_seed",
]

#: Largest root seed accepted by `validate_seed` (the unsigned 32-bit range).
MAX_SEED = 2**32 - 1
#: `derive_seed` returns values in ``[0, MAX_DERIVED_SEED)``. TensorFlow folds
#: op seeds modulo ``2**31 - 1``, so every derived seed must stay below that
#: for two different derived seeds never to alias inside TF.
MAX_DERIVED_SEED = 2**31 - 2
#: Environment variable holding the root seed recorded by `seed_everything`,
#: inherited by child processes.
SEED_ENV_VAR = "KERAS_REPRO_SEED"

_DERIVE_PERSON = b"keras_repro.v1"  # blake2b personalization: the scheme's version
_STATE_FORMAT = 1

_lock = threading.Lock()
_root_seed: int | None = None
_hashseed_warned = False


class ReproducibilityWarning(UserWarning):
    """Warning category for everything keras_repro warns about.

    Filter it like any other category:

    ```python
    import warnings
    import keras_repro as kr
    warnings.simplefilter("error", kr.ReproducibilityWarning)
    ```
    """


def validate_seed(seed: Any) -> int:
    """Checks that `seed` is a valid root seed and returns it as a Python int.

    Accepted: Python ints and NumPy integer scalars in ``[0, 2**32 - 1]``.
    Rejected with `TypeError`: bools, floats (even integral ones), strings,
    None and any other type. Rejected with `ValueError`: negative values and
    values above ``2**32 - 1``.

    Args:
        seed: the candidate seed.

    Returns:
        The seed as a Python `int`.

    Example:

    >>> validate_seed(42)
    42
    >>> validate_seed(-1)
    Traceback (most recent call last):
    ...
    ValueError: Invalid seed: -1. A seed must be an integer in [0, 4294967295].
    """
    return _validate.check_int(
        "seed", seed, minimum=0, maximum=MAX_SEED, allowed=f"A seed must be an integer in [0, {MAX_SEED}]"
    )


def _encode_part(part: Any) -> bytes:
    if isinstance(part, str):
        tag, payload = b"s", part.encode("utf-8")
    elif _validate.is_integer(part):
        tag, payload = b"i", str(int(part)).encode("ascii")
    else:
        raise _validate.type_error("seed path element", part, "Path elements must be strings or integers")
    return tag + len(payload).to_bytes(8, "big") + payload


def derive_seed(root: int, *path: str | int) -> int:
    """Derives a seed from a root seed and a path, the same everywhere.

    The result is a pure function of its arguments: identical on every
    platform, Python version, Keras backend and ``PYTHONHASHSEED`` (Python's
    `hash()` is never used). Different paths give unrelated seeds.

    The algorithm, so that it can be reproduced without keras_repro: each
    element of ``(root, *path)`` is encoded as a one-byte tag (``b"i"`` for an
    integer, ``b"s"`` for a string), the 8-byte big-endian length of its
    payload, then the payload (the decimal ASCII form of an integer, the UTF-8
    bytes of a string). The concatenation is hashed with BLAKE2b (8-byte
    digest, personalization ``b"keras_repro.v1"``), the digest read as a
    big-endian unsigned integer and reduced modulo ``2**31 - 2``.

    Args:
        root: the root seed (see `validate_seed`).
        *path: strings and integers naming the stream, e.g.
            ``("dense_1", "kernel")`` or ``("shuffle", epoch)``.

    Returns:
        An int in ``[0, 2**31 - 2)``, accepted by every Keras backend and
        below TensorFlow's seed modulus, so distinct values never alias.

    Example:

    ```python
    import keras
    import keras_repro as kr

    seed = kr.derive_seed(42, "encoder", "dense", "kernel")
    init = keras.initializers.GlorotUniform(seed=seed)
    ```
    """
    root = validate_seed(root)
    data = b"".join(_encode_part(p) for p in (root, *path))
    digest = hashlib.blake2b(data, digest_size=8, person=_DERIVE_PERSON).digest()
    return int.from_bytes(digest, "big") % MAX_DERIVED_SEED


def get_root_seed() -> int | None:
    """Returns the root seed recorded by `seed_everything`, or None.

    The record is process-wide (unlike Keras' own, which is thread-local and
    wiped by `keras.backend.clear_session()`). A child process started after
    `seed_everything` inherits it through the ``KERAS_REPRO_SEED``
    environment variable; note that this only tells the child which seed the
    run uses: the child's own RNGs are seeded once it calls `seed_everything`.

    Example:

    ```python
    import keras_repro as kr
    kr.seed_everything(7)
    assert kr.get_root_seed() == 7
    ```
    """
    if _root_seed is not None:
        return _root_seed
    raw = os.environ.get(SEED_ENV_VAR)
    if raw is None:
        return None
    try:
        return validate_seed(int(raw))
    except (TypeError, ValueError):
        raise ValueError(
            f"Invalid {SEED_ENV_VAR} environment variable: {raw!r}. It must be an integer in [0, {MAX_SEED}]."
        ) from None


def _set_root_seed(seed: int | None) -> None:
    global _root_seed
    _root_seed = seed
    if seed is None:
        os.environ.pop(SEED_ENV_VAR, None)
    else:
        os.environ[SEED_ENV_VAR] = str(seed)


def initial_environ() -> dict[str, str] | None:
    """The environment this process started with, or None where it cannot be read.

    Changes made later through ``os.environ`` are not in it. Read from
    ``/proc/self/environ`` (Linux).
    """
    try:
        with open("/proc/self/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    result = {}
    for entry in raw.split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep:
            result[key.decode(errors="replace")] = value.decode(errors="replace")
    return result


def hashseed_set_at_start() -> bool:
    """Whether ``PYTHONHASHSEED`` was set when this interpreter started.

    Setting it later (in ``os.environ``) does not change this interpreter's
    string hashing. The answer comes from the process' initial environment
    (`initial_environ`) where it can be read, else from the environment at
    the time keras_repro was imported.
    """
    initial = initial_environ()
    if initial is None:
        return _HASHSEED_AT_IMPORT is not None
    return "PYTHONHASHSEED" in initial


_HASHSEED_AT_IMPORT = os.environ.get("PYTHONHASHSEED")


def _warn_hashseed_once() -> None:
    global _hashseed_warned
    if _hashseed_warned or hashseed_set_at_start():
        return
    _hashseed_warned = True
    _warnings.warn(
        "PYTHONHASHSEED was not set when this Python process started, so the "
        "iteration order of sets and of dicts built from them can differ "
        "between runs. Setting it inside the program has no effect on the "
        "running interpreter. Fix: start the program as "
        "`PYTHONHASHSEED=0 python train.py` (or export PYTHONHASHSEED before "
        "launching it).",
        ReproducibilityWarning,
    )


def _keras_backend() -> str | None:
    """The Keras backend name, if Keras is (or can be) imported."""
    try:
        import keras
    except ImportError:
        return None
    return keras.backend.backend()


def seed_everything(seed: int) -> int:
    """Seeds every global random stream from one root seed and records it.

    Seeds, each from its own `derive_seed(seed, <stream>)`: Python's
    `random`, NumPy's global RNG, TensorFlow's global seed and global
    `tf.random.Generator` (whenever TensorFlow is installed, since `tf.data`
    is used with every backend), the Keras global `SeedGenerator` (used by
    `keras.random.*` calls without a seed), and torch when it is the Keras
    backend. JAX keeps no global RNG state: its only global stream is the
    Keras global `SeedGenerator`, seeded here.

    The root seed is recorded process-wide (`get_root_seed`) and in the
    ``KERAS_REPRO_SEED`` environment variable for child processes, and
    ``PYTHONHASHSEED`` is set for child processes if it is not set yet. If
    ``PYTHONHASHSEED`` was not set when this interpreter started, a
    `ReproducibilityWarning` says so, once per process, with the fix.

    Unlike `keras.utils.set_random_seed`, the streams are seeded
    independently of each other and the Keras global generator is created
    here, not lazily from whatever state Python's `random` is in at first use.
    The Keras global generator is thread-local in Keras; it is seeded for the
    calling thread.

    Args:
        seed: the root seed, an integer in ``[0, 2**32 - 1]``.

    Returns:
        The validated seed.

    Example:

    ```python
    import keras_repro as kr
    kr.seed_everything(42)
    ```
    """
    seed = validate_seed(seed)
    with _lock:
        _warn_hashseed_once()
        random.seed(derive_seed(seed, "python"))
        import numpy as np

        np.random.seed(derive_seed(seed, "numpy"))
        tf = _compat.tensorflow_module(import_it=True)
        if tf is not None:
            tf.random.set_seed(derive_seed(seed, "tensorflow"))
            tf.random.set_global_generator(tf.random.Generator.from_seed(derive_seed(seed, "tf.random.Generator")))
        backend = _keras_backend()
        if backend is not None:
            _set_keras_global_generator([derive_seed(seed, "keras"), 0])
        if backend == "torch":
            import torch

            torch.manual_seed(derive_seed(seed, "torch"))
        _set_root_seed(seed)
        os.environ.setdefault("PYTHONHASHSEED", str(seed))
    return seed


def _set_keras_global_generator(state: list[int] | None) -> None:
    if state is None:
        _compat.set_keras_global_seed_generator(None)
        return
    import keras

    generator = keras.random.SeedGenerator(seed=int(state[0]))
    generator.state.assign(keras.ops.convert_to_tensor([int(state[0]), int(state[1])], dtype=generator.state.dtype))
    _compat.set_keras_global_seed_generator(generator)


def _get_keras_global_generator() -> list[int] | None:
    generator = _compat.keras_global_seed_generator()
    if generator is None:
        return None
    import keras

    return [int(v) for v in keras.ops.convert_to_numpy(generator.state.value)]


def _get_tf_state(tf) -> dict[str, Any]:
    global_seed = _compat.tf_global_seed()
    op_rng_state = _compat.tf_op_seed_rng_state()
    generator = _compat.tf_global_generator()
    generator_state = None
    if generator is not None:
        generator_state = {
            "algorithm": int(generator.algorithm),
            "state": [int(v) for v in generator.state.numpy()],
        }
    return {
        "global_seed": global_seed,
        "op_seed_rng": None if op_rng_state is None else _python_state_to_json(op_rng_state),
        "generator": generator_state,
    }


def _set_tf_state(tf, state: dict[str, Any]) -> None:
    if state["global_seed"] is None:
        tf.random.set_seed(None)
    else:
        tf.random.set_seed(state["global_seed"])
        if state["op_seed_rng"] is not None:
            _compat.set_tf_op_seed_rng_state(_python_state_from_json(state["op_seed_rng"]))
    gen = state["generator"]
    if gen is None:
        _compat.tf_reset_global_generator()
    else:
        tf.random.set_global_generator(
            tf.random.Generator.from_state(state=tf.constant(gen["state"], dtype=tf.int64), alg=gen["algorithm"])
        )


def _python_state_to_json(state: tuple) -> list:
    version, internal, gauss_next = state
    return [version, list(internal), gauss_next]


def _python_state_from_json(state: list) -> tuple:
    version, internal, gauss_next = state
    return (version, tuple(internal), gauss_next)


def rng_state() -> dict[str, Any]:
    """Captures the state of every global random stream, as JSON-safe data.

    The state covers Python's `random`, NumPy's global RNG, TensorFlow's
    global seed with its op-seed counter and the global `tf.random.Generator`
    (only if TensorFlow is loaded), the Keras global `SeedGenerator` of the
    calling thread, and the recorded root seed. Restore it with
    `set_rng_state`. The result contains only lists, ints, floats, strings
    and None, so `json.dumps` writes it as is.

    Returns:
        A dict with a ``"format"`` number and one entry per stream.

    Example:

    ```python
    import random
    import keras_repro as kr

    state = kr.rng_state()
    a = random.random()
    kr.set_rng_state(state)
    assert random.random() == a
    ```
    """
    import numpy as np

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tf = _compat.tensorflow_module(import_it=False)
    return {
        "format": _STATE_FORMAT,
        "root_seed": _root_seed,
        "python": _python_state_to_json(random.getstate()),
        "numpy": [kind, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
        "tensorflow": None if tf is None else _get_tf_state(tf),
        "keras": _get_keras_global_generator() if "keras" in sys.modules else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores the global random streams captured by `rng_state`.

    Args:
        state: a dict returned by `rng_state` (possibly after a JSON round
            trip).

    Raises:
        TypeError: if `state` is not a dict.
        ValueError: if it is not a state written by `rng_state` of a
            supported format, naming the missing or bad entry.

    Example:

    ```python
    import numpy as np
    import keras_repro as kr

    state = kr.rng_state()
    a = np.random.rand()
    kr.set_rng_state(state)
    assert np.random.rand() == a
    ```
    """
    if not isinstance(state, dict):
        raise _validate.type_error("RNG state", state, "Expected the dict returned by rng_state()")
    if state.get("format") != _STATE_FORMAT:
        raise ValueError(
            f"Invalid RNG state: format {state.get('format')!r} is not supported (supported: {_STATE_FORMAT})."
        )
    missing = [k for k in ("root_seed", "python", "numpy", "tensorflow", "keras") if k not in state]
    if missing:
        raise ValueError(f"Invalid RNG state: missing entries {missing}.")
    import numpy as np

    try:
        python_state = _python_state_from_json(state["python"])
        kind, keys, pos, has_gauss, cached = state["numpy"]
        numpy_state = (kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached)
    except (TypeError, ValueError) as e:
        raise ValueError(f"Invalid RNG state: malformed python/numpy entry ({e}).") from None
    with _lock:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        if state["tensorflow"] is not None:
            _set_tf_state(_compat.tensorflow_module(import_it=True), state["tensorflow"])
        elif (tf := _compat.tensorflow_module(import_it=False)) is not None:
            _set_tf_state(tf, {"global_seed": None, "op_seed_rng": None, "generator": None})
        if "keras" in sys.modules or state["keras"] is not None:
            _set_keras_global_generator(state["keras"])
        root = state["root_seed"]
        _set_root_seed(None if root is None else validate_seed(root))


@contextlib.contextmanager
def isolated_rng(seed: int | None = None) -> Iterator[None]:
    """Runs a block without disturbing the caller's global random streams.

    On entry the state of every global stream (see `rng_state`) is saved and,
    if `seed` is given, `seed_everything(seed)` is called; on exit, even by
    an exception, the saved state is restored, so code after the block draws
    exactly what it would have drawn without it.

    Args:
        seed: optional root seed for the block.

    Example:

    ```python
    import random
    import keras_repro as kr

    state = random.getstate()
    with kr.isolated_rng(seed=1):
        random.random()
    assert random.getstate() == state
    ```
    """
    if seed is not None:
        seed = validate_seed(seed)
    saved = rng_state()
    try:
        if seed is not None:
            seed_everything(seed)
        yield
    finally:
        set_rng_state(saved)
