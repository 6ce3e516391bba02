"""Cost of the replica-agreement check, on a MirroredStrategy run, against the same fit without it.

Reference MLP (784 -> 256 -> 256 -> 10, Adam) under
`tf.distribute.MirroredStrategy` over two logical CPU devices, 20480
samples, batch size 64, 3 epochs. Runs interleaved (each case first in turn), REPEATS times: fit
without a callback, with `DeterminismCallback(every="epoch",
replicas=False)`, and with `replicas=True` (the default); prints the median
fit times and the ratios (target: replicas=True <= 1.05x the callback
without it). Wall time on 2 shared cores is noisy, so it also times one
replica check alone against one record's fingerprint, and as a share of an
epoch.

Run: python bench/bench_replicas.py [--repeats N]
"""

import argparse
import os
import statistics
import tempfile
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_repro as kr  # noqa: E402
from keras_repro.distribute import replica_disagreement  # noqa: E402
from keras_repro.fingerprint import Fingerprinter  # noqa: E402

EPOCHS = 3
SAMPLES = 20480
BATCH = 64
STRATEGY = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def make_model():
    with STRATEGY.scope():
        inputs = keras.Input((784,))
        h = keras.layers.Dense(256, activation="relu")(inputs)
        h = keras.layers.Dense(256, activation="relu")(h)
        model = kr.SeededModel(inputs, keras.layers.Dense(10)(h), seed=0)
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def timed_fit(x, y, callback_kwargs, folder):
    model = make_model()
    callbacks = []
    if callback_kwargs is not None:
        path = os.path.join(folder, f"trace_{callback_kwargs['replicas']}.jsonl")
        callbacks.append(kr.DeterminismCallback(path, every="epoch", audit="off", **callback_kwargs))
    start = time.perf_counter()
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, shuffle=False, callbacks=callbacks)
    return time.perf_counter() - start, model


def best_of(fn, repeats=20):
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore", kr.ReproducibilityWarning)
    kr.enable_determinism()
    rng = np.random.default_rng(0)
    x = rng.random((SAMPLES, 784), dtype=np.float32)
    y = rng.integers(0, 10, SAMPLES)
    cases = {"no callback": None, "replicas=False": {"replicas": False}, "replicas=True": {"replicas": True}}
    times = {name: [] for name in cases}
    print(
        f"MirroredStrategy x{STRATEGY.num_replicas_in_sync}, MLP 784-256-256-10, {EPOCHS} epochs of {SAMPLES} samples"
    )
    with tempfile.TemporaryDirectory() as folder:
        _, model = timed_fit(x[:1024], y[:1024], None, folder)  # warm-up
        order = list(cases.items())
        for repeat in range(args.repeats):  # interleaved, each case first in turn
            for name, kwargs in order[repeat % len(order) :] + order[: repeat % len(order)]:
                times[name].append(timed_fit(x, y, kwargs, folder)[0])
    median = {name: statistics.median(t) for name, t in times.items()}
    for name, t in median.items():
        print(f"{name:16s} {t:8.2f} s  (runs: {', '.join(f'{v:.2f}' for v in times[name])})")
    print(f"replicas=True / replicas=False: {median['replicas=True'] / median['replicas=False']:.3f}x (target <= 1.05)")
    print(f"replicas=True / no callback:    {median['replicas=True'] / median['no callback']:.3f}x")
    fingerprinter = Fingerprinter(model)
    check = best_of(lambda: replica_disagreement(fingerprinter.variables, STRATEGY))
    record = best_of(lambda: fingerprinter.details(summaries=True))
    epoch = median["no callback"] / EPOCHS
    print(
        f"one replica check: {check * 1e3:.2f} ms = {check / record:.2f}x one record's fingerprint "
        f"({record * 1e3:.2f} ms) = {check / epoch * 100:.3f}% of an epoch"
    )


if __name__ == "__main__":
    main()
