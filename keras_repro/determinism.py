"""Deterministic kernels and an audit of what would make a run not repeat.

`enable_determinism()` turns on the backend's deterministic-kernel switch,
`determinism_enabled()` says whether it is on, and `audit()` lists, as
`Finding`s, everything it can see in the process, the model and the input
pipeline that would make two runs of the same program differ, each with why
and the fix.

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
for finding in kr.audit():
    print(finding)
```
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Any

import keras

from keras_repro import paths
from keras_repro.models import SeededModel
from keras_repro._backend import tensorflow_module
from keras_repro.seeds import ReproducibilityWarning, get_root_seed, hashseed_set_at_start, initial_environ

__all__ = [
    "AuditError",
    "Finding",
    "SEVERITIES",
    "audit",
    "determinism_enabled",
    "enable_determinism",
]

SEVERITIES = ("error", "warning", "info")
_SEVERITY_ORDER = {s: i for i, s in enumerate(SEVERITIES)}

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
_JAX_DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true"
_CUBLAS_WORKSPACE = ":4096:8"

# Ops (in tf.data functions) that draw from a stateful RNG or a variable, so
# that running the function in parallel makes the draws depend on scheduling.
_STATEFUL_DATA_OPS = frozenset(
    {"RandomUniform", "RandomUniformInt", "RandomStandardNormal", "TruncatedNormal",
     "RandomShuffle", "Multinomial", "RandomGamma", "RandomGammaGrad", "RandomPoisson",
     "RandomPoissonV2", "ParameterizedTruncatedNormal", "RandomCrop",
     "StatefulUniform", "StatefulUniformInt", "StatefulUniformFullInt",
     "StatefulStandardNormal", "StatefulStandardNormalV2", "StatefulTruncatedNormal",
     "StatefulRandomBinomial", "RngReadAndSkip", "RngSkip",
     "AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp"}
)
_PARALLEL_DATA_OPS = ("ParallelMapDataset", "ParallelInterleaveDataset", "MapAndBatchDataset",
                      "ParallelFilterDataset", "ParallelBatchDataset")


@dataclasses.dataclass(frozen=True)
class Finding:
    """One thing that can make a run not repeat, with why and the fix.

    Attributes:
        severity: ``"error"`` (runs will differ), ``"warning"`` (runs can
            differ, depending on something outside this process' control) or
            ``"info"`` (worth knowing; not a difference by itself).
        code: a stable short id, e.g. ``"hashseed-unset"``; filter on it.
        what: what is wrong.
        why: why it breaks reproducibility.
        fix: how to fix it.
        subject: what it is about, e.g. a layer path, when it is about one thing.
    """

    severity: str
    code: str
    what: str
    why: str
    fix: str
    subject: str | None = None

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(
                f"Invalid severity: {self.severity!r}. Allowed: {', '.join(SEVERITIES)}."
            )

    def __str__(self) -> str:
        about = f" [{self.subject}]" if self.subject else ""
        return f"{self.severity.upper()} {self.code}{about}: {self.what} Why: {self.why} Fix: {self.fix}"


class AuditError(RuntimeError):
    """Raised (by `DeterminismCallback(audit="raise")`) when the audit finds errors.

    Attributes:
        findings: the error-severity `Finding`s.
    """

    def __init__(self, findings: list[Finding]) -> None:
        lines = "\n".join(f"- {f}" for f in findings)
        super().__init__(f"The reproducibility audit found {len(findings)} error(s):\n{lines}")
        self.findings = list(findings)


# --- backend switches ---------------------------------------------------------------


def _backend() -> str:
    return keras.backend.backend()


def _tf_op_determinism() -> bool:
    """TF op determinism; the query is private in TF, so it is wrapped defensively."""
    try:
        from tensorflow.python.framework.config import is_op_determinism_enabled

        return bool(is_op_determinism_enabled())
    except Exception:  # noqa: BLE001 - any failure falls back to the env var
        return os.environ.get("TF_DETERMINISTIC_OPS", "").strip().lower() in ("1", "true")


def _xla_flags_deterministic() -> bool:
    return _JAX_DETERMINISTIC_FLAG in os.environ.get("XLA_FLAGS", "").split()


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
        return _xla_flags_deterministic()
    return _tf_op_determinism()


def _tf_global_seed():
    try:
        from tensorflow.python.eager import context

        return context.global_seed()
    except Exception:  # noqa: BLE001
        return None


def enable_determinism() -> list[str]:
    """Turns on deterministic kernels for the Keras backend (and tf.data).

    - TensorFlow (the backend, or loaded for `tf.data`):
      ``tf.config.experimental.enable_op_determinism()``. Process-wide, and
      not meant to be turned off again. Afterwards unseeded TF random ops
      raise; a `ReproducibilityWarning` says so when TF has no global seed.
    - Torch: ``torch.use_deterministic_algorithms(True)``, cuDNN
      ``deterministic=True`` and ``benchmark=False``, and
      ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` when unset (it only takes effect
      if CUDA was not initialized yet: a warning says so otherwise).
    - JAX: determinism is an XLA flag read when JAX starts; if
      ``XLA_FLAGS`` lacks ``--xla_gpu_deterministic_ops=true`` a
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
        if _tf_global_seed() is None:
            warnings.warn(
                "TensorFlow op determinism is on but TensorFlow has no global seed, so "
                "unseeded TF random ops (including fit(shuffle=True) data pipelines "
                "built from now on) will raise 'Random ops require a seed'. "
                "Fix: call keras_repro.seed_everything(seed) first.",
                ReproducibilityWarning,
                stacklevel=2,
            )
    if backend == "torch":
        import torch

        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        switched.append("torch.deterministic_algorithms")
        if "CUBLAS_WORKSPACE_CONFIG" not in os.environ:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = _CUBLAS_WORKSPACE
            switched.append("CUBLAS_WORKSPACE_CONFIG")
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                warnings.warn(
                    "CUBLAS_WORKSPACE_CONFIG was set after CUDA was initialized and may "
                    "have no effect. Fix: start the program as "
                    f"`CUBLAS_WORKSPACE_CONFIG={_CUBLAS_WORKSPACE} python train.py`.",
                    ReproducibilityWarning,
                    stacklevel=2,
                )
    if backend == "jax" and not _xla_flags_deterministic():
        warnings.warn(
            "JAX reads its determinism switch from XLA_FLAGS when it starts; it cannot be "
            "turned on from inside the program. Fix: start the program as "
            f"`XLA_FLAGS={_JAX_DETERMINISTIC_FLAG} python train.py`.",
            ReproducibilityWarning,
            stacklevel=2,
        )
    return switched


# --- audit -------------------------------------------------------------------------


def _gpu_devices() -> list[str]:
    """Names of the GPUs the Keras backend (or TF, when loaded) can see."""
    backend = _backend()
    found: list[str] = []
    tf = tensorflow_module(import_it=backend == "tensorflow")
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


def _keras_seed():
    try:
        from keras.src.backend.common import global_state

        return global_state.get_global_attribute("global_random_seed")
    except Exception:  # noqa: BLE001
        return None


def _check_process(gpus: list[str], model: keras.layers.Layer | None) -> list[Finding]:
    findings = []
    if not hashseed_set_at_start():
        findings.append(Finding(
            "warning", "hashseed-unset",
            "PYTHONHASHSEED was not set when this Python process started.",
            "String hashing is randomized per process, so the iteration order of sets "
            "(and of anything built from them) can differ between runs; setting it "
            "inside the program does not change the running interpreter.",
            "Start the program as `PYTHONHASHSEED=0 python train.py`.",
        ))
    # A SeededModel seeds the global streams from its own seed when fit starts.
    if get_root_seed() is None and not isinstance(model, SeededModel):
        other = _keras_seed() is not None or _tf_global_seed() is not None
        findings.append(Finding(
            "warning" if other else "error", "root-seed-unset",
            "No root seed was recorded with keras_repro.seed_everything"
            + (" (some streams were seeded another way)." if other else "; nothing is seeded."),
            "Initial weights, Dropout masks and data order then come from whatever "
            "state the global random streams were in, and no record of the seed goes "
            "into the manifest or trace.",
            "Call keras_repro.seed_everything(seed) at the top of the program, before "
            "building the model.",
        ))
    if not determinism_enabled():
        findings.append(Finding(
            "error" if gpus else "warning", "op-determinism-off",
            f"Deterministic kernels are off for the {_backend()} backend"
            + (f" with GPUs present ({', '.join(gpus)})." if gpus else "."),
            "GPU kernels (cuDNN convolutions, reductions with atomics) may sum in a "
            "different order on every run; on CPU, parallel tf.data maps with random "
            "ops are not reproducible either.",
            "Call keras_repro.enable_determinism() before compile(), or use "
            "DeterminismCallback(deterministic_ops=True).",
        ))
    initial = initial_environ()
    if initial is not None:
        for name in START_ONLY_ENV_VARS:
            if os.environ.get(name) != initial.get(name):
                findings.append(Finding(
                    "warning", "env-changed-after-start",
                    f"{name} was changed after the process started "
                    f"(at start: {initial.get(name)!r}, now: {os.environ.get(name)!r}).",
                    f"{name} is read once, when the framework or CUDA library initializes; "
                    "a later change may or may not take effect depending on what already ran.",
                    f"Set {name} on the command line or in the environment before starting Python.",
                    subject=name,
                ))
    backend = _backend()
    if gpus and backend == "torch" and "CUBLAS_WORKSPACE_CONFIG" not in os.environ:
        findings.append(Finding(
            "error", "env-missing-at-start",
            "CUBLAS_WORKSPACE_CONFIG is not set on a CUDA machine.",
            "Without it cuBLAS may use nondeterministic reductions and torch's "
            "deterministic mode raises for affected ops.",
            f"Start the program as `CUBLAS_WORKSPACE_CONFIG={_CUBLAS_WORKSPACE} python train.py`.",
            subject="CUBLAS_WORKSPACE_CONFIG",
        ))
    if gpus and backend == "jax" and not _xla_flags_deterministic():
        findings.append(Finding(
            "error", "env-missing-at-start",
            f"XLA_FLAGS lacks {_JAX_DETERMINISTIC_FLAG} on a GPU machine.",
            "XLA's GPU backend autotunes and uses atomics unless told to be deterministic, "
            "and JAX only reads the flag at start.",
            f"Start the program as `XLA_FLAGS={_JAX_DETERMINISTIC_FLAG} python train.py`.",
            subject="XLA_FLAGS",
        ))
    return findings


def _initializers(layer: keras.layers.Layer) -> list[tuple[str, Any]]:
    found = []
    for attribute, value in vars(layer).items():
        if attribute.endswith("_initializer") and isinstance(value, keras.initializers.Initializer):
            found.append((attribute.lstrip("_"), value))
    return found


def _initializer_seed(initializer: Any) -> tuple[bool, Any]:
    """(is random, configured seed) of an initializer."""
    try:
        config = initializer.get_config()
    except Exception:  # noqa: BLE001
        return False, None
    if "seed" not in config:
        return False, None
    return True, config["seed"]


def _check_model(model: keras.layers.Layer, gpus: list[str]) -> list[Finding]:
    findings = []
    layers = paths.layer_paths(model)
    for path, generator in paths.seed_generator_paths(model).items():
        if generator.get_config().get("seed") is None:
            findings.append(Finding(
                "warning", "unseeded-seed-generator",
                f"The seed generator {path!r} was created without a seed.",
                "Its seed was drawn from Python's `random` when the layer was built, so "
                "it depends on everything constructed or drawn before it; its masks "
                "change when layers are added, reordered or built in another order.",
                "Pass seed=... to the layer (e.g. Dropout(0.5, seed=keras_repro."
                "derive_seed(root, path))), or use keras_repro.SeededModel / seed_model.",
                subject=path,
            ))
    by_instance: dict[int, list[str]] = {}
    instances: dict[int, Any] = {}
    unseeded: list[str] = []
    for path, layer in layers.items():
        for attribute, initializer in _initializers(layer):
            is_random, seed = _initializer_seed(initializer)
            if not is_random:
                continue
            where = f"{path}/{attribute}" if path else attribute
            if seed is None or (isinstance(seed, int) and not isinstance(seed, bool)):
                by_instance.setdefault(id(initializer), []).append(where)
                instances[id(initializer)] = initializer
            if seed is None:
                unseeded.append(where)
    for key, wheres in by_instance.items():
        owners = {w.rsplit("/", 1)[0] for w in wheres}
        if len(owners) > 1:
            findings.append(Finding(
                "warning", "shared-initializer",
                f"One {type(instances[key]).__name__} instance is used by {len(wheres)} "
                f"weights: {', '.join(wheres)}.",
                "An initializer instance with an int seed (or none, drawn once at its "
                "construction) produces the same values on every call, so weights of the "
                "same shape start identical, silently.",
                "Give each layer its own initializer: a string name, or "
                "keras_repro.initializers.SeededInitializers(seed) which hands out a fresh, "
                "distinctly seeded one per call.",
                subject=wheres[0],
            ))
    if unseeded:
        shown = ", ".join(unseeded[:5]) + (f" and {len(unseeded) - 5} more" if len(unseeded) > 5 else "")
        findings.append(Finding(
            "info", "unseeded-initializer",
            f"{len(unseeded)} random initializers have no seed: {shown}.",
            "Their seeds were drawn from Python's `random` at construction: reproducible "
            "only if the model is built in the same order after the same seeding, and "
            "they change when a layer is inserted before them.",
            "Use keras_repro.initializers factories with a key per weight, or "
            "keras_repro.SeededModel / seed_model.",
            subject=unseeded[0],
        ))
    if gpus:
        findings += _check_gpu_kernels(layers)
    findings += _check_jit(model, gpus)
    return findings


def _check_gpu_kernels(layers: dict[str, keras.layers.Layer]) -> list[Finding]:
    """Layers whose TF GPU kernels have no deterministic implementation (known cases)."""
    if _backend() != "tensorflow":
        return []
    findings = []
    for path, layer in layers.items():
        if isinstance(layer, keras.layers.Resizing) and getattr(layer, "interpolation", None) == "nearest":
            findings.append(Finding(
                "warning", "gpu-no-deterministic-kernel",
                f"Layer {path!r} resizes with 'nearest' interpolation on a GPU machine.",
                "TensorFlow has no deterministic GPU kernel for its gradient "
                "(ResizeNearestNeighborGrad): with op determinism on, training raises "
                "UnimplementedError when a gradient flows through it; with it off, the "
                "gradient is nondeterministic.",
                "Use interpolation='bilinear', or keras.layers.UpSampling2D "
                "(nearest upsampling by repetition), or keep the layer before any "
                "trainable layer.",
                subject=path,
            ))
    return findings


def _check_jit(model: keras.layers.Layer, gpus: list[str]) -> list[Finding]:
    if _backend() != "tensorflow" or not getattr(model, "compiled", False):
        return []
    jit = getattr(model, "jit_compile", False)
    if jit is not True:
        return []
    if _tf_op_determinism():
        return [Finding(
            "warning", "jit-compile",
            "The model was compiled with jit_compile=True before op determinism was turned on.",
            "Keras turns XLA off (jit_compile=False) when op determinism is already on at "
            "compile(), but not when it is turned on later: a run that enables determinism "
            "before compile() runs different kernels and differs in the last bits. "
            "DeterminismCallback applies Keras' rule at fit start.",
            "Call keras_repro.enable_determinism() before compile(), or compile with "
            "jit_compile=False.",
        )]
    if gpus:
        return [Finding(
            "error", "jit-compile",
            "The model runs with XLA (jit_compile=True) on a GPU without op determinism.",
            "XLA's GPU backend autotunes and may use atomic reductions (e.g. in scatter), "
            "whose order changes from run to run.",
            "Call keras_repro.enable_determinism() before compile() (Keras then turns XLA "
            "off), or compile with jit_compile=False.",
        )]
    return [Finding(
        "info", "jit-compile",
        "The model runs with XLA (jit_compile=True) on CPU.",
        "XLA on CPU repeats itself, but its fused kernels round differently from the "
        "non-XLA ones, and Keras turns XLA off when op determinism is on at compile(): "
        "runs that differ in either setting differ in the last bits.",
        "Keep jit_compile and the moment determinism is enabled the same in every run "
        "(simplest: enable_determinism() before compile()).",
    )]


def _dataset_graph(dataset: Any):
    import tensorflow as tf

    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(dataset._as_serialized_graph().numpy())  # noqa: SLF001 - no public API
    return graph


def _const_int(node: Any) -> int | None:
    tensor = node.attr["value"].tensor
    if tensor.int64_val:
        return int(tensor.int64_val[0])
    if tensor.int_val:
        return int(tensor.int_val[0])
    return None


def _check_tf_dataset(dataset: Any) -> list[Finding]:
    findings = []
    determinism = _tf_op_determinism()
    severity = "info" if determinism else "warning"
    overridden = " (op determinism is on, which overrides it)" if determinism else ""
    if dataset.options().deterministic is False:
        findings.append(Finding(
            severity, "data-nondeterministic-order",
            "The tf.data pipeline has options().deterministic=False" + overridden + ".",
            "Parallel stages may then hand out elements in the order they finish, "
            "which changes from run to run.",
            "Remove the option (or set it to True), or enable op determinism.",
        ))
    try:
        graph = _dataset_graph(dataset)
    except Exception as e:  # noqa: BLE001
        findings.append(Finding(
            "info", "data-not-inspected",
            f"The tf.data pipeline's graph could not be inspected ({type(e).__name__}: {e}).",
            "Per-stage deterministic=False settings and random ops in parallel maps "
            "were not checked.",
            "Check the pipeline by hand: no deterministic=False, no random ops in "
            "parallel map functions unless op determinism is on.",
        ))
        return findings
    nodes = {node.name: node for node in graph.node}
    functions = {f.signature.name: f for f in graph.library.function}

    def stateful_ops(name: str, seen: set[str]) -> set[str]:
        if name in seen or name not in functions:
            return set()
        seen.add(name)
        found = set()
        for node in functions[name].node_def:
            if node.op in _STATEFUL_DATA_OPS:
                found.add(node.op)
            found |= stateful_ops(node.op, seen)
            for value in node.attr.values():
                if value.func.name:
                    found |= stateful_ops(value.func.name, seen)
        return found

    for node in graph.node:
        if not node.op.startswith(_PARALLEL_DATA_OPS):
            continue
        if "deterministic" in node.attr and node.attr["deterministic"].s == b"false":
            findings.append(Finding(
                severity, "data-nondeterministic-order",
                f"The tf.data stage {node.op} was created with deterministic=False" + overridden + ".",
                "It hands out elements in the order its parallel calls finish.",
                "Drop deterministic=False from the map/interleave/batch call, or enable "
                "op determinism.",
                subject=node.op,
            ))
        # num_parallel_calls is the last data input (second to last for the
        # batching ops, whose last is drop_remainder).
        data_inputs = [i for i in node.input if not i.startswith("^")]
        position = -2 if node.op.startswith(("MapAndBatchDataset", "ParallelBatchDataset")) else -1
        source = nodes.get(data_inputs[position].split(":")[0]) if data_inputs else None
        parallel_calls = _const_int(source) if source is not None and source.op == "Const" else None
        if parallel_calls == 1 or determinism:
            continue
        ops: set[str] = set()
        for value in node.attr.values():
            if value.func.name:
                ops |= stateful_ops(value.func.name, set())
        if ops:
            findings.append(Finding(
                "warning", "data-parallel-random",
                f"The parallel tf.data stage {node.op} runs a function with stateful "
                f"random or variable ops ({', '.join(sorted(ops))}).",
                "Parallel calls draw from the shared RNG state in the order threads get to "
                "it, so each element's random values change from run to run (Keras "
                "augmentation layers included).",
                "Enable op determinism (the stage then runs serially), use stateless random "
                "ops seeded per element, or move the random ops into a separate "
                "sequential map.",
                subject=node.op,
            ))
    return findings


def _check_data(data: Any) -> list[Finding]:
    tf = tensorflow_module(import_it=False)
    if tf is not None and isinstance(data, tf.data.Dataset):
        return _check_tf_dataset(data)
    if isinstance(data, keras.utils.PyDataset) and getattr(data, "workers", 1) > 1:
        return [Finding(
            "warning", "data-parallel-random",
            f"The PyDataset runs {data.workers} workers.",
            "Batches come back in order, but if __getitem__ draws from a shared random "
            "generator (Python, NumPy global), which worker draws first changes from "
            "run to run.",
            "Draw per-batch randomness from a generator seeded with "
            "keras_repro.derive_seed(root, 'batch', index), or use workers=1.",
        )]
    return []


def audit(model: keras.layers.Layer | None = None, data: Any = None) -> list[Finding]:
    """Lists what in this process, model and input pipeline would make runs differ.

    Checks: PYTHONHASHSEED not set at start; no root seed recorded;
    deterministic kernels off; start-only environment variables changed after
    start or missing on a GPU machine; and, given a model, unseeded layer seed
    generators (Dropout and the like), one initializer instance shared by
    several layers (identical weights), unseeded initializers, layers without
    a deterministic TF GPU kernel (known cases, GPU only) and jit_compile
    interplay; given `data` (a `tf.data.Dataset` or a `keras.utils.PyDataset`),
    a nondeterministic element order and random ops in parallel stages.

    The audit itself never raises on what it finds; a check that fails to run
    is reported as an ``info`` finding.

    Args:
        model: optional Keras model (or layer) to inspect.
        data: optional input pipeline to inspect.

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
            f"Invalid model: {model!r} (of type {type(model).__name__}). Expected a Keras "
            "model or layer, or None."
        )
    findings: list[Finding] = []
    try:
        gpus = _gpu_devices()
    except Exception as e:  # noqa: BLE001 - the audit reports, it does not raise
        gpus = []
        findings.append(_check_failed("device", e))
    checks = [("process", _check_process, (gpus, model))]
    if model is not None:
        checks.append(("model", _check_model, (model, gpus)))
    if data is not None:
        checks.append(("data", _check_data, (data,)))
    for name, check, args in checks:
        try:
            findings += check(*args)
        except Exception as e:  # noqa: BLE001
            findings.append(_check_failed(name, e))
    return sorted(findings, key=lambda f: _SEVERITY_ORDER[f.severity])


def _check_failed(name: str, error: Exception) -> Finding:
    return Finding(
        "info", "audit-check-failed",
        f"The {name} check could not run ({type(error).__name__}: {error}).",
        "What it looks for was not checked.",
        "Report this with the model and environment that triggered it.",
        subject=name,
    )
