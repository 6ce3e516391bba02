"""Every private Keras and TensorFlow API keras_repro relies on, in one place.

keras_repro needs a few things Keras and TensorFlow do not expose publicly:
the Keras global `SeedGenerator`, the variables a layer owns itself, TF's
op-seed RNG, whether TF op determinism is on, and so on. Each is reached only
through a named function of this module, whose docstring says which versions
it was checked on, so that an upgrade that moves one is a failing test
(``tests/test_compat.py`` calls every accessor) rather than a silent change
of behaviour. No other module imports from ``keras.src`` or
``tensorflow.python``.

An accessor whose private API is missing raises `UnsupportedVersionError`,
naming the installed versions and what is missing; none returns a made-up
default. Nothing here imports Keras or TensorFlow at module import time.

Checked on Keras 3.6.0 to 3.15.1 (source read for 3.6.0, 3.7.0, 3.8.0,
3.9.2, 3.10.0, 3.11.3, 3.12.1, 3.13.2, 3.14.0 and 3.15.1; tests run on 3.6.0,
3.7.0 and 3.15.1) and TensorFlow 2.16.2 and 2.21.0.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

__all__ = [
    "KERAS_CHECKED",
    "LAYER_BOOKKEEPING_ATTRIBUTES",
    "TENSORFLOW_CHECKED",
    "UnsupportedVersionError",
    "functional_class",
    "functional_init_arguments",
    "in_stateless_scope",
    "installed_versions",
    "is_keras_variable",
    "is_layer_bookkeeping_attribute",
    "layer_attributes",
    "keras_global_seed_generator",
    "keras_random_seed",
    "layer_bookkeeping_attributes",
    "layer_own_variables",
    "layer_seed_generators",
    "layer_tracked_layers",
    "optimizer_built_for",
    "optimizer_step_variable",
    "random_initializer_class",
    "replace_deferred_initializer",
    "set_initial_epoch",
    "set_keras_global_seed_generator",
    "set_seed_generator_initial_seed",
    "set_tf_op_seed_rng_state",
    "tensorflow_module",
    "tf_dataset_graph_def",
    "tf_global_generator",
    "tf_global_seed",
    "tf_op_determinism_enabled",
    "tf_op_seed_rng_state",
    "tf_reset_global_generator",
    "to_snake_case",
    "train_validation_split",
]

#: The Keras versions every accessor was checked on.
KERAS_CHECKED = "3.6.0-3.15.1"
#: The TensorFlow versions every accessor was checked on.
TENSORFLOW_CHECKED = "2.16.2, 2.21.0"


class UnsupportedVersionError(RuntimeError):
    """A private Keras or TensorFlow API keras_repro needs is missing on the installed version.

    The message names the installed Keras and TensorFlow versions, the API
    that is missing, and the versions keras_repro was checked on. Install a
    checked version, or report the new one.
    """


def installed_versions() -> str:
    """The installed Keras and TensorFlow versions, for messages (``"Keras 3.15.1, TensorFlow 2.21.0"``).

    Neither library is imported for this: the versions come from the
    installed distributions' metadata.
    """
    from importlib import metadata

    parts = []
    for label, distribution in (("Keras", "keras"), ("TensorFlow", "tensorflow")):
        try:
            parts.append(f"{label} {metadata.version(distribution)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{label} not installed")
    return ", ".join(parts)


def _unsupported(what: str, error: BaseException | None = None) -> UnsupportedVersionError:
    cause = f" ({type(error).__name__}: {error})" if error is not None else ""
    return UnsupportedVersionError(
        f"{what} is not available on the installed {installed_versions()}{cause}. "
        f"keras_repro relies on it and was checked on Keras {KERAS_CHECKED} and "
        f"TensorFlow {TENSORFLOW_CHECKED}: install one of those versions."
    )


def _private_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise _unsupported(f"The module {name}", e) from None


def _private_attribute(owner: Any, name: str, what: str) -> Any:
    try:
        return getattr(owner, name)
    except AttributeError as e:
        where = owner.__name__ if isinstance(owner, ModuleType) else type(owner).__name__
        raise _unsupported(f"{what} (`{where}.{name}`)", e) from None


# The accessors, by framework; imported last, as they use the helpers above.
from keras_repro._compat._keras import LAYER_BOOKKEEPING_ATTRIBUTES  # noqa: E402
from keras_repro._compat._keras import functional_class  # noqa: E402
from keras_repro._compat._keras import functional_init_arguments  # noqa: E402
from keras_repro._compat._keras import in_stateless_scope  # noqa: E402
from keras_repro._compat._keras import is_keras_variable  # noqa: E402
from keras_repro._compat._keras import is_layer_bookkeeping_attribute  # noqa: E402
from keras_repro._compat._keras import keras_global_seed_generator  # noqa: E402
from keras_repro._compat._keras import keras_random_seed  # noqa: E402
from keras_repro._compat._keras import layer_attributes  # noqa: E402
from keras_repro._compat._keras import layer_bookkeeping_attributes  # noqa: E402
from keras_repro._compat._keras import layer_own_variables  # noqa: E402
from keras_repro._compat._keras import layer_seed_generators  # noqa: E402
from keras_repro._compat._keras import layer_tracked_layers  # noqa: E402
from keras_repro._compat._keras import optimizer_built_for  # noqa: E402
from keras_repro._compat._keras import optimizer_step_variable  # noqa: E402
from keras_repro._compat._keras import random_initializer_class  # noqa: E402
from keras_repro._compat._keras import replace_deferred_initializer  # noqa: E402
from keras_repro._compat._keras import set_initial_epoch  # noqa: E402
from keras_repro._compat._keras import set_keras_global_seed_generator  # noqa: E402
from keras_repro._compat._keras import set_seed_generator_initial_seed  # noqa: E402
from keras_repro._compat._keras import to_snake_case  # noqa: E402
from keras_repro._compat._keras import train_validation_split  # noqa: E402
from keras_repro._compat._tensorflow import set_tf_op_seed_rng_state  # noqa: E402
from keras_repro._compat._tensorflow import tensorflow_module  # noqa: E402
from keras_repro._compat._tensorflow import tf_dataset_graph_def  # noqa: E402
from keras_repro._compat._tensorflow import tf_global_generator  # noqa: E402
from keras_repro._compat._tensorflow import tf_global_seed  # noqa: E402
from keras_repro._compat._tensorflow import tf_op_determinism_enabled  # noqa: E402
from keras_repro._compat._tensorflow import tf_op_seed_rng_state  # noqa: E402
from keras_repro._compat._tensorflow import tf_reset_global_generator  # noqa: E402
