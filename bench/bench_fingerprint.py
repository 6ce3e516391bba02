"""fingerprint() throughput on a model with >= 512 MiB of weights, against baselines.

Baselines, over the same variable bytes in the same run: a plain memcpy
(NumPy copy of every variable), hashlib sha256 and blake2b. Prints the
median time of each, fingerprint's bytes per second (target >= 10 GB/s on
CPU) and the ratios.

Run: python bench/bench_fingerprint.py [--mib 512] [--repeats 5]
"""

import argparse
import hashlib
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import _backend  # noqa: E402  (--backend, before Keras is imported)
import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_repro as kr  # noqa: E402
from keras_repro.fingerprint import tracked_variables  # noqa: E402


def make_model(mib: int) -> keras.Model:
    width = 8192
    kernels = max(1, round(mib * 2**20 / (width * width * 4)))
    layers = [keras.Input((width,))]
    layers += [
        keras.layers.Dense(width, kernel_initializer=keras.initializers.RandomUniform(seed=i)) for i in range(kernels)
    ]
    return keras.Sequential(layers)


def arrays(model):
    return [
        np.asarray(v.value.value()) if hasattr(v.value, "handle") else keras.ops.convert_to_numpy(v)
        for v in tracked_variables(model).values()
    ]


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    _backend.add_argument(parser)
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    model = make_model(args.mib)
    data = arrays(model)
    nbytes = sum(a.nbytes for a in data)
    print(f"model: {len(model.weights)} variables, {nbytes / 2**20:.0f} MiB, backend {keras.backend.backend()}")

    def memcpy():
        for a in arrays(model):
            a.copy()

    def hashlib_over(name):
        def run():
            for a in arrays(model):
                hashlib.new(name, a.reshape(-1).view(np.uint8)).digest()

        return run

    kr.fingerprint(model)  # warm-up
    cases = {
        "kr.fingerprint": (lambda: kr.fingerprint(model), args.repeats),
        "memcpy (numpy copy)": (memcpy, args.repeats),
        "hashlib.sha256": (hashlib_over("sha256"), 1),
        "hashlib.blake2b": (hashlib_over("blake2b"), 1),
    }
    times = {name: median_time(fn, repeats) for name, (fn, repeats) in cases.items()}
    for name, t in times.items():
        print(f"{name:22s} {t * 1e3:9.1f} ms  {nbytes / t / 1e9:7.2f} GB/s")
    fp = times["kr.fingerprint"]
    print(f"fingerprint throughput: {nbytes / fp / 1e9:.2f} GB/s (target >= 10 GB/s)")
    print(f"ratio fingerprint / memcpy time: {fp / times['memcpy (numpy copy)']:.2f}")
    print(f"ratio sha256 / fingerprint time: {times['hashlib.sha256'] / fp:.1f}x slower")
    print(f"ratio blake2b / fingerprint time: {times['hashlib.blake2b'] / fp:.1f}x slower")


if __name__ == "__main__":
    main()
