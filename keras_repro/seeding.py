"""seed_model: every random stream of any Keras model keyed by its layer paths.

Keras draws the seed of every unseeded initializer and Dropout from Python's
`random`, in construction order: one unrelated layer or one
``random.random()`` before the model changes all of its weights, and adding
a layer changes the weights of every layer built after it. A seeded model
instead derives each stream from the model's seed and the stable path of
the layer that owns it (`keras_repro.paths`), never from construction order
or from Keras' process-wide name counters:

- the random initializer held in attribute ``<attr>`` (``kernel_initializer``,
  ``recurrent_initializer``, ``embeddings_initializer``, ...) of the layer
  at path ``p`` is replaced by a clone seeded with
  ``derive_seed(seed, p, "<attr>")`` (a clone: an instance shared with
  other layers or models is not changed), and the layer's built weights are
  re-initialized from it;
- the seed generator at path ``g`` (Dropout, GaussianNoise, random
  augmentation layers, MultiHeadAttention's dropout, ...) restarts at
  ``[derive_seed(seed, g), 0]``, and under a `tf.distribute` strategy with
  several replicas hands each replica its own stream, keyed by its replica
  id (`keras_repro.distribute.key_by_replica`).

Layers built later (a subclassed or `Sequential` model built on first
call, or sublayers a layer creates in its own `build`, as
`MultiHeadAttention` does) are seeded when the model finishes building. A
weight whose initializer cannot be determined is named in an
`UnseededWeightWarning` (a `ValueError` with ``strict=True``), never left on
the global stream silently.

Example:

```python
import keras
import keras_repro as kr

model = keras.Sequential(
    [keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dropout(0.1), keras.layers.Dense(1)]
)
kr.seed_model(model, 42)  # same weights and Dropout masks in every process
```
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

import keras

from keras_repro import _compat
from keras_repro import _validate
from keras_repro import _warnings
from keras_repro import paths
from keras_repro.distribute import key_by_replica
from keras_repro.seeds import ReproducibilityWarning
from keras_repro.seeds import derive_seed
from keras_repro.seeds import validate_seed

__all__ = [
    "SeedingRecord",
    "UnseededWeightWarning",
    "seed_model",
    "seed_new",
    "seeding_record",
    "seeds_global_streams_in_fit",
]

_RECORD = "_keras_repro_seeding"
_HOOKED = "_keras_repro_seeding_hook"

# Weights Keras' own layers create from an initializer held in no attribute.
# Random ones get a seed keyed by (layer path, weight name):
_INLINE_RANDOM: dict[tuple[str, str], Callable[[int], Any]] = {
    ("AdditiveAttention", "scale"): lambda s: keras.initializers.GlorotUniform(seed=s),
    ("SpectralNormalization", "vector_u"): lambda s: keras.initializers.TruncatedNormal(stddev=0.02, seed=s),
}
# Deterministic ones, or state computed from data (`Normalization.adapt`),
# keep their values:
_NOT_RANDOM = frozenset(
    {
        ("Attention", "scale"),
        ("Attention", "concat_score_weight"),
        ("RMSNormalization", "scale"),
        ("Normalization", "mean"),
        ("Normalization", "variance"),
        ("Normalization", "count"),
        ("STFTSpectrogram", "real_kernel"),
        ("STFTSpectrogram", "imag_kernel"),
        ("BatchNormalization", "moving_stddev"),
        ("BatchNormalization", "renorm_mean"),
        ("BatchNormalization", "renorm_stddev"),
    }
)
# Weight names whose initializer attribute is not "<name>_initializer".
_ALIASES = {"kernel": ("depthwise_initializer",)}
_UNKNOWN = object()  # an initializer attribute whose randomness cannot be told


class UnseededWeightWarning(ReproducibilityWarning):
    """A weight or initializer that `seed_model` could not key by its path.

    The message names each layer path and weight or attribute, and what to
    change so that it is seeded (an ``<weight>_initializer`` attribute, or an
    explicitly seeded initializer). Turn it into an error with
    ``seed_model(model, seed, strict=True)``, or with
    ``warnings.simplefilter("error", kr.UnseededWeightWarning)``.
    """


class SeedingRecord:
    """What `seed_model` did to one model: its seed, its strictness, what it seeded.

    Attributes:
        seed: the root seed of the last `seed_model` call.
        strict: whether that call was strict.
        variables: ids of the variables seeded so far (a later pass keeps them).
        generators: ids of the seed generators seeded so far.
    """

    __slots__ = ("seed", "strict", "variables", "generators")

    def __init__(self, seed: int, strict: bool):
        self.seed = seed
        self.strict = strict
        self.variables: set[int] = set()
        self.generators: set[int] = set()


# ---------------------------------------------------------------- initializers


def _constant_classes() -> tuple[type, ...]:
    names = ("Zeros", "Ones", "Constant", "Identity", "STFT")
    return tuple(getattr(keras.initializers, n) for n in names if hasattr(keras.initializers, n))


def _is_random(initializer: Any) -> bool | None:
    """True for a random initializer that takes a seed, False for a constant one, None if unknown."""
    if isinstance(initializer, _compat.random_initializer_class()):
        return True
    if isinstance(initializer, _constant_classes()):
        return False
    if isinstance(initializer, keras.initializers.Initializer):
        try:
            return True if "seed" in initializer.get_config() else None
        except Exception:  # noqa: BLE001 - a broken get_config: cannot tell
            return None
    return None


def _clone(initializer: Any, seed: int) -> Any:
    return type(initializer).from_config({**initializer.get_config(), "seed": seed})


def _seed_initializers(layer, path: str, seed: int, problems: list[str]) -> dict[str, Any]:
    """Replaces the layer's random initializer attributes by seeded clones.

    Returns ``{public attribute name: initializer}`` for mapping weights;
    `_UNKNOWN` for attributes whose randomness cannot be told.
    """
    found: dict[str, Any] = {}
    for attribute, value in list(vars(layer).items()):
        if not attribute.endswith("_initializer") or value is None:
            continue
        public = attribute.lstrip("_")
        resolved = value
        if isinstance(value, str):
            # Kept as a string on the layer (its config stays as written);
            # built weights are re-initialized from a seeded instance.
            try:
                resolved = keras.initializers.get(value)
            except ValueError:
                found[public] = _UNKNOWN
                continue
        kind = _is_random(resolved)
        if kind is None:
            found[public] = _UNKNOWN
            if callable(resolved):
                problems.append(
                    f"{_where(path)} attribute {public!r} holds {type(resolved).__name__}, "
                    "which is neither a Keras random initializer (with a `seed` in its "
                    "config) nor a known constant one: it is left as is."
                )
            continue
        if not kind:
            found[public] = resolved
            continue
        derived = derive_seed(seed, path, public)
        try:
            clone = _clone(resolved, derived)
        except Exception as e:  # noqa: BLE001 - reported with the layer named
            found[public] = _UNKNOWN
            problems.append(
                f"{_where(path)} attribute {public!r}: cannot make a seeded copy of "
                f"{type(resolved).__name__} ({type(e).__name__}: {e}); it stays unseeded."
            )
            continue
        if value is resolved:
            setattr(layer, attribute, clone)
        found[public] = clone
    return found


def _where(path: str) -> str:
    return f"layer {path!r}" if path else "the model itself"


def _forget_bias(layer, initializer):
    """LSTM's bias with ``unit_forget_bias``: [init(u), ones(u), init(2u)] as Keras builds it."""
    units = layer.units

    def initializer_with_forget_bias(shape, dtype=None):
        return keras.ops.concatenate(
            [
                initializer((units,), dtype=dtype),
                keras.initializers.Ones()((units,), dtype=dtype),
                initializer((units * 2,), dtype=dtype),
            ]
        )

    return initializer_with_forget_bias


def _class_names(layer) -> list[str]:
    return [cls.__name__ for cls in type(layer).__mro__]


def _weight_initializer(layer, path: str, name: str, variable, found: dict, seed: int):
    """The initializer to re-create `variable` with; None to keep it; _UNKNOWN if unknown."""
    if not _is_float(variable):
        return None
    for cls_name in _class_names(layer):
        if (cls_name, name) in _NOT_RANDOM:
            return None
        if (cls_name, name) in _INLINE_RANDOM:
            return _INLINE_RANDOM[cls_name, name](derive_seed(seed, path, name))
    base = name[: -len("_kernel")] if name.endswith("_kernel") else name
    candidates = (f"{name}_initializer", f"{base}_initializer", *_ALIASES.get(name, ()))
    for candidate in candidates:
        if candidate in found:
            initializer = found[candidate]
            break
    else:
        return _UNKNOWN
    if initializer is _UNKNOWN:
        return _UNKNOWN
    if name == "bias" and getattr(layer, "unit_forget_bias", False) and hasattr(layer, "units"):
        if tuple(variable.shape) == (4 * layer.units,):
            return _forget_bias(layer, initializer)
    return initializer


def _is_float(variable) -> bool:
    return "float" in str(variable.dtype)


# ---------------------------------------------------------------- assignment


@contextlib.contextmanager
def _eager():
    """Lifts assignments out of a `tf.function` being traced (a no-op when eager)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        with tf.init_scope():
            yield
    else:
        yield


def _set_initial_value(variable, initializer) -> bool:
    """Gives `variable` the value ``initializer(shape, dtype)``; False if impossible now."""
    if _compat.in_stateless_scope():
        # Inside Keras' symbolic build, new variables are not initialized
        # yet: they are, from their deferred initializer, when the scope exits.
        return _compat.replace_deferred_initializer(variable, initializer)
    with _eager():
        variable.assign(initializer(tuple(variable.shape), dtype=variable.dtype))
    return True


def _generator_state(seed: int) -> Callable:
    def initializer(shape, dtype=None):
        return keras.ops.convert_to_tensor([seed, 0], dtype=dtype)

    return initializer


# ---------------------------------------------------------------- the pass


def _seed_pass(model, record: SeedingRecord, only_new: bool) -> None:
    """Seeds every layer, weight and seed generator of `model` from `record.seed`.

    With `only_new`, weights and generators seen by an earlier pass keep
    their values (they may have been trained or loaded since).
    """
    seed = record.seed
    problems: list[str] = []
    deferred: list[str] = []
    # A variable can belong to two layers (a wrapper such as
    # SpectralNormalization tracks its inner layer's kernel): collect every
    # owner, then use the first that tells its initializer.
    owners: dict[int, list[tuple[str, Any, Any]]] = {}
    for path, layer in paths.layer_paths(model).items():
        found = _seed_initializers(layer, path, seed, problems)
        for segment, variable in paths.own_weights(layer).items():
            if only_new and id(variable) in record.variables:
                continue
            weight = f"{path}/{segment}" if path else segment
            initializer = _weight_initializer(layer, path, variable.name, variable, found, seed)
            owners.setdefault(id(variable), []).append((weight, variable, initializer, layer))
    drawn: dict[tuple, str] = {}
    for candidates in owners.values():
        record.variables.add(id(candidates[0][1]))
        known = [c for c in candidates if c[2] is not _UNKNOWN]
        weight, variable, initializer, layer = known[0] if known else candidates[0]
        if initializer is None:
            continue
        if initializer is _UNKNOWN:
            problems.append(
                f"weight {weight!r} ({type(layer).__name__}): cannot tell which "
                f"initializer created it, so it keeps its value. Give the layer a "
                f"`{variable.name}_initializer` attribute holding the initializer "
                "it is built with, or build it with an explicitly seeded initializer."
            )
            continue
        key = (id(initializer), tuple(variable.shape))
        if key in drawn and _is_random(initializer):
            problems.append(
                f"weights {drawn[key]!r} and {weight!r} are drawn from the same "
                "initializer attribute with the same shape: they are identical."
            )
        drawn[key] = weight
        if not _set_initial_value(variable, initializer):
            deferred.append(weight)
    for path, generator in paths.seed_generator_paths(model).items():
        if only_new and id(generator) in record.generators:
            continue
        record.generators.add(id(generator))
        derived = derive_seed(seed, path)
        _compat.set_seed_generator_initial_seed(generator, derived)  # what its get_config reports
        if not _set_initial_value(generator.state, _generator_state(derived)):
            deferred.append(path)
        key_by_replica(generator)  # each replica of a tf.distribute strategy its own stream
    if deferred:
        problems.append(
            f"could not re-initialize {', '.join(map(repr, deferred))} inside a symbolic "
            "(stateless) call; build the model (call it once on data, or "
            "model.build(shape)) before seeding it."
        )
    if problems:
        message = "seed_model: " + "\n  ".join(["some random streams are not keyed by path:"] + problems)
        if record.strict:
            raise ValueError(message)
        _warnings.warn(message, UnseededWeightWarning)


def _install_build_hook(model) -> None:
    """Seeds what the model creates while it builds, once the build is done."""
    if getattr(model, _HOOKED, False):
        return
    build = model.build

    @functools.wraps(build)
    def build_then_seed(*args, **kwargs):
        build(*args, **kwargs)
        seed_new(model)

    model.build = build_then_seed
    object.__setattr__(model, _HOOKED, True)


def seed_model(model: keras.Model, seed: int, strict: bool = False) -> keras.Model:
    """Keys every random stream of `model` by (seed, layer path) and returns it.

    Works on `Sequential`, functional and subclassed models, built or not:
    random initializers are replaced by seeded clones (see the module
    docstring for the scheme), built weights are re-initialized from them
    (constant ones such as zero biases too; state computed from data, such as
    `Normalization`'s, is kept), and every seed generator is reset. An unbuilt
    model is seeded again, for what its build creates, when it finishes
    building. Two processes that build the same architecture and call
    ``seed_model(model, seed)`` get bit-identical weights, whatever else they
    constructed or drew from any RNG before.

    Args:
        model: a `keras.Model`.
        seed: the root seed, an integer in ``[0, 2**32 - 1]``.
        strict: raise `ValueError` instead of warning
            (`UnseededWeightWarning`) about weights or initializers that
            cannot be keyed by path.

    Returns:
        `model`, seeded.

    Raises:
        TypeError: `model` is not a Keras model, or `seed` is not an integer.
        ValueError: invalid seed; with ``strict=True``, something that cannot
            be seeded (named in the message).

    Example:

    ```python
    import keras
    import keras_repro as kr

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(1)])
    kr.seed_model(model, 42)
    ```
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"seed_model expects a keras.Model (Sequential, functional or subclassed), "
            f"got {model!r} (of type {type(model).__name__})."
        )
    strict = _validate.check_bool("strict", strict)
    record = SeedingRecord(validate_seed(seed), strict)
    object.__setattr__(model, _RECORD, record)
    _seed_pass(model, record, only_new=False)
    if not model.built:
        _install_build_hook(model)
    return model


def seeding_record(model: keras.Model) -> SeedingRecord | None:
    """What the last `seed_model` call on `model` did; None if it was never seeded."""
    return getattr(model, _RECORD, None)


def seed_new(model: keras.Model) -> None:
    """Seeds what `model` created since it was last seeded; nothing for a model never seeded.

    Weights and seed generators seeded before keep their values (they may
    have been trained or loaded since). Called when a seeded model finishes
    building and when its training starts.
    """
    record = seeding_record(model)
    if record is not None:
        # The warning names the caller of this function's caller, as it
        # does for a pass run from `seed_model`.
        _seed_pass(model, record, only_new=True)


def seeds_global_streams_in_fit(model: keras.layers.Layer) -> bool:
    """Whether `model`'s `fit` seeds the global streams from the model's own seed.

    True for instances of a class with a true
    ``_keras_repro_seeds_global_streams_in_fit`` class attribute, as
    `keras_repro.SeededModel` has: the audit asks this rather than
    importing the model classes.
    """
    return bool(getattr(type(model), "_keras_repro_seeds_global_streams_in_fit", False))
