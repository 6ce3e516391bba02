"""SeededModel and seed_model: every random stream of a model keyed by its layer paths.

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
  ``[derive_seed(seed, g), 0]``.

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

inputs = keras.Input((4,))
outputs = keras.layers.Dense(1)(keras.layers.Dropout(0.1)(keras.layers.Dense(8)(inputs)))
model = kr.SeededModel(inputs, outputs, seed=42)   # same weights in every process

plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
kr.seed_model(plain, 42)                            # any existing model
```
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import threading
import warnings
from typing import Any, Callable

import keras
import numpy as np
from keras.src.initializers.random_initializers import RandomInitializer
from keras.src.models.functional import Functional

from keras_repro import data, paths
from keras_repro.seeds import (
    ReproducibilityWarning,
    derive_seed,
    get_root_seed,
    rng_state,
    seed_everything,
    set_rng_state,
    validate_seed,
)
from keras_repro.state import ResumePoint, set_mid_epoch_resumable, set_resume_point

__all__ = ["SeededFunctional", "SeededModel", "UnseededWeightWarning", "seed_model"]

_RECORD = "_keras_repro_seeding"
_GENERATORS_KEY = "keras_repro_seed_generators"
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


class _Record:
    """What has been seeded on one model: its seed, and what was seen when."""

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
    if isinstance(initializer, RandomInitializer):
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


def _in_stateless_scope() -> bool:
    from keras.src.backend.common.stateless_scope import in_stateless_scope

    return in_stateless_scope()


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
    if _in_stateless_scope():
        # Inside Keras' symbolic build, new variables are not initialized
        # yet: they are, from `_initializer`, when the scope exits.
        if getattr(variable, "_value", True) is None and getattr(variable, "_initializer", None) is not None:
            variable._initializer = initializer  # noqa: SLF001 - Keras' deferred initialization
            return True
        return False
    with _eager():
        variable.assign(initializer(tuple(variable.shape), dtype=variable.dtype))
    return True


def _generator_state(seed: int) -> Callable:
    def initializer(shape, dtype=None):
        return keras.ops.convert_to_tensor([seed, 0], dtype=dtype)

    return initializer


# ---------------------------------------------------------------- the pass


def _seed_pass(model, record: _Record, only_new: bool) -> None:
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
        generator._initial_seed = derived  # noqa: SLF001 - what SeedGenerator.get_config reports
        if not _set_initial_value(generator.state, _generator_state(derived)):
            deferred.append(path)
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
        warnings.warn(message, UnseededWeightWarning, stacklevel=3)


def _install_build_hook(model) -> None:
    """Seeds what the model creates while it builds, once the build is done."""
    if getattr(model, _HOOKED, False):
        return
    build = model.build

    @functools.wraps(build)
    def build_then_seed(*args, **kwargs):
        build(*args, **kwargs)
        record = getattr(model, _RECORD, None)
        if record is not None:
            _seed_pass(model, record, only_new=True)

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
    if not isinstance(strict, bool):
        raise TypeError(f"Invalid strict: {strict!r}. strict must be True or False.")
    record = _Record(validate_seed(seed), strict)
    object.__setattr__(model, _RECORD, record)
    _seed_pass(model, record, only_new=False)
    if not model.built:
        _install_build_hook(model)
    return model


# ---------------------------------------------------------------- the model


_init_depth = threading.local()


def _seed_after_init(init: Callable) -> Callable:
    """Wraps a subclass' __init__ so the model is seeded once its layers exist."""

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        depths = _init_depth.__dict__.setdefault("depths", {})
        depths[id(self)] = depths.get(id(self), 0) + 1
        try:
            init(self, *args, **kwargs)
        finally:
            depths[id(self)] -= 1
            outermost = depths[id(self)] == 0
            if outermost:
                del depths[id(self)]
        if outermost:
            if "_keras_repro_seed" not in vars(self):
                raise TypeError(
                    f"{type(self).__name__}.__init__ must call "
                    "super().__init__(seed=seed, **kwargs) (a SeededModel needs its seed)."
                )
            seed_model(self, self.seed)

    __init__.__signature__ = inspect.signature(init)
    return __init__


class _EpochTracker(keras.callbacks.Callback):
    """Tells the shuffled dataset which epoch Keras is starting."""

    async_safe = True

    def __init__(self, model: "SeededModel", initial_epoch: int):
        super().__init__()
        self._seeded_model = model
        self.epoch = initial_epoch

    def on_train_begin(self, logs=None):
        # A model first built by `fit` itself is seeded by its build hook;
        # this catches weights created some other way, before any step.
        record = getattr(self._seeded_model, _RECORD, None)
        if record is not None:
            _seed_pass(self._seeded_model, record, only_new=True)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch


def _with_tracker(callbacks, tracker: _EpochTracker, model):
    if isinstance(callbacks, keras.callbacks.CallbackList):
        callbacks.callbacks.insert(0, tracker)
        tracker.set_model(model)
        return callbacks
    if callbacks is None:
        return [tracker]
    if isinstance(callbacks, keras.callbacks.Callback):
        return [tracker, callbacks]
    return [tracker, *callbacks]


def _is_dense_array(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_dense_array(v) for v in value)
    if isinstance(value, dict):
        return all(_is_dense_array(v) for v in value.values())
    return (
        hasattr(value, "shape")
        and (hasattr(value, "dtype") or hasattr(value, "dtypes"))  # arrays, tensors, DataFrames
        and not _is_tf_dataset_like(value)
    )


def _is_tf_dataset_like(value: Any) -> bool:
    return type(value).__name__ in {"DatasetV2", "DistributedDataset"} or hasattr(value, "element_spec")


def _seed_global_streams(seed: int) -> None:
    """Seeds the global streams from ``derive_seed(seed, "global")``.

    `seed_everything` also records its argument as the run's root seed; a
    model's fit keeps the record the process had (the derived value is not
    a root seed anyone chose).
    """
    recorded = get_root_seed()
    seed_everything(derive_seed(seed, "global"))
    state = rng_state()
    state["root_seed"] = recorded
    set_rng_state(state)


@keras.saving.register_keras_serializable(package="keras_repro")
class SeededModel(keras.Model):
    """A `keras.Model` that owns its seed: every random stream keyed by (seed, layer path).

    Usable three ways:

    - functional: ``SeededModel(inputs, outputs, seed=42, name=...)`` (gives a
      `SeededFunctional`, a subclass);
    - subclassed: ``class Net(SeededModel)`` calling
      ``super().__init__(seed=seed, **kwargs)`` first; the model is seeded
      when the subclass' ``__init__`` returns, and again for what it creates
      when it is built;
    - any existing model: `seed_model(model, seed)`.

    Initial weights and Dropout (and other seed generator) streams follow
    the rules of `seed_model`. `fit` additionally:

    - seeds the global streams (Python, NumPy, TensorFlow, the Keras global
      `SeedGenerator`) from ``derive_seed(seed, "global")`` when it starts,
      so layers calling unseeded `keras.random` functions are covered;
    - with ``shuffle=True`` (or ``"batch"``) on array inputs, orders epoch
      ``e`` by `keras_repro.epoch_permutation(seed, e, n)`: a different order
      every epoch, identical in every process, and the same for epoch k of a
      resumed run (``initial_epoch=k``, or `BackupAndRestore`) as in an
      uninterrupted one. ``validation_split`` takes the last fraction of the
      arrays before shuffling, as Keras does. The order of a
      `tf.data.Dataset` or generator is left alone: build it with
      `keras_repro.epoch_shuffle` and `keras_repro.repeat_by_epoch`.

    `get_config` includes the seed, so `model.save` / `keras.models.load_model`
    (``safe_mode=True``) give back a seeded model with the same seed and
    weights. A subclass implements `get_config` as for any Keras model,
    starting from ``super().get_config()`` (which holds ``seed``).

    Args:
        seed: the root seed, an integer in ``[0, 2**32 - 1]`` (keyword only).
        *args, **kwargs: as for `keras.Model`.

    Example:

    ```python
    import keras
    import keras_repro as kr

    class Net(kr.SeededModel):
        def __init__(self, seed, units=8, **kwargs):
            super().__init__(seed=seed, **kwargs)
            self.units = units
            self.hidden = keras.layers.Dense(units, activation="relu")
            self.drop = keras.layers.Dropout(0.2)
            self.out = keras.layers.Dense(1)

        def call(self, x, training=False):
            return self.out(self.drop(self.hidden(x), training=training))

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    net = Net(seed=42)
    net.compile("adam", "mse")
    ```
    """

    def __new__(cls, *args, **kwargs):
        from keras.src.models.model import functional_init_arguments

        if cls is SeededModel and functional_init_arguments(args, kwargs):
            return SeededFunctional.__new__(SeededFunctional, *args, **kwargs)
        return super().__new__(cls, *args, **kwargs)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _seed_after_init(cls.__dict__["__init__"])

    def __init__(self, *args, seed: int | None = None, **kwargs):
        from keras.src.models.model import functional_init_arguments

        if seed is None:
            raise TypeError(
                f"{type(self).__name__} needs a seed: pass seed=<int in [0, 2**32 - 1]>. "
                "(keras.models.clone_model cannot pass one; clone a seeded model with "
                "type(model).from_config(model.get_config()) instead.)"
            )
        seed = validate_seed(seed)
        if functional_init_arguments(args, kwargs) and not isinstance(self, Functional):
            raise TypeError(
                f"{type(self).__name__} is a subclassed SeededModel and cannot take "
                "`inputs` and `outputs`; for a functional model use "
                "keras_repro.SeededModel(inputs, outputs, seed=...)."
            )
        super().__init__(*args, **kwargs)
        self._keras_repro_seed = seed

    @property
    def seed(self) -> int:
        """The model's root seed (the last one given to `reseed` or `seed_model`)."""
        record = getattr(self, _RECORD, None)
        return record.seed if record is not None else self._keras_repro_seed

    def reseed(self, seed: int) -> "SeededModel":
        """Re-keys the model by a new seed: re-initializes every weight, resets every seed generator.

        Weights computed from data (`Normalization`) and the optimizer's state
        are kept.

        Args:
            seed: the new root seed.

        Returns:
            The model.

        Example:

        ```python
        import keras
        import keras_repro as kr

        inputs = keras.Input((4,))
        model = kr.SeededModel(inputs, keras.layers.Dense(1)(inputs), seed=42)
        model.reseed(7)
        assert model.seed == 7
        ```
        """
        seed = validate_seed(seed)
        record = getattr(self, _RECORD, None)
        seed_model(self, seed, strict=record.strict if record is not None else False)
        self._keras_repro_seed = seed
        return self

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["seed"] = self.seed
        return config

    def save_own_variables(self, store):
        """Saves the model's own variables and every layer seed generator state.

        Keras keeps seed generator states (Dropout, GaussianNoise ...) out of
        saved models, so a reloaded model would replay the first masks; a
        `SeededModel` saves them (in stable-path order) and loads them back.
        """
        super().save_own_variables(store)
        generators = paths.seed_generator_paths(self)
        if generators:
            store[_GENERATORS_KEY] = np.stack(
                [keras.ops.convert_to_numpy(g.state.value) for g in generators.values()]
            )

    def load_own_variables(self, store):
        own = {key: store[key] for key in store.keys() if key != _GENERATORS_KEY}
        super().load_own_variables(own)
        if _GENERATORS_KEY not in store.keys():
            return  # saved without them (e.g. by keras_repro < 0.1 or a plain Model)
        states = np.asarray(store[_GENERATORS_KEY])
        generators = paths.seed_generator_paths(self)
        if states.shape != (len(generators), 2):
            raise ValueError(
                f"The saved seed generator states have shape {states.shape}; this model has "
                f"{len(generators)} seed generators: the file is from a different model."
            )
        for generator, state in zip(generators.values(), states):
            generator.state.assign(keras.ops.convert_to_tensor(state, dtype=generator.state.dtype))

    def build_from_config(self, config):
        super().build_from_config(config)
        # Loading: seed what the build created; the saved weights come next.
        record = getattr(self, _RECORD, None)
        if record is not None:
            _seed_pass(self, record, only_new=True)

    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        verbose="auto",
        callbacks=None,
        validation_split=0.0,
        validation_data=None,
        shuffle=True,
        class_weight=None,
        sample_weight=None,
        initial_epoch=0,
        steps_per_epoch=None,
        validation_steps=None,
        validation_batch_size=None,
        validation_freq=1,
        **kwargs,
    ):
        """Trains like `keras.Model.fit`, with seeded global streams and an epoch-keyed order.

        Arguments and return value are those of `keras.Model.fit`. See the
        class docstring for what changes: the global streams are seeded from
        ``derive_seed(seed, "global")`` at the start, and ``shuffle`` on
        array inputs orders epoch ``e`` by
        ``keras_repro.epoch_permutation(self.seed, e, n)``. With a
        ``steps_per_epoch`` other than one pass over the data, the p-th pass
        is ordered by ``epoch_permutation(self.seed, p, n)`` and epoch k
        starts at batch ``k * steps_per_epoch`` of the passes (see
        `keras_repro.batch_stream`).
        """
        _seed_global_streams(self.seed)
        stream = bool(shuffle) and _is_dense_array((x, y, sample_weight)) and x is not None
        set_mid_epoch_resumable(self, stream)  # before restoring: callbacks check it
        point = _restore(self, callbacks)
        if point is not None:
            initial_epoch = point.epoch
        tracker = _EpochTracker(self, initial_epoch)
        callbacks = _with_tracker(callbacks, tracker, self)
        if point is not None and point.step > 0 and not stream:
            raise ValueError(
                f"Cannot resume exactly in the middle of epoch {point.epoch} (after "
                f"{point.step} batches): SeededModel.fit can only start an epoch part-way "
                "through for in-memory array inputs with shuffle=True. Use "
                "save_freq='epoch' for other inputs."
            )
        if stream:
            if validation_split and validation_data is None:
                from keras.src.trainers.data_adapters.array_slicing import train_validation_split

                (x, y, sample_weight), validation_data = train_validation_split(
                    (x, y, sample_weight), validation_split=validation_split
                )
            validation_split = 0.0
            batch_size = _batch_size(x, batch_size, steps_per_epoch)
            steps_per_epoch = steps_per_epoch or -(-_num_samples(x) // batch_size)
            packed, stream_batch_size = _pack(x, y, sample_weight), batch_size

            def stream_from(first_batch):
                return data.batch_stream(
                    packed, seed=self.seed, batch_size=stream_batch_size, start=first_batch,
                    within_batch=shuffle == "batch",
                )

            # One stream per fit, started where Keras starts (the tracker knows
            # the epoch once callbacks such as BackupAndRestore have run):
            # epoch k of a resumed run gets the batches of epoch k of an
            # uninterrupted one.
            x = stream_from(lambda: tracker.epoch * steps_per_epoch)
            y = sample_weight = batch_size = None
            shuffle = False
        common = dict(
            verbose=verbose, validation_split=validation_split, validation_data=validation_data,
            shuffle=shuffle, class_weight=class_weight, validation_steps=validation_steps,
            validation_batch_size=validation_batch_size, validation_freq=validation_freq, **kwargs,
        )
        if point is not None and point.step > 0:
            return self._fit_from_mid_epoch(point, stream_from, epochs, steps_per_epoch, callbacks, common)
        return super().fit(
            x=x, y=y, batch_size=batch_size, epochs=epochs, callbacks=callbacks,
            sample_weight=sample_weight, initial_epoch=initial_epoch,
            steps_per_epoch=steps_per_epoch, **common,
        )

    def _fit_from_mid_epoch(self, point, stream_from, epochs, steps_per_epoch, callbacks, common):
        """Finishes epoch `point.epoch` from batch `point.step`, then trains the rest.

        Keras cannot start an epoch part-way through, so this runs two inner
        fits that the callbacks see as one: one `on_train_begin`/`on_train_end`,
        one History, and batch numbers of the first (partial) epoch counted
        from `point.step`, as in the uninterrupted run.
        """
        callbacks = _OneRun(
            callbacks, add_history=True, add_progbar=common["verbose"] != 0,
            verbose=common["verbose"], epochs=epochs, steps=steps_per_epoch, model=self,
        )
        callbacks.batch_offset = point.step
        callbacks.last_phase = point.epoch + 1 >= epochs
        history = super().fit(
            x=stream_from(point.epoch * steps_per_epoch + point.step), epochs=point.epoch + 1,
            initial_epoch=point.epoch, steps_per_epoch=steps_per_epoch - point.step,
            callbacks=callbacks, **common,
        )
        if callbacks.last_phase or self.stop_training:
            return history
        callbacks.batch_offset, callbacks.last_phase = 0, True
        return super().fit(
            x=stream_from((point.epoch + 1) * steps_per_epoch), epochs=epochs,
            initial_epoch=point.epoch + 1, steps_per_epoch=steps_per_epoch,
            callbacks=callbacks, **common,
        )


class _OneRun(keras.callbacks.CallbackList):
    """The callbacks of a fit run as two inner fits (see `_fit_from_mid_epoch`)."""

    batch_offset = 0
    last_phase = True
    _began = False

    def on_train_begin(self, logs=None):
        if not self._began:
            self._began = True
            super().on_train_begin(logs)

    def on_train_end(self, logs=None):
        if self.last_phase:
            super().on_train_end(logs)

    def on_train_batch_begin(self, batch, logs=None):
        super().on_train_batch_begin(batch + self.batch_offset, logs)

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch + self.batch_offset, logs)


def _restore(model, callbacks) -> ResumePoint | None:
    """Lets callbacks that restore a backup (`restore_before_fit(model)`) do so now.

    Restoring before Keras starts lets `fit` begin the data stream, and the
    first epoch, exactly where the interrupted run stopped.
    """
    if isinstance(callbacks, keras.callbacks.CallbackList):
        callbacks = callbacks.callbacks
    elif isinstance(callbacks, keras.callbacks.Callback):
        callbacks = [callbacks]
    point = None
    for callback in callbacks or []:
        restore = getattr(callback, "restore_before_fit", None)
        if callable(restore):
            point = restore(model) or point
    set_resume_point(model, point)
    return point


def _first_array(x):
    if isinstance(x, dict):
        return _first_array(next(iter(x.values())))
    if isinstance(x, (list, tuple)):
        return _first_array(x[0])
    return x


def _num_samples(x) -> int:
    return int(_first_array(x).shape[0])


def _batch_size(x, batch_size, steps_per_epoch) -> int:
    """Keras' rule for array inputs: given, else from steps_per_epoch, else 32."""
    if batch_size:
        return batch_size
    if steps_per_epoch:
        return int(math.ceil(_num_samples(x) / steps_per_epoch))
    return 32


def _pack(x, y, sample_weight):
    """A Keras training tuple; one `sample_weight` array is repeated for nested targets."""
    if y is None:
        return (x,)
    if sample_weight is None:
        return (x, y)
    if isinstance(y, (list, tuple, dict)) and not isinstance(sample_weight, (list, tuple, dict)):
        sample_weight = keras.tree.map_structure(lambda _: sample_weight, y)
    return (x, y, sample_weight)


@keras.saving.register_keras_serializable(package="keras_repro")
class SeededFunctional(SeededModel, Functional):
    """A functional `SeededModel`: what ``SeededModel(inputs, outputs, seed=...)`` returns.

    Args:
        inputs: the model's input tensors, as for `keras.Model`.
        outputs: the model's output tensors.
        name: optional model name.
        seed: the root seed (keyword only).
        **kwargs: as for a functional `keras.Model`.

    Example:

    ```python
    import keras
    import keras_repro as kr

    inputs = keras.Input((4,))
    model = kr.SeededModel(inputs, keras.layers.Dense(1)(inputs), seed=42)
    assert isinstance(model, kr.SeededFunctional)
    ```
    """

    def __init__(self, inputs, outputs, name=None, *, seed: int | None = None, **kwargs):
        SeededModel.__init__(self, inputs, outputs, name=name, seed=seed, **kwargs)
