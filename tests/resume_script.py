"""A training script for the kill-and-resume tests (tests/test_resume.py).

    python resume_script.py OUT_DIR --save-freq epoch|N [--kill-at STEP] [--kill-in-save K] [--mirrored]

Trains a small SeededModel with Dropout, shuffle=True and Adam for 4 epochs
of 12 batches, with a DeterminismCallback (every batch) and an
ExactBackupAndRestore in OUT_DIR. `--kill-at STEP` SIGKILLs the process at
the end of optimizer step STEP; `--kill-in-save K` SIGKILLs it during its
K-th backup, after the new weights file is written and before the backup
that names it is. Either kill happens once (a marker file remembers it), so
running the same command again resumes and finishes. The final fingerprint
goes to OUT_DIR/final.json. `--mirrored` builds and trains the model under
a `tf.distribute.MirroredStrategy` over two logical CPU devices.
"""

import argparse
import contextlib
import json
import os
import signal
from pathlib import Path

import keras
import numpy as np

import keras_repro as kr

parser = argparse.ArgumentParser()
parser.add_argument("out", type=Path)
parser.add_argument("--save-freq", default="epoch")
parser.add_argument("--kill-at", type=int)
parser.add_argument("--kill-in-save", type=int)
parser.add_argument("--mirrored", action="store_true")
parser.add_argument("--steps", action="store_true", help="record per epoch, with step digests")
args = parser.parse_args()
scope = contextlib.nullcontext()
if args.mirrored:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    scope = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope()
save_freq = args.save_freq if args.save_freq == "epoch" else int(args.save_freq)
marker = args.out / "killed"


def die() -> None:
    marker.touch()
    os.kill(os.getpid(), signal.SIGKILL)


class KillAtStep(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if args.kill_at is not None and not marker.exists():
            if int(self.model.optimizer.iterations.numpy()) == args.kill_at:
                die()


rng = np.random.default_rng(0)
x = rng.normal(size=(96, 6)).astype("float32")
y = (x[:, :2].sum(axis=1, keepdims=True) + 0.1 * x[:, 2:3] ** 2).astype("float32")

with scope:
    inputs = keras.Input((6,))
    h = keras.layers.Dense(16, activation="relu")(inputs)
    h = keras.layers.Dropout(0.3)(h)
    h = keras.layers.GaussianNoise(0.05)(h)
    model = kr.SeededModel(inputs, keras.layers.Dense(1)(h), seed=7)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")

if args.kill_in_save is not None and not marker.exists():
    saves = [0]
    original = model.save_weights

    def save_weights_then_die(*a, **k):
        original(*a, **k)
        saves[0] += 1
        if saves[0] == args.kill_in_save:
            die()

    model.save_weights = save_weights_then_die

args.out.mkdir(parents=True, exist_ok=True)
model.fit(
    x,
    y,
    epochs=4,
    batch_size=8,
    shuffle=True,
    verbose=0,
    callbacks=[
        kr.DeterminismCallback(
            trace=args.out / "trace.jsonl", every="epoch" if args.steps else "batch", audit="off", steps=args.steps
        ),
        kr.callbacks.ExactBackupAndRestore(args.out / "backup", save_freq=save_freq),
        KillAtStep(),
    ],
)
(args.out / "final.json").write_text(json.dumps({"fingerprint": kr.fingerprint(model)}))
