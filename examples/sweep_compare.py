"""Compare two configurations over many seeds, not one.

Trains a small classifier with and without Dropout over the same 30 seeds,
prints each configuration's summary (mean, spread, bootstrap 95% interval of
the mean) and whether the difference is larger than seed noise, and saves
both sweeps as JSON.

Run: python examples/sweep_compare.py [--seeds 30] [--workers 2] [--out DIR]
(about a minute on 2 cores in-process)
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_repro as kr  # noqa: E402


def data():
    rng = np.random.default_rng(0)  # fixed data: only the seeded parts of a run vary
    x = rng.normal(size=(512, 16)).astype("float32")
    y = (np.sin(x[:, :3]).sum(axis=1) > 0).astype("int32")
    return x[:384], y[:384], x[384:], y[384:]


def experiment(seed: int, dropout: float = 0.0) -> dict:
    """One run: build, train, evaluate. Module level, so worker processes can import it."""
    x, y, x_val, y_val = data()
    model = keras.Sequential([
        keras.Input((16,)),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dropout(dropout),
        keras.layers.Dense(2, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=5, verbose=0)
    loss, accuracy = model.evaluate(x_val, y_val, verbose=0)
    return {"val_loss": loss, "val_accuracy": accuracy}


def with_dropout(seed: int) -> dict:
    return experiment(seed, dropout=0.3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--workers", type=int, default=0, help="worker processes (0: in-process)")
    parser.add_argument("--out", default=".", help="folder for the JSON results")
    args = parser.parse_args()

    pool = kr.process_pool(args.workers) if args.workers else None
    try:
        baseline = kr.sweep(experiment, seeds=args.seeds, executor=pool)
        dropout = kr.sweep(with_dropout, seeds=args.seeds, executor=pool)
    finally:
        if pool is not None:
            pool.shutdown()

    print("no dropout: ", baseline.summary("val_accuracy"))
    print("dropout 0.3:", dropout.summary("val_accuracy"))
    print(baseline.compare(dropout, "val_accuracy"))
    baseline.save(os.path.join(args.out, "sweep_baseline.json"))
    dropout.save(os.path.join(args.out, "sweep_dropout.json"))


if __name__ == "__main__":
    main()
