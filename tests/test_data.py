"""Tests for keras_repro.data: epoch-keyed orders for arrays and tf.data pipelines."""

import numpy as np
import pytest
import tensorflow as tf

import keras_repro as kr
from procs import run_twice

# Run with op determinism on (unseeded random ops raise there), another
# PYTHONHASHSEED, junk draws and a TF global seed that differs between the
# two processes: none of it may change an order.
CHILD = r"""
import os, random
import numpy as np
import tensorflow as tf
import keras_repro as kr

tf.config.experimental.enable_op_determinism()
junk = int(os.environ["KR_TEST_JUNK"])
random.seed(junk); np.random.seed(junk); tf.random.set_seed(junk)
random.random(); np.random.rand(); tf.random.uniform(())

ds = tf.data.Dataset.range(12)
x = np.arange(10)
shuffled_batches = [
    [b[0].tolist() for b in kr.shuffled_batches((x, x * 2), seed=9, epoch=e, batch_size=4).as_numpy_iterator()]
    for e in range(2)
]
stream = kr.batch_stream((x, x * 2), seed=9, batch_size=4, start=2)  # epoch 0, last batch
stream = [b[0].tolist() for b in stream.take(4).as_numpy_iterator()]
emit({
    "permutations": [kr.epoch_permutation(9, e, 12).tolist() for e in range(3)],
    "epoch_shuffle": [[int(v) for v in kr.epoch_shuffle(ds, 9, e).as_numpy_iterator()] for e in range(3)],
    "window": [int(v) for v in kr.epoch_shuffle(ds, 9, 1, window=5).as_numpy_iterator()],
    "repeat_by_epoch": [b.tolist() for b in kr.repeat_by_epoch(
        lambda e: kr.epoch_shuffle(ds.map(lambda v: v * 10), 9, e).batch(5), epochs=3, initial_epoch=1
    ).as_numpy_iterator()],
    "shuffled_batches": shuffled_batches,
    "stream": stream,
})
"""


def test_orders_are_identical_across_processes_under_op_determinism():
    first, second = run_twice(
        CHILD, envs=[{"KR_TEST_JUNK": "1", "PYTHONHASHSEED": "0"}, {"KR_TEST_JUNK": "2", "PYTHONHASHSEED": "7"}]
    )
    assert first == second
    here = [kr.epoch_permutation(9, e, 12).tolist() for e in range(3)]
    assert first["permutations"] == here
    assert first["epoch_shuffle"] == here  # the dataset's order is the permutation
    assert first["repeat_by_epoch"] == [
        [10 * v for v in here[1][:5]],
        [10 * v for v in here[1][5:10]],
        [10 * v for v in here[1][10:]],
        [10 * v for v in here[2][:5]],
        [10 * v for v in here[2][5:10]],
        [10 * v for v in here[2][10:]],
    ]
    orders = [kr.epoch_permutation(9, e, 10).tolist() for e in range(2)]
    for e in range(2):
        assert first["shuffled_batches"][e] == [orders[e][:4], orders[e][4:8], orders[e][8:]]
    assert first["stream"] == [orders[0][8:], orders[1][:4], orders[1][4:8], orders[1][8:]]
    window = first["window"]
    assert [sorted(window[i : i + 5]) for i in (0, 5, 10)] == [list(range(0, 5)), list(range(5, 10)), [10, 11]]
    assert window != list(range(12))


def test_epoch_permutation_is_a_permutation_that_changes_every_epoch():
    orders = [kr.epoch_permutation(3, e, 50) for e in range(5)]
    for order in orders:
        assert order.dtype == np.int64 and sorted(order.tolist()) == list(range(50))
    assert len({tuple(o) for o in orders}) == 5
    assert not np.array_equal(kr.epoch_permutation(3, 0, 50), kr.epoch_permutation(4, 0, 50))
    assert kr.epoch_permutation(3, 0, 0).tolist() == []


def test_block_permutation_only_moves_samples_within_blocks():
    order = kr.epoch_permutation(3, 1, 11, block_size=4)
    assert [sorted(order[i : i + 4].tolist()) for i in (0, 4, 8)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]
    assert order.tolist() != list(range(11))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"seed": -1, "epoch": 0, "n": 3}, ValueError, "-1"),
        ({"seed": 1.0, "epoch": 0, "n": 3}, TypeError, "1.0"),
        ({"seed": "1", "epoch": 0, "n": 3}, TypeError, r"Invalid seed: '1' \(of type str\)"),
        ({"seed": 1, "epoch": -2, "n": 3}, ValueError, r"^Invalid epoch: -2\. An epoch must be an integer >= 0\.$"),
        ({"seed": 1, "epoch": True, "n": 3}, TypeError, r"^Invalid epoch: True \(of type bool\)\. An epoch must"),
        ({"seed": 1, "epoch": np.int64(-1), "n": 3}, ValueError, r"^Invalid epoch: -1\."),
        (
            {"seed": 1, "epoch": 0, "n": 2.5},
            TypeError,
            r"^Invalid n: 2\.5 \(of type float\)\. n must be an integer >= 0\.$",
        ),
        ({"seed": 1, "epoch": 0, "n": 3, "block_size": 0}, ValueError, r"^Invalid block_size: 0\. block_size must be"),
    ],
)
def test_epoch_permutation_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        kr.epoch_permutation(**kwargs)


def test_shuffled_batches_keeps_structure_and_orders_by_epoch():
    x = {"a": np.arange(9), "b": [np.arange(9) * 2, np.arange(9.0)]}
    for e in (0, 1):
        dataset = kr.shuffled_batches((x, np.arange(9)), seed=1, epoch=e, batch_size=4)
        assert int(dataset.cardinality()) == 3
        batches = list(dataset.as_numpy_iterator())
        (features, target) = batches[0]
        assert set(features) == {"a", "b"} and isinstance(features["b"], tuple)
        assert np.array_equal(features["b"][0], 2 * target)
        assert np.concatenate([b[1] for b in batches]).tolist() == kr.epoch_permutation(1, e, 9).tolist()
    within = kr.shuffled_batches(np.arange(9), seed=1, epoch=1, batch_size=4, within_batch=True)
    assert (
        np.concatenate(list(within.as_numpy_iterator())).tolist()
        == kr.epoch_permutation(1, 1, 9, block_size=4).tolist()
    )


def test_batch_stream_reads_a_callable_start_when_iteration_begins():
    start = [0]
    stream = kr.batch_stream(np.arange(6), seed=3, batch_size=4, start=lambda: start[0])
    order = [kr.epoch_permutation(3, p, 6).tolist() for p in range(3)]
    assert [b.numpy().tolist() for b in stream.take(3)] == [order[0][:4], order[0][4:], order[1][:4]]
    start[0] = 3  # pass 1, second batch
    assert [b.numpy().tolist() for b in stream.take(2)] == [order[1][4:], order[2][:4]]
    with pytest.raises(ValueError, match="start"):
        kr.batch_stream(np.arange(6), seed=3, batch_size=4, start=-1)
    with pytest.raises(ValueError, match="no samples"):
        kr.batch_stream(np.zeros((0, 2)), seed=3, batch_size=4)


def test_shuffled_batches_rejects_bad_arrays():
    with pytest.raises(ValueError, match=r"first dimension.*\[3, 4\]"):
        kr.shuffled_batches((np.zeros(3), np.zeros(4)), seed=1, epoch=0, batch_size=2)
    with pytest.raises(TypeError, match="SparseTensor"):
        sparse = tf.sparse.from_dense(np.eye(3, dtype="float32"))
        kr.shuffled_batches(sparse, seed=1, epoch=0, batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        kr.shuffled_batches(np.zeros(3), seed=1, epoch=0, batch_size=0)
    with pytest.raises(ValueError, match="epoch"):
        kr.shuffled_batches(np.zeros(3), seed=1, epoch=-1, batch_size=2)
    with pytest.raises(TypeError, match="seed"):
        kr.shuffled_batches(np.zeros(3), seed=None, epoch=0, batch_size=2)


def test_epoch_shuffle_handles_unknown_sizes_and_rejects_what_it_cannot_permute():
    with pytest.raises(TypeError, match="tf.data.Dataset"):
        kr.epoch_shuffle(np.arange(3), seed=1, epoch=0)
    with pytest.raises(ValueError, match="infinite"):
        kr.epoch_shuffle(tf.data.Dataset.range(3).repeat(), seed=1, epoch=0)
    with pytest.raises(ValueError, match="window"):
        kr.epoch_shuffle(tf.data.Dataset.range(3), seed=1, epoch=0, window=0)
    with pytest.raises(ValueError, match="epoch"):
        kr.epoch_shuffle(tf.data.Dataset.range(3), seed=1, epoch=-1)
    evens = tf.data.Dataset.range(12).filter(lambda v: v % 2 == 0)  # cardinality unknown to TF
    order = kr.epoch_permutation(1, 0, 6)
    assert [int(v) for v in kr.epoch_shuffle(evens, seed=1, epoch=0)] == [2 * int(i) for i in order]
    assert list(kr.epoch_shuffle(tf.data.Dataset.range(0), seed=1, epoch=0)) == []
    pairs = tf.data.Dataset.from_tensor_slices({"x": np.arange(5), "y": np.arange(5) * 3})
    for element in kr.epoch_shuffle(pairs, seed=2, epoch=4):
        assert int(element["y"]) == 3 * int(element["x"])


def test_repeat_by_epoch_rejects_bad_arguments():
    with pytest.raises(TypeError, match="callable"):
        kr.repeat_by_epoch(tf.data.Dataset.range(3), epochs=2)
    with pytest.raises(ValueError, match="epochs"):
        kr.repeat_by_epoch(lambda e: tf.data.Dataset.range(3), epochs=1, initial_epoch=2)


def test_keras_seeded_array_shuffle_repeats_one_permutation_every_epoch():
    # The Keras behaviour SeededModel.fit replaces (KERAS_RNG_FACTS.md, fact 6).
    import keras
    from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter

    keras.utils.set_random_seed(0)
    dataset = ArrayDataAdapter(np.arange(40), batch_size=40, shuffle=True).get_tf_dataset()
    first, second = (next(iter(dataset))[0].numpy().tolist() for _ in range(2))
    assert first != list(range(40)) and first == second
