"""Data-parallel training: a random stream per replica, and replicas checked to agree.

Under `tf.distribute.MirroredStrategy` or `MultiWorkerMirroredStrategy` each
replica runs the model on its shard of the global batch. A Keras
`SeedGenerator` is one mirrored variable, so every replica's Dropout (or
noise, or augmentation layer) draws from the same state and, without help,
draws the same mask for its shard: half the randomness of a single device
running the same global batch (keras-team/keras#20612). `key_by_replica`
makes a generator hand each replica its own seed, keyed by its replica id
in the sync group, while the generator's state advances identically on
every replica; `keras_repro.seed_model` and `SeededModel` do it for every
generator they seed. The streams are then keyed by (seed, generator path,
replica id): reproducible across processes for the same replica count, and
different for another replica count (a replica's shard is another slice of
the batch then, too). Outside a strategy, or with one replica, nothing
changes: the draws are those of the single-device model, and so are the
initial weights, bit for bit.

On JAX, `keras.distribution.DataParallel` runs one program over the global
batch (the arrays are sharded, the computation is not split by hand), so
each row gets its own mask already; nothing is keyed.

`replica_disagreement` compares each replica's copy of every mirrored
variable (on JAX, each device's copy of every replicated array);
`keras_repro.DeterminismCallback` runs it at every record.

Example:

```python
import keras
import keras_repro as kr
from keras_repro.distribute import is_replica_keyed

inputs = keras.Input((4,))
drop = keras.layers.Dropout(0.5)
model = kr.SeededModel(inputs, drop(inputs), seed=1)
assert is_replica_keyed(drop.seed_generator)
```
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from keras_repro import _compat
from keras_repro import _validate
from keras_repro.fingerprint import digest_array

__all__ = ["is_replica_keyed", "key_by_replica", "replica_disagreement"]

_KEYED = "_keras_repro_replica_keyed"
# Odd 31-bit multiplier: distinct replica ids give distinct keys, spread over the seed.
_REPLICA_KEY = 0x5851F42D


def _replica_seed(seed: Any) -> Any:
    """`seed` ([seed, counter]) keyed by the replica id, inside a replica of several."""
    tf = _compat.tensorflow_module(import_it=False)
    if tf is None:
        return seed
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync <= 1:
        return seed
    replica = tf.cast(context.replica_id_in_sync_group, seed.dtype)
    key = tf.math.floormod(replica * _REPLICA_KEY, 2**31)
    return tf.stack([tf.bitwise.bitwise_xor(seed[0], key), seed[1]])


def key_by_replica(generator: Any) -> Any:
    """Makes a `keras.random.SeedGenerator` draw a different seed on each replica.

    The generator's state is unchanged and advances the same on every
    replica; what `next()` returns is keyed by the replica id when it runs
    inside a replica of a `tf.distribute` strategy with several replicas.
    Replica 0 draws what the unkeyed generator draws. On backends other than
    TensorFlow the generator is left as it is (see the module docstring).
    Calling it twice is harmless.

    Args:
        generator: a `keras.random.SeedGenerator`.

    Returns:
        The generator.
    """
    _validate.check_instance(
        "generator", generator, keras.random.SeedGenerator, "Expected a keras.random.SeedGenerator"
    )
    if keras.backend.backend() != "tensorflow" or getattr(generator, _KEYED, False):
        return generator
    draw = generator.next

    def next(ordered: bool = True) -> Any:
        return _replica_seed(draw(ordered=ordered))

    generator.next = next
    setattr(generator, _KEYED, True)
    return generator


def is_replica_keyed(generator: Any) -> bool:
    """Whether `key_by_replica` keyed this generator (always False off TensorFlow)."""
    return bool(getattr(generator, _KEYED, False))


def _local_copies(variable: Any, strategy: Any) -> list | None:
    """This process' copies of a variable held on several devices, or None.

    TensorFlow: the per-replica components of a mirrored variable. JAX: the
    device buffers of a fully replicated array (as under
    `keras.distribution.DataParallel`); a sharded one holds different parts
    of the value, not copies.
    """
    value = getattr(variable, "value", variable)
    tf = _compat.tensorflow_module(import_it=False)
    if tf is not None and isinstance(value, tf.distribute.DistributedValues):
        copies = list(strategy.experimental_local_results(value)) if strategy is not None else []
    elif getattr(getattr(value, "sharding", None), "is_fully_replicated", False):
        copies = [shard.data for shard in value.addressable_shards]
    else:
        return None
    return copies if len(copies) > 1 else None


def replica_disagreement(variables: Mapping[str, Any], strategy: Any) -> tuple[int, tuple[str, ...]] | None:
    """The first replica whose copies of mirrored variables differ from replica 0's.

    Args:
        variables: ``{path: variable}`` (as `keras_repro.fingerprint.tracked_variables` gives).
        strategy: the model's `tf.distribute.Strategy` (``model.distribute_strategy``),
            or None (on JAX, where the arrays know their devices).

    Returns:
        ``(replica, paths)``: the lowest local replica index that differs
        and the paths of the variables it differs in, in the order of
        `variables`; None when every local replica agrees, or nothing is
        mirrored over several devices.
    """
    differing: dict[int, list[str]] = {}
    for path, variable in variables.items():
        copies = _local_copies(variable, strategy)
        if copies is None:
            continue
        digests = [digest_array(np.asarray(copy)) for copy in copies]
        for replica, digest in enumerate(digests[1:], start=1):
            if digest != digests[0]:
                differing.setdefault(replica, []).append(path)
    if not differing:
        return None
    replica = min(differing)
    return replica, tuple(differing[replica])
