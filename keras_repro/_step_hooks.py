"""Work added to every training step, inside the compiled step, on each backend.

The data fingerprint and the step digests both add work to every training
step without a batch hook or a host sync: `add_step_hook` runs a function
before the model's train step (it sees the batch) or after it (it sees the
variables' new values), and `Cell` objects hold what they compute, on the
device, between steps. How that is done depends on the backend:

- TensorFlow and PyTorch: the model's ``train_step(data)`` is replaced by a
  wrapper that calls the hooks around it; a cell is a TF variable
  (mirrored under a `tf.distribute` strategy) or an int64 torch tensor on
  Keras' device, updated in place (outside torch's autograd).
- JAX: ``train_step(state, data)`` is a pure function inside ``jax.jit``, so
  the cells' arrays travel with the training state: a wrapper of the
  model's train function passes them in as one more element of ``state``
  and takes them out again (Keras never sees them), and a wrapper of
  ``train_step`` gives the hooks the cells' values as traced arrays and
  returns their new values. They stay on the device between steps, also
  with ``steps_per_execution`` > 1. The hooks run inside
  ``jax.enable_x64(True)`` (64-bit integers exist only there). Not covered
  under a `keras.distribution` (Keras sets the sharding of exactly its own
  state) or Flax NNX (Keras calls the class's ``train_step``).

Reading a cell (`Cell.numpy`) is the one host transfer, once per record.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

__all__ = ["Cell", "add_step_hook", "jax_state_variables", "signed", "supported", "x64"]

_JAX_TAP = "_keras_repro_jax_tap"


def signed(value: int) -> int:
    """`value` modulo 2**64, as a signed int64 (how a device holds it)."""
    value &= 2**64 - 1
    return value - 2**64 if value >= 2**63 else value


def supported(model: keras.Model) -> bool:
    """Whether hooks can run in `model`'s train step (see the module docstring for JAX's limits)."""
    backend = keras.backend.backend()
    if backend == "jax":
        nnx = getattr(keras.config, "is_nnx_enabled", lambda: False)()
        return keras.distribution.distribution() is None and not nnx
    return backend in ("tensorflow", "torch")


def x64():
    """JAX's 64-bit mode, for the digests' int64 arithmetic (a no-op on other backends)."""
    if keras.backend.backend() != "jax":
        return contextlib.nullcontext()
    import jax

    return jax.enable_x64(True)


class Cell:
    """An int64 array on the device, updated inside the train step (see the module docstring).

    Args:
        model: the model whose train step updates it.
        value: the initial value (an int or a NumPy array).
        name: its name (of the TF variable).
    """

    def __init__(self, model: keras.Model, value: Any, name: str) -> None:
        self.backend = keras.backend.backend()
        initial = np.asarray(value, np.int64)
        self._traced = None  # JAX: the value inside the train step being run or traced
        if self.backend == "tensorflow":
            import tensorflow as tf

            strategy = getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()
            with strategy.scope():  # mirrored under a strategy: every replica updates it alike
                self._value = tf.Variable(
                    initial, trainable=False, name=name, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA
                )
        elif self.backend == "torch":
            # On Keras' device, where the model's variables and batches are.
            self._value = keras.ops.convert_to_tensor(initial, "int64").clone()
        else:
            self._set_jax(initial)
            _JaxTap.of(model).cells.append(self)

    def _set_jax(self, value: Any) -> None:
        import jax.numpy as jnp

        with x64():
            self._value = jnp.asarray(value, jnp.int64)

    def value(self) -> Any:
        """The value as a tensor (inside the step)."""
        if self.backend == "tensorflow":
            import tensorflow as tf

            return tf.convert_to_tensor(self._value)
        if self.backend == "jax" and self._traced is not None:
            return self._traced
        return self._value

    def assign(self, value: Any) -> None:
        """Sets the value (inside the step, or from the host with an int or a NumPy array)."""
        if self.backend == "tensorflow":
            # assign, not a scatter or assign_add: a mirrored variable takes only
            # assign in a replica context (ONLY_FIRST_REPLICA: replicas write alike).
            self._value.assign(value)
        elif self.backend == "torch":
            import torch

            self._value.copy_(torch.as_tensor(value))
        elif self._traced is not None:
            self._traced = value
        else:
            self._set_jax(np.asarray(value, np.int64))

    def write_row(self, index: Any, row: Any) -> None:
        """Sets row `index` (a scalar int64 tensor) of a 2-D cell to `row` (inside the step)."""
        if self.backend == "tensorflow":
            import tensorflow as tf

            slot = tf.reshape(index, [1, 1])
            self._value.assign(tf.tensor_scatter_nd_update(self._value, slot, tf.reshape(row, [1, -1])))
        elif self.backend == "torch":
            self._value.index_copy_(0, index.reshape(1), row.reshape(1, -1))
        else:
            self._traced = self._traced.at[index].set(row)

    # JAX: the cell's array travels with the training state (module docstring).

    @property
    def array(self) -> Any:
        """JAX: the device array between steps."""
        return self._value

    @array.setter
    def array(self, value: Any) -> None:
        self._value = value

    def enter_step(self, array: Any) -> None:
        """JAX: the step being run or traced starts from `array` (what `value` gives inside it)."""
        self._traced = array

    def leave_step(self) -> Any:
        """JAX: the value the step ends with."""
        array, self._traced = self._traced, None
        return array

    def numpy(self) -> np.ndarray:
        """The value on the host (one read)."""
        if self.backend == "tensorflow":
            return self._value.numpy()
        if self.backend == "torch":
            return self._value.detach().cpu().numpy()
        return np.asarray(self._value)


def add_step_hook(
    model: keras.Model,
    attribute: str,
    state: Any,
    before: Callable[[Any], None] | None = None,
    after: Callable[[Callable[[list], list]], None] | None = None,
) -> None:
    """Runs `before(data)` before each train step of `model` and `after(values_after)` after it.

    Both run inside the step (also a custom ``train_step``), traced with it
    where it is compiled. ``values_after(variables)`` gives the values of
    the model's `variables` after the step (on JAX, from the step's new
    state). `state` is kept in the model's `attribute`, around Keras'
    attribute tracking (it is no part of the model's training state). The
    train function is rebuilt if `fit` made one already.
    """
    object.__setattr__(model, attribute, state)
    if keras.backend.backend() == "jax":
        _JaxTap.of(model).hooks.append((before, after))
    else:
        original = model.train_step

        def train_step(data):
            if before is not None:
                with _no_grad():
                    before(data)
            logs = original(data)
            if after is not None:
                with _no_grad():
                    after(lambda variables: list(variables))
            return logs

        object.__setattr__(model, "train_step", train_step)  # the wrapper is not a layer
    if getattr(model, "train_function", None) is not None:
        model.make_train_function(force=True)


def _no_grad():
    """Outside torch's autograd (the digests are no part of the loss); a no-op elsewhere."""
    if keras.backend.backend() != "torch":
        return contextlib.nullcontext()
    import torch

    return torch.no_grad()


def jax_state_variables(model: keras.Model) -> list[list]:
    """The variables of the four groups of Keras' JAX training state, in its order.

    Trainable, non-trainable, the compiled optimizer's, and metrics
    variables: ``state[g][i]`` of a JAX train step is the value of
    ``jax_state_variables(model)[g][i]``.
    """
    optimizer = getattr(model, "optimizer", None)
    return [
        list(model.trainable_variables),
        list(model.non_trainable_variables),
        list(optimizer.variables) if optimizer is not None else [],
        list(model.metrics_variables),
    ]


class _JaxTap:
    """Threads a JAX model's cells through its train function and runs its hooks (module docstring)."""

    def __init__(self, model: keras.Model) -> None:
        self.model = model
        self.cells: list[Cell] = []
        self.hooks: list[tuple[Callable | None, Callable | None]] = []
        original = model.train_step
        make_train_function = model.make_train_function

        def train_step(state, data):
            if len(state) != 5:  # called by other code than the train function below
                return original(state, data)
            *keras_state, arrays = state
            cells = self.cells[: len(arrays)]
            for cell, array in zip(cells, arrays):
                cell.enter_step(array)
            try:
                with x64():
                    for before, _ in self.hooks:
                        if before is not None:
                            before(data)
                logs, new_state = original(tuple(keras_state), data)
                with x64():
                    for _, after in self.hooks:
                        if after is not None:
                            after(lambda variables: self._values_after(variables, new_state))
            finally:
                arrays = tuple(cell.leave_step() for cell in cells)
            return logs, (*new_state, arrays)

        wrapped: weakref.WeakSet = weakref.WeakSet()  # the train functions this tap made

        def wrap(function):
            if function in wrapped:
                return function

            def train_function(state, iterator):
                cells = list(self.cells)
                logs, state = function((*state, tuple(cell.array for cell in cells)), iterator)
                *keras_state, arrays = state
                for cell, array in zip(cells, arrays):
                    cell.array = array
                return logs, tuple(keras_state)

            wrapped.add(train_function)
            return train_function

        def make(force=False):
            make_train_function(force=force)
            if model.train_function is not None:
                model.train_function = wrap(model.train_function)

        object.__setattr__(model, _JAX_TAP, self)
        object.__setattr__(model, "train_step", train_step)
        object.__setattr__(model, "make_train_function", make)

    @classmethod
    def of(cls, model: keras.Model) -> _JaxTap:
        """`model`'s tap, installed on first use."""
        tap = getattr(model, _JAX_TAP, None)
        return tap if tap is not None else cls(model)

    def _values_after(self, variables: list, state: tuple) -> list:
        groups = jax_state_variables(self.model)
        where = {id(v): (g, i) for g, group in enumerate(groups) for i, v in enumerate(group)}
        values = []
        for variable in variables:
            if id(variable) in where:
                group, index = where[id(variable)]
                values.append(state[group][index])
            else:  # not in the step's state: the step leaves it as it is
                values.append(variable.value)
        return values
