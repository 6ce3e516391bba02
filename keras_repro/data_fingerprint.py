"""A fingerprint of the data a model trains on, computed inside the train step.

Two runs can start from the same weights and still see different batches
(an unseeded array shuffle, a parallel `tf.data` map with random ops, a
`PyDataset` whose workers draw from a shared RNG). Comparing the data the
model trained on tells that apart from nondeterministic kernels.

`DataFingerprint` wraps a model's ``train_step``: every batch is reduced, on
the device and inside the compiled step, to a 64-bit digest that is folded
into an accumulator variable. Reading the accumulator (at each trace
record) gives one digest of all batches since the fit began, in order.
Nothing is copied to the host per step and no batch hook is needed.

The digest, so that it can be checked without keras_repro: every leaf of
the batch structure (``tf.nest.flatten(batch, expand_composites=True)`` on
TF, `keras.tree.flatten` elsewhere) is viewed as integers of its own width
(`keras_repro._words.Ops.signed`: floats bit-cast, booleans and integers
cast, strings hashed with `tf.strings.to_hash_bucket_fast`), widened to
int64 and flattened; the leaf digest is ``sum((v[i] + C) * (2 * i + 1))``
modulo 2**64, with ``C = 0x9E3779B97F4A7C15``: a change of one bit in one
element always changes it (the weights are odd), swapping two elements
changes it unless their difference times their distance is a multiple of
2**63, and the sum is the same in any reduction order. Leaf digests are chained with their element
count, ``h = h * P + leaf + (k + 1) * n`` (``P = 0x100000001B3``), and each
batch is chained into the accumulator the same way.

Under a `tf.distribute` strategy (the model's ``distribute_strategy``) each
replica digests its shard, and the shard digests are all-reduced as
``sum((2 * r + 1) * digest_r)`` over replica ids ``r`` before they are
chained, so the accumulator holds one digest of the global batch, the same
on every replica and every worker (it depends on how the batch is split:
compare runs with the same replica count).

The same digest is computed on TensorFlow, PyTorch and JAX (see
`keras_repro._step_hooks` for how each backend runs it). Strings are hashed on TF only; the other backends have no
string tensors. Where it is not supported, `DataFingerprint.supported` is
False and records carry no data digest.

Example:

```python
import numpy as np
import keras
from keras_repro.data_fingerprint import DataFingerprint

model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
model.compile("sgd", "mse")
data = DataFingerprint(model)
model.fit(np.ones((8, 2)), np.ones((8, 1)), verbose=0)
data.read()   # 16 hex digits for the batches trained on so far
```
"""

from __future__ import annotations

import keras

from keras_repro import _step_hooks
from keras_repro import _words

__all__ = ["DataFingerprint", "accumulator_of", "peek_state", "restore_state"]

_MIX = 0x9E3779B97F4A7C15 - 2**64  # as a signed int64
_PRIME = 0x100000001B3
_ATTRIBUTE = "_keras_repro_data_fingerprint"
_PENDING = "_keras_repro_data_fingerprint_pending"


def _global_digest(digest):
    """A shard's digest combined over the replicas in sync (the digest itself with one; TF only)."""
    if keras.backend.backend() != "tensorflow":
        return digest
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync <= 1:
        return digest
    weight = tf.cast(context.replica_id_in_sync_group, tf.int64) * 2 + 1
    return context.all_reduce(tf.distribute.ReduceOp.SUM, digest * weight)


def batch_digest(ops: _words.Ops, data):
    """The digest of one batch (inside the step); see the module docstring."""
    digest = None
    for k, leaf in enumerate(ops.flatten(data)):
        if leaf is None:
            continue
        values = ops.signed(leaf)
        count = ops.size(values)
        # sum((v + C) * (2i + 1)) = sum(v * (2i + 1)) + C * n**2, modulo 2**64: one pass fewer.
        constant = (_MIX * count + k + 1) * count
        if isinstance(constant, int):
            constant = _step_hooks.signed(constant)
        leaf_digest = ops.dot(values, ops.odd_weights(values)) + constant
        digest = leaf_digest if digest is None else digest * _PRIME + leaf_digest
    return ops.zero() if digest is None else digest


class DataFingerprint:
    """Accumulates a digest of every batch a model trains on (see module docstring).

    Installing it wraps ``model.train_step`` (also a custom one) and rebuilds
    the model's train function; it stays installed for later `fit` calls of
    the model, and one model has at most one (a second `DataFingerprint` of
    the same model shares the first one's accumulator).

    Args:
        model: a compiled Keras model.
    """

    def __init__(self, model: keras.Model) -> None:
        self.model = model
        self.supported = _step_hooks.supported(model)
        self._accumulator = None
        if not self.supported:
            return
        existing = getattr(model, _ATTRIBUTE, None)
        if existing is not None:
            self._accumulator = existing
            return
        pending = getattr(model, _PENDING, None)
        object.__setattr__(model, _PENDING, None)
        accumulator = _step_hooks.Cell(model, pending or 0, "keras_repro_data_digest")
        ops = _words.ops()

        def before(data):
            accumulator.assign(accumulator.value() * _PRIME + _global_digest(batch_digest(ops, data)))

        _step_hooks.add_step_hook(model, _ATTRIBUTE, accumulator, before=before)
        self._accumulator = accumulator

    def read(self) -> str | None:
        """The digest of the batches since the last `reset` (16 hex digits).

        One read of the accumulator, which keeps going: two runs that
        trained on the same batches in the same order up to a record have
        the same digest there, and runs whose batches differed have
        different ones (but for a chance of about 2**-64). None where the
        data cannot be fingerprinted (see `supported`).
        """
        if self._accumulator is None:
            return None
        return f"{int(self._accumulator.numpy()) % 2**64:016x}"

    def reset(self) -> None:
        """Restarts the digest (at the start of a `fit`)."""
        if self._accumulator is not None:
            self._accumulator.assign(0)


def accumulator_of(model: keras.Model):
    """The accumulator of `model`'s data fingerprint (with ``numpy()`` and ``assign``), or None when it has none."""
    return getattr(model, _ATTRIBUTE, None)


def peek_state(model: keras.Model) -> int | None:
    """The accumulator of `model`'s data fingerprint (None when it has none), left as it is.

    `keras_repro.callbacks.ExactBackupAndRestore` saves it, so that a run
    resumed in the middle of a record's span reports the same data digest
    as the run that never stopped.
    """
    accumulator = accumulator_of(model)
    return None if accumulator is None else int(accumulator.numpy())


def restore_state(model: keras.Model, value: int | None) -> None:
    """Sets the accumulator saved by `peek_state` (applied on installation if not yet installed)."""
    if value is None:
        return
    accumulator = accumulator_of(model)
    if accumulator is None:
        object.__setattr__(model, _PENDING, int(value))
    else:
        accumulator.assign(int(value))
