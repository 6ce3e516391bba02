"""The forward and backward pass the probe of `keras_repro._probe` records, on each backend.

Every layer call of the model is recorded (`_recorded_calls`), with digests
of its float inputs and outputs and of the loss's gradients with respect to
them and to every trainable variable (`_described`). The gradients come
from a persistent `tf.GradientTape` on TensorFlow (`_TapeGradients`), from
autograd on PyTorch (`_TorchGradients`), and on JAX, which has no tape,
from `jax.value_and_grad` with respect to perturbations of the recorded
tensors (`jax_forward_backward`). `op_types` lists the TF op types of a
layer's call and of its gradient.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

from keras_repro import paths
from keras_repro.fingerprint import digest_array
from keras_repro.fingerprint import to_numpy

__all__ = ["forward_backward", "jax_forward_backward", "op_types"]

# Op types that say nothing about what a layer computes.
_PLUMBING = frozenset({"Placeholder", "NoOp", "Const", "Identity", "ReadVariableOp"})


def _tf_floats(value: Any) -> list[Any]:
    import tensorflow as tf

    return [t for t in tf.nest.flatten(value) if tf.is_tensor(t) and t.dtype.is_floating]


class _TapeGradients:
    """Gradients of the probe's loss on TensorFlow: a persistent tape watching every layer's inputs."""

    floats = staticmethod(_tf_floats)

    def __init__(self) -> None:
        import tensorflow as tf

        self.tf = tf
        self.tape = tf.GradientTape(persistent=True)

    def watch(self, args: tuple, kwargs: dict) -> tuple[tuple, dict, list[Any]]:
        inputs = self.floats((args, kwargs))
        self.tape.watch(inputs)
        return args, kwargs, inputs

    def gradients(self, loss: Any, targets: list[Any]) -> list[Any]:
        return self.tape.gradient(loss, targets, unconnected_gradients=self.tf.UnconnectedGradients.NONE)


class _TorchGradients:
    """Gradients of the probe's loss on PyTorch, by autograd.

    A layer's float inputs that are not part of the graph (the model's
    inputs) are passed to it as copies that require grad, so that the
    gradient with respect to them exists, as a TF tape's watch does.
    """

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.tape = torch.enable_grad()

    def floats(self, value: Any) -> list[Any]:
        torch = self.torch
        return [t for t in keras.tree.flatten(value) if isinstance(t, torch.Tensor) and t.is_floating_point()]

    def watch(self, args: tuple, kwargs: dict) -> tuple[tuple, dict, list[Any]]:
        torch = self.torch

        def tracked(value):
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not value.requires_grad:
                return value.detach().requires_grad_(True)
            return value

        args, kwargs = keras.tree.map_structure(tracked, (args, kwargs))
        return args, kwargs, self.floats((args, kwargs))

    def gradients(self, loss: Any, targets: list[Any]) -> list[Any]:
        connected = [i for i, t in enumerate(targets) if t.requires_grad]
        found = self.torch.autograd.grad(loss, [targets[i] for i in connected], retain_graph=True, allow_unused=True)
        gradients: list[Any] = [None] * len(targets)
        for i, gradient in zip(connected, found):
            gradients[i] = gradient
        return gradients


@contextlib.contextmanager
def _recorded_calls(
    model: keras.Model, inputs_of: Callable[[tuple, dict], tuple], outputs_of: Callable[[Any], tuple]
) -> Iterator[list[dict[str, Any]]]:
    """Records every layer call of `model` while active; yields the records, in call order.

    ``inputs_of(args, kwargs)`` gives the arguments to call the layer with
    and the handles of its float inputs, ``outputs_of(outputs)`` the
    outputs to return and the handles of its float outputs (tensors to
    watch, or JAX's perturbation slots).
    """
    calls: list[dict[str, Any]] = []
    clock = [0]
    replaced: list[tuple[keras.layers.Layer, Any]] = []
    counts: dict[str, int] = {}

    def wrap(path: str, layer: keras.layers.Layer) -> None:
        call = layer.call

        @functools.wraps(call)
        def recorded(*args, **kwargs):
            start, clock[0] = clock[0], clock[0] + 1
            args, kwargs, inputs = inputs_of(args, kwargs)
            outputs, floats = outputs_of(call(*args, **kwargs))
            index = counts.get(path, 0)
            counts[path] = index + 1
            calls.append(
                {
                    "layer": path,
                    "index": index,
                    "class": type(layer).__name__,
                    "start": start,
                    "end": clock[0],
                    "_inputs": inputs,
                    "_outputs": floats,
                    "_layer": layer,
                    "_args": (args, kwargs) if index == 0 else None,
                    "variables": [p for p, v in paths.weight_paths(layer).items() if v.trainable],
                }
            )
            clock[0] += 1
            return outputs

        replaced.append((layer, layer.__dict__.get("call")))
        object.__setattr__(layer, "call", recorded)

    for path, layer in paths.layer_paths(model).items():
        wrap(path, layer)
    try:
        yield calls
    finally:
        for layer, previous in replaced:
            if previous is None:
                object.__delattr__(layer, "call")
            else:
                object.__setattr__(layer, "call", previous)


def _described(
    model: keras.Model,
    calls: list[dict[str, Any]],
    value: Callable[[Any], Any],
    gradients: Callable[[list], list],
    loss: Any,
    weight_gradients: list,
) -> dict[str, Any]:
    """The probe's ``calls``, ``loss`` and ``gradients``: digests of the recorded tensors and their gradients."""

    def digests(tensors) -> list[str | None]:
        return [None if t is None else digest_array(to_numpy(t)) for t in tensors]

    prefix = {id(layer): path for path, layer in paths.layer_paths(model).items()}
    for call in calls:
        inputs, outputs = call.pop("_inputs"), call.pop("_outputs")
        call["inputs"] = digests(value(t) for t in inputs)
        call["outputs"] = digests(value(t) for t in outputs)
        call["input_gradients"] = digests(gradients(inputs))
        call["output_gradients"] = digests(gradients(outputs))
        call["variables"] = [f"{prefix[id(call['_layer'])]}/{p}".lstrip("/") for p in call["variables"]]
    trainable = [p for p, v in paths.weight_paths(model).items() if v.trainable]
    return {
        "calls": calls,
        "loss": digest_array(to_numpy(loss)),
        "gradients": [list(pair) for pair in zip(trainable, digests(weight_gradients))],
    }


def forward_backward(model: keras.Model, x: Any, y: Any, sample_weight: Any) -> dict[str, Any]:
    """TF and torch: the forward pass under a tape recording every layer call, then the gradients."""
    grad = _TapeGradients() if keras.backend.backend() == "tensorflow" else _TorchGradients()
    with grad.tape:
        with _recorded_calls(model, grad.watch, lambda outputs: (outputs, grad.floats(outputs))) as calls:
            takes_training = "training" in inspect.signature(model.call).parameters
            y_pred = model(x, training=True) if takes_training else model(x)
        loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
    weights = [v.value for v in paths.weight_paths(model).values() if v.trainable]
    return _described(
        model, calls, lambda t: t, lambda targets: grad.gradients(loss, targets), loss, grad.gradients(loss, weights)
    )


def jax_forward_backward(model: keras.Model, state: Any, x: Any, y: Any, sample_weight: Any) -> dict[str, Any]:
    """JAX: the loss of Keras' train step, run once to record, then differentiated with perturbations.

    JAX has no tape. The first run records every layer call and the float
    tensors going in and out of it (the slots); the second, under
    `jax.value_and_grad`, adds a perturbation of ``-0.0`` to each slot (the
    exact identity in IEEE arithmetic, also for ``-0.0`` itself) and takes
    the gradient with respect to them. A slot at an output is then what
    TF's tape gives; a slot at an input gives the gradient through that
    call only, which is TF's too unless the tensor also feeds another layer.
    """
    import jax
    import jax.numpy as jnp

    trainable, non_trainable, optimizer_values, metrics_values = state[:4]
    slots: list[Any] = []  # first run: the float tensors, in call order
    feed: list[Any] = []  # second run: their perturbations, in the same order
    cursor = [0]

    def perturbed(structure: Any) -> tuple[Any, list[int]]:
        found: list[int] = []

        def one(t):
            if not (isinstance(t, (jax.Array, np.ndarray)) and jnp.issubdtype(t.dtype, jnp.floating)):
                return t
            found.append(cursor[0])
            cursor[0] += 1
            if feed:
                return t + feed[found[-1]]
            slots.append(t)
            return t

        return keras.tree.map_structure(one, structure), found

    def inputs_of(args: tuple, kwargs: dict) -> tuple[tuple, dict, list[int]]:
        (args, kwargs), found = perturbed((args, kwargs))
        return args, kwargs, found

    def loss_of(weights: list, perturbations: list) -> tuple[Any, Any]:
        feed[:], cursor[0] = perturbations, 0
        loss, aux = model.compute_loss_and_updates(
            weights,
            non_trainable,
            metrics_values,
            x,
            y,
            sample_weight,
            training=True,
            optimizer_variables=optimizer_values,
        )
        return loss, aux[0]  # the loss the optimizer's gradients are of, and the unscaled one

    with _recorded_calls(model, inputs_of, perturbed) as calls:
        _, loss = loss_of(list(trainable), [])
        recorded = list(calls)
        zeros = [jnp.full(t.shape, -0.0, t.dtype) for t in slots]
        _, (weight_gradients, slot_gradients) = jax.value_and_grad(loss_of, argnums=(0, 1), has_aux=True)(
            list(trainable), zeros
        )
    return _described(
        model,
        recorded,
        lambda i: slots[i],
        lambda indices: [slot_gradients[i] for i in indices],
        loss,
        _in_model_order(model, weight_gradients),
    )


def _in_model_order(model: keras.Model, gradients: list) -> list:
    """Gradients listed as `model.trainable_variables` are, in the order of its trainable weight paths."""
    index = {id(v): i for i, v in enumerate(model.trainable_variables)}
    weights = [v for v in paths.weight_paths(model).values() if v.trainable]
    return [gradients[index[id(v)]] if id(v) in index else None for v in weights]


def op_types(layer: keras.layers.Layer, args: Any) -> dict[str, list[str]]:
    """The op types of a layer's call and of its gradient, traced (not run) in `tf.function`s (TF only)."""
    if args is None or keras.backend.backend() != "tensorflow":  # a later call of a shared layer: the first lists them
        return {"op_types": [], "gradient_op_types": []}
    import tensorflow as tf

    call_args, call_kwargs = args

    def forward(a, k):
        return layer(*a, **k)

    def backward(a, k):
        with tf.GradientTape() as tape:
            inputs = _tf_floats((a, k))
            tape.watch(inputs)
            outputs = _tf_floats(layer(*a, **k))
        return tape.gradient(outputs, inputs + list(layer.trainable_variables))

    found = []
    for fn in (forward, backward):
        graph = tf.function(fn, autograph=False).get_concrete_function(call_args, call_kwargs).graph
        found.append({op.type for op in graph.get_operations()} - _PLUMBING)
    return {"op_types": sorted(found[0]), "gradient_op_types": sorted(found[1] - found[0])}
