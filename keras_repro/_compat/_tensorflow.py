"""The private TensorFlow APIs keras_repro relies on (see `keras_repro._compat`)."""

from __future__ import annotations

import contextlib
import sys
from types import ModuleType
from typing import Any

from keras_repro._compat import _private_attribute
from keras_repro._compat import _private_module

# ---------------------------------------------------------------- TensorFlow module


def tensorflow_module(import_it: bool) -> ModuleType | None:
    """TensorFlow if already imported (or, with `import_it`, if installed), else None.

    Code that only inspects TF state uses ``import_it=False``: if TF was
    never imported, nothing in this process has used it, and the import
    (several seconds) is not paid for. Public API only.

    Args:
        import_it: whether to import TensorFlow when it is installed but not
            imported yet.

    Returns:
        The `tensorflow` module, or None.
    """
    if import_it and "tensorflow" not in sys.modules:
        with contextlib.suppress(ImportError):
            import tensorflow  # noqa: F401
    return sys.modules.get("tensorflow")


# ---------------------------------------------------------------- TensorFlow


def _tf_eager_context():
    context = _private_module("tensorflow.python.eager.context")
    return _private_attribute(context, "context", "TensorFlow's eager context")()


def tf_global_seed() -> int | None:
    """TensorFlow's global seed (`tf.random.set_seed`) in eager mode, or None when unset.

    Reads the eager context's ``_seed``; TF has no public getter. Checked on
    TF 2.16.2 and 2.21.0.

    Raises:
        UnsupportedVersionError: the eager context has no ``_seed``.
    """
    return _private_attribute(_tf_eager_context(), "_seed", "TensorFlow's global seed")


def tf_op_seed_rng_state() -> tuple | None:
    """The state of the Python RNG TF draws op seeds from once a global seed is set; None if unset.

    With a global seed, each op without its own seed gets one from the eager
    context's ``_rng`` (a `random.Random`), so two runs only draw the same
    op seeds if that RNG is in the same state. Checked on TF 2.16.2 and 2.21.0.

    Returns:
        ``random.Random.getstate()`` of the op-seed RNG, or None when TF has
        no global seed (there is no such RNG then).

    Raises:
        UnsupportedVersionError: the eager context has no ``_seed`` or ``_rng``.
    """
    ctx = _tf_eager_context()
    if _private_attribute(ctx, "_seed", "TensorFlow's global seed") is None:
        return None
    return _private_attribute(ctx, "_rng", "TensorFlow's op-seed RNG").getstate()


def set_tf_op_seed_rng_state(state: tuple) -> None:
    """Restores the op-seed RNG state captured by `tf_op_seed_rng_state` (after `tf.random.set_seed`).

    Checked on TF 2.16.2 and 2.21.0.

    Raises:
        ValueError: TF has no global seed, so there is no op-seed RNG to restore.
        UnsupportedVersionError: the eager context has no ``_rng``.
    """
    ctx = _tf_eager_context()
    if _private_attribute(ctx, "_seed", "TensorFlow's global seed") is None:
        raise ValueError(
            "Cannot restore TensorFlow's op-seed RNG: TF has no global seed; call tf.random.set_seed first."
        )
    _private_attribute(ctx, "_rng", "TensorFlow's op-seed RNG").setstate(state)


def _stateful_random_ops() -> ModuleType:
    stateful_random_ops = _private_module("tensorflow.python.ops.stateful_random_ops")
    _private_attribute(stateful_random_ops, "global_generator", "TensorFlow's global tf.random.Generator")
    return stateful_random_ops


def tf_global_generator() -> Any:
    """TF's global `tf.random.Generator`, or None if none was created yet.

    Unlike `tf.random.get_global_generator()`, this does not create one.
    Reads ``tensorflow.python.ops.stateful_random_ops.global_generator``.
    Checked on TF 2.16.2 and 2.21.0.

    Raises:
        UnsupportedVersionError: the module attribute is missing.
    """
    return _stateful_random_ops().global_generator


def tf_reset_global_generator() -> None:
    """Drops TF's global `tf.random.Generator`, so that the next use creates a fresh one.

    TF has no public way to return to the "not created yet" state
    (`tf.random.set_global_generator` needs a generator). Checked on TF
    2.16.2 and 2.21.0.

    Raises:
        UnsupportedVersionError: the module attribute is missing.
    """
    _stateful_random_ops().global_generator = None


def tf_op_determinism_enabled() -> bool:
    """Whether TF op determinism is on (`tf.config.experimental.enable_op_determinism`, ``TF_DETERMINISTIC_OPS``).

    TF has no public query; wraps
    ``tensorflow.python.framework.config.is_op_determinism_enabled``, which
    also reflects ``TF_DETERMINISTIC_OPS``. Checked on TF 2.16.2 and 2.21.0.

    Raises:
        UnsupportedVersionError: the function is missing.
    """
    config = _private_module("tensorflow.python.framework.config")
    query = _private_attribute(config, "is_op_determinism_enabled", "TensorFlow's op-determinism query")
    return bool(query())


def tf_dataset_graph_def(dataset: Any) -> Any:
    """The `GraphDef` of a `tf.data.Dataset` pipeline, to inspect its stages.

    Parses ``dataset._as_serialized_graph()``; TF has no public way to list
    the stages of a pipeline. Checked on TF 2.16.2 and 2.21.0.

    Returns:
        A ``tf.compat.v1.GraphDef``.

    Raises:
        UnsupportedVersionError: the dataset has no ``_as_serialized_graph``.
    """
    import tensorflow as tf

    serialize = _private_attribute(dataset, "_as_serialized_graph", "tf.data's pipeline serialization")
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(serialize().numpy())
    return graph
