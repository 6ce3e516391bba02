"""Deterministic kernels: the backend's switch, on and queried.

`enable_determinism()` turns on the backend's deterministic-kernel switch and
`determinism_enabled()` says whether it is on. `START_ONLY_ENV_VARS` are the
environment variables that only take effect when set before the framework
starts. The audit of what would make a run not repeat is in
`keras_repro.audit`.

TensorFlow's op determinism is a process-wide, one-way switch in practice:
once on, it stays on (there is no public way back), unseeded TF random ops
raise "Random ops require a seed", and on CPU some results change in the last
bits (sparse softmax cross-entropy switches to a composite form), so a run
with it on and a run with it off do not match each other, each being stable.

Example:

```python
import keras_repro as kr

kr.seed_everything(42)
kr.enable_determinism()
assert kr.determinism_enabled()
```
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import Any

import keras

from keras_repro import _compat
from keras_repro import _warnings
from keras_repro._compat import tensorflow_module
from keras_repro.seeds import ReproducibilityWarning

__all__ = ["determinism_enabled", "deterministic_environment", "enable_determinism", "how_to_enable"]

#: Environment variables read once, when the framework (or CUDA library)
#: initializes: changing them later in `os.environ` may have no effect.
START_ONLY_ENV_VARS = (
    "XLA_FLAGS",
    "TF_XLA_FLAGS",
    "CUBLAS_WORKSPACE_CONFIG",
    "TF_CUDNN_USE_AUTOTUNE",
    "TF_CUDNN_DETERMINISTIC",
    "TF_DETERMINISTIC_OPS",
    "TF_ENABLE_ONEDNN_OPTS",
    "OMP_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_TF32_OVERRIDE",
)
#: The ``XLA_FLAGS`` entry that makes JAX's GPU kernels deterministic.
JAX_DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true"
#: The ``CUBLAS_WORKSPACE_CONFIG`` value that makes cuBLAS deterministic.
DETERMINISTIC_CUBLAS_WORKSPACE = ":4096:8"


def _backend() -> str:
    return keras.backend.backend()


def tf_op_determinism_enabled() -> bool:
    """Whether TF op determinism is on (whatever the Keras backend: tf.data uses it).

    When TensorFlow is loaded, TF is asked (`_compat.tf_op_determinism_enabled`).
    When it is not, nothing can have called `enable_op_determinism` yet, and
    TF will be deterministic once loaded exactly when ``TF_DETERMINISTIC_OPS``
    is set, so that variable answers (TF is not imported for the question).
    """
    if tensorflow_module(import_it=False) is None:
        return os.environ.get("TF_DETERMINISTIC_OPS", "").strip().lower() in ("1", "true")
    return _compat.tf_op_determinism_enabled()


def _jax_gpus() -> bool:
    """Whether JAX sees a GPU (the XLA flag only changes GPU kernels)."""
    import jax

    return any(d.platform == "gpu" for d in jax.devices())


def xla_flags_deterministic() -> bool:
    """Whether ``XLA_FLAGS`` holds `JAX_DETERMINISTIC_FLAG`."""
    return JAX_DETERMINISTIC_FLAG in os.environ.get("XLA_FLAGS", "").split()


def determinism_enabled() -> bool:
    """Whether the Keras backend's deterministic-kernel switch is on.

    TensorFlow: op determinism (``enable_op_determinism`` or
    ``TF_DETERMINISTIC_OPS``). Torch: ``torch.use_deterministic_algorithms``.
    JAX: ``--xla_gpu_deterministic_ops=true`` in ``XLA_FLAGS``.

    Returns:
        True when the switch is on.

    Example:

    ```python
    import keras_repro as kr
    kr.enable_determinism()
    assert kr.determinism_enabled()
    ```
    """
    backend = _backend()
    if backend == "torch":
        import torch

        return bool(torch.are_deterministic_algorithms_enabled())
    if backend == "jax":
        return xla_flags_deterministic()
    return tf_op_determinism_enabled()


def how_to_enable(backend: str | None = None) -> str:
    """What to do to turn deterministic kernels on for `backend` (default: the Keras backend).

    On JAX the switch is an XLA flag read when the process starts, so the
    answer is a command line, not a call.
    """
    backend = backend or _backend()
    if backend == "jax":
        return (
            f"Start the program as `XLA_FLAGS={JAX_DETERMINISTIC_FLAG} python train.py` (JAX reads the "
            "flag when it starts; nothing inside the program can turn it on), or check it with "
            "`keras-repro check --deterministic`."
        )
    return "Call keras_repro.enable_determinism() before compile(), or use DeterminismCallback(deterministic_ops=True)."


def deterministic_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment variables that turn deterministic kernels on when a process starts.

    ``TF_DETERMINISTIC_OPS=1`` (TensorFlow, also under other backends for
    `tf.data`), `JAX_DETERMINISTIC_FLAG` added to ``XLA_FLAGS`` (kept as it
    is when already there), and ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` unless
    set (torch on CUDA). Torch's own switch is a call, made at the start of
    each `fit` by ``DeterminismCallback(deterministic_ops=True)``.

    Args:
        environ: the environment to start from (default: this process').

    Returns:
        The variables to set, with their values.
    """
    environ = os.environ if environ is None else environ
    flags = environ.get("XLA_FLAGS", "").split()
    if JAX_DETERMINISTIC_FLAG not in flags:
        flags.append(JAX_DETERMINISTIC_FLAG)
    return {
        "TF_DETERMINISTIC_OPS": "1",
        "XLA_FLAGS": " ".join(flags),
        "CUBLAS_WORKSPACE_CONFIG": environ.get("CUBLAS_WORKSPACE_CONFIG") or DETERMINISTIC_CUBLAS_WORKSPACE,
    }


def tf_global_seed() -> int | None:
    """TensorFlow's global seed (``tf.random.set_seed``); None if unset or TensorFlow is not loaded."""
    if tensorflow_module(import_it=False) is None:
        return None
    return _compat.tf_global_seed()


def enable_determinism() -> list[str]:
    """Turns on deterministic kernels for the Keras backend (and tf.data).

    - TensorFlow (the backend, or loaded for `tf.data`):
      ``tf.config.experimental.enable_op_determinism()``. Process-wide, and
      not meant to be turned off again. Afterwards unseeded TF random ops
      raise; a `ReproducibilityWarning` says so when TF has no global seed.
    - Torch: ``torch.use_deterministic_algorithms(True)``, cuDNN
      ``deterministic=True`` and ``benchmark=False``, and, with CUDA,
      ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` when unset (it only takes effect
      if CUDA was not initialized yet: a warning says so otherwise).
    - JAX: determinism is an XLA flag read when JAX starts, and it only
      changes GPU kernels (XLA's CPU kernels are deterministic); with a GPU
      and ``XLA_FLAGS`` lacking ``--xla_gpu_deterministic_ops=true`` a
      `ReproducibilityWarning` gives the command line to use.

    Returns:
        The switches turned on, as short strings (e.g.
        ``["tensorflow.op_determinism"]``).

    Example:

    ```python
    import keras_repro as kr
    kr.seed_everything(0)
    kr.enable_determinism()
    ```
    """
    switched: list[str] = []
    backend = _backend()
    tf = tensorflow_module(import_it=backend == "tensorflow")
    if tf is not None:
        tf.config.experimental.enable_op_determinism()
        switched.append("tensorflow.op_determinism")
        if tf_global_seed() is None:
            _warnings.warn(
                "TensorFlow op determinism is on but TensorFlow has no global seed, so "
                "unseeded TF random ops (including fit(shuffle=True) data pipelines "
                "built from now on) will raise 'Random ops require a seed'. "
                "Fix: call keras_repro.seed_everything(seed) first.",
                ReproducibilityWarning,
            )
    if backend == "torch":
        import torch

        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        switched.append("torch.deterministic_algorithms")
        # cuBLAS only: on a machine without CUDA the variable would change nothing.
        if "CUBLAS_WORKSPACE_CONFIG" not in os.environ and torch.cuda.is_available():
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = DETERMINISTIC_CUBLAS_WORKSPACE
            switched.append("CUBLAS_WORKSPACE_CONFIG")
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                _warnings.warn(
                    "CUBLAS_WORKSPACE_CONFIG was set after CUDA was initialized and may "
                    "have no effect. Fix: start the program as "
                    f"`CUBLAS_WORKSPACE_CONFIG={DETERMINISTIC_CUBLAS_WORKSPACE} python train.py`.",
                    ReproducibilityWarning,
                )
    if backend == "jax" and not xla_flags_deterministic() and _jax_gpus():
        _warnings.warn(
            "JAX reads its determinism switch from XLA_FLAGS when it starts; it cannot be "
            f"turned on from inside the program. Fix: {how_to_enable('jax')}",
            ReproducibilityWarning,
        )
    return switched


# `AuditError`, `Finding`, `SEVERITIES` and `audit` moved to keras_repro.audit,
# which imports this module; they stay importable from here. They are looked
# up on first access (PEP 562) rather than imported: at the top of this module
# the import would be a cycle, and at its bottom it would fail whenever
# keras_repro.audit is imported first (this module would then import a
# partially initialized keras_repro.audit).
_MOVED_TO_AUDIT = frozenset({"AuditError", "Finding", "SEVERITIES", "audit"})


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_AUDIT:
        # `import_module`, not `from keras_repro import audit`: the package's
        # `audit` attribute is the function.
        return getattr(importlib.import_module("keras_repro.audit"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
