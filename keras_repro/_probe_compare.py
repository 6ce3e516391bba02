"""Comparing two probes of the same training step: where the runs part (see `keras_repro.locate`)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from keras_repro import _files
from keras_repro._probe import PROBE_FORMAT
from keras_repro._probe import PROBE_VERSION

__all__ = ["NONDETERMINISTIC_OPS", "STAGES", "Location", "compare_probes", "read_probe"]

STAGES = ("data", "forward", "backward", "optimizer", "outside")
_PARTS = ("x", "y", "sample_weight")
_SHOWN = 5
_FIX = "enable op determinism (keras_repro.enable_determinism()) before compile()"
#: Op types whose GPU kernels are nondeterministic unless op determinism is on.
NONDETERMINISTIC_OPS: dict[str, str] = {
    "Conv2DBackpropFilter": "the filter gradient of a convolution",
    "Conv2DBackpropInput": "the input gradient of a convolution",
    "Conv3DBackpropFilterV2": "the filter gradient of a 3D convolution",
    "Conv3DBackpropInputV2": "the input gradient of a 3D convolution",
    "DepthwiseConv2dNativeBackpropFilter": "the filter gradient of a depthwise convolution",
    "DepthwiseConv2dNativeBackpropInput": "the input gradient of a depthwise convolution",
    "BiasAddGrad": "the bias gradient (a reduction over the batch)",
    "UnsortedSegmentSum": "a scatter-add (the gradient of a gather, as in Embedding)",
    "ResourceGather": "a gather whose gradient is a scatter-add (UnsortedSegmentSum), as in Embedding",
    "GatherV2": "a gather whose gradient is a scatter-add (UnsortedSegmentSum)",
    "ResourceScatterAdd": "a scatter-add",
    "TensorScatterAdd": "a scatter-add",
    "ScatterAdd": "a scatter-add",
    "ResizeBilinearGrad": "the gradient of bilinear resizing",
    "ResizeNearestNeighborGrad": "the gradient of nearest-neighbour resizing",
    "CTCLoss": "the CTC loss and its gradient",
    "CTCLossV2": "the CTC loss and its gradient",
    "SparseTensorDenseMatMul": "a sparse-dense matrix product",
}


@dataclasses.dataclass(frozen=True)
class Location:
    """Where a divergence between two runs enters.

    Attributes:
        stage: one of `STAGES`: ``"data"`` (the batch differs),
            ``"forward"`` (a layer's inputs agree and its output differs),
            ``"backward"`` (the gradient arriving at a layer's output agrees
            and the gradient with respect to its inputs or variables
            differs), ``"optimizer"`` (the gradients agree and the updated
            variables differ) or ``"outside"`` (a custom ``train_step``, or
            nothing differs in the probed step: see `message`).
        layer: the layer's stable path (``""`` for the model's own call), or
            None.
        part: for ``"data"``: ``"x"``, ``"y"`` or ``"sample_weight"``.
        variables: the variable paths that differ at that stage (gradients
            for ``"backward"``, new values for ``"optimizer"`` and
            ``"outside"``).
        op_types: the op types inside the layer (with its gradient's for
            ``"backward"``), sorted.
        advice: for op types with known nondeterministic GPU kernels, what
            they are and the fix.
        message: a readable account of all the above.
        step: the training step probed (the step whose record first
            differs), or None when no step was probed.
        fit: the index of the `fit` call it is in, or None.
    """

    stage: str
    layer: str | None
    part: str | None
    variables: tuple[str, ...]
    op_types: tuple[str, ...]
    advice: tuple[str, ...]
    message: str
    step: int | None = None
    fit: int | None = None

    def __str__(self) -> str:
        return self.message


def _names(items: Sequence[str]) -> str:
    items = list(items)
    shown = ", ".join(items[:_SHOWN])
    return shown + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def _advice(op_types: Sequence[str]) -> tuple[str, ...]:
    return tuple(
        f"{op}: {NONDETERMINISTIC_OPS[op]} has nondeterministic GPU kernels; fix: {_FIX}."
        for op in op_types
        if op in NONDETERMINISTIC_OPS
    )


# --------------------------------------------------------------------------- comparing probes


def read_probe(path: _files.PathLike) -> dict[str, Any]:
    """Reads a probe document written by a probe run.

    Raises:
        FileNotFoundError: there is no probe at `path`.
        ValueError: the file is not a probe of a supported version.
    """
    return _files.read_document(path, PROBE_FORMAT, (PROBE_VERSION,))


def _differing(a: Sequence[Sequence[str]], b: Sequence[Sequence[str]]) -> list[str]:
    """The paths whose digests differ between two lists of ``[path, digest]`` pairs, in order."""
    da, db = dict(a), dict(b)
    return [p for p in da if p not in db or db[p] != da[p]] + [p for p in db if p not in da]


def _layer_name(path: str) -> str:
    return "the model's own call" if path == "" else f"layer {path}"


def _call_name(call: Mapping[str, Any]) -> str:
    name = f"{_layer_name(call['layer'])} ({call['class']})"
    return name + (f", call {call['index'] + 1}" if call["index"] else "")


def _innermost(candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The candidate calls that contain no other candidate call (a layer inside a layer)."""
    return [
        c
        for c in candidates
        if not any(o is not c and c["start"] < o["start"] and o["end"] < c["end"] for o in candidates)
    ]


def compare_probes(a: Mapping[str, Any], b: Mapping[str, Any]) -> Location:
    """Where two probes of the same training step first differ (see the module docstring).

    Args:
        a, b: probe documents (`read_probe`) of the same step in two runs.

    Returns:
        A `Location`.

    Raises:
        ValueError: the probes are of different steps.
    """
    if (a["fit"], a["step"]) != (b["fit"], b["step"]):
        raise ValueError(
            f"Cannot compare probes of different steps: fit {a['fit']} step {a['step']} and "
            f"fit {b['fit']} step {b['step']}."
        )
    step, fit = a["step"], a["fit"]
    at = f"training step {step} (fit {fit})"
    where = functools.partial(Location, step=step, fit=fit)
    for part in _PARTS:
        if a["data"][part] != b["data"][part]:
            return where(
                "data",
                None,
                part,
                (),
                (),
                (),
                (
                    f"The batch of {at} differs in its {part}: the data pipeline gives the two runs "
                    "different batches (unseeded shuffling or augmentation, parallel or "
                    "order-dependent loading), before the model sees them."
                ),
            )
    generators = set(a.get("generators", ()))
    before = [p for p in _differing(a["before"], b["before"]) if p not in generators]
    drawn = [p for p in _differing(a["before"], b["before"]) if p in generators]
    if drawn:  # a generator that differed, unused, until this step (an "rng" divergence)
        where = functools.partial(
            _with_note,
            where,
            (
                f" Before this step the seed generators {_names(drawn)} already differ: what is drawn "
                "from them (Dropout masks, noise, augmentation) differs from here on."
            ),
        )
    if before:
        return where(
            "outside",
            None,
            None,
            tuple(before),
            (),
            (),
            (
                f"The variables already differ before {at} in the probe runs ({_names(before)}), "
                "though the recorded runs agreed before it: the step cannot be probed (the runs "
                "differ from run to run in where they first diverge)."
            ),
        )
    after = tuple(_differing(a["after"], b["after"]))
    if a["train_step"] != "keras":
        detail = f"after it, {_names(after)} differ" if after else "the probed step agrees in both runs"
        return where(
            "outside",
            None,
            None,
            after,
            (),
            (),
            (
                f"The model overrides train_step ({a['train_step']}), so the probe cannot look inside "
                f"{at}: the batch agrees and {detail}. Look in the custom train_step (gradients it "
                "computes or changes, random draws, Python state) for the difference."
            ),
        )
    forward = _forward(a, b)
    if forward is not None:
        call, message = forward
        ops = tuple(call["op_types"]) if call else ()
        layer = call["layer"] if call else None
        advice = _advice(ops)
        text = message.replace("{at}", at) + _ops_text(ops, advice)
        return where("forward", layer, None, (), ops, advice, text)
    backward = _backward(a, b)
    if backward is not None:
        call, variables, message = backward
        ops = tuple(sorted({*call["op_types"], *call["gradient_op_types"]})) if call else ()
        advice = _advice(ops)
        layer = call["layer"] if call else None
        text = message.replace("{at}", at) + _ops_text(ops, advice)
        return where("backward", layer, None, variables, ops, advice, text)
    if after:
        return where(
            "optimizer",
            None,
            None,
            after,
            (),
            (),
            (
                f"At {at} the batch, every layer's output, the loss and every gradient agree, and the "
                f"updated variables differ ({_names(after)}): the optimizer update (or a constraint or "
                "another update applied in the step) is not deterministic."
            ),
        )
    return where(
        "outside",
        None,
        None,
        (),
        (),
        (),
        (
            f"Nothing differs in the probe of {at}: the batch, every layer's output, the loss, the "
            "gradients and the updated variables agree in both probe runs. The difference did not "
            "show up again here (it is intermittent, e.g. a race in a kernel or the input pipeline, "
            "or depends on running compiled rather than eagerly); the recorded divergence names the "
            "variables that differed."
        ),
    )


def _with_note(make: Callable[..., Location], note: str, *args: Any) -> Location:
    location = make(*args)
    return dataclasses.replace(location, message=location.message + note)


def _ops_text(ops: Sequence[str], advice: Sequence[str]) -> str:
    text = f" Op types in it: {', '.join(ops)}." if ops else ""
    return text + "".join(f" {a}" for a in advice)


def _same_calls(a: Mapping[str, Any], b: Mapping[str, Any]) -> str | None:
    la = [(c["layer"], c["index"]) for c in a["calls"]]
    lb = [(c["layer"], c["index"]) for c in b["calls"]]
    if la == lb:
        return None
    for i, (x, y) in enumerate(zip(la, lb)):
        if x != y:
            return f"call {i + 1} is {_layer_name(x[0])} in one run and {_layer_name(y[0])} in the other"
    return f"one run made {len(la)} layer calls, the other {len(lb)}"


def _forward(a, b):
    differs = _same_calls(a, b)
    if differs is not None:
        return None, (
            f"At {{at}} the layers ran differently in the two runs ({differs}): control flow in "
            "the model depends on something that differs."
        )
    candidates = [
        ca for ca, cb in zip(a["calls"], b["calls"]) if ca["inputs"] == cb["inputs"] and ca["outputs"] != cb["outputs"]
    ]
    if candidates:
        call = min(_innermost(candidates), key=lambda c: c["end"])
        return call, (
            f"At {{at}} the forward pass of {_call_name(call)} differs: its inputs agree in both "
            "runs and its output does not."
        )
    if a["loss"] != b["loss"]:
        return None, (
            "At {at} every layer's output agrees and the loss differs: the loss computation "
            "(or a loss added with add_loss) is not deterministic."
        )
    return None


def _backward(a, b):
    differing = _differing(a["gradients"], b["gradients"])
    candidates: list[tuple[dict, list[str], bool]] = []
    for ca, cb in zip(a["calls"], b["calls"]):
        if ca["output_gradients"] != cb["output_gradients"]:
            continue
        own = [p for p in ca["variables"] if p in differing]
        inputs_differ = ca["input_gradients"] != cb["input_gradients"]
        if inputs_differ or own:
            candidates.append((ca, own, inputs_differ))
    if candidates:
        inner = _innermost([c for c, _, _ in candidates])
        call = max(inner, key=lambda c: c["end"])  # the first one reached going backward
        _, own, inputs_differ = next(c for c in candidates if c[0] is call)
        parts = ["the gradient with respect to its inputs"] if inputs_differ else []
        if own:
            parts.append(f"the gradients of its variables ({_names(own)})")
        return (
            call,
            tuple(own),
            (
                f"At {{at}} every layer's output and the loss agree, and the backward pass of "
                f"{_call_name(call)} differs: the gradient arriving at its output agrees in both runs, "
                f"{' and '.join(parts)} {'differ' if len(parts) > 1 or own else 'differs'}."
            ),
        )
    if differing:
        return (
            None,
            tuple(differing),
            (
                f"At {{at}} every layer's output and the loss agree and the gradients of "
                f"{_names(differing)} differ, outside any recorded layer's backward pass."
            ),
        )
    return None


# --------------------------------------------------------------------------- running
