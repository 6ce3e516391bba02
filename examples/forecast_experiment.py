"""A small forecasting experiment to sweep over seeds (notebooks/03_seed_is_not_a_hyperparameter.ipynb).

A noisy sum of two sines; the model sees a window of the last 12 values
and predicts the next one with LSTM -> BatchNormalization -> Dropout ->
Dense, the shape of many forecasting models. The data are fixed (drawn from
`default_rng(0)`), so across seeds only the seeded parts of a run vary:
initial weights, Dropout masks and the order of the training batches.

`experiment(seed, units=16, dropout=0.2)` trains one model and returns its
mean squared error on a validation and a test window that follow the
training data in time. `small` and `large` are the two configurations the
notebook compares; they are module-level functions so a process pool's
workers can import them.

Run: python examples/forecast_experiment.py [--seeds 20] [--workers 2]
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_repro as kr  # noqa: E402

WINDOW = 12
EPOCHS = 10
BATCH_SIZE = 32


def series() -> np.ndarray:
    """The time series: two sines plus noise of standard deviation 0.3, 400 steps."""
    rng = np.random.default_rng(0)
    t = np.arange(400, dtype="float32")
    values = np.sin(2 * np.pi * t / 40) + 0.5 * np.sin(2 * np.pi * t / 11) + 0.3 * rng.normal(size=t.shape)
    return values.astype("float32")


def windows():
    """The (x, y) windows of the series: train, validation and test, in time order."""
    values = series()
    x = np.stack([values[i : i + WINDOW] for i in range(len(values) - WINDOW)])[..., None]
    y = values[WINDOW:, None]
    # 192 training windows: a multiple of the batch size, so every batch has
    # the same shape and the training step is traced once.
    return (x[:192], y[:192]), (x[192:290], y[192:290]), (x[290:], y[290:])


def experiment(seed: int, units: int = 16, dropout: float = 0.2) -> dict:
    """Trains one model with this seed; returns its validation and test MSE."""
    (x, y), (x_val, y_val), (x_test, y_test) = windows()
    inputs = keras.Input((WINDOW, 1))
    h = keras.layers.LSTM(units)(inputs)
    # momentum 0.9: the moving statistics settle within a short training run
    h = keras.layers.BatchNormalization(momentum=0.9)(h)
    h = keras.layers.Dropout(dropout)(h)
    model = kr.SeededModel(inputs, keras.layers.Dense(1)(h), seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    model.fit(x, y, epochs=EPOCHS, batch_size=BATCH_SIZE, shuffle=True, verbose=0)

    def mse(inputs, targets):
        return float(np.mean((model(inputs, training=False).numpy() - targets) ** 2))

    return {"val_mse": mse(x_val, y_val), "test_mse": mse(x_test, y_test)}


def small(seed: int) -> dict:
    """Configuration A: 16 LSTM units."""
    return experiment(seed, units=16)


def large(seed: int) -> dict:
    """Configuration B: 32 LSTM units."""
    return experiment(seed, units=32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=0, help="worker processes (0: in-process)")
    args = parser.parse_args()
    pool = kr.process_pool(args.workers) if args.workers else None
    try:
        a = kr.sweep(small, seeds=args.seeds, executor=pool)
        b = kr.sweep(large, seeds=args.seeds, executor=pool)
    finally:
        if pool is not None:
            pool.shutdown()
    print("A:", a.summary("val_mse"))
    print("B:", b.summary("val_mse"))
    print(a.compare(b, "val_mse"))


if __name__ == "__main__":
    main()
