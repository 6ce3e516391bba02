"""The step digest against the cheapest integer reductions of the same words, in one run (TensorFlow).

On the reference MLP of bench_callback_overhead.py (784 -> 256 -> 256 -> 10,
269,322 words of weights), inside one `tf.function` and one after another
(each waits for the one before, as the digest waits for the optimizer in a
train step), best of 7:

- the step digest as `keras_repro.step_digest.StepDigests` runs it (on a
  CPU, one XLA computation, also inside a train step that is not compiled,
  which is how Keras runs with op determinism on);
- the same digest run by TensorFlow's own kernels (as on a GPU);
- a plain sum of the words widened to int64, with no position weights (not
  a valid digest: what any reduction of at least 64 bits over every word
  costs at least with TensorFlow's kernels);
- a wrapping int32 sum of the words (32 bits: the cheapest integer
  reduction there is, and not enough bits for the digest).

It prints each as a ratio to the plain int64 sum and as a share of a
training step (batch 32, op determinism on) of a fit without digests, the
best of three fits (on a busy machine the step time, and so the share,
varies; the ratios do much less).

Run: python bench/bench_step_digest.py [--repeats 7]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_BACKEND"] = "tensorflow"

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from bench_callback_overhead import make_model  # noqa: E402

import keras_repro as kr  # noqa: E402
from keras_repro import _words  # noqa: E402
from keras_repro.step_digest import state_digest  # noqa: E402

PER_CALL = 20  # reductions per tf.function call, each over its own copy of the weights


def plain_int64_sum(values):
    return tf.add_n([tf.reduce_sum(tf.cast(tf.bitcast(v, tf.uint32), tf.int64)) for v in values])


def int32_sum(values):
    return tf.cast(tf.add_n([tf.reduce_sum(tf.bitcast(v, tf.int32)) for v in values]), tf.int64)


def chained(reduce, copies):
    """A tf.function running `reduce` over each copy of the weights, one after another."""

    @tf.function
    def run():
        total = tf.constant(0, tf.int64)
        for copy in copies:
            with tf.control_dependencies([total]):
                values = [tf.identity(tf.convert_to_tensor(v)) for v in copy]
            total = total * 3 + reduce(values)
        return total

    return run


def best_per_reduction(function, repeats, calls=20):
    function().numpy()  # trace (and compile)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            result = function()
        result.numpy()
        best = min(best, (time.perf_counter() - start) / calls / PER_CALL)
    return best


def step_seconds(x, y, repeats):
    """Seconds per training step of a fit without digests (batch 32), best of `repeats`."""
    best = float("inf")
    for _ in range(repeats):
        kr.seed_everything(0)
        model = make_model()
        model.fit(x[:320], y[:320], batch_size=32, verbose=0, shuffle=False)  # trace
        start = time.perf_counter()
        model.fit(x, y, batch_size=32, verbose=0, shuffle=False)
        best = min(best, (time.perf_counter() - start) / (len(x) // 32))
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    kr.seed_everything(0)
    kr.enable_determinism()
    model = make_model()
    copies = [[tf.Variable(v.numpy() + i) for v in model.weights] for i in range(PER_CALL)]
    words = sum(int(np.prod(v.shape)) for v in model.weights)
    cache = {}
    ops = _words.ops("tensorflow")

    def digest(values):
        return state_digest(ops, values, cache)

    times = {
        "step digest": best_per_reduction(chained(ops.compiled(digest), copies), args.repeats),
        "TF kernels": best_per_reduction(chained(digest, copies), args.repeats),
        "plain int64 sum": best_per_reduction(chained(plain_int64_sum, copies), args.repeats),
        "int32 sum": best_per_reduction(chained(int32_sum, copies), args.repeats),
    }
    rng = np.random.default_rng(0)
    x, y = rng.random((19200, 784), dtype=np.float32), rng.integers(0, 10, 19200)
    step = step_seconds(x, y, 3)
    base = times["plain int64 sum"]
    print(f"reference MLP weights: {words} words; training step without digests: {step * 1e6:.0f} us (batch 32)")
    for name, seconds in times.items():
        print(
            f"{name:18s} {seconds * 1e6:7.1f} us = {seconds / base:.2f}x the plain int64 sum "
            f"= {seconds / step * 100:.1f}% of a training step ({seconds / words * 1e9:.2f} ns per word)"
        )
    print(f"a 5% budget per step is {step * 0.05 * 1e6:.0f} us")


if __name__ == "__main__":
    main()
