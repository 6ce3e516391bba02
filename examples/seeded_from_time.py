"""A training script that is NOT reproducible: it seeds from the clock.

Seeding from the time is a common way to "get different runs": it makes
every run differ, and `keras-repro check` finds where (here: the initial
weights, before the first step).

Run: keras-repro check examples/seeded_from_time.py
"""

import time

import keras
import numpy as np

keras.utils.set_random_seed(time.time_ns() % 2**31)

x = np.linspace(-1, 1, 128, dtype="float32").reshape(-1, 1)
y = np.sin(3 * x)

model = keras.Sequential(
    [
        keras.Input((1,)),
        keras.layers.Dense(16, activation="tanh"),
        keras.layers.Dense(1),
    ]
)
model.compile(optimizer="adam", loss="mse")
model.fit(x, y, epochs=2, batch_size=32, verbose=0)
