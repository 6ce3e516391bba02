"""Fingerprints of a model's variables and of the global RNG state.

A fingerprint is a hex digest that is equal for two models exactly when every
variable holds the same bits: weights, optimizer slots and iteration counter,
and the state of every layer `SeedGenerator` (the Dropout counters that
`model.weights` leaves out). It is the same in every process and on every
platform for equal values, and a single-ULP change in any element of any
variable changes it.

The algorithm, so that a fingerprint can be checked without keras_repro:

- each variable is read once, without a copy where the backend allows, as a
  C-contiguous little-endian array; its digest is XXH3-64 (seed 0) over
  ``"<dtype>|<shape>|"`` (the Keras dtype name and the shape as comma-separated
  integers, UTF-8) followed by the raw bytes;
- the model fingerprint is XXH3-128 over the lines
  ``"<path>\\t<dtype>\\t<shape>\\t<digest>\\n"`` of all variables, sorted by
  path.

Variable paths come from `keras_repro.paths` (weights and seed generators),
so they do not depend on Keras' process-wide auto-name counters. Optimizer
variables are named from the optimizer's path (`keras_repro.paths.optimizer_paths`:
``optimizer`` for the compiled one, the attribute for others, e.g. a GAN's
``d_optimizer``) and the weight they belong to: ``<optimizer>/iterations``,
``<optimizer>/<weight path>/<slot>`` (e.g. ``optimizer/dense#0/kernel/momentum``),
and ``<optimizer>/<name>`` for the optimizer's own variables such as
``optimizer/learning_rate``. Metric
variables (loss and metric accumulators) are left out: they are reset every
epoch and do not influence training.

Example:

```python
import keras
import keras_repro as kr

model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
kr.fingerprint(model)             # e.g. '5c0f...' (32 hex digits)
kr.fingerprint_variables(model)   # {'dense#0/kernel': '...', 'dense#0/bias': '...'}
```
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
import xxhash

from keras_repro import _compat
from keras_repro import paths
from keras_repro._summary import summarize
from keras_repro.seeds import rng_state

__all__ = [
    "Fingerprinter",
    "ModelFingerprint",
    "digest_array",
    "fingerprint",
    "fingerprint_details",
    "fingerprint_rng",
    "fingerprint_rng_streams",
    "fingerprint_variables",
    "sync_jax_state",
    "to_numpy",
    "tracked_state",
    "tracked_variables",
    "training_step",
]

#: What a tracked variable is: a layer weight, a seed generator's state, an
#: optimizer variable, or another variable of the model.
VARIABLE_KINDS = ("weight", "seed_generator", "optimizer", "other")
_RNG_STREAMS = ("python", "numpy", "tensorflow", "keras", "root_seed")


@dataclasses.dataclass(frozen=True)
class ModelFingerprint:
    """The fingerprint of a model and of each of its variables.

    Attributes:
        digest: the model fingerprint (32 hex digits).
        variables: ``{path: digest}`` (16 hex digits each), in model order:
            weights, then seed generator states, then optimizer variables.
        schema: ``{path: (dtype, shape)}`` in the same order.
        iterations: the training step: the largest step count among the
            model's optimizers (a GAN's two optimizers both count; the unused
            default one of a custom `compile()` stays at 0), or None without
            an optimizer.
        kinds: ``{path: kind}``, each one of `VARIABLE_KINDS`: ``"weight"``,
            ``"seed_generator"``, ``"optimizer"`` or ``"other"``.
        summaries: ``{path: [sum, L2 norm] or None}`` (`keras_repro.drift.summarize`)
            when asked for (``Fingerprinter.details(summaries=True)``), else None.
    """

    digest: str
    variables: dict[str, str]
    schema: dict[str, tuple[str, tuple[int, ...]]]
    iterations: int | None = None
    kinds: dict[str, str] = dataclasses.field(default_factory=dict)
    summaries: dict[str, list | None] | None = None


def _check_model(model: Any) -> None:
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"Expected a Keras model or layer, got {model!r} (of type {type(model).__name__}).")


def _optimizer_variables(
    optimizer: Any, prefix: str, prefixes: list[tuple[str, str]]
) -> tuple[dict[str, Any], str | None]:
    """One optimizer's variables by stable path (see module docstring), and its counter's path.

    A `LossScaleOptimizer`'s inner optimizer's variables come first, under
    ``<prefix>/inner_optimizer``; the wrapper's own (loss scale, its unused
    counter) follow under `prefix`.
    """
    result: dict[str, Any] = {}
    counter = None
    inner = getattr(optimizer, "inner_optimizer", None)
    if isinstance(inner, keras.optimizers.Optimizer):
        result, counter = _optimizer_variables(inner, f"{prefix}/inner_optimizer", prefixes)
    iterations = _compat.optimizer_step_variable(optimizer)
    for index, variable in enumerate(optimizer.variables):
        if any(variable is known for known in result.values()):
            continue
        if variable is iterations:
            path = f"{prefix}/iterations"
            counter = counter or path
        else:
            name = variable.name
            match = next(((p, w) for p, w in prefixes if name.startswith(p) and len(name) > len(p)), None)
            if match is not None:
                path = f"{prefix}/{match[1]}/{name[len(match[0]) :]}"
            else:
                path = f"{prefix}/{name}"
        if path in result:
            path = f"{path}#{index}"
        result[path] = variable
    return result, counter


@dataclasses.dataclass(frozen=True)
class TrackedState:
    """Every variable of a model's training state, by stable path and kind.

    Attributes:
        variables: ``{path: variable}`` in model order (see `tracked_variables`).
        kinds: ``{path: kind}``, each one of `VARIABLE_KINDS`.
        counters: paths of the optimizers' iteration counters.
    """

    variables: dict[str, Any]
    kinds: dict[str, str]
    counters: tuple[str, ...]


def tracked_state(model: keras.layers.Layer) -> TrackedState:
    """Every variable a fingerprint covers, with its kind; see `tracked_variables`."""
    _check_model(model)
    variables: dict[str, Any] = {}
    kinds: dict[str, str] = {}

    def add(path: str, variable: Any, kind: str) -> None:
        if id(variable) not in covered:
            covered.add(id(variable))
            variables[path] = variable
            kinds[path] = kind

    covered: set[int] = set()
    for path, variable in paths.weight_paths(model).items():
        add(path, variable, "weight")
    for path, generator in paths.seed_generator_paths(model).items():
        add(path, generator.state, "seed_generator")
    # Keras names a slot variable "<reference.path with / as _>_<slot>"; match
    # each slot to its weight by the longest such prefix.
    prefixes = sorted(
        ((v.path.replace("/", "_") + "_", p) for p, v in variables.items() if kinds[p] == "weight"),
        key=lambda item: -len(item[0]),
    )
    counters = []
    for prefix, optimizer in paths.optimizer_paths(model).items():
        found, counter = _optimizer_variables(optimizer, prefix, prefixes)
        for path, variable in found.items():
            add(path, variable, "optimizer")
        if counter is not None and counter in variables:
            counters.append(counter)
    metric_ids = {id(v) for v in getattr(model, "metrics_variables", [])}
    for index, variable in enumerate(model.variables):
        if id(variable) not in metric_ids:
            add(f"unlisted/{index}", variable, "other")
    return TrackedState(variables, kinds, tuple(counters))


def sync_jax_state(model: keras.layers.Layer) -> None:
    """On JAX, puts the state `fit` keeps outside the variables back into them (a no-op elsewhere).

    Keras' JAX trainer passes the training state from step to step and
    syncs it into the variables only at epoch ends or when asked. Inside a
    `keras.StatelessScope` the variables read the scope's values, which
    are the ones to read there, so nothing is synced.
    """
    sync = getattr(model, "jax_state_sync", None)
    if callable(sync) and not _compat.in_stateless_scope():
        sync()


def training_step(model: keras.layers.Layer) -> int:
    """The model's training step: the largest step count among its optimizers (0 without one).

    The same count as `ModelFingerprint.iterations`, read without hashing
    anything.
    """
    sync_jax_state(model)
    state = tracked_state(model)
    counts = [int(keras.ops.convert_to_numpy(state.variables[path])) for path in state.counters]
    return max(counts, default=0)


def tracked_variables(model: keras.layers.Layer) -> dict[str, Any]:
    """Every variable a fingerprint covers, by stable path, in model order.

    Weights (`keras_repro.paths.weight_paths`), then the state variable of
    each layer seed generator (`keras_repro.paths.seed_generator_paths`, the
    generator's path), then the variables of every optimizer reachable from
    the model (`keras_repro.paths.optimizer_paths`: the compiled one and
    those a custom `compile()` keeps in attributes). Variables of the model
    reachable in none of these ways (rare: a variable held outside any layer
    attribute) come last as ``unlisted/<index in model.variables>``. Metric
    variables are not included.

    Args:
        model: a Keras model or layer.

    Returns:
        An ordered ``{path: keras.Variable}`` dict.
    """
    return tracked_state(model).variables


def _reader(variable: Any) -> Callable[[], Any]:
    """A function returning the variable's current value, as cheaply as the backend allows."""
    value = variable.value if isinstance(variable, keras.Variable) else variable
    handle = getattr(value, "handle", None)
    if handle is not None and hasattr(value, "read_value"):
        # A tf.Variable: a raw ReadVariableOp shares the buffer (TF copies on
        # the next write while we hold it); `.numpy()` would copy every time.
        import tensorflow as tf

        dtype = value.dtype
        return lambda: tf.raw_ops.ReadVariableOp(resource=handle, dtype=dtype)
    if isinstance(variable, keras.Variable):
        if callable(getattr(value, "detach", None)):
            # A torch parameter: detached, NumPy views its CPU buffer without a copy.
            return lambda: variable.value.detach()
        return lambda: variable.value
    return lambda: variable


def to_numpy(value: Any) -> np.ndarray:
    """`value` (a backend tensor, NumPy array or scalar) as a NumPy array, without a copy where NumPy can view it."""
    try:
        array = np.asarray(value)
    except (TypeError, RuntimeError, ValueError):  # e.g. a torch tensor that requires grad
        return keras.ops.convert_to_numpy(value)
    if array.dtype == object:  # a backend tensor NumPy did not understand
        return keras.ops.convert_to_numpy(value)
    return array


def _little_endian(array: np.ndarray) -> np.ndarray:
    byteorder = array.dtype.byteorder
    if byteorder == ">" or (byteorder == "=" and sys.byteorder == "big"):
        array = array.astype(array.dtype.newbyteorder("<"))
    return np.ascontiguousarray(array)


def _header(dtype: str, shape: tuple[int, ...]) -> bytes:
    return f"{dtype}|{','.join(map(str, shape))}|".encode()


def _digest(array: np.ndarray, header: bytes) -> str:
    array = _little_endian(array)
    hasher = xxhash.xxh3_64(header)
    if array.size:
        hasher.update(array.reshape(-1).view(np.uint8))
    return hasher.hexdigest()


def digest_array(array: Any, dtype: str | None = None) -> str:
    """The per-variable digest of an array (see the module docstring).

    Args:
        array: anything `numpy.asarray` accepts.
        dtype: the dtype name to hash; the array's NumPy dtype name when None
            (Keras variables use their Keras dtype name, the same for the
            standard dtypes).

    Returns:
        16 hex digits (XXH3-64).

    Example:

    ```python
    import numpy as np
    from keras_repro.fingerprint import digest_array

    a = np.arange(6, dtype="<f4")
    assert digest_array(a) == digest_array(a.astype(">f4"))  # byte order does not matter
    assert digest_array(a) != digest_array(a.reshape(2, 3))  # shape does
    ```
    """
    array = np.asarray(array)
    return _digest(array, _header(dtype or array.dtype.name, tuple(int(d) for d in array.shape)))


class Fingerprinter:
    """Fingerprints one model repeatedly, walking it and planning the reads once.

    `fingerprint_details(model)` is ``Fingerprinter(model).details()``. Keep
    a `Fingerprinter` to fingerprint a model every training step; call
    `refresh` when the model may have gained variables (Keras builds an
    unbuilt model and a fresh optimizer's slots in the first training step).

    Args:
        model: a Keras model or layer.

    Example:

    ```python
    import keras
    from keras_repro.fingerprint import Fingerprinter

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    fingerprinter = Fingerprinter(model)
    fingerprinter.details().digest
    ```
    """

    def __init__(self, model: keras.layers.Layer) -> None:
        _check_model(model)
        self.model = model
        self.refresh()

    def refresh(self) -> None:
        """Lists the model's variables again (see `tracked_variables`)."""
        state = tracked_state(self.model)
        self.variables = state.variables
        self.kinds = state.kinds
        self._counters = frozenset(state.counters)
        self._plan = []
        for path, variable in self.variables.items():
            dtype = getattr(variable, "dtype", None)
            self._plan.append((path, _reader(variable), dtype if isinstance(dtype, str) else None))
        self._sorted_paths = sorted(self.variables)
        # (dtype, shape) -> (digest header, shape text): shapes do not change.
        self._formats: dict[tuple[str, tuple[int, ...]], tuple[bytes, str]] = {}

    def details(self, summaries: bool = False) -> ModelFingerprint:
        """Reads every variable once and fingerprints it and the model.

        Args:
            summaries: also summarize each floating-point variable (its
                float64 sum and L2 norm, `keras_repro.drift.summarize`), from
                the same read.
        """
        sync_jax_state(self.model)
        digests: dict[str, str] = {}
        schema: dict[str, tuple[str, tuple[int, ...]]] = {}
        lines: dict[str, str] = {}
        summarized: dict[str, list | None] | None = {} if summaries else None
        iterations = None
        for path, read, dtype in self._plan:
            array = to_numpy(read())
            key = (dtype or array.dtype.name, array.shape)
            formats = self._formats.get(key)
            if formats is None:
                shape = tuple(int(d) for d in array.shape)
                formats = self._formats[key] = (_header(key[0], shape), ",".join(map(str, shape)))
            digest = _digest(array, formats[0])
            digests[path] = digest
            schema[path] = key
            lines[path] = f"{path}\t{key[0]}\t{formats[1]}\t{digest}\n"
            if summarized is not None:
                summarized[path] = summarize(array)
            if path in self._counters and array.size == 1:
                count = int(array.reshape(-1)[0])
                iterations = count if iterations is None else max(iterations, count)
        combined = xxhash.xxh3_128("".join(lines[p] for p in self._sorted_paths).encode()).hexdigest()
        return ModelFingerprint(combined, digests, schema, iterations, dict(self.kinds), summarized)


def fingerprint_details(model: keras.layers.Layer) -> ModelFingerprint:
    """Fingerprints a model and each of its variables, reading each variable once.

    Args:
        model: a Keras model or layer.

    Returns:
        A `ModelFingerprint` with the model digest, the per-variable digests
        and each variable's dtype and shape.

    Example:

    ```python
    import keras
    import keras_repro as kr
    from keras_repro.fingerprint import fingerprint_details

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    details = fingerprint_details(model)
    assert details.digest == kr.fingerprint(model)
    ```
    """
    return Fingerprinter(model).details()


def fingerprint(model: keras.layers.Layer) -> str:
    """Returns a hex digest of every variable of `model`.

    Covers weights, optimizer slots and iteration counter, and layer seed
    generator states (metric variables excluded). Equal for equal values in
    any process on any platform; a one-ULP change anywhere changes it.

    Args:
        model: a Keras model or layer.

    Returns:
        32 hex digits (XXH3-128).

    Example:

    ```python
    import keras
    import keras_repro as kr

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    before = kr.fingerprint(model)
    model.layers[0].bias.assign([0.0, 1e-30])
    assert kr.fingerprint(model) != before
    ```
    """
    return fingerprint_details(model).digest


def fingerprint_variables(model: keras.layers.Layer) -> dict[str, str]:
    """Returns ``{path: hex digest}`` for every variable of `model`, in model order.

    Paths are stable across processes (see `keras_repro.paths`); optimizer
    variables are ``optimizer/iterations``, ``optimizer/<weight path>/<slot>``
    and ``optimizer/<name>``.

    Args:
        model: a Keras model or layer.

    Returns:
        An ordered dict of 16-hex-digit XXH3-64 digests.

    Example:

    ```python
    import keras
    import keras_repro as kr

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="out")])
    list(kr.fingerprint_variables(model))   # ['out/kernel', 'out/bias']
    ```
    """
    return fingerprint_details(model).variables


def _canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def fingerprint_rng_streams(state: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Digests of each global random stream: python, numpy, tensorflow, keras, root_seed.

    Args:
        state: a state returned by `keras_repro.rng_state`; the current state
            when None.

    Returns:
        ``{stream: 16 hex digits}``, XXH3-64 of the stream's canonical JSON.
    """
    if state is None:
        state = rng_state()
    if not isinstance(state, Mapping):
        raise TypeError(f"Invalid RNG state: expected the dict returned by rng_state(), got {type(state).__name__}.")
    missing = [s for s in _RNG_STREAMS if s not in state]
    if missing:
        raise ValueError(f"Invalid RNG state: missing entries {missing}.")
    return {s: xxhash.xxh3_64_hexdigest(_canonical_json(state[s])) for s in _RNG_STREAMS}


def fingerprint_rng(state: Mapping[str, Any] | None = None) -> str:
    """Returns a hex digest of the global RNG state (Python, NumPy, TF, Keras, root seed).

    The digest is XXH3-128 over the canonical JSON (sorted keys, no spaces)
    of `keras_repro.rng_state()`.

    Args:
        state: a state returned by `keras_repro.rng_state`; the current state
            when None.

    Returns:
        32 hex digits.

    Example:

    ```python
    import random
    import keras_repro as kr

    before = kr.fingerprint_rng()
    random.random()
    assert kr.fingerprint_rng() != before
    ```
    """
    if state is None:
        state = rng_state()
    fingerprint_rng_streams(state)  # validates
    return xxhash.xxh3_128_hexdigest(_canonical_json(dict(state)))
