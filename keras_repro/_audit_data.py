"""Audit checks of the input pipeline: tf.data graphs, PyDataset workers, Keras' array shuffle."""

from __future__ import annotations

import gc
from typing import Any

import keras
import numpy as np

from keras_repro import _compat
from keras_repro._audit_base import AuditContext
from keras_repro._audit_base import Finding
from keras_repro._audit_base import drawn_from_seeded_stream

__all__ = ["check_array_shuffle", "check_data"]

# Ops (in tf.data functions) that draw from a stateful RNG or a variable, so
# that running the function in parallel makes the draws depend on scheduling.
_STATEFUL_DATA_OPS = frozenset(
    {
        "RandomUniform",
        "RandomUniformInt",
        "RandomStandardNormal",
        "TruncatedNormal",
        "RandomShuffle",
        "Multinomial",
        "RandomGamma",
        "RandomGammaGrad",
        "RandomPoisson",
        "RandomPoissonV2",
        "ParameterizedTruncatedNormal",
        "RandomCrop",
        "StatefulUniform",
        "StatefulUniformInt",
        "StatefulUniformFullInt",
        "StatefulStandardNormal",
        "StatefulStandardNormalV2",
        "StatefulTruncatedNormal",
        "StatefulRandomBinomial",
        "RngReadAndSkip",
        "RngSkip",
        "AssignVariableOp",
        "AssignAddVariableOp",
        "AssignSubVariableOp",
    }
)
_PARALLEL_DATA_OPS = (
    "ParallelMapDataset",
    "ParallelInterleaveDataset",
    "MapAndBatchDataset",
    "ParallelFilterDataset",
    "ParallelBatchDataset",
)


def _dataset_graph(dataset: Any):
    return _compat.tf_dataset_graph_def(dataset)


def _const_int(node: Any) -> int | None:
    tensor = node.attr["value"].tensor
    if tensor.int64_val:
        return int(tensor.int64_val[0])
    if tensor.int_val:
        return int(tensor.int_val[0])
    return None


def _check_tf_dataset(dataset: Any, context: AuditContext) -> list[Finding]:
    findings = []
    determinism = context.op_determinism
    severity = "info" if determinism else "warning"
    overridden = " (op determinism is on, which overrides it)" if determinism else ""
    if dataset.options().deterministic is False:
        findings.append(
            Finding(
                severity,
                "data-nondeterministic-order",
                "The tf.data pipeline has options().deterministic=False" + overridden + ".",
                "Parallel stages may then hand out elements in the order they finish, which changes from run to run.",
                "Remove the option (or set it to True), or enable op determinism.",
            )
        )
    try:
        graph = _dataset_graph(dataset)
    except Exception as e:  # noqa: BLE001
        findings.append(
            Finding(
                "info",
                "data-not-inspected",
                f"The tf.data pipeline's graph could not be inspected ({type(e).__name__}: {e}).",
                "Per-stage deterministic=False settings and random ops in parallel maps were not checked.",
                "Check the pipeline by hand: no deterministic=False, no random ops in "
                "parallel map functions unless op determinism is on.",
            )
        )
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

    findings += _unseeded_data_randomness(graph, nodes, functions, stateful_ops, context)
    for node in graph.node:
        if not node.op.startswith(_PARALLEL_DATA_OPS):
            continue
        if "deterministic" in node.attr and node.attr["deterministic"].s == b"false":
            findings.append(
                Finding(
                    severity,
                    "data-nondeterministic-order",
                    f"The tf.data stage {_stage(node.op)} was created with deterministic=False" + overridden + ".",
                    "It hands out elements in the order its parallel calls finish.",
                    "Drop deterministic=False from the map/interleave/batch call, or enable op determinism.",
                    subject=node.op,
                )
            )
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
            findings.append(
                Finding(
                    "warning",
                    "data-parallel-random",
                    f"The parallel tf.data stage {_stage(node.op)} runs a function with stateful "
                    f"random or variable ops ({_op_words(ops)}).",
                    "Parallel calls draw from the shared RNG state in the order threads get to "
                    "it, so each element's random values change from run to run (Keras "
                    "augmentation layers included).",
                    "Enable op determinism (the stage then runs serially), use stateless random "
                    "ops seeded per element, or move the random ops into a separate "
                    "sequential map.",
                    subject=node.op,
                )
            )
    return findings


_RANDOM_DATA_OPS = _STATEFUL_DATA_OPS - {"AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp"}
# Ops of a `tf.random.Generator`: they have no seed attributes; the state is
# the generator's, seeded (or not) when it was created.
_GENERATOR_OPS = frozenset(op for op in _RANDOM_DATA_OPS if op.startswith(("Stateful", "Rng")))

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


def _unseeded_data_randomness(graph, nodes, functions, stateful_ops, context: AuditContext) -> list[Finding]:
    """Unseeded `Dataset.shuffle` and random ops, and Keras random layers, in any stage."""
    findings = []
    seeded = context.seeded_streams
    layers_seeded = _captured_generators_seeded(graph, nodes, seeded)
    for node in graph.node:
        inputs = [i.split(":")[0] for i in node.input if not i.startswith("^")]
        if node.op.startswith("ShuffleDataset") and len(inputs) >= 4:
            seeds = [nodes.get(i) for i in inputs[2:4]]
            values = [_const_int(n) if n is not None and n.op == "Const" else None for n in seeds]
            if values == [0, 0]:
                findings.append(
                    Finding(
                        "warning",
                        "data-unseeded-shuffle",
                        "The tf.data pipeline shuffles without a seed (Dataset.shuffle with seed=None, "
                        "TensorFlow's global seed unset when it was built).",
                        "Its order is then drawn afresh in every process.",
                        "Pass shuffle(buffer_size, seed=...), seed before building the pipeline "
                        "(keras_repro.seed_everything), or order each epoch with keras_repro.epoch_shuffle.",
                        subject=node.op,
                    )
                )
        ops: set[str] = set()
        for value in node.attr.values():
            if value.func.name:
                ops |= stateful_ops(value.func.name, set())
        random_ops = sorted(ops & _RANDOM_DATA_OPS)
        called = [
            n
            for name in (v.func.name for v in node.attr.values() if v.func.name)
            for n in (functions[name].node_def if name in functions else ())
        ]
        unseeded = [
            n.op
            for n in called
            if n.op in _RANDOM_DATA_OPS
            and n.op not in _GENERATOR_OPS
            and n.attr["seed"].i == 0
            and n.attr["seed2"].i == 0
        ]
        generator_ops = sorted({n.op for n in called if n.op in _GENERATOR_OPS})
        if generator_ops:
            findings.append(
                Finding(
                    "warning",
                    "data-random-generator",
                    f"The tf.data stage {_stage(node.op)} draws from a tf.random.Generator "
                    f"({', '.join(generator_ops)}).",
                    "Its values repeat only if the generator was created from a seed "
                    "(tf.random.Generator.from_seed); one made with from_non_deterministic_state "
                    "differs in every process, whatever else was seeded.",
                    "Create it with tf.random.Generator.from_seed(keras_repro.derive_seed(root, name)), "
                    "or use stateless random ops with a per-element seed.",
                    subject=node.op,
                )
            )
        if unseeded:
            findings.append(
                Finding(
                    "warning",
                    "data-unseeded-random",
                    f"The tf.data stage {_stage(node.op)} runs random ops without a seed ({_op_words(unseeded)}).",
                    "With no op seed and TensorFlow's global seed unset, they draw different values in every process.",
                    "Seed them (seed=...), use stateless random ops with a per-element seed, or seed "
                    "before building the pipeline (keras_repro.seed_everything).",
                    subject=node.op,
                )
            )
        elif "AssignVariableOp" in ops and not random_ops and not layers_seeded:
            findings.append(
                Finding(
                    "info" if seeded else "warning",
                    "data-random-layers",
                    f"The tf.data stage {_stage(node.op)} updates a variable: a Keras random layer "
                    "(augmentation) advancing its seed generator, most likely.",
                    "Its values repeat only if the layer's seed is fixed: passed as seed=..., or "
                    "drawn after the global streams were seeded"
                    + (" (they were)." if seeded else " (no seeding was recorded)."),
                    "Create the augmentation layers with seed=keras_repro.derive_seed(root, name).",
                    subject=node.op,
                )
            )
    return findings


def _captured_generators_seeded(graph, nodes, seeded_streams: tuple[int, ...]) -> bool:
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
        seed in live
        and (live[seed].get_config().get("seed") is not None or drawn_from_seeded_stream(live[seed], seeded_streams))
        for seed in captured
    )


def _is_array_data(data: Any) -> bool:
    """Whether `data` is what Keras' array adapter takes: arrays, or a structure of them."""
    tf = _compat.tensorflow_module(import_it=False)
    if tf is not None and isinstance(data, tf.data.Dataset):
        return False
    leaves = keras.tree.flatten(data)
    return bool(leaves) and all(hasattr(leaf, "shape") and hasattr(leaf, "dtype") for leaf in leaves)


def check_array_shuffle(data: Any, context: AuditContext) -> list[Finding]:
    """A finding when `fit(shuffle=True)` on arrays would shuffle under an unset TF seed."""
    if context.backend != "tensorflow" or context.tf_seed_set or context.seeds_in_fit:
        return []
    if not _is_array_data(data):
        return []
    return [
        Finding(
            "warning",
            "array-shuffle-unseeded",
            "fit(shuffle=True) on in-memory arrays, with TensorFlow's global seed unset.",
            "Keras shuffles arrays with tf.random.shuffle, whose seed comes from TensorFlow's "
            "global seed; unset, it is drawn afresh in every process, so every run trains on "
            "another data order (keras_repro.seed_model seeds the model, not this shuffle).",
            "Seed it before fit (keras_repro.seed_everything(seed), or tf.random.set_seed), or "
            "use a keras_repro.SeededModel, whose fit orders each epoch by "
            "keras_repro.epoch_permutation.",
            subject="fit(shuffle=True)",
        )
    ]


def check_data(data: Any, context: AuditContext) -> list[Finding]:
    """Findings about an input pipeline: a `tf.data.Dataset` or a `keras.utils.PyDataset`."""
    tf = _compat.tensorflow_module(import_it=False)
    if tf is not None and isinstance(data, tf.data.Dataset):
        return _check_tf_dataset(data, context)
    if isinstance(data, keras.utils.PyDataset) and getattr(data, "workers", 1) > 1:
        return [
            Finding(
                "warning",
                "data-parallel-random",
                f"The PyDataset runs {data.workers} workers.",
                "Batches come back in order, but if __getitem__ draws from a shared random "
                "generator (Python, NumPy global), which worker draws first changes from "
                "run to run.",
                "Draw per-batch randomness from a generator seeded with "
                "keras_repro.derive_seed(root, 'batch', index), or use workers=1.",
                subject=f"{type(data).__name__}(workers={data.workers})",
            )
        ]
    return []
