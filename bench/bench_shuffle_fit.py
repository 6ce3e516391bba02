"""SeededModel.fit(shuffle=True) vs keras.Model.fit(shuffle=True): samples per second.

The same architecture and NumPy data, trained by a plain functional
`keras.Model` and by a `kr.SeededModel`, both with ``shuffle=True``. Fit
calls of EPOCHS epochs are timed interleaved (one call of each in turn,
after a warm-up fit that traces the train functions); the throughput of a
call counts its per-call setup (global seeding, pipeline construction) and
the median throughputs are compared (target: SeededModel >= 0.95 x Keras).
Run: python bench/bench_shuffle_fit.py
"""

import statistics
import time

import keras
import numpy as np

import keras_repro as kr

SAMPLES = 32768
FEATURES = 64
BATCH = 64
EPOCHS = 3
REPEATS = 6


def layers_of(inputs):
    x = keras.layers.Dense(128, activation="relu")(inputs)
    x = keras.layers.Dropout(0.1)(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    return keras.layers.Dense(1)(x)


def make(cls, **kwargs):
    inputs = keras.Input((FEATURES,))
    model = cls(inputs, layers_of(inputs), **kwargs)
    model.compile(keras.optimizers.SGD(0.01), "mse")
    return model


def fit_seconds(model, x, y, first_epoch, epochs):
    start = time.perf_counter()
    model.fit(
        x,
        y,
        batch_size=BATCH,
        initial_epoch=first_epoch,
        epochs=first_epoch + epochs,
        shuffle=True,
        verbose=0,
    )
    return time.perf_counter() - start


def main():
    rng = np.random.default_rng(0)
    x = rng.random((SAMPLES, FEATURES), dtype=np.float32)
    y = rng.random((SAMPLES, 1), dtype=np.float32)
    keras.utils.set_random_seed(0)  # Keras' shuffle needs a seed to be repeatable
    models = {"keras.Model": make(keras.Model), "kr.SeededModel": make(kr.SeededModel, seed=0)}
    for model in models.values():  # warm-up: tracing
        fit_seconds(model, x, y, 0, 1)
    times = {name: [] for name in models}
    for repeat in range(REPEATS):
        order = list(models.items())
        for name, model in order if repeat % 2 == 0 else order[::-1]:  # alternate who goes first
            times[name].append(fit_seconds(model, x, y, 1 + repeat * EPOCHS, EPOCHS))
    throughput = {name: EPOCHS * SAMPLES / statistics.median(t) for name, t in times.items()}
    for name, value in throughput.items():
        print(f"{name:16s} {value:10.0f} samples/s")
    ratio = throughput["kr.SeededModel"] / throughput["keras.Model"]
    print(f"ratio SeededModel / keras.Model throughput: {ratio:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
