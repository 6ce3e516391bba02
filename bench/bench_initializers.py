"""Seeded factory initializer vs the Keras built-in on a 4096x4096 kernel.

Prints the median time of each, interleaved in one run, and their ratio
(target: <= 1.05). Run: python bench/bench_initializers.py
"""

import statistics
import time

import keras

import keras_repro as kr

SHAPE = (4096, 4096)
REPEATS = 15


def timed(init):
    start = time.perf_counter()
    keras.ops.convert_to_numpy(init(SHAPE))
    return time.perf_counter() - start


def main():
    seed = kr.derive_seed(0, "bench/kernel")
    cases = {
        "keras.GlorotUniform": lambda: keras.initializers.GlorotUniform(seed=seed),
        "kr.glorot_uniform": lambda: kr.initializers.glorot_uniform(seed=0, key="bench/kernel"),
        "keras.HeNormal": lambda: keras.initializers.HeNormal(seed=seed),
        "kr.he_normal": lambda: kr.initializers.he_normal(seed=0, key="bench/kernel"),
    }
    times = {name: [] for name in cases}
    for make in cases.values():  # warm-up
        timed(make())
    for _ in range(REPEATS):  # interleaved, so drift hits every case alike
        for name, make in cases.items():
            times[name].append(timed(make()))  # construction included
    median = {name: statistics.median(t) for name, t in times.items()}
    for name, t in median.items():
        print(f"{name:22s} {t * 1e3:8.2f} ms")
    for ours, theirs in [("kr.glorot_uniform", "keras.GlorotUniform"), ("kr.he_normal", "keras.HeNormal")]:
        print(f"ratio {ours} / {theirs}: {median[ours] / median[theirs]:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
