"""Data-parallel runs: a random stream per replica, replicas checked to agree.

Each child process splits the CPU into two logical devices and trains under
`tf.distribute.MirroredStrategy`; every claim compares two such processes
(and a single-device one where it says so).
"""

import pytest

from keras_repro.trace import diff_traces
from keras_repro.trace import load_trace
from procs import child_env
from procs import run_pythons

pytestmark = pytest.mark.timeout(600)

SETUP = """
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import keras_repro as kr

def build(seed=3):
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    dropped = keras.layers.Dropout(0.5, name="drop")(hidden)
    model = kr.SeededModel(inputs, keras.layers.Dense(1, name="head")(dropped), seed=seed)
    model.compile(keras.optimizers.SGD(0.05), "mse")
    return model

x = np.linspace(-1, 1, 64 * 8, dtype="float32").reshape(64, 8)
y = np.sin(x).sum(axis=1, keepdims=True)
"""

MIRRORED = (
    SETUP
    + """
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    model = build()
weights = kr.fingerprint_variables(model)
drop = model.get_layer("drop")

@tf.function
def masks(batch):
    return strategy.run(lambda b: drop(b, training=True), (batch,))

batches = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(tf.ones((8, 16))))
shards = [t.numpy() != 0 for t in strategy.experimental_local_results(masks(next(iter(batches))))]
model.fit(x, y, batch_size=16, epochs=3, shuffle=True, verbose=0,
          callbacks=[kr.DeterminismCallback(TRACE, every="batch")])
emit({"weights": weights, "same_mask": bool(np.array_equal(shards[0], shards[1])),
      "replicas": strategy.num_replicas_in_sync})
"""
)

SINGLE = (
    SETUP
    + """
emit({"weights": kr.fingerprint_variables(build())})
"""
)


@pytest.fixture(scope="module")
def mirrored_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mirrored")
    traces = [folder / "run1.jsonl", folder / "run2.jsonl"]
    codes = [f"TRACE = {str(t)!r}\n" + MIRRORED for t in traces] + [SINGLE]
    results = run_pythons(codes, envs=[child_env()] * 3)
    return results, traces


def test_replicas_draw_their_own_dropout_masks(mirrored_runs):
    (run1, run2, _), _ = mirrored_runs
    assert run1["replicas"] == run2["replicas"] == 2
    assert run1["same_mask"] is False and run2["same_mask"] is False


def test_a_mirrored_run_repeats_bit_for_bit_in_another_process(mirrored_runs):
    _, (trace1, trace2) = mirrored_runs
    comparison = diff_traces(trace1, trace2)
    assert comparison.divergence is None, comparison.divergence
    records = load_trace(trace1).records
    assert [r["type"] for r in records].count("batch") == 3 * 4
    assert all(r["data"] is not None for r in records if r["type"] == "batch")  # the data is covered
    assert len({r["fingerprint"] for r in records}) > 10  # it trained: every record differs


def test_initial_weights_under_the_strategy_are_the_single_device_ones(mirrored_runs):
    (run1, _, single), _ = mirrored_runs
    assert run1["weights"] == single["weights"]


DESYNC = (
    SETUP
    + """
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    model = build()

class Desync(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            kernel = self.model.get_layer("head").kernel
            strategy.experimental_local_results(kernel.value)[1].assign_add(tf.fill(kernel.shape, 1e-6))

try:
    model.fit(x, y, batch_size=16, epochs=3, verbose=0,
              callbacks=[Desync(), kr.DeterminismCallback(TRACE, audit="off")])
except kr.NondeterminismError as error:
    emit({"kind": error.kind, "epoch": error.epoch, "variables": list(error.variables), "message": str(error)})
else:
    emit(None)
"""
)


def test_a_replica_that_drifts_from_replica_0_is_a_divergence(tmp_path):
    (found,) = run_pythons([f"TRACE = {str(tmp_path / 't.jsonl')!r}\n" + DESYNC], envs=[child_env()])
    assert found is not None, "no NondeterminismError"
    assert (found["kind"], found["epoch"], found["variables"]) == ("replica", 1, ["head/kernel"])
    assert found["message"].startswith("Replica 1 differs from replica 0 at fit 0, end of epoch 1")
    assert not (tmp_path / "t.jsonl").exists()  # only the .partial trace: the run did not finish


EPOCH_ORDER = (
    SETUP
    + """
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
dataset = tf.data.Dataset.range(16)
orders = []
for epoch in range(2):
    shuffled = kr.epoch_shuffle(dataset, seed=7, epoch=epoch).batch(8)
    orders.append([
        [t.numpy().tolist() for t in strategy.experimental_local_results(batch)]
        for batch in strategy.experimental_distribute_dataset(shuffled)
    ])
emit(orders)
"""
)


def test_epoch_shuffle_before_distributing_gives_every_run_the_same_order():
    first, second = run_pythons([EPOCH_ORDER] * 2, envs=[child_env()] * 2)
    assert first == second
    assert first[0] != first[1]  # a new order each epoch
    assert sorted(v for batch in first[0] for shard in batch for v in shard) == list(range(16))
