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


def thread_counts(seed: int) -> dict[str, float]:
    """The framework thread counts of the process that runs it (TensorFlow backend)."""
    import os

    import tensorflow as tf

    return {
        "omp": float(os.environ["OMP_NUM_THREADS"]),
        "intra": float(tf.config.threading.get_intra_op_parallelism_threads()),
        "inter": float(tf.config.threading.get_inter_op_parallelism_threads()),
    }


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


def train_resumable(seed: int) -> dict[str, float]:
    """A SeededModel with Dropout trained with exact backups in the sweep's per-seed backup folder.

    With ``KILL_SEED_MARKER`` set to a path, the process kills itself
    (SIGKILL) once, at training step 13 of the second seed it runs, after a
    backup: the marker file remembers that it did.
    """
    import os
    import signal
    from pathlib import Path

    import keras

    import keras_repro as kr
    from keras_repro.sweep.shards import seed_backup_dir

    x, y = _data(64)
    marker = os.environ.get("KILL_SEED_MARKER")
    started = Path(marker + ".started") if marker else None
    if started is not None:
        with started.open("a") as log:
            log.write(f"{seed}\n")
    inputs = keras.Input((8,))
    hidden = keras.layers.Dropout(0.25)(keras.layers.Dense(8, activation="relu")(inputs))
    model = kr.SeededModel(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden), seed=seed)
    model.compile("adam", "binary_crossentropy")

    class Kill(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            if started is not None:  # where this attempt starts: 0, or the backup's step
                with Path(marker + ".steps").open("a") as log:
                    log.write(f"{seed}:{int(model.optimizer.iterations)}\n")

        def on_train_batch_end(self, batch, logs=None):
            runs = started.read_text().split() if started is not None else []
            if marker and not Path(marker).exists() and len(runs) == 2 and int(model.optimizer.iterations) == 13:
                Path(marker).touch()
                os.kill(os.getpid(), signal.SIGKILL)

    callbacks = [kr.callbacks.ExactBackupAndRestore(seed_backup_dir(), save_freq=4), Kill()]
    history = model.fit(x, y, epochs=3, batch_size=8, shuffle=True, verbose=0, callbacks=callbacks)
    return {"loss": history.history["loss"][-1], "fingerprint_bits": int(kr.fingerprint(model)[:8], 16)}
