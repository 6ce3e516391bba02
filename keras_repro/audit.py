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
import gc
import os
import random
from typing import Any

import keras
import numpy as np

from keras_repro import _compat, paths
from keras_repro._compat import tensorflow_module
from keras_repro.determinism import (
    DETERMINISTIC_CUBLAS_WORKSPACE,
    JAX_DETERMINISTIC_FLAG,
    START_ONLY_ENV_VARS,
    determinism_enabled,
    tf_global_seed,
    tf_op_determinism_enabled,
    xla_flags_deterministic,
)
from keras_repro.seeding import seeds_global_streams_in_fit
from keras_repro.seeds import derive_seed, get_root_seed, hashseed_set_at_start, initial_environ

__all__ = ["SEVERITIES", "AuditError", "Finding", "audit"]

SEVERITIES = ("error", "warning", "info")
_SEVERITY_ORDER = {s: i for i, s in enumerate(SEVERITIES)}

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


def _backend() -> str:
    """The Keras backend's name."""
    return keras.backend.backend()


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
        findings.append(Finding(
            "warning", "hashseed-unset",
            "PYTHONHASHSEED was not set when this Python process started.",
            "String hashing is randomized per process, so the iteration order of sets "
            "(and of anything built from them) can differ between runs; setting it "
            "inside the program does not change the running interpreter.",
            "Start the program as `PYTHONHASHSEED=0 python train.py`.",
        ))
    # A SeededModel seeds the global streams from its own seed when fit starts.
    if get_root_seed() is None and not seeds_global_streams_in_fit(model):
        other = _keras_seed() is not None or tf_global_seed() is not None
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
            f"Start the program as `CUBLAS_WORKSPACE_CONFIG={DETERMINISTIC_CUBLAS_WORKSPACE} python train.py`.",
            subject="CUBLAS_WORKSPACE_CONFIG",
        ))
    if gpus and backend == "jax" and not xla_flags_deterministic():
        findings.append(Finding(
            "error", "env-missing-at-start",
            f"XLA_FLAGS lacks {JAX_DETERMINISTIC_FLAG} on a GPU machine.",
            "XLA's GPU backend autotunes and uses atomics unless told to be deterministic, "
            "and JAX only reads the flag at start.",
            f"Start the program as `XLA_FLAGS={JAX_DETERMINISTIC_FLAG} python train.py`.",
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


def _generator_owners(layers: dict[str, keras.layers.Layer]) -> dict[int, keras.layers.Layer]:
    """The layer holding each seed generator (by generator id)."""
    owners = {}
    for layer in layers.values():
        for generator in _compat.layer_seed_generators(layer):
            owners.setdefault(id(generator), layer)
    return owners


def _can_draw(layer: keras.layers.Layer) -> bool:
    """False for layers whose configuration never draws from their seed generator.

    Dropout-like layers with ``rate=0``, `GaussianNoise` with ``stddev=0`` and
    RNN cells (`LSTMCell`, `GRUCell`, `SimpleRNNCell`, which always create a
    generator) with ``dropout=0`` and ``recurrent_dropout=0``.
    """
    if hasattr(layer, "recurrent_dropout") and hasattr(layer, "dropout"):
        return bool(layer.dropout) or bool(layer.recurrent_dropout)
    for attribute in ("rate", "stddev"):
        value = getattr(layer, attribute, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value != 0
    return True


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


_SEEDED_DRAWS = 4096  # how far into a seeded stream a generator's seed is looked for


def _drawn_from_seeded_stream(generator: Any, streams: list[int]) -> bool:
    """Whether an unseeded generator's seed is one of the first draws of a seeded stream.

    Keras draws an unseeded generator's seed as ``random.randint(1, 10**9)``
    (as it does an unseeded initializer's). A seed found among the first
    draws of ``random.Random(s)`` for a recorded seeding `s` came from the
    seeded stream (by chance: about 4e-6), so it repeats in every run.
    """
    if not streams:
        return False
    seed = int(keras.ops.convert_to_numpy(generator.state.value)[0])
    for stream in streams:
        replay = random.Random(stream)
        if any(replay.randint(1, int(1e9)) == seed for _ in range(_SEEDED_DRAWS)):
            return True
    return False


def _check_model(model: keras.layers.Layer, gpus: list[str]) -> list[Finding]:
    findings = []
    layers = paths.layer_paths(model)
    owners = _generator_owners(layers)
    seeded_streams = _seeded_python_streams()
    for path, generator in paths.seed_generator_paths(model).items():
        if generator.get_config().get("seed") is not None:
            continue
        owner = owners.get(id(generator))
        if owner is not None and not _can_draw(owner):
            continue  # never drawn from: its seed cannot change a result
        if _drawn_from_seeded_stream(generator, seeded_streams):
            findings.append(Finding(
                "info", "unseeded-seed-generator",
                f"The seed generator {path!r} was created without a seed, after the "
                "global streams were seeded.",
                "Its seed was drawn from Python's `random` after seeding, so it repeats "
                "as long as the program builds the same layers in the same order; adding "
                "or reordering layers before it changes its masks.",
                "Pass seed=... to the layer, or use keras_repro.SeededModel / seed_model "
                "(seeds keyed by layer path).",
                subject=path,
            ))
            continue
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
    if tf_op_determinism_enabled():
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
    return _compat.tf_dataset_graph_def(dataset)


def _const_int(node: Any) -> int | None:
    tensor = node.attr["value"].tensor
    if tensor.int64_val:
        return int(tensor.int64_val[0])
    if tensor.int_val:
        return int(tensor.int_val[0])
    return None


def _check_tf_dataset(dataset: Any) -> list[Finding]:
    findings = []
    determinism = tf_op_determinism_enabled()
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

    findings += _unseeded_data_randomness(graph, nodes, functions, stateful_ops)
    for node in graph.node:
        if not node.op.startswith(_PARALLEL_DATA_OPS):
            continue
        if "deterministic" in node.attr and node.attr["deterministic"].s == b"false":
            findings.append(Finding(
                severity, "data-nondeterministic-order",
                f"The tf.data stage {_stage(node.op)} was created with deterministic=False" + overridden + ".",
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
                f"The parallel tf.data stage {_stage(node.op)} runs a function with stateful "
                f"random or variable ops ({_op_words(ops)}).",
                "Parallel calls draw from the shared RNG state in the order threads get to "
                "it, so each element's random values change from run to run (Keras "
                "augmentation layers included).",
                "Enable op determinism (the stage then runs serially), use stateless random "
                "ops seeded per element, or move the random ops into a separate "
                "sequential map.",
                subject=node.op,
            ))
    return findings


_RANDOM_DATA_OPS = _STATEFUL_DATA_OPS - {"AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp"}

# tf.data graph ops in the words of the tf.data API.
_STAGE_WORDS = (
    ("ParallelMapDataset", "Dataset.map(num_parallel_calls=...)"),
    ("ParallelInterleaveDataset", "Dataset.interleave(num_parallel_calls=...)"),
    ("ParallelFilterDataset", "Dataset.filter(num_parallel_calls=...)"),
    ("ParallelBatchDataset", "Dataset.batch(num_parallel_calls=...)"),
    ("MapAndBatchDataset", "Dataset.map(...).batch(...) (fused)"),
    ("MapDataset", "Dataset.map"),
    ("ShuffleDataset", "Dataset.shuffle"),
)


def _stage(op: str) -> str:
    """A tf.data graph op as the user wrote it: ``Dataset.map(num_parallel_calls=...) [ParallelMapDatasetV2]``."""
    words = next((w for prefix, w in _STAGE_WORDS if op.startswith(prefix)), None)
    return f"{words} [{op}]" if words else op


def _op_words(ops) -> str:
    names = sorted(set(ops))
    shown = ", ".join(names)
    if any(name.startswith("Assign") for name in names):
        shown += "; a variable update is what a Keras random layer's seed generator does"
    return shown


def _unseeded_data_randomness(graph, nodes, functions, stateful_ops) -> list[Finding]:
    """Unseeded `Dataset.shuffle` and random ops, and Keras random layers, in any stage."""
    findings = []
    seeded = _seeded_python_streams()
    layers_seeded = _captured_generators_seeded(graph, nodes, seeded)
    for node in graph.node:
        inputs = [i.split(":")[0] for i in node.input if not i.startswith("^")]
        if node.op.startswith("ShuffleDataset") and len(inputs) >= 4:
            seeds = [nodes.get(i) for i in inputs[2:4]]
            values = [_const_int(n) if n is not None and n.op == "Const" else None for n in seeds]
            if values == [0, 0]:
                findings.append(Finding(
                    "warning", "data-unseeded-shuffle",
                    "The tf.data pipeline shuffles without a seed (Dataset.shuffle with seed=None, "
                    "TensorFlow's global seed unset when it was built).",
                    "Its order is then drawn afresh in every process.",
                    "Pass shuffle(buffer_size, seed=...), seed before building the pipeline "
                    "(keras_repro.seed_everything), or order each epoch with keras_repro.epoch_shuffle.",
                    subject=node.op,
                ))
        ops: set[str] = set()
        for value in node.attr.values():
            if value.func.name:
                ops |= stateful_ops(value.func.name, set())
        random_ops = sorted(ops & _RANDOM_DATA_OPS)
        unseeded = [
            n.op for name in (v.func.name for v in node.attr.values() if v.func.name)
            for n in (functions[name].node_def if name in functions else ())
            if n.op in _RANDOM_DATA_OPS and n.attr["seed"].i == 0 and n.attr["seed2"].i == 0
        ]
        if unseeded:
            findings.append(Finding(
                "warning", "data-unseeded-random",
                f"The tf.data stage {_stage(node.op)} runs random ops without a seed ({_op_words(unseeded)}).",
                "With no op seed and TensorFlow's global seed unset, they draw different values "
                "in every process.",
                "Seed them (seed=...), use stateless random ops with a per-element seed, or seed "
                "before building the pipeline (keras_repro.seed_everything).",
                subject=node.op,
            ))
        elif "AssignVariableOp" in ops and not random_ops and not layers_seeded:
            findings.append(Finding(
                "info" if seeded else "warning", "data-random-layers",
                f"The tf.data stage {_stage(node.op)} updates a variable: a Keras random layer "
                "(augmentation) advancing its seed generator, most likely.",
                "Its values repeat only if the layer's seed is fixed: passed as seed=..., or "
                "drawn after the global streams were seeded" + (" (they were)." if seeded else
                                                               " (no seeding was recorded)."),
                "Create the augmentation layers with seed=keras_repro.derive_seed(root, name).",
                subject=node.op,
            ))
    return findings


def _captured_generators_seeded(graph, nodes, seeded_streams: list[int]) -> bool:
    """Whether every seed generator state the pipeline captured belongs to a seeded generator.

    A Keras random layer used in a `Dataset.map` is captured with its
    generator's state ``[seed, counter]`` as the initial value of a
    variable. The live `SeedGenerator` with that seed tells whether it was
    given a seed (or drew it from a seeded stream). False when a state
    cannot be matched to one.
    """
    captured = []
    for node in graph.node:
        inputs = [i.split(":")[0] for i in node.input if not i.startswith("^")]
        source = nodes.get(inputs[1]) if node.op == "AssignVariableOp" and len(inputs) > 1 else None
        if source is None or source.op != "Const":
            continue
        tensor = source.attr["value"].tensor
        values = list(tensor.int64_val) or list(np.frombuffer(tensor.tensor_content, "<i8"))
        if len(values) == 2:
            captured.append(int(values[0]))
    if not captured:
        return False
    live: dict[int, Any] = {}
    for obj in gc.get_objects():
        if isinstance(obj, keras.random.SeedGenerator):
            live.setdefault(int(keras.ops.convert_to_numpy(obj.state.value)[0]), obj)
    return all(
        seed in live and (
            live[seed].get_config().get("seed") is not None
            or _drawn_from_seeded_stream(live[seed], seeded_streams)
        )
        for seed in captured
    )


def _is_array_data(data: Any) -> bool:
    """Whether `data` is what Keras' array adapter takes: arrays, or a structure of them."""
    tf = tensorflow_module(import_it=False)
    if tf is not None and isinstance(data, tf.data.Dataset):
        return False
    leaves = keras.tree.flatten(data)
    return bool(leaves) and all(hasattr(leaf, "shape") and hasattr(leaf, "dtype") for leaf in leaves)


def _check_array_shuffle(data: Any, model: keras.layers.Layer | None) -> list[Finding]:
    if _backend() != "tensorflow" or tf_global_seed() is not None or seeds_global_streams_in_fit(model):
        return []
    if not _is_array_data(data):
        return []
    return [Finding(
        "warning", "array-shuffle-unseeded",
        "fit(shuffle=True) on in-memory arrays, with TensorFlow's global seed unset.",
        "Keras shuffles arrays with tf.random.shuffle, whose seed comes from TensorFlow's "
        "global seed; unset, it is drawn afresh in every process, so every run trains on "
        "another data order (keras_repro.seed_model seeds the model, not this shuffle).",
        "Seed it before fit (keras_repro.seed_everything(seed), or tf.random.set_seed), or "
        "use a keras_repro.SeededModel, whose fit orders each epoch by "
        "keras_repro.epoch_permutation.",
        subject="fit(shuffle=True)",
    )]


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
            subject=f"{type(data).__name__}(workers={data.workers})",
        )]
    return []


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
        if shuffle is True:
            checks.append(("array shuffle", _check_array_shuffle, (data, model)))
    for name, check, args in checks:
        try:
            findings += check(*args)
        except Exception as e:  # noqa: BLE001
            findings.append(_check_failed(name, e))
    if model is not None:
        findings = _model_seeded_explicitly(findings)
    return sorted(findings, key=lambda f: _SEVERITY_ORDER[f.severity])


def _model_seeded_explicitly(findings: list[Finding]) -> list[Finding]:
    """No root seed, but every initializer and drawable seed generator has its own: only info.

    "Nothing is seeded" is then false; what is left unseeded are the global
    streams, which other findings (data order, ...) name where they matter.
    """
    model_randomness = {"unseeded-initializer", "shared-initializer"}
    if any(f.code in model_randomness or (f.code == "unseeded-seed-generator" and f.severity != "info")
           for f in findings):
        return findings
    return [
        Finding(
            "info", f.code,
            "No root seed was recorded with keras_repro.seed_everything; the model's initializers "
            "and seed generators are seeded explicitly (or never draw).",
            "The global random streams stay unseeded: anything that draws from them (Keras' "
            "array shuffle, keras.random calls without a seed, NumPy in the data pipeline) "
            "differs between runs, and no record of a seed goes into the manifest or trace.",
            f.fix,
            subject=f.subject,
        ) if f.code == "root-seed-unset" else f
        for f in findings
    ]


def _check_failed(name: str, error: Exception) -> Finding:
    return Finding(
        "info", "audit-check-failed",
        f"The {name} check could not run ({type(error).__name__}: {error}).",
        "What it looks for was not checked.",
        "Report this with the model and environment that triggered it.",
        subject=name,
    )
