"""Seeded initializer factories built on `keras.initializers.VarianceScaling`.

Each factory returns a plain `keras.initializers.VarianceScaling` whose int
seed is `derive_seed(seed, *key)`, so a model built with them saves and loads
where keras_repro is not installed, and its weights depend only on the root
seed and the key, never on construction order or on Python's `random`.

Example:

```python
import keras
import keras_repro as kr

layer = keras.layers.Dense(
    16, kernel_initializer=kr.initializers.he_normal(seed=42, key="encoder/dense")
)
```
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from keras_repro import _validate
from keras_repro import _warnings
from keras_repro.seeds import ReproducibilityWarning
from keras_repro.seeds import derive_seed
from keras_repro.seeds import validate_seed

__all__ = [
    "SeededInitializers",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "lecun_uniform",
    "variance_scaling",
]

Key = str | int | Sequence[str | int]

MODES = ("fan_in", "fan_out", "fan_avg")
#: "normal" is Keras' alias of "truncated_normal".
DISTRIBUTIONS = ("uniform", "truncated_normal", "untruncated_normal", "normal")

# (scale, mode, distribution) of the Keras classes of the same names.
_FAMILIES = {
    "glorot_uniform": (1.0, "fan_avg", "uniform"),
    "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "he_uniform": (2.0, "fan_in", "uniform"),
    "he_normal": (2.0, "fan_in", "truncated_normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal"),
}


def _key_path(key: Key) -> tuple[str | int, ...]:
    if isinstance(key, str) or _validate.is_integer(key):
        path: tuple = (key,)
    elif isinstance(key, (tuple, list)):
        path = tuple(key)
    else:
        raise _validate.type_error(
            "key", key, "A key is a string such as 'encoder/dense/kernel', an int, or a tuple of them"
        )
    if not path or any(p == "" for p in path):
        raise _validate.value_error(
            "key",
            key,
            "A key must be non-empty: name the layer and weight, e.g. 'encoder/dense/kernel'. "
            "To get distinct keys automatically, use keras_repro.initializers.SeededInitializers",
        )
    return path


def variance_scaling(
    scale: float = 1.0,
    mode: str = "fan_in",
    distribution: str = "truncated_normal",
    *,
    seed: int,
    key: Key,
) -> keras.initializers.VarianceScaling:
    """A `keras.initializers.VarianceScaling` seeded by `derive_seed(seed, key)`.

    Args:
        scale: positive, finite scaling factor.
        mode: one of ``"fan_in"``, ``"fan_out"``, ``"fan_avg"``.
        distribution: one of ``"uniform"``, ``"truncated_normal"``,
            ``"untruncated_normal"``, or ``"normal"`` (Keras' alias of
            ``"truncated_normal"``).
        seed: the root seed.
        key: the stable name of the weight, e.g. ``"encoder/dense/kernel"``
            (a string, an int, or a tuple of them; a tuple is used as the
            path, a string as one element).

    Returns:
        A plain `keras.initializers.VarianceScaling` with an int seed.

    Raises:
        TypeError: a non-number scale, a non-string mode or distribution,
            a non-integer seed, or a key that is not a string, an int or a
            tuple of them.
        ValueError: a scale that is not finite and > 0, an unknown mode or
            distribution, a seed out of range, or an empty key.

    Example:

    ```python
    import keras_repro as kr
    init = kr.initializers.variance_scaling(
        0.5, "fan_out", "uniform", seed=0, key="head/kernel"
    )
    values = init(shape=(4, 3))
    ```
    """
    scale = _check_arguments(scale, mode, distribution)
    derived = derive_seed(validate_seed(seed), *_key_path(key))
    return keras.initializers.VarianceScaling(scale=scale, mode=mode, distribution=distribution, seed=derived)


def _check_arguments(scale, mode, distribution) -> float:
    """Checks the VarianceScaling arguments; returns the scale as a float."""
    scale = _validate.check_real("scale", scale, greater_than=0)
    _validate.check_choice("mode", mode, MODES)
    _validate.check_choice("distribution", distribution, DISTRIBUTIONS)
    return scale


def _family_factory(name: str):
    scale, mode, distribution = _FAMILIES[name]
    keras_class = "".join(part.capitalize() for part in name.split("_"))

    def factory(*, seed: int, key: Key) -> keras.initializers.VarianceScaling:
        return variance_scaling(scale, mode, distribution, seed=seed, key=key)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"""Seeded equivalent of `keras.initializers.{keras_class}`.

    Returns ``keras.initializers.VarianceScaling(scale={scale}, mode="{mode}",
    distribution="{distribution}", seed=derive_seed(seed, key))``, bit-identical
    to ``keras.initializers.{keras_class}(seed=derive_seed(seed, key))``.

    Args:
        seed: the root seed.
        key: the stable name of the weight, e.g. ``"encoder/dense/kernel"``.

    Returns:
        A plain `keras.initializers.VarianceScaling` with an int seed.

    Example:

    ```python
    import keras
    import keras_repro as kr
    layer = keras.layers.Dense(
        8, kernel_initializer=kr.initializers.{name}(seed=1, key="dense/kernel")
    )
    ```
    """
    return factory


glorot_uniform = _family_factory("glorot_uniform")
glorot_normal = _family_factory("glorot_normal")
he_uniform = _family_factory("he_uniform")
he_normal = _family_factory("he_normal")
lecun_uniform = _family_factory("lecun_uniform")
lecun_normal = _family_factory("lecun_normal")


class SeededInitializers:
    """A factory of seeded initializers for hand-built models.

    Every call returns a fresh `keras.initializers.VarianceScaling` with its
    own derived seed: ``derive_seed(seed, *key)`` when a key is given (the
    same value as the module-level factories), else
    ``derive_seed(seed, "SeededInitializers", n)`` for the n-th keyless call
    on this object. Passing the same Keras initializer instance to two layers
    gives them identical weights (Keras says nothing); reusing this factory
    never does. Reusing a key on one factory would, so it warns.

    Keyless initializers depend on the order of the calls; keyed ones do not.
    Prefer keys (or `keras_repro.SeededModel`, which keys every weight by its
    layer path) when layers may be added or reordered.

    Args:
        seed: the root seed.

    Example:

    ```python
    import keras
    import keras_repro as kr

    inits = kr.initializers.SeededInitializers(42)
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(8, kernel_initializer=inits.glorot_uniform()),
        keras.layers.Dense(8, kernel_initializer=inits.glorot_uniform()),
    ])
    ```
    """

    def __init__(self, seed: int):
        self.seed = validate_seed(seed)
        self._count = 0
        self._keys: set[tuple] = set()

    def _next_key(self, key: Key | None) -> tuple:
        if key is None:
            path = ("SeededInitializers", self._count)
            self._count += 1
            return path
        path = _key_path(key)
        if path in self._keys:
            _warnings.warn(
                f"Key {key!r} was already used on this SeededInitializers: both "
                "initializers have the same seed and give identical values for "
                "same-shape weights. Use distinct keys unless that is intended.",
                ReproducibilityWarning,
            )
        self._keys.add(path)
        return path

    def variance_scaling(
        self,
        scale: float = 1.0,
        mode: str = "fan_in",
        distribution: str = "truncated_normal",
        key: Key | None = None,
    ) -> keras.initializers.VarianceScaling:
        """A fresh seeded `VarianceScaling`; see the module-level function."""
        # Validate before consuming a counter value, so a failed call
        # does not shift the seeds of later keyless calls.
        _check_arguments(scale, mode, distribution)
        return variance_scaling(scale, mode, distribution, seed=self.seed, key=self._next_key(key))

    def _family(self, name: str, key: Key | None):
        return self.variance_scaling(*_FAMILIES[name], key=key)

    def glorot_uniform(self, key: Key | None = None):
        """A fresh seeded equivalent of `keras.initializers.GlorotUniform`."""
        return self._family("glorot_uniform", key)

    def glorot_normal(self, key: Key | None = None):
        """A fresh seeded equivalent of `keras.initializers.GlorotNormal`."""
        return self._family("glorot_normal", key)

    def he_uniform(self, key: Key | None = None):
        """A fresh seeded equivalent of `keras.initializers.HeUniform`."""
        return self._family("he_uniform", key)

    def he_normal(self, key: Key | None = None):
        """A fresh seeded equivalent of `keras.initializers.HeNormal`."""
        return self._family("he_normal", key)

    def lecun_uniform(self, key: Key | None = None):
        """A fresh seeded equivalent of `keras.initializers.LecunUniform`."""
        return self._family("lecun_uniform", key)

    def lecun_normal(self, key: Key | None = None):
        """A fresh seeded equivalent of `keras.initializers.LecunNormal`."""
        return self._family("lecun_normal", key)

    def __repr__(self) -> str:
        return f"SeededInitializers(seed={self.seed})"
