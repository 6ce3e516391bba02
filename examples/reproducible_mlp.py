"""A training script that is reproducible: `keras-repro check` says so.

A SeededModel owns its seed: initial weights, Dropout masks and the shuffled
data order are pure functions of (seed, layer path, step), whatever else
the program does with random numbers.

Run: keras-repro check examples/reproducible_mlp.py
"""

import argparse

import keras
import numpy as np

import keras_repro as kr

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--seed", type=int, default=42)
args = parser.parse_args()

rng = np.random.default_rng(0)  # the data: fixed, not part of the experiment
x = rng.normal(size=(256, 8)).astype("float32")
y = (x[:, :1] * 0.5 + x[:, 1:2] ** 2).astype("float32")

inputs = keras.Input((8,))
h = keras.layers.Dense(32, activation="relu")(inputs)
h = keras.layers.Dropout(0.2)(h)
outputs = keras.layers.Dense(1)(h)
model = kr.SeededModel(inputs, outputs, seed=args.seed)
model.compile(optimizer="adam", loss="mse")
history = model.fit(x, y, epochs=args.epochs, batch_size=32, shuffle=True, verbose=0)
print(f"final loss {history.history['loss'][-1]:.6f}")
