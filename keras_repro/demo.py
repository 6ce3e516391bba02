"""The `keras-repro demo`: plain Keras vs keras_repro, in fresh processes.

A one-input MLP with Dropout learns the sequence 0.0, 0.1, ..., 0.9 from the
index 0 ... 9, with shuffling. Trained in several fresh processes, plain Keras
gives a different error every time; the same model as a
`keras_repro.SeededModel` gives the same error and the same fingerprint of
every variable, with no global seeding call at all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

from keras_repro import _validate
from keras_repro._procs import child_environment
from keras_repro._procs import without_framework_logs

__all__ = ["DemoRun", "run_demo", "train_sequence_model"]

SEED = 42
EPOCHS = 60


def train_sequence_model(seeded: bool) -> dict:
    """Trains the demo model once in this process; returns loss and fingerprint.

    Args:
        seeded: build it as `keras_repro.SeededModel(..., seed=42)` (True) or
            as a plain `keras.Model` with default Keras seeding (False).
    """
    import keras
    import numpy as np

    import keras_repro as kr

    inputs = keras.Input((1,))
    x = keras.layers.Dense(32, activation="relu")(inputs)
    x = keras.layers.Dropout(0.1)(x)
    outputs = keras.layers.Dense(1)(x)
    model = kr.SeededModel(inputs, outputs, seed=SEED) if seeded else keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    x_train = np.arange(10, dtype="float32").reshape(-1, 1)
    y_train = x_train / 10.0
    model.fit(x_train, y_train, epochs=EPOCHS, batch_size=2, shuffle=True, verbose=0)
    loss = float(model.evaluate(x_train, y_train, verbose=0))
    return {"loss": loss, "fingerprint": kr.fingerprint(model)}


@dataclass(frozen=True)
class DemoRun:
    """One demo training run in its own process."""

    kind: str  # "plain Keras" or "keras_repro"
    run: int
    loss: float
    fingerprint: str


def _start(seeded: bool) -> subprocess.Popen:
    env = child_environment({"PYTHONHASHSEED": "0"})
    env.pop("KERAS_REPRO_SEED", None)
    return subprocess.Popen(
        [sys.executable, "-m", "keras_repro.demo", "seeded" if seeded else "plain"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate()
    if proc.returncode != 0:
        shown = "".join(without_framework_logs(err.splitlines(keepends=True)))
        raise RuntimeError(f"demo run failed (exit {proc.returncode}):\n{shown[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def run_demo(runs: int = 3, on_run: Callable[[DemoRun], None] | None = None) -> list[DemoRun]:
    """Trains the demo model `runs` times each way, each in a fresh process.

    Two processes run at a time (one plain, one seeded).

    Args:
        runs: number of runs of each kind (>= 2).
        on_run: called with each finished `DemoRun`, for progress display.

    Returns:
        The runs, plain Keras first.
    """
    runs = _validate.check_int("runs", runs, minimum=2, allowed="The demo needs an integer >= 2")
    results: dict[str, list[DemoRun]] = {"plain Keras": [], "keras_repro": []}
    for k in range(1, runs + 1):
        procs = {"plain Keras": _start(seeded=False), "keras_repro": _start(seeded=True)}
        for kind, proc in procs.items():
            data = _result(proc)
            run = DemoRun(kind, k, data["loss"], data["fingerprint"])
            results[kind].append(run)
            if on_run is not None:
                on_run(run)
    return results["plain Keras"] + results["keras_repro"]


if __name__ == "__main__":
    print(json.dumps(train_sequence_model(seeded=sys.argv[1] == "seeded")))
