"""The audit: everything that would make two runs of the same program differ.

`audit()` lists, as `Finding`s, everything it can see in the process, the
model and the input pipeline that would make two runs of the same program
differ, each with why and the fix. `AuditError` carries the error findings
when a caller (`DeterminismCallback(audit="raise")`) refuses to go on.

Example:

```python
import keras_repro as kr

kr.seed_everything(42)
kr.enable_determinism()
for finding in kr.audit():
    print(finding)
```
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import keras

from keras_repro import _compat
from keras_repro._audit_base import SEVERITIES
from keras_repro._audit_base import AuditContext
from keras_repro._audit_base import AuditError
from keras_repro._audit_base import Finding
from keras_repro._audit_data import check_array_shuffle
from keras_repro._audit_data import check_data
from keras_repro._audit_model import check_model
from keras_repro.determinism import DETERMINISTIC_CUBLAS_WORKSPACE
from keras_repro.determinism import JAX_DETERMINISTIC_FLAG
from keras_repro.determinism import START_ONLY_ENV_VARS
from keras_repro.determinism import determinism_enabled
from keras_repro.determinism import how_to_enable
from keras_repro.determinism import tf_global_seed
from keras_repro.determinism import tf_op_determinism_enabled
from keras_repro.determinism import xla_flags_deterministic
from keras_repro.seeding import seeds_global_streams_in_fit
from keras_repro.seeds import derive_seed
from keras_repro.seeds import get_root_seed
from keras_repro.seeds import hashseed_set_at_start
from keras_repro.seeds import initial_environ

__all__ = ["SEVERITIES", "AuditError", "Finding", "audit"]

_SEVERITY_ORDER = {s: i for i, s in enumerate(SEVERITIES)}


def _backend() -> str:
    """The Keras backend's name."""
    return keras.backend.backend()


def _gpu_devices() -> list[str]:
    """Names of the GPUs the Keras backend (or TF, when loaded) can see."""
    backend = _backend()
    found: list[str] = []
    tf = _compat.tensorflow_module(import_it=backend == "tensorflow")
    if tf is not None:
        found += [d.name for d in tf.config.list_physical_devices("GPU")]
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    elif backend == "jax":
        import jax

        found += [str(d) for d in jax.devices() if d.platform == "gpu"]
    return found


def _keras_seed() -> int | None:
    """The seed given to `keras.utils.set_random_seed`, or None.

    Keras records it from 3.10 on. Before, `set_random_seed` sets TF's
    global seed to the same value (whenever TF is installed), which then
    stands in for it.
    """
    try:
        return _compat.keras_random_seed()
    except _compat.UnsupportedVersionError:
        return tf_global_seed()


def _check_process(gpus: list[str], model: keras.layers.Layer | None) -> list[Finding]:
    findings = []
    if not hashseed_set_at_start():
        findings.append(
            Finding(
                "warning",
                "hashseed-unset",
                "PYTHONHASHSEED was not set when this Python process started.",
                "String hashing is randomized per process, so the iteration order of sets "
                "(and of anything built from them) can differ between runs; setting it "
                "inside the program does not change the running interpreter.",
                "Start the program as `PYTHONHASHSEED=0 python train.py`.",
            )
        )
    # A SeededModel seeds the global streams from its own seed when fit starts.
    if get_root_seed() is None and not seeds_global_streams_in_fit(model):
        other = _keras_seed() is not None or tf_global_seed() is not None
        findings.append(
            Finding(
                "warning" if other else "error",
                "root-seed-unset",
                "No root seed was recorded with keras_repro.seed_everything"
                + (" (some streams were seeded another way)." if other else "; nothing is seeded."),
                "Initial weights, Dropout masks and data order then come from whatever "
                "state the global random streams were in, and no record of the seed goes "
                "into the manifest or trace.",
                "Call keras_repro.seed_everything(seed) at the top of the program, before building the model.",
            )
        )
    backend = _backend()
    if not determinism_enabled():
        cpu_jax = backend == "jax" and not gpus
        findings.append(
            Finding(
                "error" if gpus else ("info" if cpu_jax else "warning"),
                "op-determinism-off",
                f"Deterministic kernels are off for the {backend} backend"
                + (f" with GPUs present ({', '.join(gpus)})." if gpus else "."),
                "XLA's CPU kernels are deterministic without it; the switch changes GPU kernels."
                if cpu_jax
                else "GPU kernels (cuDNN convolutions, reductions with atomics) may sum in a "
                "different order on every run; on CPU, parallel tf.data maps with random "
                "ops are not reproducible either.",
                how_to_enable(backend),
            )
        )
    initial = initial_environ()
    if initial is not None:
        for name in START_ONLY_ENV_VARS:
            if os.environ.get(name) != initial.get(name):
                findings.append(
                    Finding(
                        "warning",
                        "env-changed-after-start",
                        f"{name} was changed after the process started "
                        f"(at start: {initial.get(name)!r}, now: {os.environ.get(name)!r}).",
                        f"{name} is read once, when the framework or CUDA library initializes; "
                        "a later change may or may not take effect depending on what already ran.",
                        f"Set {name} on the command line or in the environment before starting Python.",
                        subject=name,
                    )
                )
    if gpus and backend == "torch" and "CUBLAS_WORKSPACE_CONFIG" not in os.environ:
        findings.append(
            Finding(
                "error",
                "env-missing-at-start",
                "CUBLAS_WORKSPACE_CONFIG is not set on a CUDA machine.",
                "Without it cuBLAS may use nondeterministic reductions and torch's "
                "deterministic mode raises for affected ops.",
                f"Start the program as `CUBLAS_WORKSPACE_CONFIG={DETERMINISTIC_CUBLAS_WORKSPACE} python train.py`.",
                subject="CUBLAS_WORKSPACE_CONFIG",
            )
        )
    if gpus and backend == "jax" and not xla_flags_deterministic():
        findings.append(
            Finding(
                "error",
                "env-missing-at-start",
                f"XLA_FLAGS lacks {JAX_DETERMINISTIC_FLAG} on a GPU machine.",
                "XLA's GPU backend autotunes and uses atomics unless told to be deterministic, "
                "and JAX only reads the flag at start.",
                f"Start the program as `XLA_FLAGS={JAX_DETERMINISTIC_FLAG} python train.py`.",
                subject="XLA_FLAGS",
            )
        )
    return findings


def _seeded_python_streams() -> list[int]:
    """The seeds Python's `random` was given by a recorded seeding call, if any."""
    found = []
    root = get_root_seed()
    if root is not None:
        found.append(derive_seed(root, "python"))
    keras_seed = _keras_seed()
    if keras_seed is not None:
        found.append(int(keras_seed))  # keras.utils.set_random_seed seeds `random` with it
    return found


def audit(model: keras.layers.Layer | None = None, data: Any = None, *, shuffle: bool = True) -> list[Finding]:
    """Lists what in this process, model and input pipeline would make runs differ.

    Checks: PYTHONHASHSEED not set at start; no root seed recorded;
    deterministic kernels off; start-only environment variables changed after
    start or missing on a GPU machine; and, given a model, unseeded layer seed
    generators (Dropout and the like), one initializer instance shared by
    several layers (identical weights), unseeded initializers, layers without
    a deterministic TF GPU kernel (known cases, GPU only) and jit_compile
    interplay; given `data` (a `tf.data.Dataset` or a `keras.utils.PyDataset`),
    a nondeterministic element order and random ops in parallel stages, and
    for in-memory arrays that `fit` shuffles (`shuffle`, as passed to `fit`),
    a TensorFlow global seed that is not set (Keras' own array shuffle then
    differs in every process). Seed generators that are never drawn from
    (``rate=0``, RNN cells without dropout) are not reported, and one whose
    seed was drawn from Python's `random` after a recorded seeding
    (`keras_repro.seed_everything`, `keras.utils.set_random_seed`) is only
    ``info``.

    The audit itself never raises on what it finds; a check that fails to run
    is reported as an ``info`` finding.

    Args:
        model: optional Keras model (or layer) to inspect.
        data: optional input pipeline, or in-memory arrays, to inspect: what
            is passed to `fit` as `x`.
        shuffle: the `shuffle` argument passed to `fit` with `data`.

    Returns:
        The findings, errors first, then warnings, then info.

    Example:

    ```python
    import keras
    import keras_repro as kr

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dropout(0.5)])
    for finding in kr.audit(model):
        print(finding.severity, finding.code, finding.subject)
    ```
    """
    if model is not None and not isinstance(model, keras.layers.Layer):
        raise TypeError(
            f"Invalid model: {model!r} (of type {type(model).__name__}). Expected a Keras model or layer, or None."
        )
    findings: list[Finding] = []
    try:
        gpus = _gpu_devices()
    except Exception as e:  # noqa: BLE001 - the audit reports, it does not raise
        gpus = []
        findings.append(_check_failed("device", e))
    context = AuditContext(
        backend=_backend(),
        gpus=tuple(gpus),
        op_determinism=tf_op_determinism_enabled(),
        tf_seed_set=tf_global_seed() is not None,
        seeded_streams=tuple(_seeded_python_streams()),
        seeds_in_fit=seeds_global_streams_in_fit(model),
    )
    checks = [("process", _check_process, (gpus, model))]
    if model is not None:
        checks.append(("model", check_model, (model, context)))
    if data is not None:
        checks.append(("data", check_data, (data, context)))
        if shuffle is True:
            checks.append(("array shuffle", check_array_shuffle, (data, context)))
    for name, check, args in checks:
        try:
            findings += check(*args)
        except Exception as e:  # noqa: BLE001
            findings.append(_check_failed(name, e))
    if model is not None:
        findings = _model_seeded_explicitly(findings)
    return sorted(findings, key=lambda f: _SEVERITY_ORDER[f.severity])


def _model_seeded_explicitly(findings: list[Finding]) -> list[Finding]:
    """No root seed, but the model seeds its own randomness (all of it, or its initializers): reworded.

    "Nothing is seeded" is then false. With every initializer and drawable
    seed generator seeded, the finding is only info: what is left unseeded
    are the global streams, which other findings (data order, ...) name where
    they matter. With the initializers seeded and some seed generator not,
    it keeps its severity and says that much.
    """
    if any(f.code in ("unseeded-initializer", "shared-initializer") for f in findings):
        return findings
    generators_unseeded = any(f.code == "unseeded-seed-generator" and f.severity != "info" for f in findings)

    def reworded(f: Finding) -> Finding:
        if generators_unseeded:
            return dataclasses.replace(
                f,
                what="No root seed was recorded with keras_repro.seed_everything; the model's initializers "
                "are seeded explicitly, but not all of its seed generators (see unseeded-seed-generator).",
            )
        return Finding(
            "info",
            f.code,
            "No root seed was recorded with keras_repro.seed_everything; the model's initializers "
            "and seed generators are seeded explicitly (or never draw).",
            "The global random streams stay unseeded: anything that draws from them (Keras' "
            "array shuffle, keras.random calls without a seed, NumPy in the data pipeline) "
            "differs between runs, and no record of a seed goes into the manifest or trace.",
            f.fix,
            subject=f.subject,
        )

    return [reworded(f) if f.code == "root-seed-unset" else f for f in findings]


def _check_failed(name: str, error: Exception) -> Finding:
    return Finding(
        "info",
        "audit-check-failed",
        f"The {name} check could not run ({type(error).__name__}: {error}).",
        "What it looks for was not checked.",
        "Report this with the model and environment that triggered it.",
        subject=name,
    )
