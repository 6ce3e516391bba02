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
(`keras_repro._probe_pass`).
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Mapping
from typing import Any

import keras

from keras_repro import _files
from keras_repro import _probe_pass
from keras_repro import _step_hooks
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
            call.update(_probe_pass.op_types(call.pop("_layer"), call.pop("_args")))
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
                    probe.update(_probe_pass.forward_backward(model, x, y, sample_weight))
                else:
                    probe.update(_probe_pass.jax_forward_backward(model, state, x, y, sample_weight))
            finally:  # the real step must compute as it would without the probe
                for variable, value in saved:
                    variable.assign(value)  # on JAX, into the state scope: the step is pure anyway
                set_rng_state(saved_rng)
        return probe


def _jax_state_scope(model: keras.Model, state: Any) -> keras.StatelessScope:
    """A scope in which `model`'s variables read JAX's training `state` (Keras' four groups first)."""
    variables = [v for group in _step_hooks.jax_state_variables(model) for v in group]
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


def install(output: str, fit: int, step: int) -> _Probe:
    """Probes training step `step` of fit number `fit` of this process into `output`.

    Returns:
        The installed probe; its `completed(error)` tells whether an
        exception that ended the script is the probe's own end.
    """
    probe = _Probe(output, fit, step)
    probe.install()
    return probe
