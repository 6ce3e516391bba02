"""Overhead of DeterminismCallback on fit, against fit without it, in one run.

Reference MLP: 60000 x 784 -> 256 -> 256 -> 10 (Adam), 3 epochs. Runs
interleaved: fit without the callback, with every="epoch", with
every="batch", and with an empty batch-end callback (what any batch hook
costs in Keras), all with op determinism on so that only the callback's own
cost is measured, REPEATS times; prints the median fit time of each, the
overhead ratios (targets: epoch <= 2%, batch <= 15%) and the overhead per
training step, and the cost of the data fingerprints (every="epoch" with
and without them), and the cost of the float summaries each record keeps
(a record with and without them, against the fingerprint alone and against
an epoch). On a busy machine wall-time differences are noisy, so it
also prints the time spent inside the callback's hooks, timed in the same
fits, as a share of the fit time without the callback.

It also times every="epoch" with step digests (``steps=True``, target
<= 5% at batch 32); bench_step_digest.py times the step digest alone,
against a plain sum of the same words.

Run: python bench/bench_callback_overhead.py [--batch-size N] [--repeats N] [--backend B]
"""

import argparse
import os
import statistics
import tempfile
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import _backend  # noqa: E402  (--backend, before Keras is imported)
import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_repro as kr  # noqa: E402

EPOCHS = 3


def make_model():
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class EmptyBatchHook(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        pass


HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_train_batch_end")


def time_hooks(callback, spent):
    """Wraps the callback's non-default hooks to add their time to spent[0]."""
    for name in HOOKS:
        hook = getattr(callback, name)
        if getattr(hook, "_is_default", False):
            continue  # left alone: Keras treats default batch hooks specially

        def timed(*args, _hook=hook, **kwargs):
            start = time.perf_counter()
            try:
                return _hook(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - start

        setattr(callback, name, timed)


def timed_fit(x, y, batch_size, callback_kwargs, folder, spent):
    kr.seed_everything(0)
    model = make_model()
    callbacks = []
    if callback_kwargs == "empty":
        callbacks.append(EmptyBatchHook())
    elif callback_kwargs is not None:
        tag = "_".join(f"{k}-{v}" for k, v in sorted(callback_kwargs.items()))
        path = os.path.join(folder, f"trace_{tag}.jsonl")
        callback = kr.DeterminismCallback(path, audit="off", **callback_kwargs)
        time_hooks(callback, spent)
        callbacks.append(callback)
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=EPOCHS, verbose=0, shuffle=False, callbacks=callbacks)
    return time.perf_counter() - start


def time_data_digest(x, y, per_call=50, repeats=20):
    """Milliseconds per batch of the in-step data digest alone.

    `per_call` digests run inside one compiled function (as in a train step,
    without a function call's dispatch cost each); the best of 5 timings.
    """
    import tensorflow as tf

    from keras_repro import _words
    from keras_repro import data_fingerprint

    features, labels = tf.constant(x), tf.constant(y)

    @tf.function
    def digests(features, labels):
        total = tf.constant(0, tf.int64)
        for i in range(per_call):  # distinct inputs, so nothing is computed once for all
            total = total * 3 + data_fingerprint.batch_digest(_words.ops("tensorflow"), (features + float(i), labels))
        return total

    digests(features, labels).numpy()  # trace
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            result = digests(features, labels)
        result.numpy()
        best = min(best, (time.perf_counter() - start) / repeats / per_call * 1e3)
    return best


def time_summaries(repeats=50):
    """Seconds per record of the fingerprint with and without the float summaries (best of 5)."""
    from keras_repro.fingerprint import Fingerprinter

    kr.seed_everything(0)
    model = make_model()
    model.optimizer.build(model.trainable_variables)  # the Adam slots a record covers too
    fingerprinter = Fingerprinter(model)
    best = {False: float("inf"), True: float("inf")}
    for _ in range(5):
        for summaries in (False, True):
            start = time.perf_counter()
            for _ in range(repeats):
                fingerprinter.details(summaries=summaries)
            best[summaries] = min(best[summaries], (time.perf_counter() - start) / repeats)
    return best[False], best[True]


def main():
    parser = argparse.ArgumentParser()
    _backend.add_argument(parser)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore", kr.ReproducibilityWarning)
    kr.seed_everything(0)
    kr.enable_determinism()  # the same kernels in every case
    rng = np.random.default_rng(0)
    x = rng.random((60000, 784), dtype=np.float32)
    y = rng.integers(0, 10, 60000)
    cases = {
        "no callback": None,
        "empty batch hook": "empty",
        'every="epoch"': {"every": "epoch"},
        'every="epoch", data=False': {"every": "epoch", "data": False},
        'every="batch"': {"every": "batch"},
    }
    cases['every="epoch", steps=True'] = {"every": "epoch", "steps": True}
    times = {name: [] for name in cases}
    inside = {name: [0.0] for name in cases}
    steps = EPOCHS * -(-60000 // args.batch_size)
    print(f"MLP 784-256-256-10, {EPOCHS} epochs, batch size {args.batch_size} ({steps} steps per fit)")
    with tempfile.TemporaryDirectory() as folder:
        timed_fit(x[:2048], y[:2048], args.batch_size, None, folder, [0.0])  # warm-up
        for _ in range(args.repeats):  # interleaved, so drift hits every case alike
            for name, kwargs in cases.items():
                times[name].append(timed_fit(x, y, args.batch_size, kwargs, folder, inside[name]))
    median = {name: statistics.median(t) for name, t in times.items()}
    for name, t in median.items():
        print(f"{name:16s} {t:8.2f} s  (runs: {', '.join(f'{v:.2f}' for v in times[name])})")
    base = median["no callback"]
    targets = [('every="epoch"', 0.02), ('every="batch"', 0.15), ("empty batch hook", None)]
    if 'every="epoch", steps=True' in median:
        targets.append(('every="epoch", steps=True', 0.05))
    for name, target in targets:
        overhead = median[name] / base - 1
        goal = f" (target <= {target * 100:.0f}%)" if target is not None else ""
        per_step = (median[name] - base) / steps * 1e3
        print(f"overhead {name}: {overhead * 100:+.1f}% of fit time{goal}, {per_step:+.3f} ms per step")
    with_data, without = median['every="epoch"'], median['every="epoch", data=False']
    print(
        f'data fingerprints, every="epoch": {with_data / without:.3f}x the fit time of the callback '
        "without them (target <= 1.02)"
    )
    if keras.backend.backend() == "tensorflow":  # the data digest alone is timed in a tf.function
        digest_ms = time_data_digest(x[: args.batch_size], y[: args.batch_size])
        print(
            f"data digest alone: {digest_ms * 1e3:.1f} us per batch = {digest_ms / (base / steps * 1e3) * 100:.2f}% "
            "of a training step without the callback"
        )
    plain_record, summarized_record = time_summaries()
    epoch_time = base / EPOCHS
    print(
        f"float summaries: a record takes {summarized_record * 1e3:.2f} ms with them, "
        f"{plain_record * 1e3:.2f} ms without ({summarized_record / plain_record:.2f}x the fingerprint alone); "
        f'with every="epoch" they add {(summarized_record - plain_record) / epoch_time * 100:.3f}% '
        "to an epoch (target <= 1%)"
    )
    for name in ('every="epoch"', 'every="batch"'):
        own = inside[name][0] / args.repeats
        print(
            f"time inside the callback, {name}: {own:.3f} s per fit = {own / base * 100:.1f}% of the "
            f"fit time without it, {own / steps * 1e3:.3f} ms per step"
        )


if __name__ == "__main__":
    main()
