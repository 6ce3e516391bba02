"""Values computed inside a model's train step and kept on the device, on each backend.

The data fingerprint and the step digests both add work to every training
step without a batch hook or a host sync. How that is done depends on the
backend:

- TensorFlow and PyTorch: the model's ``train_step(data)`` is replaced by a
  wrapper (`install_train_step`) that updates `Cell` objects in place: TF
  variables (mirrored under a `tf.distribute` strategy), or torch tensors on
  the model's device.
- JAX: ``train_step(state, data)`` is a pure function inside ``jax.jit``.
  `JaxTap` wraps it to return one more entry in its logs, a device array of
  two int64 values; a wrapper of the train function takes that entry out of
  the logs (nothing downstream sees it) and keeps the array, unread. The
  host reads all kept arrays at once when a digest is asked for, and does
  the chaining there (`JaxTap.drain`). This needs a step per train
  function call, so JAX is covered only with ``steps_per_execution=1``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

__all__ = ["Cell", "JaxTap", "install_train_step", "signed", "supported"]

_JAX_TAP = "_keras_repro_jax_tap"
_LOGS_KEY = "_keras_repro_step_row"
_PRIME = 0x100000001B3


def signed(value: int) -> int:
    """`value` modulo 2**64, as a signed int64 (how a device holds it)."""
    value &= 2**64 - 1
    return value - 2**64 if value >= 2**63 else value


def install_train_step(model: keras.Model, attribute: str, state: Any, train_step: Callable) -> None:
    """Makes `train_step` the model's train step, keeping `state` in `attribute`; rebuilds the train function.

    Both are assigned around Keras' attribute tracking: the state is not
    part of the model's training state, and the wrapper is not a layer.
    """
    object.__setattr__(model, attribute, state)
    object.__setattr__(model, "train_step", train_step)
    if getattr(model, "train_function", None) is not None:  # fit made it already
        model.make_train_function(force=True)


class Cell:
    """An int64 array on the device, updated inside the train step (TF and torch)."""

    def __init__(self, model: keras.Model, value: Any, name: str) -> None:
        self.backend = keras.backend.backend()
        if self.backend == "tensorflow":
            import tensorflow as tf

            strategy = getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()
            with strategy.scope():  # mirrored under a strategy: every replica updates it alike
                self._value = tf.Variable(
                    np.asarray(value, np.int64),
                    trainable=False,
                    name=name,
                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
                )
        else:
            # On Keras' device, where the model's variables and batches are.
            self._value = keras.ops.convert_to_tensor(np.asarray(value, np.int64), "int64").clone()

    def value(self) -> Any:
        """The value as a tensor (inside the step)."""
        if self.backend == "tensorflow":
            import tensorflow as tf

            return tf.convert_to_tensor(self._value)
        return self._value

    def assign(self, value: Any) -> None:
        """Sets the value (inside the step, or from the host with a NumPy array)."""
        if self.backend == "tensorflow":
            # assign, not a scatter or assign_add: a mirrored variable takes only
            # assign in a replica context (ONLY_FIRST_REPLICA: replicas write alike).
            self._value.assign(value)
        else:
            import torch

            self._value.copy_(torch.as_tensor(value))

    def write_row(self, index: Any, row: Any) -> None:
        """Sets row `index` (a scalar int64 tensor) of a 2-D cell to `row` (inside the step)."""
        if self.backend == "tensorflow":
            import tensorflow as tf

            slot = tf.reshape(index, [1, 1])
            self._value.assign(tf.tensor_scatter_nd_update(self._value, slot, tf.reshape(row, [1, -1])))
        else:
            self._value.index_copy_(0, index.reshape(1), row.reshape(1, -1))

    def numpy(self) -> np.ndarray:
        """The value on the host (one read)."""
        if self.backend == "tensorflow":
            return self._value.numpy()
        return self._value.detach().cpu().numpy()


def supported(model: keras.Model) -> bool:
    """Whether `model`'s steps can be recorded: TF, torch, or JAX with one step per train function call."""
    backend = keras.backend.backend()
    if backend == "jax":
        return int(getattr(model, "steps_per_execution", 1) or 1) == 1
    return backend in ("tensorflow", "torch")


class JaxTap:
    """Per-step digests of a JAX model's train step (see module docstring); one per model.

    In the step it computes ``[state, data]``: the digest the step digests
    ask for (`state_digest`, of the variables after the step) and the digest
    of the batch (`batch_digest`), each 0 where nobody asked. `drain` then
    chains the batch digests into `accumulator` (``h = h * P + d``) and
    writes ``[state, accumulator]`` per step into `rows` (the last
    `capacity` of them), counting the steps in `count`.
    """

    def __init__(self, model: keras.Model) -> None:
        self.model = model
        self.batch_digest: Callable | None = None  # (ops, data) -> int64 scalar
        self.state_digest: Callable | None = None  # (ops, values) -> int64 scalar
        self.state_variables: Callable | None = None  # () -> the variables to digest, in order
        self.accumulator = 0
        self.capacity = 0
        self.rows: list[list[int]] = []
        self.count = 0
        self._pending: list = []
        original = model.train_step
        make_train_function = model.make_train_function

        def train_step(state, data):
            logs, state = original(state, data)
            import jax

            from keras_repro import _words

            with jax.enable_x64(True):
                ops = _words.ops("jax")
                values = [ops.zero(), ops.zero()]
                if self.state_digest is not None:
                    values[0] = self.state_digest(ops, self._values_after(state))
                if self.batch_digest is not None:
                    values[1] = self.batch_digest(ops, data)
                logs = {**logs, _LOGS_KEY: ops.jnp.stack(values)}
            return logs, state

        wrapped: weakref.WeakSet = weakref.WeakSet()  # the train functions this tap made

        def wrap(function):
            if function in wrapped:
                return function

            def train_function(state, iterator):
                logs, state = function(state, iterator)
                logs = dict(logs)
                row = logs.pop(_LOGS_KEY, None)
                if row is not None:
                    self._pending.append(row)
                return logs, state

            wrapped.add(train_function)
            return train_function

        def make(force=False):
            make_train_function(force=force)
            if model.train_function is not None:
                model.train_function = wrap(model.train_function)

        object.__setattr__(model, _JAX_TAP, self)
        object.__setattr__(model, "train_step", train_step)
        object.__setattr__(model, "make_train_function", make)
        if getattr(model, "train_function", None) is not None:
            make(force=True)

    @classmethod
    def of(cls, model: keras.Model) -> JaxTap:
        """`model`'s tap, installed on first use."""
        tap = getattr(model, _JAX_TAP, None)
        return tap if tap is not None else cls(model)

    @staticmethod
    def installed(model: keras.Model) -> JaxTap | None:
        return getattr(model, _JAX_TAP, None)

    def retrace(self) -> None:
        """Rebuilds the train function after what the step computes changed."""
        if getattr(self.model, "train_function", None) is not None:
            self.model.make_train_function(force=True)

    def _values_after(self, state) -> list:
        model = self.model
        trainable = {id(v): i for i, v in enumerate(model.trainable_variables)}
        non_trainable = {id(v): i for i, v in enumerate(model.non_trainable_variables)}
        values = []
        for variable in self.state_variables():
            if id(variable) in trainable:
                values.append(state[0][trainable[id(variable)]])
            elif id(variable) in non_trainable:
                values.append(state[1][non_trainable[id(variable)]])
            else:  # not in the step's state: the step leaves it as it is
                values.append(variable.value)
        return values

    def drain(self) -> None:
        """Reads the steps not read yet (one transfer) and folds them into `accumulator`, `rows` and `count`."""
        if not self._pending:
            return
        import jax

        pending, self._pending = self._pending, []
        for state, data in np.asarray(jax.device_get(pending), dtype=np.int64).tolist():
            if self.batch_digest is not None:
                self.accumulator = signed(self.accumulator * _PRIME + data)
            if self.capacity:
                self.rows.append([state, self.accumulator if self.batch_digest is not None else 0])
            self.count += 1
        if self.capacity and len(self.rows) > self.capacity:
            del self.rows[: len(self.rows) - self.capacity]
