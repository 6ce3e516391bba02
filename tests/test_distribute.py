"""Data-parallel runs: a random stream per replica, replicas checked to agree.

Each child process splits the CPU into two logical devices and trains under
`tf.distribute.MirroredStrategy`, or (JAX) starts with two host devices and
trains under `keras.distribution.DataParallel`; every claim compares two
such processes (and a single-device one where it says so).
"""

import importlib.util

import pytest

from keras_repro.trace import diff_traces
from keras_repro.trace import load_trace
from procs import child_env
from procs import keras_older_than
from procs import run_pythons

pytestmark = pytest.mark.timeout(600)

# Keras 3.7's SeedGenerator makes its integer state variable with the default
# (MEAN) aggregation, which tf.distribute refuses: a Dropout cannot even be
# created under a strategy. Keras 3.8 creates it with aggregation="none".
needs_keras_38 = pytest.mark.skipif(
    keras_older_than(3, 8), reason="Keras < 3.8 cannot create a SeedGenerator under a tf.distribute strategy"
)


@pytest.mark.tensorflow_only("replica keying is for tf.distribute; elsewhere key_by_replica leaves the generator alone")
def test_outside_a_strategy_a_keyed_generator_draws_what_an_unkeyed_one_draws():
    import keras

    from keras_repro.distribute import is_replica_keyed
    from keras_repro.distribute import key_by_replica

    keyed, plain = keras.random.SeedGenerator(5), keras.random.SeedGenerator(5)
    assert key_by_replica(key_by_replica(keyed)) is keyed and is_replica_keyed(keyed)
    assert not is_replica_keyed(plain)
    for _ in range(3):
        assert keyed.next().numpy().tolist() == plain.next().numpy().tolist()
    with pytest.raises(TypeError, match=r"generator.*Expected a keras.random.SeedGenerator"):
        key_by_replica(5)


# The model and data of every run; after the framework's own set-up.
MODEL = """
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

SETUP = (
    """
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
"""
    + MODEL
)

MIRRORED = (
    SETUP
    + """
if PERTURB is not None:
    x[PERTURB, 3] += 1e-3  # one element of one row: only one replica's shard of one batch
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
model.fit(x, y, batch_size=16, epochs=3, shuffle=SHUFFLE, verbose=0,
          callbacks=[kr.DeterminismCallback(TRACE, every="batch", steps=True)])
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
    runs = {"run1": (None, True), "run2": (None, True), "row1": (1, False), "row9": (9, False), "plain": (None, False)}
    traces = {name: folder / f"{name}.jsonl" for name in runs}
    codes = [
        f"TRACE = {str(traces[name])!r}; PERTURB = {perturb!r}; SHUFFLE = {shuffle!r}\n" + MIRRORED
        for name, (perturb, shuffle) in runs.items()
    ]
    results = run_pythons(codes + [SINGLE], envs=[child_env()] * (len(codes) + 1))
    return results, traces


@pytest.mark.tensorflow_only("tf.distribute.MirroredStrategy")
@needs_keras_38
def test_replicas_draw_their_own_dropout_masks(mirrored_runs):
    (run1, run2, *_), _ = mirrored_runs
    assert run1["replicas"] == run2["replicas"] == 2
    assert run1["same_mask"] is False and run2["same_mask"] is False


@pytest.mark.tensorflow_only("tf.distribute.MirroredStrategy")
@needs_keras_38
def test_a_mirrored_run_repeats_bit_for_bit_in_another_process(mirrored_runs):
    _, traces = mirrored_runs
    trace1, trace2 = traces["run1"], traces["run2"]
    comparison = diff_traces(trace1, trace2)
    assert comparison.divergence is None, comparison.divergence
    records = load_trace(trace1).records
    assert [r["type"] for r in records].count("batch") == 3 * 4
    assert all(r["data"] is not None for r in records if r["type"] == "batch")  # the data is covered
    # Step digests work under the strategy too: one step per batch record, numbered by step.
    assert [r["steps"]["first"] for r in records if r["type"] == "batch"] == list(range(1, 13))
    assert len({r["fingerprint"] for r in records}) > 10  # it trained: every record differs


@pytest.mark.tensorflow_only("tf.distribute.MirroredStrategy")
@needs_keras_38
def test_initial_weights_under_the_strategy_are_the_single_device_ones(mirrored_runs):
    (run1, *_, single), _ = mirrored_runs
    assert run1["weights"] == single["weights"]


@pytest.mark.tensorflow_only("tf.distribute.MirroredStrategy")
@needs_keras_38
@pytest.mark.parametrize("row", [1, 9])
def test_a_change_in_either_replicas_shard_is_a_data_divergence(mirrored_runs, row):
    # Rows 0-7 of the first batch are replica 0's shard, rows 8-15 replica 1's.
    _, traces = mirrored_runs
    divergence = diff_traces(traces["plain"], traces[f"row{row}"]).divergence
    assert divergence is not None and divergence.kind == "data", divergence
    assert (divergence.epoch, divergence.step, divergence.step_exact) == (0, 1, True)


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


@pytest.mark.tensorflow_only("tf.distribute.MirroredStrategy")
@needs_keras_38
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


# --- JAX: keras.distribution.DataParallel over two host devices ------------------------

needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed (the jax extra)")
JAX_ENV = {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}

JAX_SETUP = (
    """
import numpy as np
import jax
"""
    + MODEL
)

JAX_PARALLEL = (
    JAX_SETUP
    + """
keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
model = build()
weights = kr.fingerprint_variables(model)
mask = np.asarray(model.get_layer("drop")(np.ones((8, 16), "float32"), training=True)) != 0
model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[kr.DeterminismCallback(TRACE, every="batch")])
kernel = model.get_layer("head").kernel
copies = [np.asarray(s.data) for s in kernel.value.addressable_shards]
copies[1] = copies[1] + np.float32(1e-6)
devices = [s.device for s in kernel.value.addressable_shards]
kernel.assign(jax.make_array_from_single_device_arrays(
    kernel.shape, kernel.value.sharding, [jax.device_put(c, d) for c, d in zip(copies, devices)]))
try:
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[kr.DeterminismCallback(audit="off")])
    error = None
except kr.NondeterminismError as caught:
    error = {"kind": caught.kind, "variables": list(caught.variables), "message": str(caught)}
emit({"devices": len(jax.devices()), "weights": weights, "error": error,
      "same_mask": bool(np.array_equal(mask[:4], mask[4:]))})
"""
)


@pytest.fixture(scope="module")
def jax_runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("jax")
    traces = [folder / "run1.jsonl", folder / "run2.jsonl"]
    codes = [f"TRACE = {str(t)!r}\n" + JAX_PARALLEL for t in traces]
    single = JAX_SETUP + "emit({'weights': kr.fingerprint_variables(build())})"
    env = child_env(JAX_ENV)
    return run_pythons(codes + [single], envs=[env, env, child_env({"KERAS_BACKEND": "jax"})]), traces


@pytest.mark.jax
@needs_jax
def test_jax_data_parallel_repeats_bit_for_bit_with_a_mask_per_row(jax_runs):
    (run1, run2, single), (trace1, trace2) = jax_runs
    assert run1["devices"] == 2
    # One program over the global batch: the two halves get their own masks.
    assert run1["same_mask"] is False
    assert diff_traces(trace1, trace2).divergence is None
    assert run1["weights"] == run2["weights"] == single["weights"]  # as on one device


@pytest.mark.jax
@needs_jax
def test_jax_a_device_copy_that_differs_is_a_replica_divergence(jax_runs):
    (run1, _, _), _ = jax_runs
    assert run1["error"] is not None, "no NondeterminismError"
    assert (run1["error"]["kind"], run1["error"]["variables"]) == ("replica", ["head/kernel"])
    assert run1["error"]["message"].startswith("Replica 1 differs from replica 0 at the start of fit 0")
