"""seed_model on a built 50-layer model vs the time Keras takes to build it.

Builds a 50-layer functional model (Dense, with BatchNormalization and
Dropout in between), then re-seeds it with `kr.seed_model` (every weight
re-initialized, every seed generator reset). Both are timed, interleaved,
in one run; prints the medians and their ratio (target: <= 1.5).
Run: python bench/bench_seed_model.py
"""

import statistics
import time

import keras

import keras_repro as kr

LAYERS = 50
WIDTH = 256
REPEATS = 7


def build():
    inputs = keras.Input((WIDTH,))
    x = inputs
    for i in range(LAYERS):
        if i % 10 == 4:
            x = keras.layers.BatchNormalization()(x)
        elif i % 10 == 9:
            x = keras.layers.Dropout(0.1)(x)
        else:
            x = keras.layers.Dense(WIDTH, activation="relu")(x)
    return keras.Model(inputs, x)


def main():
    build()  # warm-up: first op executions, tracing caches
    kr.seed_model(build(), 0)
    build_times, seed_times = [], []
    for repeat in range(REPEATS):
        start = time.perf_counter()
        model = build()
        build_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        kr.seed_model(model, repeat)
        seed_times.append(time.perf_counter() - start)
        keras.backend.clear_session()
    build_median = statistics.median(build_times)
    seed_median = statistics.median(seed_times)
    print(f"keras build ({LAYERS} layers)  {build_median * 1e3:8.1f} ms")
    print(f"kr.seed_model               {seed_median * 1e3:8.1f} ms")
    print(f"ratio seed_model / build: {seed_median / build_median:.3f} (target <= 1.5)")


if __name__ == "__main__":
    main()
