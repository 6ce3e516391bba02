"""Train the same small model in two fresh processes and compare fingerprints.

The model learns the sequence 0.0, 0.1, ..., 0.9 from its index, with
Dropout and shuffling, so every random stream of a training run is in play.
Each run is a new Python process: identical output means bit-identical
training, not just a shared in-memory state.

Run: python examples/train_twice.py
"""

import os
import subprocess
import sys

SEED = 42


def train() -> None:
    import hashlib

    import keras
    import numpy as np

    import keras_repro as kr

    kr.seed_everything(SEED)
    inits = kr.initializers.SeededInitializers(SEED)
    model = keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(16, activation="relu", kernel_initializer=inits.he_normal(key="hidden")),
            keras.layers.Dropout(0.1, seed=kr.derive_seed(SEED, "dropout")),
            keras.layers.Dense(1, kernel_initializer=inits.glorot_uniform(key="out")),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    x = np.arange(10, dtype="float32").reshape(-1, 1)
    y = x / 10.0
    history = model.fit(x, y, epochs=40, batch_size=4, shuffle=True, verbose=0)
    digest = hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()
    print(f"final loss {history.history['loss'][-1]:.10f}  weights sha256 {digest[:16]}")


def main() -> int:
    env = {**os.environ, "PYTHONHASHSEED": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    lines = []
    for run in (1, 2):
        out = subprocess.run(
            [sys.executable, __file__, "--child"], env=env, capture_output=True, text=True
        )
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return 2
        lines.append(out.stdout.strip().splitlines()[-1])
        print(f"run {run}: {lines[-1]}")
    same = lines[0] == lines[1]
    print("identical: the two runs are bit-identical" if same else "DIFFERENT: not reproducible")
    return 0 if same else 1


if __name__ == "__main__":
    if "--child" in sys.argv:
        train()
    else:
        sys.exit(main())
