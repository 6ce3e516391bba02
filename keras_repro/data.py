"""Epoch-keyed shuffling: the data order as a pure function of (seed, epoch).

Keras' `fit(shuffle=True)` on arrays draws its permutation from TensorFlow's
stateful RNG; once seeded it repeats the same permutation every epoch, and a
resumed run cannot recreate the order of epoch k without replaying epochs
0..k-1. Here the order of epoch ``e`` is `epoch_permutation(seed, e, n)`:
different every epoch, identical in every process, computed directly for
any epoch.

Building blocks, from the lowest level up:

- `epoch_permutation(seed, epoch, n)`: the permutation itself (NumPy).
- `shuffled_batches(arrays, seed, epoch, batch_size)`: one epoch of
  in-memory arrays as a batched `tf.data.Dataset` in that order, and
  `batch_stream(arrays, seed, batch_size, start)`, all epochs one after
  another from any batch (what `keras_repro.SeededModel.fit` uses).
- `epoch_shuffle(dataset, seed, epoch)`: the elements of any finite
  `tf.data.Dataset` in that order.
- `repeat_by_epoch(make_epoch, epochs)`: one dataset that runs several
  epochs, each built by ``make_epoch(epoch)``, for `fit(steps_per_epoch=...)`.

None of these uses a stateful random op, so they work with
`tf.config.experimental.enable_op_determinism()` on, and none depends on
TensorFlow's global seed.

Example: an epoch-keyed pipeline for `fit`

```python
import math
import numpy as np
import tensorflow as tf
import keras
import keras_repro as kr

x = np.random.rand(100, 4).astype("float32")
y = np.random.rand(100, 1).astype("float32")
ds = tf.data.Dataset.from_tensor_slices((x, y))
train = kr.repeat_by_epoch(
    lambda epoch: kr.epoch_shuffle(ds, seed=42, epoch=epoch).batch(32), epochs=3
)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
model.compile("sgd", "mse")
model.fit(train, epochs=3, steps_per_epoch=math.ceil(100 / 32))
```
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from keras_repro import _validate
from keras_repro.seeds import derive_seed
from keras_repro.seeds import validate_seed

__all__ = ["batch_stream", "epoch_permutation", "epoch_shuffle", "repeat_by_epoch", "shuffled_batches"]


def _check_epoch(epoch: Any) -> int:
    return _validate.check_int("epoch", epoch, minimum=0, allowed="An epoch must be an integer >= 0")


def epoch_permutation(seed: int, epoch: int, n: int, *, block_size: int | None = None) -> np.ndarray:
    """The order of the samples in epoch `epoch`: a pure function of (seed, epoch, n).

    The permutation is ``numpy.random.Generator(PCG64(derive_seed(seed,
    "shuffle", epoch))).permutation(n)``: different for every epoch, the same
    in every process, on every platform and for every ``PYTHONHASHSEED``,
    and computable for epoch k without computing epochs 0..k-1 (so a run
    resumed at epoch k sees the order of the uninterrupted run).

    Args:
        seed: the root seed (for a `keras_repro.SeededModel`, the model's seed).
        epoch: the epoch index, an integer >= 0.
        n: the number of samples, an integer >= 0.
        block_size: if given, only shuffle within consecutive blocks of this
            many samples (the last block may be shorter), keeping the blocks
            in order: Keras' ``shuffle="batch"`` with ``block_size=batch_size``.

    Returns:
        An int64 array holding a permutation of ``range(n)``.

    Example:

    ```python
    import numpy as np
    import keras_repro as kr

    x = np.arange(20).reshape(10, 2)
    order = kr.epoch_permutation(42, epoch=3, n=10)
    x_epoch = x[order]
    ```
    """
    seed = validate_seed(seed)
    epoch = _check_epoch(epoch)
    n = _validate.check_int("n", n, minimum=0)
    rng = np.random.Generator(np.random.PCG64(derive_seed(seed, "shuffle", epoch)))
    if block_size is None:
        return rng.permutation(n).astype(np.int64, copy=False)
    block_size = _validate.check_int("block_size", block_size, minimum=1)
    full = n // block_size
    head = np.arange(full * block_size, dtype=np.int64).reshape(full, block_size)
    head = rng.permuted(head, axis=1).reshape(-1)
    tail = full * block_size + rng.permutation(n - full * block_size).astype(np.int64)
    return np.concatenate([head, tail])


def _tf():
    import tensorflow as tf

    return tf


def _lists_to_tuples(structure: Any) -> Any:
    # tf.data reads a list as one tensor to stack; a tuple is a structure.
    if isinstance(structure, (list, tuple)):
        return tuple(_lists_to_tuples(item) for item in structure)
    if isinstance(structure, dict):
        return {key: _lists_to_tuples(value) for key, value in structure.items()}
    return structure


def _to_dense_tensor(leaf: Any, tf) -> Any:
    if isinstance(leaf, (tf.SparseTensor, tf.RaggedTensor)) or _is_scipy_sparse(leaf):
        raise _validate.type_error(
            "array",
            leaf,
            "Only dense arrays (NumPy arrays, tensors, DataFrames) can be shuffled by epoch; put "
            "sparse or ragged data in a tf.data.Dataset and shuffle it with keras_repro.epoch_shuffle",
        )
    if tf.is_tensor(leaf):
        return leaf
    return tf.convert_to_tensor(np.asarray(leaf))


def _is_scipy_sparse(value: Any) -> bool:
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(value)


def _prepare_arrays(arrays: Any, tf) -> tuple[Any, int]:
    """Dense tensors in the same structure (lists as tuples), and the sample count."""
    structure = _lists_to_tuples(arrays)
    leaves = tf.nest.flatten(structure)
    if not leaves:
        raise _validate.value_error("arrays", arrays, "arrays must hold at least one array")
    tensors = [_to_dense_tensor(leaf, tf) for leaf in leaves]
    sizes = {int(t.shape[0]) if t.shape.rank else -1 for t in tensors}
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError(
            "Invalid arrays: every array must have the same first dimension (the "
            f"number of samples); got first dimensions {sorted(sizes)}."
        )
    return tf.nest.pack_sequence_as(structure, tensors), sizes.pop()


def _start_function(start: Any) -> Callable[[], int]:
    if callable(start):
        return lambda: _validate.check_int("start", start(), minimum=0)
    value = _validate.check_int("start", start, minimum=0)
    return lambda: value


def batch_stream(
    arrays: Any,
    seed: int,
    batch_size: int,
    start: int | Callable[[], int] = 0,
    *,
    within_batch: bool = False,
) -> Any:
    """An endless stream of batches of in-memory arrays, pass after pass, in epoch-keyed orders.

    Pass ``p`` over the data (batches ``p * m`` to ``(p + 1) * m - 1`` of the
    stream, ``m = ceil(n / batch_size)``, the last batch of a pass partial
    when ``batch_size`` does not divide ``n``) is in the order
    ``epoch_permutation(seed, p, n)``. The stream begins at batch `start`,
    so a resumed loop picks up exactly where the uninterrupted one would
    be. The pipeline is the one Keras builds for `fit` on arrays (batched
    gathers in a parallel map) and the next pass's order is prepared while
    the current one runs, so it is as fast. Use it with
    ``fit(..., steps_per_epoch=...)``; `shuffled_batches` is one pass.

    Args:
        arrays: a NumPy array, tensor, or a nested tuple/list/dict of them,
            all with the same first dimension ``n``; the dataset yields the
            same structure (lists become tuples). A Keras training tuple
            ``(x, y, sample_weight)`` works as is.
        seed: the root seed.
        batch_size: the number of samples per batch, >= 1.
        start: the index of the first batch: an int, or a zero-argument
            callable called each time an iterator over the stream is
            created (`keras_repro.SeededModel.fit` passes the batch index at
            which Keras actually starts, after `BackupAndRestore` has
            chosen the epoch).
        within_batch: if True, keep the batches of a pass in order and only
            shuffle inside each batch (Keras' ``shuffle="batch"``).

    Returns:
        An endless `tf.data.Dataset` of batches.

    Example:

    ```python
    import numpy as np
    import keras_repro as kr

    x, y = np.arange(10.0), np.arange(10.0) * 2
    stream = kr.batch_stream((x, y), seed=42, batch_size=4, start=3)  # pass 1, batch 0
    xb, yb = next(iter(stream))
    ```
    """
    tf = _tf()
    seed = validate_seed(seed)
    batch_size = _validate.check_int("batch_size", batch_size, minimum=1)
    first_batch = _start_function(start)
    structure, n = _prepare_arrays(arrays, tf)
    return _stream(structure, n, seed, batch_size, first_batch, within_batch, tf)


def _stream(structure, n: int, seed: int, batch_size: int, first_batch, within_batch: bool, tf):
    if n == 0:
        raise ValueError("Invalid arrays: they hold no samples (first dimension 0).")
    full_batches, partial = divmod(n, batch_size)
    per_pass = full_batches + bool(partial)
    block = batch_size if within_batch else None

    def start_position(_):
        position = tf.numpy_function(
            lambda: np.array(divmod(first_batch(), per_pass), np.int64), [], tf.int64, stateful=True
        )
        return tf.ensure_shape(position, [2])

    def permutation(p):
        order = tf.numpy_function(lambda q: epoch_permutation(seed, int(q), n, block_size=block), [p], tf.int64)
        return tf.ensure_shape(order, [n])

    def batches_of(order):
        head = tf.reshape(order[: full_batches * batch_size], [full_batches, batch_size])
        batches = tf.data.Dataset.from_tensor_slices(head)
        if partial:
            batches = batches.concatenate(tf.data.Dataset.from_tensors(order[full_batches * batch_size :]))
        return batches

    def passes_from(position):
        orders = tf.data.Dataset.range(position[0], np.iinfo(np.int64).max).map(permutation)
        return orders.prefetch(1).flat_map(batches_of).skip(position[1])

    def gather(indices, data):
        return tf.nest.map_structure(lambda t: tf.gather(t, indices, axis=0), data)

    # Same structure as Keras' array pipeline: the permutation of a pass is
    # made ahead (prefetched once), then batches of indices gather from the
    # whole arrays in a parallel map. The start is read when an iterator
    # is created.
    indices = tf.data.Dataset.range(1).map(start_position).flat_map(passes_from)
    dataset = tf.data.Dataset.zip((indices, tf.data.Dataset.from_tensors(structure).repeat()))
    dataset = dataset.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    dataset = dataset.with_options(options)
    return dataset.prefetch(tf.data.AUTOTUNE)


def shuffled_batches(
    arrays: Any,
    seed: int,
    epoch: int,
    batch_size: int,
    *,
    within_batch: bool = False,
) -> Any:
    """One epoch of in-memory arrays as batches, in the order of `epoch_permutation`.

    The batches hold ``arrays[order[i * batch_size:(i + 1) * batch_size]]``
    for ``order = epoch_permutation(seed, epoch, n)``; the last batch is
    partial when ``batch_size`` does not divide ``n``. It is pass `epoch` of
    `batch_stream`.

    Args:
        arrays: a NumPy array, tensor, or a nested tuple/list/dict of them,
            all with the same first dimension ``n`` (see `batch_stream`).
        seed: the root seed.
        epoch: the epoch whose order to use, an integer >= 0.
        batch_size: the number of samples per batch, >= 1.
        within_batch: if True, keep the batches in order and only shuffle
            inside each batch (Keras' ``shuffle="batch"``).

    Returns:
        A `tf.data.Dataset` of ``ceil(n / batch_size)`` batches.

    Example:

    ```python
    import numpy as np
    import keras_repro as kr

    x, y = np.arange(10.0), np.arange(10.0) * 2
    for epoch in range(2):
        for xb, yb in kr.shuffled_batches((x, y), seed=42, epoch=epoch, batch_size=4):
            pass
    ```
    """
    tf = _tf()
    seed = validate_seed(seed)
    epoch = _check_epoch(epoch)
    batch_size = _validate.check_int("batch_size", batch_size, minimum=1)
    structure, n = _prepare_arrays(arrays, tf)
    per_pass = -(-n // batch_size)
    stream = _stream(structure, n, seed, batch_size, lambda: epoch * per_pass, within_batch, tf)
    return stream.take(per_pass).apply(tf.data.experimental.assert_cardinality(per_pass))


def epoch_shuffle(dataset: Any, seed: int, epoch: Any, *, window: int | None = None) -> Any:
    """The elements of a finite `tf.data.Dataset` in an order keyed by (seed, epoch).

    With ``window=None`` the whole dataset is permuted: element ``i`` of the
    result is element ``epoch_permutation(seed, epoch, n)[i]`` of `dataset`,
    ``n`` its number of elements (counted as it is read, so a cardinality
    TensorFlow cannot tell, e.g. after `filter`, is fine). The whole dataset
    is held in memory once per epoch, like ``Dataset.shuffle(buffer_size=n)``,
    and its elements must share one shape. With ``window=k`` each run of
    ``k`` consecutive elements is permuted on its own (bounded memory, a
    weaker shuffle: elements never leave their window), the i-th window by
    ``epoch_permutation(derive_seed(seed, "window", i), epoch, size)``.
    Unlike ``Dataset.shuffle(seed=...)``, the order depends neither on
    TensorFlow's global seed nor on op determinism being on.

    Args:
        dataset: a finite `tf.data.Dataset` whose elements are samples.
        seed: the root seed.
        epoch: an int, or a scalar integer tensor (e.g. the argument
            `repeat_by_epoch` passes to ``make_epoch``).
        window: optional window size, an integer >= 1.

    Returns:
        A `tf.data.Dataset` with the same elements in the epoch's order.

    Raises:
        TypeError: `dataset` is not a `tf.data.Dataset`.
        ValueError: the dataset is known to be infinite, or a bad seed,
            epoch or window.

    Example:

    ```python
    import tensorflow as tf
    import keras_repro as kr

    ds = tf.data.Dataset.range(10)
    list(kr.epoch_shuffle(ds, seed=42, epoch=0).as_numpy_iterator())
    ```
    """
    tf = _tf()
    _validate.check_instance(
        "dataset",
        dataset,
        tf.data.Dataset,
        "Expected a tf.data.Dataset; for arrays, use keras_repro.shuffled_batches or keras_repro.epoch_permutation",
    )
    seed = validate_seed(seed)
    if not tf.is_tensor(epoch):
        _check_epoch(epoch)
    # Asking a dataset made inside a traced function (make_epoch) for its
    # cardinality trips tf.data's graph rewriting: only check eagerly.
    if tf.executing_eagerly() and int(dataset.cardinality()) == tf.data.INFINITE_CARDINALITY:
        raise ValueError(
            "Invalid dataset: epoch_shuffle permutes a finite dataset, and this one is "
            "infinite (apply epoch_shuffle before `repeat`, or use repeat_by_epoch)."
        )
    if window is not None:
        window = _validate.check_int("window", window, minimum=1)

    def permute(index, batch):
        size = tf.shape(tf.nest.flatten(batch)[0], out_type=tf.int64)[0]

        def order_of(i, e, m):
            key = seed if window is None else derive_seed(seed, "window", int(i))
            return epoch_permutation(key, int(e), int(m))

        order = tf.numpy_function(order_of, [index, tf.cast(epoch, tf.int64), size], tf.int64)
        order = tf.reshape(order, [-1])
        return tf.nest.map_structure(lambda t: tf.gather(t, order, axis=0), batch)

    # The whole dataset (or one window) as one batch: batch() reserves
    # memory as elements arrive, not for the nominal batch size.
    batch_size = np.iinfo(np.int64).max if window is None else window
    return dataset.batch(batch_size).enumerate().map(permute).unbatch()


def repeat_by_epoch(make_epoch: Callable[[Any], Any], epochs: int, *, initial_epoch: int = 0) -> Any:
    """One dataset running epochs ``initial_epoch .. epochs - 1``, each from ``make_epoch(epoch)``.

    Keras re-iterates a dataset passed to `fit` once per epoch without
    telling it which epoch it is; this dataset instead concatenates the
    epochs, so pass it with ``steps_per_epoch`` (the number of batches in
    one epoch) and the same ``epochs`` / ``initial_epoch`` as to `fit`.
    Batch inside ``make_epoch`` so no batch straddles two epochs.

    Args:
        make_epoch: called with the epoch as a scalar int64 tensor, returns
            the `tf.data.Dataset` of that epoch (e.g. built with
            `epoch_shuffle`).
        epochs: the index after the last epoch, as in `fit`.
        initial_epoch: the first epoch, as in `fit`.

    Returns:
        A `tf.data.Dataset`.

    Example:

    ```python
    import tensorflow as tf
    import keras_repro as kr

    ds = tf.data.Dataset.range(6)
    train = kr.repeat_by_epoch(lambda e: kr.epoch_shuffle(ds, 1, e).batch(2), epochs=3)
    ```
    """
    _validate.check_callable("make_epoch", make_epoch, "a function epoch -> tf.data.Dataset")
    initial_epoch = _check_epoch(initial_epoch)
    epochs = _validate.check_int("epochs", epochs, minimum=initial_epoch)
    tf = _tf()
    return tf.data.Dataset.range(initial_epoch, epochs).flat_map(make_epoch)
