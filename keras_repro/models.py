"""SeededModel: a `keras.Model` that owns its seed.

A `SeededModel` keys every random stream by (seed, layer path) with the
scheme of `seed_model` (described in `keras_repro.seeding`), seeding itself
once its layers exist and again for what its build creates. It carries its
seed in `get_config`, saves its seed generator states with its weights, and
its `fit` seeds the global streams and orders array inputs by epoch (see
`SeededModel.fit`).

`seed_model` and `UnseededWeightWarning` are defined in `keras_repro.seeding`
and re-exported here.

Example:

```python
import keras
import keras_repro as kr

inputs = keras.Input((4,))
outputs = keras.layers.Dense(1)(keras.layers.Dropout(0.1)(keras.layers.Dense(8)(inputs)))
model = kr.SeededModel(inputs, outputs, seed=42)  # same weights in every process
model.compile("adam", "mse")
```
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from keras_repro import _compat
from keras_repro import _fit
from keras_repro import paths
from keras_repro.seeding import UnseededWeightWarning
from keras_repro.seeding import seed_model
from keras_repro.seeding import seed_new
from keras_repro.seeding import seeding_record
from keras_repro.seeds import validate_seed

__all__ = ["SeededFunctional", "SeededModel", "UnseededWeightWarning", "seed_model"]

# Keras' functional model class (no public name): what `keras.Model(inputs, outputs)` returns.
_Functional = _compat.functional_class()

_GENERATORS_KEY = "keras_repro_seed_generators"


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

    # `fit` seeds the global streams from the model's seed
    # (`keras_repro.seeding.seeds_global_streams_in_fit` reads this).
    _keras_repro_seeds_global_streams_in_fit = True

    def __new__(cls, *args, **kwargs):
        if cls is SeededModel and _compat.functional_init_arguments(args, kwargs):
            return SeededFunctional.__new__(SeededFunctional, *args, **kwargs)
        return super().__new__(cls, *args, **kwargs)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _seed_after_init(cls.__dict__["__init__"])

    def __init__(self, *args, seed: int | None = None, **kwargs):
        if seed is None:
            raise TypeError(
                f"{type(self).__name__} needs a seed: pass seed=<int in [0, 2**32 - 1]>. "
                "(keras.models.clone_model cannot pass one; clone a seeded model with "
                "type(model).from_config(model.get_config()) instead.)"
            )
        seed = validate_seed(seed)
        if _compat.functional_init_arguments(args, kwargs) and not isinstance(self, _Functional):
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
        record = seeding_record(self)
        return record.seed if record is not None else self._keras_repro_seed

    def reseed(self, seed: int) -> SeededModel:
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
        record = seeding_record(self)
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
            store[_GENERATORS_KEY] = np.stack([keras.ops.convert_to_numpy(g.state.value) for g in generators.values()])

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
        seed_new(self)

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
        return _fit.fit(
            self,
            super().fit,
            self.seed,
            x=x,
            y=y,
            batch_size=batch_size,
            epochs=epochs,
            verbose=verbose,
            callbacks=callbacks,
            validation_split=validation_split,
            validation_data=validation_data,
            shuffle=shuffle,
            class_weight=class_weight,
            sample_weight=sample_weight,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps_per_epoch,
            validation_steps=validation_steps,
            validation_batch_size=validation_batch_size,
            validation_freq=validation_freq,
            **kwargs,
        )


@keras.saving.register_keras_serializable(package="keras_repro")
class SeededFunctional(SeededModel, _Functional):
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

    # (*args, **kwargs), as Functional's own: Keras 3.6-3.14 tells a "functional
    # constructor" (whose get_config holds the layers) by comparing signatures.
    def __init__(self, *args, seed: int | None = None, **kwargs):
        SeededModel.__init__(self, *args, seed=seed, **kwargs)
