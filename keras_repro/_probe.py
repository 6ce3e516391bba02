"""The probe of one training step, inside a run started by `keras_repro.locate`.

The runner (`keras_repro._runner`) installs it when its environment names a
probe file, a fit and a training step ``S``: the steps before ``S`` run
compiled, as in the checked runs; the step that makes the training step
count ``S`` runs eagerly and, before it, the probe records what
`keras_repro.locate` compares (see there), puts back every variable and
global random stream the recording touched, lets the real step run, records
the variables after it, writes the probe file atomically and ends the run
(`ProbeComplete`).

Gradients come from a persistent `tf.GradientTape` on TensorFlow, from
autograd on PyTorch, and on JAX (whose train step is a pure function of its
training state, read here through a `keras.StatelessScope`) from
`jax.value_and_grad` with respect to perturbations of every recorded tensor
(`_jax_forward_backward`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from keras_repro import _files
from keras_repro import paths
from keras_repro.fingerprint import digest_array
from keras_repro.fingerprint import fingerprint_details
from keras_repro.fingerprint import fingerprint_variables
from keras_repro.fingerprint import to_numpy
from keras_repro.fingerprint import tracked_state
from keras_repro.fingerprint import training_step
from keras_repro.seeds import rng_state
from keras_repro.seeds import set_rng_state

__all__ = ["PROBE_FORMAT", "PROBE_VERSION", "ProbeComplete", "install"]

PROBE_FORMAT = "keras_repro.probe"
PROBE_VERSION = 1
# Op types that say nothing about what a layer computes.
_PLUMBING = frozenset({"Placeholder", "NoOp", "Const", "Identity", "ReadVariableOp"})


class ProbeComplete(BaseException):
    """Ends a probe run once its probe is written.

    A `BaseException`, as `SystemExit` is, so that a script's
    ``except Exception`` does not keep the run going.
    """


def _digests(value: Any) -> list[str | None]:
    return [None if leaf is None else digest_array(to_numpy(leaf)) for leaf in keras.tree.flatten(value)]


def _eager(model: keras.Model) -> bool:
    """Whether the model's train step is running eagerly now (and not being traced)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly()
    return bool(model.run_eagerly or not model.jit_compile)  # torch: compiled only with jit_compile


def _pairs(digests: Mapping[str, str]) -> list[list[str]]:
    """``[path, digest]`` pairs in model order (a JSON object's keys would be sorted)."""
    return [[path, digest] for path, digest in digests.items()]


def _uses_keras_train_step(model: keras.Model) -> bool:
    return type(model).train_step is keras.Model.train_step


class _Probe:
    """Probes one training step of one `fit` call (see the module docstring)."""

    def __init__(self, output: str, fit: int, step: int) -> None:
        self.output, self.fit, self.step = output, fit, step
        self.written = False
        self._fits = 0
        self._local = threading.local()

    def completed(self, error: BaseException) -> bool:
        """Whether `error`, which ended the script, is this probe's own end."""
        return isinstance(error, ProbeComplete) and self.written

    def install(self) -> None:
        original = keras.Model.fit
        signature = inspect.signature(original)

        @functools.wraps(original)
        def fit(model, *args, **kwargs):
            if getattr(self._local, "active", False):  # a subclass's fit calling super().fit
                return original(model, *args, **kwargs)
            index, self._fits = self._fits, self._fits + 1
            if index == self.fit and not self.written:
                bound = signature.bind(model, *args, **kwargs)
                bound.arguments["callbacks"] = [*(bound.arguments.get("callbacks") or []), self._prepare(model)]
                args, kwargs = bound.args[1:], bound.kwargs
            self._local.active = True
            try:
                result = original(model, *args, **kwargs)
            finally:
                self._local.active = False
            if self.written:
                raise ProbeComplete(self.output)
            return result

        keras.Model.fit = fit

    def _prepare(self, model: keras.Model) -> keras.callbacks.Callback:
        """Wraps the model's train_step; returns the callback that makes the probed step eager."""
        original = model.train_step
        switch = _EagerAt(self.step)

        def due() -> bool:
            # Compiled steps only trace the wrapper: the probe runs in an eager
            # step that can reach the probed one (a custom train_step may
            # step an optimizer more than once: `switch.stride` per step).
            if self.written or not _eager(model):
                return False
            count = training_step(model)
            return count < self.step <= count + switch.stride

        def reached() -> bool:  # after the step: else the capture is dropped and the next step tried
            return training_step(model) >= self.step

        if keras.backend.backend() == "jax":

            def train_step(state, data):  # pure: the variables' values are in `state`
                with _jax_state_scope(model, state):
                    probe = self._capture(model, data, state) if due() else None
                if probe is None:
                    return original(state, data)
                logs, state = original(state, data)
                with _jax_state_scope(model, state):
                    if reached():
                        self._finish(model, probe)
                return logs, state

        else:

            def train_step(data):
                if not due():
                    return original(data)
                probe = self._capture(model, data)
                logs = original(data)
                if reached():
                    self._finish(model, probe)
                return logs

        # Set around Keras' attribute tracking, as DataFingerprint does.
        object.__setattr__(model, "train_step", train_step)
        if getattr(model, "train_function", None) is not None:  # an earlier fit made it
            model.make_train_function(force=True)
        if model.steps_per_execution != 1 or training_step(model) >= self.step - 1:
            switch.set_eager(model)  # no batch boundary to switch at: eager from the start
        return switch

    def _finish(self, model: keras.Model, probe: dict[str, Any]) -> None:
        """Records the variables after the probed step, writes the probe and stops training."""
        probe["after"] = _pairs(fingerprint_variables(model))
        for call in probe["calls"]:
            call.update(_op_types(call.pop("_layer"), call.pop("_args")))
        _files.write_document(self.output, PROBE_FORMAT, PROBE_VERSION, probe)
        self.written = True
        model.stop_training = True

    def _capture(self, model: keras.Model, data: Any, state: Any = None) -> dict[str, Any]:
        """What the probe records before the step (`state`: JAX's training state, read in its scope)."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        details = fingerprint_details(model)
        probe: dict[str, Any] = {
            "fit": self.fit,
            "step": self.step,
            "data": {"x": _digests(x), "y": _digests(y), "sample_weight": _digests(sample_weight)},
            "before": _pairs(details.variables),
            "generators": [p for p, kind in details.kinds.items() if kind == "seed_generator"],
            "train_step": "keras" if _uses_keras_train_step(model) else type(model).__qualname__ + ".train_step",
            "calls": [],
            "loss": None,
            "gradients": [],
        }
        if probe["train_step"] == "keras":
            saved_rng = rng_state()
            variables = tracked_state(model).variables
            saved = [(v, keras.ops.convert_to_numpy(v.value)) for v in [*variables.values(), *model.metrics_variables]]
            try:
                if state is None:
                    probe.update(_forward_backward(model, x, y, sample_weight))
                else:
                    probe.update(_jax_forward_backward(model, state, x, y, sample_weight))
            finally:  # the real step must compute as it would without the probe
                for variable, value in saved:
                    variable.assign(value)  # on JAX, into the state scope: the step is pure anyway
                set_rng_state(saved_rng)
        return probe


def _jax_state_scope(model: keras.Model, state: Any) -> keras.StatelessScope:
    """A scope in which `model`'s variables read JAX's training `state` (Keras' four groups first)."""
    optimizer = getattr(model, "optimizer", None)
    variables = [
        *model.trainable_variables,
        *model.non_trainable_variables,
        *(optimizer.variables if optimizer is not None else []),
        *model.metrics_variables,
    ]
    values = [value for group in state[:4] for value in group]
    return keras.StatelessScope(state_mapping=list(zip(variables, values)))


class _EagerAt(keras.callbacks.Callback):
    """Makes the model's steps eager (Python, step by step) once the next one can reach training step `step`.

    Steps before it stay compiled, so the probed run reaches the probed step
    in the state the checked runs did (an eager step can round differently
    from a compiled one). `stride` is how far the last step moved the
    training step (1 with Keras' own ``train_step``; more where a custom
    one steps an optimizer several times).
    """

    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step
        self.stride = 1
        self._last: int | None = None

    def set_eager(self, model: keras.Model) -> None:
        model.run_eagerly = True
        if getattr(model, "train_function", None) is not None:
            model.make_train_function(force=True)

    def on_train_begin(self, logs=None):
        self._last = training_step(self.model)

    def on_train_batch_end(self, batch, logs=None):
        count = training_step(self.model)
        if self._last is not None:
            self.stride = max(count - self._last, 1)
        self._last = count
        if self.model.run_eagerly:
            return
        if count >= self.step:  # a compiled step went past it: it cannot be probed in this run
            self.model.stop_training = True
        elif count + self.stride >= self.step:
            self.set_eager(self.model)


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


def _forward_backward(model: keras.Model, x: Any, y: Any, sample_weight: Any) -> dict[str, Any]:
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


def _jax_forward_backward(model: keras.Model, state: Any, x: Any, y: Any, sample_weight: Any) -> dict[str, Any]:
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


def _op_types(layer: keras.layers.Layer, args: Any) -> dict[str, list[str]]:
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


def install(output: str, fit: int, step: int) -> _Probe:
    """Probes training step `step` of fit number `fit` of this process into `output`.

    Returns:
        The installed probe; its `completed(error)` tells whether an
        exception that ended the script is the probe's own end.
    """
    probe = _Probe(output, fit, step)
    probe.install()
    return probe
