"""Experiment functions for the sweep tests and benchmark.

They live in a module of their own, at module level, so that worker
processes (spawned process pools, Dask workers) can import them by name.
"""

from __future__ import annotations

import random

import numpy as np

FAILING_SEED_MARKER = "seed rejected on purpose"


def _data(n: int = 32):
    # Fixed data: only the seeded parts of the run (weights, dropout, order) vary.
    x = np.random.default_rng(0).normal(size=(n, 8)).astype("float32")
    y = (x.sum(axis=1, keepdims=True) > 0).astype("float32")
    return x, y


def train_tiny(seed: int, epochs: int = 2) -> dict[str, float]:
    """Dense(4) + Dropout on 32 samples, 2 epochs, shuffled: every seeded stream is used."""
    import keras

    x, y = _data()
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(4, activation="relu"),
            keras.layers.Dropout(0.25),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=epochs, batch_size=8, shuffle=True, verbose=0)
    return {
        "loss": history.history["loss"][-1],  # a Python float
        "accuracy": np.float32(history.history["accuracy"][-1]),  # a NumPy scalar
        "kernel_sum": keras.ops.sum(model.layers[0].kernel),  # a 0-d tensor
        "draw": random.random() + float(np.random.rand()),  # the global streams
    }


def train_tiny_fails_on_odd(seed: int) -> dict[str, float]:
    """train_tiny, except that odd seeds raise."""
    if seed % 2:
        raise RuntimeError(f"{FAILING_SEED_MARKER}: {seed}")
    return train_tiny(seed)


def draws(seed: int) -> float:
    """No Keras: one draw from each global stream (fast)."""
    return random.random() + float(np.random.rand())


def draws_after_wait(seed: int, wait: float = 1.5) -> dict[str, float]:
    """Draws from the global streams, waits (a Dask worker heartbeats meanwhile), draws again."""
    import time

    first = random.random()
    time.sleep(wait)
    return {"first": first, "second": random.random(), "numpy": float(np.random.rand())}


def exits_on_seed_3(seed: int) -> float:
    """Kills the worker process for seed 3 (a crash, not an exception)."""
    import os
    import time

    if seed == 3:
        os._exit(17)
    time.sleep(0.2)
    return float(seed)
