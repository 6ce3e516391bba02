"""Audit checks of a model: seed generators, initializers, GPU kernels, XLA."""

from __future__ import annotations

from typing import Any

import keras

from keras_repro import _compat
from keras_repro import paths
from keras_repro._audit_base import AuditContext
from keras_repro._audit_base import Finding
from keras_repro._audit_base import drawn_from_seeded_stream

__all__ = ["check_model"]


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


def check_model(model: keras.layers.Layer, context: AuditContext) -> list[Finding]:
    """Findings about `model`'s own randomness and kernels."""
    findings = []
    layers = paths.layer_paths(model)
    owners = _generator_owners(layers)
    for path, generator in paths.seed_generator_paths(model).items():
        if generator.get_config().get("seed") is not None:
            continue
        owner = owners.get(id(generator))
        if owner is not None and not _can_draw(owner):
            continue  # never drawn from: its seed cannot change a result
        if drawn_from_seeded_stream(generator, context.seeded_streams):
            findings.append(
                Finding(
                    "info",
                    "unseeded-seed-generator",
                    f"The seed generator {path!r} was created without a seed, after the global streams were seeded.",
                    "Its seed was drawn from Python's `random` after seeding, so it repeats "
                    "as long as the program builds the same layers in the same order; adding "
                    "or reordering layers before it changes its masks.",
                    "Pass seed=... to the layer, or use keras_repro.SeededModel / seed_model "
                    "(seeds keyed by layer path).",
                    subject=path,
                )
            )
            continue
        findings.append(
            Finding(
                "warning",
                "unseeded-seed-generator",
                f"The seed generator {path!r} was created without a seed.",
                "Its seed was drawn from Python's `random` when the layer was built, so "
                "it depends on everything constructed or drawn before it; its masks "
                "change when layers are added, reordered or built in another order.",
                "Pass seed=... to the layer (e.g. Dropout(0.5, seed=keras_repro."
                "derive_seed(root, path))), or use keras_repro.SeededModel / seed_model.",
                subject=path,
            )
        )
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
            findings.append(
                Finding(
                    "warning",
                    "shared-initializer",
                    f"One {type(instances[key]).__name__} instance is used by {len(wheres)} "
                    f"weights: {', '.join(wheres)}.",
                    "An initializer instance with an int seed (or none, drawn once at its "
                    "construction) produces the same values on every call, so weights of the "
                    "same shape start identical, silently.",
                    "Give each layer its own initializer: a string name, or "
                    "keras_repro.initializers.SeededInitializers(seed) which hands out a fresh, "
                    "distinctly seeded one per call.",
                    subject=wheres[0],
                )
            )
    if unseeded:
        shown = ", ".join(unseeded[:5]) + (f" and {len(unseeded) - 5} more" if len(unseeded) > 5 else "")
        findings.append(
            Finding(
                "info",
                "unseeded-initializer",
                f"{len(unseeded)} random initializers have no seed: {shown}.",
                "Their seeds were drawn from Python's `random` at construction: reproducible "
                "only if the model is built in the same order after the same seeding, and "
                "they change when a layer is inserted before them.",
                "Use keras_repro.initializers factories with a key per weight, or "
                "keras_repro.SeededModel / seed_model.",
                subject=unseeded[0],
            )
        )
    if context.gpus:
        findings += _check_gpu_kernels(layers, context)
    findings += _check_jit(model, context)
    return findings


def _check_gpu_kernels(layers: dict[str, keras.layers.Layer], context: AuditContext) -> list[Finding]:
    """Layers whose TF GPU kernels have no deterministic implementation (known cases)."""
    if context.backend != "tensorflow":
        return []
    findings = []
    for path, layer in layers.items():
        if isinstance(layer, keras.layers.Resizing) and getattr(layer, "interpolation", None) == "nearest":
            findings.append(
                Finding(
                    "warning",
                    "gpu-no-deterministic-kernel",
                    f"Layer {path!r} resizes with 'nearest' interpolation on a GPU machine.",
                    "TensorFlow has no deterministic GPU kernel for its gradient "
                    "(ResizeNearestNeighborGrad): with op determinism on, training raises "
                    "UnimplementedError when a gradient flows through it; with it off, the "
                    "gradient is nondeterministic.",
                    "Use interpolation='bilinear', or keras.layers.UpSampling2D "
                    "(nearest upsampling by repetition), or keep the layer before any "
                    "trainable layer.",
                    subject=path,
                )
            )
    return findings


def _check_jit(model: keras.layers.Layer, context: AuditContext) -> list[Finding]:
    if context.backend not in ("tensorflow", "torch") or not getattr(model, "compiled", False):
        return []
    jit = getattr(model, "jit_compile", False)
    if jit is not True:
        return []
    if context.backend == "torch":
        return _check_torch_compile(context)
    if context.op_determinism:
        return [
            Finding(
                "warning",
                "jit-compile",
                "The model was compiled with jit_compile=True before op determinism was turned on.",
                "Keras turns XLA off (jit_compile=False) when op determinism is already on at "
                "compile(), but not when it is turned on later: a run that enables determinism "
                "before compile() runs different kernels and differs in the last bits. "
                "DeterminismCallback applies Keras' rule at fit start.",
                "Call keras_repro.enable_determinism() before compile(), or compile with jit_compile=False.",
            )
        ]
    if context.gpus:
        return [
            Finding(
                "error",
                "jit-compile",
                "The model runs with XLA (jit_compile=True) on a GPU without op determinism.",
                "XLA's GPU backend autotunes and may use atomic reductions (e.g. in scatter), "
                "whose order changes from run to run.",
                "Call keras_repro.enable_determinism() before compile() (Keras then turns XLA "
                "off), or compile with jit_compile=False.",
            )
        ]
    return [
        Finding(
            "info",
            "jit-compile",
            "The model runs with XLA (jit_compile=True) on CPU.",
            "XLA on CPU repeats itself, but its fused kernels round differently from the "
            "non-XLA ones, and Keras turns XLA off when op determinism is on at compile(): "
            "runs that differ in either setting differ in the last bits.",
            "Keep jit_compile and the moment determinism is enabled the same in every run "
            "(simplest: enable_determinism() before compile()).",
        )
    ]


def _check_torch_compile(context: AuditContext) -> list[Finding]:
    """jit_compile=True on the torch backend: Keras runs the train step through torch.compile."""
    from keras_repro.determinism import determinism_enabled

    if context.gpus and not determinism_enabled():
        return [
            Finding(
                "warning",
                "torch-compile",
                "The model runs with torch.compile (jit_compile=True) on a GPU without deterministic algorithms.",
                "Inductor tunes its generated kernels at compile time by timing them on the GPU, so "
                "two runs can pick different kernels; torch.use_deterministic_algorithms(True) turns "
                "Inductor's deterministic mode on, which skips that tuning (pytorch/pytorch#165950).",
                "Call keras_repro.enable_determinism() before the first fit, or compile with jit_compile=False.",
            )
        ]
    return [
        Finding(
            "info",
            "torch-compile",
            "The model runs with torch.compile (jit_compile=True).",
            "Inductor's generated kernels round differently from the eager ones (measured on CPU: "
            "other weights after two epochs of an MLP, the same in two compiled runs): runs that "
            "differ in jit_compile differ in the last bits.",
            "Keep jit_compile the same in every run.",
        )
    ]
