"""`SeededModel.fit`'s machinery: the epoch-keyed batch stream and mid-epoch resume.

`fit` here is the body of `keras_repro.SeededModel.fit`, given the model,
the Keras `fit` to call (the model's parent class one) and the model's seed:
it seeds the global streams, lets backup callbacks restore the model first,
feeds shuffled array inputs as one `keras_repro.batch_stream` started at
the epoch Keras starts, and finishes an epoch interrupted part-way through
before training the rest. It does not import the model classes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras

from keras_repro import _compat
from keras_repro import data
from keras_repro.seeding import seed_new
from keras_repro.seeds import derive_seed
from keras_repro.seeds import get_root_seed
from keras_repro.seeds import rng_state
from keras_repro.seeds import seed_everything
from keras_repro.seeds import set_rng_state
from keras_repro.state import ResumePoint
from keras_repro.state import set_mid_epoch_resumable
from keras_repro.state import set_resume_point


def fit(
    model: keras.Model,
    keras_fit: Callable,
    seed: int,
    *,
    x,
    y,
    batch_size,
    epochs,
    verbose,
    callbacks,
    validation_split,
    validation_data,
    shuffle,
    class_weight,
    sample_weight,
    initial_epoch,
    steps_per_epoch,
    validation_steps,
    validation_batch_size,
    validation_freq,
    **kwargs,
):
    """Trains `model` with `keras_fit` (`keras.Model.fit` bound to it), as `SeededModel.fit` does.

    Args:
        model: the model being trained.
        keras_fit: the Keras `fit` of `model` (its parent class' method), called
            once, or twice to resume in the middle of an epoch.
        seed: the model's root seed.
        x, ..., **kwargs: the arguments of `keras.Model.fit`.

    Returns:
        The `History` of the run, as `keras.Model.fit` returns it.
    """
    _seed_global_streams(seed)
    stream = bool(shuffle) and _is_dense_array((x, y, sample_weight)) and x is not None
    set_mid_epoch_resumable(model, stream)  # before restoring: callbacks check it
    point = _restore(model, callbacks)
    if point is not None:
        initial_epoch = point.epoch
    tracker = _EpochTracker(model, initial_epoch)
    callbacks = _with_tracker(callbacks, tracker, model)
    if point is not None and point.step > 0 and not stream:
        raise ValueError(
            f"Cannot resume exactly in the middle of epoch {point.epoch} (after "
            f"{point.step} batches): SeededModel.fit can only start an epoch part-way "
            "through for in-memory array inputs with shuffle=True. Use "
            "save_freq='epoch' for other inputs."
        )
    if stream:
        if validation_split and validation_data is None:
            (x, y, sample_weight), validation_data = _compat.train_validation_split(
                (x, y, sample_weight), validation_split=validation_split
            )
        validation_split = 0.0
        batch_size = _batch_size(x, batch_size, steps_per_epoch)
        steps_per_epoch = steps_per_epoch or -(-_num_samples(x) // batch_size)
        packed, stream_batch_size = _pack(x, y, sample_weight), batch_size

        def stream_from(first_batch):
            return data.batch_stream(
                packed,
                seed=seed,
                batch_size=stream_batch_size,
                start=first_batch,
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
        verbose=verbose,
        validation_split=validation_split,
        validation_data=validation_data,
        shuffle=shuffle,
        class_weight=class_weight,
        validation_steps=validation_steps,
        validation_batch_size=validation_batch_size,
        validation_freq=validation_freq,
        **kwargs,
    )
    if point is not None and point.step > 0:
        return _fit_from_mid_epoch(model, keras_fit, point, stream_from, epochs, steps_per_epoch, callbacks, common)
    return keras_fit(
        x=x,
        y=y,
        batch_size=batch_size,
        epochs=epochs,
        callbacks=callbacks,
        sample_weight=sample_weight,
        initial_epoch=initial_epoch,
        steps_per_epoch=steps_per_epoch,
        **common,
    )


def _fit_from_mid_epoch(model, keras_fit, point, stream_from, epochs, steps_per_epoch, callbacks, common):
    """Finishes epoch `point.epoch` from batch `point.step`, then trains the rest.

    Keras cannot start an epoch part-way through, so this runs two inner
    fits that the callbacks see as one: one `on_train_begin`/`on_train_end`,
    one History, and batch numbers of the first (partial) epoch counted
    from `point.step`, as in the uninterrupted run.
    """
    callbacks = _OneRun(
        callbacks,
        add_history=True,
        add_progbar=common["verbose"] != 0,
        verbose=common["verbose"],
        epochs=epochs,
        steps=steps_per_epoch,
        model=model,
    )
    callbacks.batch_offset = point.step
    callbacks.last_phase = point.epoch + 1 >= epochs
    history = keras_fit(
        x=stream_from(point.epoch * steps_per_epoch + point.step),
        epochs=point.epoch + 1,
        initial_epoch=point.epoch,
        steps_per_epoch=steps_per_epoch - point.step,
        callbacks=callbacks,
        **common,
    )
    if callbacks.last_phase or model.stop_training:
        return history
    callbacks.batch_offset, callbacks.last_phase = 0, True
    return keras_fit(
        x=stream_from((point.epoch + 1) * steps_per_epoch),
        epochs=epochs,
        initial_epoch=point.epoch + 1,
        steps_per_epoch=steps_per_epoch,
        callbacks=callbacks,
        **common,
    )


class _EpochTracker(keras.callbacks.Callback):
    """Tells the shuffled dataset which epoch Keras is starting."""

    async_safe = True

    def __init__(self, model: keras.Model, initial_epoch: int):
        super().__init__()
        self._seeded_model = model
        self.epoch = initial_epoch

    def on_train_begin(self, logs=None):
        # A model first built by `fit` itself is seeded by its build hook;
        # this catches weights created some other way, before any step.
        seed_new(self._seeded_model)

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
