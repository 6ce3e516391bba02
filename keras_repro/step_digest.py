"""Digests of every training step, computed on the device inside the compiled train step.

Recording a fingerprint after every batch from a callback reads every
variable back to the host each step, and a batch hook turns off Keras'
asynchronous batch dispatch. `StepDigests` instead wraps the model's
``train_step``: after each step, still inside the compiled function (with
or without ``jit_compile``; on a CPU with TensorFlow the digest itself is
compiled with XLA either way, which fuses its passes), the model's variables
are reduced to one 64-bit digest, which is written with the data digest of
`keras_repro.data_fingerprint.DataFingerprint` into a ring buffer in device
memory. `DeterminismCallback(steps=True)` reads the buffer once per record
(at epoch ends), so the steps cost no host sync and no batch hook.

What is digested each step: the model's weights, trainable and not (such as
BatchNorm statistics), in the order of
`keras_repro.fingerprint.tracked_variables`. Not digested: the optimizers'
slot variables (a slot that differs after step k changes the weights it
updates in that same step, so the first differing step is still found) and
seed generator states (a generator that differs but is never drawn from
changes nothing, and one that is drawn from changes the weights of that
step). The exact fingerprints of the host values at fit start, epoch ends
and fit end cover both, as they always did.

The digest, so that it can be checked without keras_repro. Each variable is
viewed as unsigned words of 32 bits (floats of 4 bytes bit-cast; 2-byte
values bit-cast to 16 bits; 8-byte values split into two 32-bit words;
1-byte values and booleans cast, ``int8`` values keeping their sign),
widened to int64 and flattened; its digest
is ``sum(v[i] * w[i])`` modulo 2**64 with ``w[i] = 2*i + 1 + (h(i) << 33)``,
``h(i) = mix(i)`` (`_weights`). Integer addition modulo 2**64 is associative,
so the digest is the same in any reduction order, on any device. A change of
one element always changes it (``w[i]`` is odd and a word difference has
fewer than 32 factors of two); so does swapping two different elements
(``w[j] - w[i]`` has at most 32 factors of two for fewer than 2**32
elements, so the product of the two differences is not a multiple of
2**64); the hashed high part makes other changes that cancel exactly as
unlikely as about 2**-31. Variable digests are chained as
``h = h * P + digest + (k + 1) * n`` (``P = 0x100000001B3``, ``n`` the word
count of variable ``k``).

The same digests are computed on TensorFlow, PyTorch and JAX (see
`keras_repro._step_hooks` for how each backend runs them). Elsewhere
`StepDigests.supported` is False and records carry no step digests.

Example:

```python
import numpy as np
import keras
from keras_repro.step_digest import StepDigests

model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
model.compile("sgd", "mse")
steps = StepDigests(model, capacity=64)
model.fit(np.ones((8, 2)), np.ones((8, 1)), batch_size=4, verbose=0)
read = steps.read()  # the 2 steps since the last read
assert read.first == 0 and len(read.state) == 2
```
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np

from keras_repro import _step_hooks
from keras_repro import _validate
from keras_repro import _words
from keras_repro.data_fingerprint import accumulator_of
from keras_repro.fingerprint import tracked_state

__all__ = ["StepDigests", "StepsRead", "peek_state", "restore_state"]

_PRIME = 0x100000001B3
_ATTRIBUTE = "_keras_repro_step_digests"
_PENDING = "_keras_repro_step_digests_pending"
_DEFAULT_CAPACITY = 4096
_DIGESTED = ("weight", "other")  # the variable kinds of `tracked_state` each step's digest covers
_COLUMNS = 3  # a buffer row: the state digest, the data digest, the training step after the step


def _weights(count: int) -> np.ndarray:
    """The position weights of a variable of `count` words, as int64 (see module docstring)."""
    i = np.arange(count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = i * np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(29)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(32)
        w = np.uint64(2) * i + np.uint64(1) + (h << np.uint64(33))
    return w.view(np.int64)


def state_digest(ops: _words.Ops, values, weights_cache: dict[int, np.ndarray]):
    """The chained digest of `values` (variables or tensors, inside the step); see the module docstring."""
    digest = None
    for k, value in enumerate(values):
        words = ops.unsigned(value)
        count = int(words.shape[0])
        weights = weights_cache.get(count)
        if weights is None:
            weights = weights_cache[count] = _weights(count)
        term = ops.dot(words, ops.weights(weights, words)) + (k + 1) * count
        digest = term if digest is None else digest * _PRIME + term
    return ops.zero() if digest is None else digest


def _step_variables(model: keras.Model) -> tuple[list, list]:
    """The variables each step's digest covers, in order, and the optimizers' step counters (listed when traced)."""
    state = tracked_state(model)
    digested = [v for p, v in state.variables.items() if state.kinds[p] in _DIGESTED]
    return digested, [state.variables[p] for p in state.counters]


@dataclasses.dataclass(frozen=True)
class StepsRead:
    """The step digests written since the previous read.

    Attributes:
        first: the position of the first listed step among the steps
            written since installation (or since a restore from a backup).
        state: per step, the digest of the model's variables after it (16 hex digits).
        data: per step, the data digest after it (16 hex digits), or None
            per step without a data fingerprint.
        lost: steps before `first` that the ring buffer overwrote before
            this read (0 when the capacity sufficed).
        numbers: per step, the model's training step after it (the largest
            step count among its optimizers: a custom ``train_step`` may
            step an optimizer more than once), or None where it has no
            optimizer or the step came from a backup that did not save it.
    """

    first: int
    state: tuple[str, ...]
    data: tuple[str | None, ...]
    lost: int = 0
    numbers: tuple[int | None, ...] = ()

    def to_record(self, iterations: int | None) -> dict[str, Any]:
        """The ``steps`` of a trace record whose training step is `iterations`.

        ``{"first", "state", "data", "lost"}``, the steps numbered by
        training step: ``first``, ``first + 1``, ... , or, where the training
        steps after them do not follow on one by one (an optimizer stepped
        more than once per ``train_step``), also ``"at"``: the training step
        after each. Where the numbers do not tell the steps apart (no
        optimizer; steps restored from an older backup; an idle optimizer
        whose count is ahead of the one training, as a teacher model's in
        distillation), the steps are numbered one by one up to the
        record's training step.
        """
        numbers = list(self.numbers)
        if len(numbers) != len(self.state) or None in numbers or any(a >= b for a, b in zip(numbers, numbers[1:])):
            last = iterations if iterations is not None else self.first + len(self.state)
            numbers = list(range(last - len(self.state) + 1, last + 1))
        steps: dict[str, Any] = {
            "first": numbers[0],
            "state": list(self.state),
            "data": list(self.data),
            "lost": self.lost,
        }
        if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
            steps["at"] = numbers
        return steps


class _Ring:
    """The device buffer of one model's step digests, its step count, and how far the host has read."""

    def __init__(self, model: keras.Model, capacity: int) -> None:
        self.capacity = capacity
        self.read = 0  # steps (by count) the host has read
        # A training step of -1: unknown (no optimizer).
        self.buffer = _step_hooks.Cell(model, np.zeros([capacity, _COLUMNS], np.int64), "keras_repro_step_digests")
        self.count = _step_hooks.Cell(model, 0, "keras_repro_step_count")

    def write(self, row) -> None:
        """Writes the row of one step (inside the step)."""
        count = self.count.value()
        self.buffer.write_row(count % self.capacity, row)
        self.count.assign(count + 1)

    def unread(self) -> tuple[int, list[list[int]]]:
        """(the count of the first unread step still held, the unread rows held, in step order)."""
        count = int(self.count.numpy())
        rows = self.buffer.numpy()
        start = max(self.read, count - self.capacity)
        return start, [[int(v) for v in rows[i % self.capacity]] for i in range(start, count)]

    def load(self, rows: list[list[int]]) -> None:
        """Makes `rows` the unread steps (at a resume), dropping what was there."""
        rows = rows[-self.capacity :]
        values = np.zeros([self.capacity, _COLUMNS], np.int64)
        for i, row in enumerate(rows):  # a backup written before rows held the training step has 2 columns
            values[i] = [*row, -1][:_COLUMNS]
        self.buffer.assign(values)
        self.count.assign(np.int64(len(rows)))
        self.read = 0


class StepDigests:
    """Writes a digest of every training step into a device buffer (see module docstring).

    Installing it wraps ``model.train_step`` (also a custom one) and rebuilds
    the train function if `fit` made one; it stays installed for later `fit`
    calls. A second `StepDigests` of the same model shares the first one's
    buffer. Install a `DataFingerprint` first to have the data digest of each
    step too.

    Args:
        model: a compiled Keras model.
        capacity: steps the buffer holds between two reads; older steps are
            overwritten (and reported as ``lost``).
    """

    def __init__(self, model: keras.Model, capacity: int = _DEFAULT_CAPACITY) -> None:
        self.model = model
        self.capacity = _validate.check_int("capacity", capacity, minimum=1)
        self.supported = _step_hooks.supported(model)
        self._ring: _Ring | None = None
        if not self.supported:
            return
        existing = getattr(model, _ATTRIBUTE, None)
        if existing is not None:
            self._ring = existing
            self.capacity = existing.capacity
            return
        ring = _Ring(model, self.capacity)
        ops = _words.ops()
        cache: dict[int, np.ndarray] = {}
        digest_of = ops.compiled(lambda values: state_digest(ops, values, cache))
        listed: list = [None, [], []]  # [the variable count it was listed for, the variables, the counters]

        def variables() -> tuple[list, list]:
            # Listed when the step is traced, after the step built what it
            # builds; torch runs the step eagerly: listed again only when the
            # model's variables changed.
            if listed[0] != len(model.variables):
                listed[:] = [len(model.variables), *_step_variables(model)]
            return listed[1], listed[2]

        def after(values_after):
            digested, counters = variables()
            values = values_after(digested + counters)
            digest = digest_of(values[: len(digested)])
            accumulator = accumulator_of(model)
            data_digest = ops.zero() if accumulator is None else accumulator.value()
            if counters:
                number = ops.largest([ops.signed(v) for v in values[len(digested) :]])
            else:
                number = ops.zero() - 1
            ring.write(ops.stack([digest, data_digest, number]))

        _step_hooks.add_step_hook(model, _ATTRIBUTE, ring, after=after)
        pending = getattr(model, _PENDING, None)
        if pending is not None:  # restored from a backup before this was installed
            ring.load(pending)
            object.__setattr__(model, _PENDING, None)
        self._ring = ring

    def read(self) -> StepsRead | None:
        """The digests of the steps since the previous read (one read of the buffer); None if unsupported."""
        if self._ring is None:
            return None
        first, rows = self._ring.unread()
        lost = first - self._ring.read
        self._ring.read = first + len(rows)
        with_data = accumulator_of(self.model) is not None
        state = tuple(f"{row[0] % 2**64:016x}" for row in rows)
        data = tuple(f"{row[1] % 2**64:016x}" if with_data else None for row in rows)
        numbers = tuple(None if row[2] < 0 else row[2] for row in rows)
        return StepsRead(first, state, data, lost, numbers)


def peek_state(model: keras.Model) -> list[list[int]] | None:
    """The step digests of `model` not read yet (None without step digests), left as they are.

    `keras_repro.callbacks.ExactBackupAndRestore` saves them, so that a run
    resumed from a backup lists the steps before it in its next record, as
    the run that never stopped does.
    """
    ring = getattr(model, _ATTRIBUTE, None)
    return None if ring is None else ring.unread()[1]


def restore_state(model: keras.Model, rows: list[list[int]] | None) -> None:
    """Makes the rows saved by `peek_state` the unread steps (applied on installation if not yet installed)."""
    if rows is None:
        return
    ring = getattr(model, _ATTRIBUTE, None)
    if ring is None:
        object.__setattr__(model, _PENDING, [list(map(int, row)) for row in rows])
    else:
        ring.load(rows)
