"""Kill a training run, start it again, and see whether it resumes exactly.

    python examples/resume_demo.py OUT_DIR [--kill-at STEP] [--plain]

Trains a small SeededModel with Dropout, shuffle=True and Adam for 4 epochs
of 12 batches, backing up at every epoch end into OUT_DIR/backup with
keras_repro's ExactBackupAndRestore (or, with --plain, Keras'
BackupAndRestore), and records a fingerprint of every variable after every
batch in OUT_DIR/trace.jsonl (DeterminismCallback).

--kill-at STEP makes the process SIGKILL itself at the end of optimizer step
STEP, once: a marker file OUT_DIR/killed remembers it, so running the same
command again resumes from the last backup and finishes. The last line
printed is the final fingerprint of the model.

Run it three ways and compare the final fingerprints (the notebook
notebooks/04_exact_resume.ipynb does this):

    python examples/resume_demo.py /tmp/straight
    python examples/resume_demo.py /tmp/exact --kill-at 30     # killed
    python examples/resume_demo.py /tmp/exact --kill-at 30     # resumed: same as straight
"""

import argparse
import os
import signal
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_repro as kr  # noqa: E402

EPOCHS = 4
BATCH_SIZE = 8  # 96 samples: 12 batches per epoch


class KillAtStep(keras.callbacks.Callback):
    """SIGKILLs this process at the end of optimizer step `step`, once."""

    def __init__(self, step: int, marker: Path):
        super().__init__()
        self.step = step
        self.marker = marker

    def on_train_batch_end(self, batch, logs=None):
        if not self.marker.exists() and int(self.model.optimizer.iterations.numpy()) == self.step:
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, no flush: like a lost machine


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the trace, the backup and the kill marker")
    parser.add_argument("--kill-at", type=int, help="optimizer step to SIGKILL this process at (once)")
    parser.add_argument("--plain", action="store_true", help="use keras.callbacks.BackupAndRestore")
    parser.add_argument("--save-freq", default="epoch", help="'epoch' or a number of batches between backups")
    parser.add_argument(
        "--keras-model", action="store_true", help="a plain keras.Model seeded with keras.utils.set_random_seed"
    )
    args = parser.parse_args()
    save_freq = args.save_freq if args.save_freq == "epoch" else int(args.save_freq)
    args.out.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(0)  # the data: fixed
    x = rng.normal(size=(96, 6)).astype("float32")
    y = (x[:, :2].sum(axis=1, keepdims=True) + 0.1 * x[:, 2:3] ** 2).astype("float32")

    if args.keras_model:
        keras.utils.set_random_seed(7)
    inputs = keras.Input((6,))
    h = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    h = keras.layers.Dropout(0.3, name="dropout")(h)
    if args.keras_model:
        model = keras.Model(inputs, keras.layers.Dense(1, name="head")(h))
    else:
        model = kr.SeededModel(inputs, keras.layers.Dense(1, name="head")(h), seed=7)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")

    backup_dir = args.out / "backup"
    if args.plain:
        backup = keras.callbacks.BackupAndRestore(str(backup_dir), save_freq=save_freq)
    else:
        backup = kr.callbacks.ExactBackupAndRestore(backup_dir, save_freq=save_freq)
    callbacks = [
        kr.DeterminismCallback(trace=args.out / "trace.jsonl", every="batch", audit="off"),
        backup,
    ]
    if args.kill_at is not None:
        callbacks.append(KillAtStep(args.kill_at, args.out / "killed"))

    model.fit(x, y, epochs=EPOCHS, batch_size=BATCH_SIZE, shuffle=True, verbose=0, callbacks=callbacks)
    print(kr.fingerprint(model))


if __name__ == "__main__":
    main()
