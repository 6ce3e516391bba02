"""The environment a run used, as JSON, and which differences can change results.

`manifest()` records what decides the bits a training run produces: library
versions and builds (CUDA, cuDNN), devices, the CPU model and instruction
sets, thread settings, the environment variables that steer kernels,
deterministic-kernel status, the root seed and the git revision of the code.
`diff_manifests(a, b)` lists the differences between two manifests and says
for each whether it can change results, and why.

Measured on TF 2.21 / Keras 3.15 (CPU): thread counts matter for TF's Eigen
kernels (``TF_ENABLE_ONEDNN_OPTS=0``: 1 and 2 intra-op threads give different
weights after two epochs of an MLP, each stable); with the default oneDNN
kernels they did not on that machine; oneDNN on versus off differs; XLA
(``jit_compile=True``) versus not differs; op determinism on versus off
differs. Thread settings and core counts are therefore treated as able to
change results.

Example:

```python
import keras_repro as kr

a = kr.manifest()
b = kr.manifest()
[d for d in kr.diff_manifests(a, b) if d.affects_results]   # []
```
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import xxhash

from keras_repro import _compat
from keras_repro import _files
from keras_repro import _validate
from keras_repro.determinism import determinism_enabled
from keras_repro.seeds import get_root_seed
from keras_repro.seeds import hashseed_set_at_start

__all__ = [
    "MISSING",
    "ManifestDifference",
    "diff_manifests",
    "manifest",
    "read_manifest",
    "write_manifest",
]

MANIFEST_FORMAT = "keras_repro.manifest"
MANIFEST_VERSION = 1
#: Stands for a key present in only one of two manifests.
MISSING = "<missing>"

#: Environment variables recorded in the manifest (all can change results).
ENV_VARS = (
    "PYTHONHASHSEED",
    "KERAS_BACKEND",
    "KERAS_REPRO_SEED",
    "TF_DETERMINISTIC_OPS",
    "TF_CUDNN_DETERMINISTIC",
    "TF_CUDNN_USE_AUTOTUNE",
    "TF_ENABLE_ONEDNN_OPTS",
    "TF_XLA_FLAGS",
    "XLA_FLAGS",
    "CUBLAS_WORKSPACE_CONFIG",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_TF32_OVERRIDE",
    "TF_ENABLE_AUTO_MIXED_PRECISION",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "TF_USE_LEGACY_KERAS",
)
_ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "sve",
    "sve2",
)

# (key prefix, affects results, why): the first matching prefix decides.
_RULES: tuple[tuple[str, bool, str], ...] = (
    ("created", False, "the time a manifest was made does not enter the computation"),
    ("hostname", False, "the machine's name does not enter the computation"),
    ("platform.release", False, "the OS kernel version does not change numerical kernels"),
    ("git", True, "different code can compute differently"),
    ("keras_repro", True, "seed derivation and seeding can change between versions"),
    ("python", True, "library code paths and Python's own RNG helpers can change between versions"),
    ("platform", True, "a different OS or architecture can use different math libraries and kernels"),
    ("keras", True, "layer, optimizer and loss code can change between Keras versions or backends"),
    ("backend_version", True, "kernels change between framework versions"),
    ("jaxlib", True, "JAX's kernels are jaxlib's, versioned on their own"),
    ("numpy", True, "NumPy's RNG streams and math can change between versions"),
    ("tensorflow.threads", True, "measured: Eigen CPU kernels split work by thread count, changing rounding"),
    ("tensorflow.op_determinism", True, "op determinism switches kernels, also on CPU"),
    ("tensorflow.tf32", True, "TF32 matmuls on Ampere+ GPUs round to 10-bit mantissas"),
    ("tensorflow", True, "kernels change between TF versions and CUDA/cuDNN builds"),
    ("devices", True, "different devices run different kernels"),
    ("cpu.count", True, "default thread counts follow the core count; Eigen kernels split work by it"),
    ("cpu.affinity", True, "default thread counts follow the usable cores; Eigen kernels split work by it"),
    ("cpu", True, "oneDNN/XLA pick kernels by CPU model and instruction set"),
    ("env", True, "this variable steers seeding, kernel choice, threads or devices"),
    ("determinism", True, "deterministic kernels compute differently from the default ones"),
    ("root_seed", True, "a different root seed gives different weights, masks and data order"),
    ("hashseed_at_start", True, "with hash randomization, set iteration order differs between runs"),
)


def _versions() -> dict[str, Any]:
    import keras
    import numpy as np

    from keras_repro import __version__

    backend = keras.backend.backend()
    backend_version = None
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(backend)
    if module is not None and module in sys.modules:
        backend_version = getattr(sys.modules[module], "__version__", None)
    versions = {
        "keras_repro": __version__,
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
        },
        "keras": {
            "version": keras.__version__,
            "backend": backend,
            "floatx": keras.config.floatx(),
            "dtype_policy": keras.config.dtype_policy().name,
        },
        "backend_version": backend_version,
        "numpy": np.__version__,
    }
    if backend == "jax":  # JAX's kernels are jaxlib's: its version can change results on its own
        versions["jaxlib"] = getattr(sys.modules.get("jaxlib"), "__version__", None)
    return versions


def _tensorflow_info() -> dict[str, Any] | None:
    import keras

    if "tensorflow" not in sys.modules and keras.backend.backend() != "tensorflow":
        return None
    try:
        import tensorflow as tf
    except ImportError:
        return None
    info = tf.sysconfig.get_build_info()
    build = {
        key: info[key] for key in ("cuda_version", "cudnn_version", "is_cuda_build", "is_rocm_build") if key in info
    }
    op_determinism = _compat.tf_op_determinism_enabled()
    return {
        "version": tf.__version__,
        "git_version": getattr(tf.version, "GIT_VERSION", None),
        "build": build,
        "op_determinism": op_determinism,
        "tf32": bool(tf.config.experimental.tensor_float_32_execution_enabled()),
        "threads": {
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
        },
    }


def _devices() -> list[dict[str, Any]]:
    import keras

    if "tensorflow" in sys.modules or keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        devices = []
        for device in tf.config.list_physical_devices():
            entry: dict[str, Any] = {"type": device.device_type, "name": device.name}
            if device.device_type == "GPU":
                try:
                    details = tf.config.experimental.get_device_details(device)
                    entry["model"] = details.get("device_name")
                    capability = details.get("compute_capability")
                    entry["compute_capability"] = list(capability) if capability else None
                except Exception:  # noqa: BLE001
                    pass
            devices.append(entry)
        return devices
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return [
            {"type": d.platform.upper(), "name": str(d), "model": getattr(d, "device_kind", None)}
            for d in jax.devices()
        ]
    if backend == "torch":
        import torch

        devices = [{"type": "CPU", "name": "cpu"}]
        if torch.cuda.is_available():
            devices += [
                {"type": "GPU", "name": f"cuda:{i}", "model": torch.cuda.get_device_name(i)}
                for i in range(torch.cuda.device_count())
            ]
        return devices
    return [{"type": "CPU", "name": "cpu"}]


def _cpu() -> dict[str, Any]:
    model = None
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware", "cpu model") and model is None:
                    model = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags.update(value.split())
                if model is not None and flags:
                    break
    except OSError:
        pass
    model = model or platform.processor() or None
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return {
        "model": model,
        "isa": [flag for flag in _ISA_FLAGS if flag in flags],
        "count": os.cpu_count(),
        "affinity": affinity,
    }


def _git() -> dict[str, Any] | None:
    script = Path(sys.argv[0]).resolve().parent if sys.argv and sys.argv[0] not in ("", "-c", "-m") else None
    cwd = script if script is not None and script.is_dir() else Path.cwd()

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=3, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    revision = git("rev-parse", "HEAD")
    if revision is None:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"revision": revision, "dirty": None if status is None else bool(status)}


def manifest() -> dict[str, Any]:
    """Records the environment that decides the bits a run produces, as JSON-safe data.

    Covers: Python, keras_repro, Keras (version, backend, floatx, dtype
    policy), the backend's version, NumPy, TensorFlow (version, CUDA/cuDNN
    build, op determinism, TF32, thread settings) when it is the backend or
    loaded, physical devices, CPU model, instruction sets and core counts,
    relevant environment variables, deterministic-kernel status, the root
    seed, whether PYTHONHASHSEED was set at start, the git revision of the
    running script's folder (or the working directory) and whether it has
    uncommitted changes, plus hostname and creation time (which never
    affect results).

    Returns:
        A dict of str, int, float, bool, None, lists and dicts only.

    Example:

    ```python
    import json
    import keras_repro as kr

    print(json.dumps(kr.manifest(), indent=1))
    ```
    """
    result = _versions()
    result.update(
        {
            "platform": {
                "system": platform.system(),
                "release": platform.release(),
                "machine": platform.machine(),
            },
            "tensorflow": _tensorflow_info(),
            "devices": _devices(),
            "cpu": _cpu(),
            "env": {name: os.environ.get(name) for name in ENV_VARS},
            "determinism": {"enabled": determinism_enabled()},
            "root_seed": get_root_seed(),
            "hashseed_at_start": hashseed_set_at_start(),
            "git": _git(),
            "hostname": socket.gethostname(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    return json.loads(json.dumps(result))  # tuples to lists: exactly what a reader gets back


@dataclasses.dataclass(frozen=True)
class ManifestDifference:
    """One difference between two manifests.

    Attributes:
        key: the dotted key (``"tensorflow.build.cudnn_version"``).
        a: the value in the first manifest, or `MISSING`.
        b: the value in the second manifest, or `MISSING`.
        affects_results: whether this difference can change what a run computes.
        why: the reason.
    """

    key: str
    a: Any
    b: Any
    affects_results: bool
    why: str

    def __str__(self) -> str:
        effect = "can change results" if self.affects_results else "does not change results"
        return f"{self.key}: {self.a!r} != {self.b!r} ({effect}: {self.why})"


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value


def _classify(key: str) -> tuple[bool, str]:
    for prefix, affects, why in _RULES:
        if key == prefix or key.startswith(prefix + "."):
            return affects, why
    return True, "not known to be harmless"


def diff_manifests(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[ManifestDifference]:
    """Lists the differences between two manifests and whether each can change results.

    Nested keys are compared one by one (``"tensorflow.build.cuda_version"``);
    lists (devices, instruction sets) as a whole. Hostname, creation time and
    OS kernel release never affect results; library versions and builds,
    devices, CPU model and instruction sets, core and thread counts, kernel
    environment variables, deterministic kernels and the root seed do;
    anything not known to be harmless is reported as able to.

    Args:
        a: a manifest (from `manifest`, `read_manifest` or a trace header).
        b: another.

    Returns:
        `ManifestDifference`s, those that can change results first, each
        group in key order.

    Example:

    ```python
    import keras_repro as kr

    a = kr.manifest()
    b = dict(a, root_seed=7)
    [str(d) for d in kr.diff_manifests(a, b) if d.affects_results]
    ```
    """
    for name, value in (("a", a), ("b", b)):
        _validate.check_instance(f"manifest {name}", value, Mapping, "Expected a dict from manifest()")
    flat_a: dict[str, Any] = {}
    flat_b: dict[str, Any] = {}
    _flatten(a, "", flat_a)
    _flatten(b, "", flat_b)
    differences = []
    for key in sorted(set(flat_a) | set(flat_b)):
        value_a = flat_a.get(key, MISSING)
        value_b = flat_b.get(key, MISSING)
        if value_a == value_b:
            continue
        affects, why = _classify(key)
        differences.append(ManifestDifference(key, value_a, value_b, affects, why))
    return sorted(differences, key=lambda d: (not d.affects_results, d.key))


def _checksum(value: Mapping[str, Any]) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return xxhash.xxh3_64_hexdigest(text.encode())


def write_manifest(path: _files.PathLike, value: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Writes a manifest (the current one by default) to a JSON file, atomically.

    The file is a versioned ``keras_repro.manifest`` document with a checksum
    of its content, so `read_manifest` detects any corruption.

    Args:
        path: where to write.
        value: the manifest; `manifest()` when None.

    Returns:
        The manifest written.

    Example:

    ```python
    from keras_repro.manifest import read_manifest, write_manifest

    write_manifest("run_env.json")
    read_manifest("run_env.json")
    ```
    """
    path = _validate.check_path("path", path)
    value = (
        manifest()
        if value is None
        else dict(_validate.check_instance("value", value, Mapping, "Expected a manifest dict"))
    )
    _files.write_document(path, MANIFEST_FORMAT, MANIFEST_VERSION, {"manifest": value, "checksum": _checksum(value)})
    return value


def read_manifest(path: _files.PathLike) -> dict[str, Any]:
    """Reads a manifest written by `write_manifest`, checking format, version and checksum.

    Raises:
        FileNotFoundError: no such file.
        ValueError: empty, truncated, corrupt, of another format or version, or
            with a checksum that does not match; the message names the file.
    """
    path = _validate.check_path("path", path)
    document = _files.read_document(path, MANIFEST_FORMAT, (MANIFEST_VERSION,))
    value = document.get("manifest")
    if not isinstance(value, dict) or not isinstance(document.get("checksum"), str):
        raise ValueError(f"{path}: not a valid {MANIFEST_FORMAT} document (no manifest or checksum).")
    if _checksum(value) != document["checksum"]:
        raise ValueError(f"{path}: the manifest does not match its checksum: the file was changed or corrupted.")
    return value
