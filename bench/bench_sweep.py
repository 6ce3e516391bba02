"""Seed sweep on 2 worker processes against the same sweep in-process, in one run.

A sweep of 8 short training runs (an MLP on 2048 x 32 samples, about 5 s
each on 2 idle cores), first in this process (executor=None), then on
`keras_repro.process_pool(2)` (spawned workers, each given its share of
the cores by `keras_repro.set_threads`; the pool is created inside the
timed region, so the workers' start-up and TensorFlow import, which
users pay for, is included). Prints both times, the ratio (target <= 0.65
on 2 cores) and whether the per-seed results are bit-identical.

Other work on the machine makes the numbers noisy: the pool needs both
cores to itself to halve the time.

Run: python bench/bench_sweep.py [--seeds N] [--epochs N] [--workers N]
"""

import argparse
import os
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_repro as kr  # noqa: E402

EPOCHS = 80


def short_run(seed: int, epochs: int = EPOCHS) -> dict:
    """One short experiment: build, train, evaluate (module level: workers import it)."""
    x = np.random.default_rng(0).normal(size=(2048, 32)).astype("float32")
    y = (np.sin(x[:, :4]).sum(axis=1) > 0).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((32,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=64, epochs=epochs, verbose=0, shuffle=True)
    return {"loss": history.history["loss"][-1], "accuracy": history.history["accuracy"][-1]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    warnings.simplefilter("ignore", kr.ReproducibilityWarning)
    warnings.simplefilter("default", kr.SweepWarning)  # a ReproducibilityWarning: failed seeds stay visible
    fn = short_run if args.epochs == EPOCHS else _with_epochs(args.epochs)

    start = time.perf_counter()
    here = kr.sweep(fn, seeds=args.seeds, progress=False)
    in_process = time.perf_counter() - start

    start = time.perf_counter()
    with kr.process_pool(args.workers) as pool:
        pooled = kr.sweep(fn, seeds=args.seeds, executor=pool, progress=False)
    on_pool = time.perf_counter() - start

    print(f"{args.seeds} runs of {args.epochs} epochs, {os.cpu_count()} CPUs")
    print(f"in-process:            {in_process:7.2f} s  ({in_process / args.seeds:.2f} s per run)")
    print(f"process_pool({args.workers}), spawn: {on_pool:7.2f} s  (worker start-up included)")
    run_time = sum(pooled.seconds.values())
    print(
        f"  of which running fn: {run_time:.2f} s of worker time (in-process: "
        f"{sum(here.seconds.values()):.2f} s); start-up, shut-down and waiting: "
        f"{on_pool - run_time / args.workers:.2f} s"
    )
    print(f"ratio pool / in-process: {on_pool / in_process:.3f}  (target <= 0.65)")
    print(f"per-seed results bit-identical: {pooled.metrics == here.metrics}")
    print(here.summary("accuracy"))


def _with_epochs(epochs):
    import functools

    return functools.partial(short_run, epochs=epochs)


if __name__ == "__main__":
    main()
