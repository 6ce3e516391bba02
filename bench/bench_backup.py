"""Backup write time: ExactBackupAndRestore vs keras.callbacks.BackupAndRestore.

Both back up the same model (an MLP 784-256-256-10 with Dropout and a built
Adam optimizer, ~2.7 MB of variables) at the end of an epoch, interleaved,
and the medians are compared (target: ratio <= 1.2). Ours also writes the
RNG state and the data position, checksums the weights and fsyncs; it
publishes a backup (checksum, fsync, rename) on a background thread, so two
times are reported, each measured with nothing else running:

- blocking: how long `fit` waits per backup (the previous backup already
  published, as after a training step);
- complete: the backup written, checksummed, fsynced and renamed.

Run: python bench/bench_backup.py
"""

import statistics
import tempfile
import time

import keras

import keras_repro as kr

REPEATS = 25


def model():
    inputs = keras.Input((784,))
    h = keras.layers.Dense(256, activation="relu")(inputs)
    h = keras.layers.Dropout(0.2)(h)
    h = keras.layers.Dense(256, activation="relu")(h)
    m = kr.SeededModel(inputs, keras.layers.Dense(10)(h), seed=0)
    m.compile(optimizer="adam", loss="mse")
    m.optimizer.build(m.trainable_variables)
    return m


def timed(callback, complete=False):
    start = time.perf_counter()
    callback.on_epoch_end(0)
    if complete and hasattr(callback, "_wait"):
        callback._wait()
    elapsed = time.perf_counter() - start
    if hasattr(callback, "_wait"):
        callback._wait()  # never let a background publish overlap another timing
    return elapsed


def main():
    m = model()
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        theirs = keras.callbacks.BackupAndRestore(a)
        ours = kr.callbacks.ExactBackupAndRestore(b)
        for callback in (theirs, ours):
            callback.set_model(m)
            timed(callback)  # warm-up
        t_theirs, t_blocking, t_complete = [], [], []
        for _ in range(REPEATS):
            t_theirs.append(timed(theirs))
            t_blocking.append(timed(ours))
            t_complete.append(timed(ours, complete=True))
    a = statistics.median(t_theirs)
    blocking, complete = statistics.median(t_blocking), statistics.median(t_complete)
    print(f"keras BackupAndRestore:           {a * 1e3:7.2f} ms per backup (median of {REPEATS})")
    print(f"ExactBackupAndRestore, blocking:  {blocking * 1e3:7.2f} ms   ratio {blocking / a:.3f} (target <= 1.2)")
    print(f"ExactBackupAndRestore, complete:  {complete * 1e3:7.2f} ms   ratio {complete / a:.3f}")


if __name__ == "__main__":
    main()
