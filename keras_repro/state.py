"""The complete RNG state of a model and its process: capture, restore, files.

Keras does not save a layer's `SeedGenerator` state (Dropout, GaussianNoise,
random augmentation ...) with the weights, so a model reloaded after a crash
replays the masks of the first steps. Here the state of every seed generator,
keyed by its stable path (`keras_repro.paths`), is captured together with the
global streams (`keras_repro.rng_state`) and restored into a model of the
same structure, in this or another process.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras

from keras_repro import paths
from keras_repro._files import PathLike
from keras_repro._files import read_document
from keras_repro._files import write_document
from keras_repro.seeds import rng_state
from keras_repro.seeds import set_rng_state

__all__ = [
    "ResumePoint",
    "check_model_rng_state",
    "get_resume_point",
    "mid_epoch_resumable",
    "load_rng_state",
    "model_rng_state",
    "save_rng_state",
    "set_mid_epoch_resumable",
    "set_model_rng_state",
    "set_resume_point",
]

FORMAT = "keras_repro.rng_state"
VERSION = 1


def model_rng_state(model: keras.layers.Layer) -> dict[str, Any]:
    """Captures every seed generator of `model` and the global RNG streams.

    Args:
        model: a Keras model or layer.

    Returns:
        JSON-safe data: ``{"seed_generators": {path: [seed, counter]},
        "global": <keras_repro.rng_state()>}``.

    Example:

    ```python
    import keras
    import keras_repro as kr
    from keras_repro.state import model_rng_state, set_model_rng_state

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dropout(0.5)])
    state = model_rng_state(model)
    set_model_rng_state(model, state)
    ```
    """
    generators = paths.seed_generator_paths(model)
    return {
        "seed_generators": {
            path: [int(v) for v in keras.ops.convert_to_numpy(g.state.value)] for path, g in generators.items()
        },
        "global": rng_state(),
    }


def check_model_rng_state(model: keras.layers.Layer, state: dict[str, Any]) -> None:
    """Raises `ValueError` unless `state` (from `model_rng_state`) fits `model`.

    The message names the seed generators missing from the state and those
    in the state but not in the model.
    """
    if not isinstance(state, dict) or not {"seed_generators", "global"} <= set(state):
        raise ValueError(
            "Invalid model RNG state: expected a dict with 'seed_generators' and "
            f"'global' entries, got {type(state).__name__}"
            + (f" with keys {sorted(state)}" if isinstance(state, dict) else "")
            + "."
        )
    generators = paths.seed_generator_paths(model)
    saved = state["seed_generators"]
    missing = sorted(set(generators) - set(saved))
    unexpected = sorted(set(saved) - set(generators))
    if missing or unexpected:
        raise ValueError(
            "The RNG state does not belong to this model: "
            f"seed generators missing from the state: {missing or 'none'}; "
            f"in the state but not in the model: {unexpected or 'none'}."
        )
    for path, value in saved.items():
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value)):
            raise ValueError(f"Invalid seed generator state for {path!r}: {value!r} (expected [seed, counter]).")


def set_model_rng_state(model: keras.layers.Layer, state: dict[str, Any]) -> None:
    """Restores a state captured by `model_rng_state` into `model`.

    Everything is checked before anything is assigned: a state from a model
    with other seed generators raises `ValueError` naming the missing and
    unexpected paths, and leaves the model and the global streams untouched.

    Args:
        model: a model of the same structure as the one captured.
        state: the dict returned by `model_rng_state`.
    """
    check_model_rng_state(model, state)
    set_rng_state(state["global"])
    for path, generator in paths.seed_generator_paths(model).items():
        value = state["seed_generators"][path]
        generator.state.assign(keras.ops.convert_to_tensor(value, dtype=generator.state.dtype))


def save_rng_state(model: keras.layers.Layer, path: PathLike) -> None:
    """Writes `model_rng_state(model)` to a JSON file, atomically.

    Use it next to your own checkpoints (``model.save_weights``) so that a
    resumed run continues the Dropout masks and global streams exactly.

    Args:
        model: a Keras model or layer.
        path: the file to write (replaced atomically: a crash during the
            write leaves the previous file intact).

    Example:

    ```python
    import keras
    import keras_repro as kr

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dropout(0.5)])
    kr.save_rng_state(model, "/tmp/rng.json")
    kr.load_rng_state(model, "/tmp/rng.json")
    ```
    """
    write_document(path, FORMAT, VERSION, model_rng_state(model))


def load_rng_state(model: keras.layers.Layer, path: PathLike) -> None:
    """Restores into `model` a state written by `save_rng_state`.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is empty, corrupt, of another format or
            version, or from a model with other seed generators; nothing is
            changed then.
    """
    document = read_document(path, FORMAT, (VERSION,))
    try:
        set_model_rng_state(model, document)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


@dataclasses.dataclass(frozen=True)
class ResumePoint:
    """Where a restored training run picks up.

    A callback that restores a model before training (see
    `keras_repro.callbacks.ExactBackupAndRestore`) marks the model with it;
    `SeededModel.fit` starts the data stream there and `DeterminismCallback`
    continues the interrupted run's trace from there.

    Attributes:
        epoch: the epoch training resumes in.
        step: batches of that epoch already trained (0: the epoch's start).
        iterations: the optimizer's step count at the backup.
    """

    epoch: int
    step: int
    iterations: int


_RESUME_ATTRIBUTE = "_keras_repro_resume_point"


def set_resume_point(model: keras.layers.Layer, point: ResumePoint | None) -> None:
    """Marks `model` as restored at `point` for the next `fit` (None clears it)."""
    if point is not None and not isinstance(point, ResumePoint):
        raise TypeError(f"Invalid resume point: {point!r}. Expected a ResumePoint or None.")
    object.__setattr__(model, _RESUME_ATTRIBUTE, point)


def get_resume_point(model: keras.layers.Layer) -> ResumePoint | None:
    """The `ResumePoint` `model` was restored at, if any."""
    return getattr(model, _RESUME_ATTRIBUTE, None)


_MID_EPOCH_ATTRIBUTE = "_keras_repro_mid_epoch_resumable"


def set_mid_epoch_resumable(model: keras.layers.Layer, value: bool) -> None:
    """Marks whether the current `fit` of `model` can start an epoch part-way through."""
    object.__setattr__(model, _MID_EPOCH_ATTRIBUTE, bool(value))


def mid_epoch_resumable(model: keras.layers.Layer) -> bool:
    """Whether the current `fit` of `model` can resume in the middle of an epoch."""
    return getattr(model, _MID_EPOCH_ATTRIBUTE, False)
