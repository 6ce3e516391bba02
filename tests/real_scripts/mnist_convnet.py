"""Simple MNIST convnet, after keras-io `examples/vision/mnist_convnet.py`.

The example's code structure is kept (a `Sequential` convnet with `Dropout`,
categorical cross-entropy, ``fit(x, y, batch_size, epochs,
validation_split=0.1)`` on NumPy arrays, so Keras shuffles the arrays, then
`evaluate`); the MNIST download is replaced by synthetic 28x28 digits from a
fixed NumPy generator, and the network is scaled down to train in seconds on
a CPU.

`--seeding` picks how (or whether) the script is seeded:

- ``none``: as in the example, nothing seeded.
- ``keras``: ``keras.utils.set_random_seed(0)`` at the top.
- ``seed_model_tf``: ``keras_repro.seed_model(model, 0)`` and
  ``tf.random.set_seed(0)`` (for the array shuffle); NumPy and Python
  ``random`` are left unseeded (nothing in the run draws from them).
- ``seed_model``: ``keras_repro.seed_model(model, 0)`` alone.
- ``seed_everything``: ``keras_repro.seed_everything(0)`` at the top.
- ``seeded_model``: the same layers as a functional
  ``keras_repro.SeededModel(inputs, outputs, seed=0)``.
- ``mixed_precision``: ``keras.utils.set_random_seed(0)``, the
  ``"mixed_float16"`` global policy (float32 output layer, as the mixed
  precision guide recommends) and an explicit `LossScaleOptimizer`.
"""

import argparse

import keras
import numpy as np
import tensorflow as tf
from keras import layers

import keras_repro

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument(
    "--seeding",
    default="none",
    choices=["none", "keras", "seed_model_tf", "seed_model", "seed_everything", "seeded_model", "mixed_precision"],
)
args = parser.parse_args()

if args.seeding in ("keras", "mixed_precision"):
    keras.utils.set_random_seed(0)
elif args.seeding == "seed_everything":
    keras_repro.seed_everything(0)
if args.seeding == "mixed_precision":
    keras.mixed_precision.set_global_policy("mixed_float16")

"""
## Prepare the data
"""

# Model / data parameters
num_classes = 10
input_shape = (28, 28, 1)

# Synthetic stand-in for `keras.datasets.mnist.load_data()`: a fixed generator,
# so the data are the same in every run whatever the seeding.
data_rng = np.random.default_rng(1234)
x_train = data_rng.integers(0, 256, size=(320, 28, 28), dtype=np.uint8)
x_test = data_rng.integers(0, 256, size=(64, 28, 28), dtype=np.uint8)
y_train = (x_train[:, 10:18, 10:18].mean(axis=(1, 2)) // 25.6).astype("int64").clip(0, 9)
y_test = (x_test[:, 10:18, 10:18].mean(axis=(1, 2)) // 25.6).astype("int64").clip(0, 9)

# Scale images to the [0, 1] range
x_train = x_train.astype("float32") / 255
x_test = x_test.astype("float32") / 255
# Make sure images have shape (28, 28, 1)
x_train = np.expand_dims(x_train, -1)
x_test = np.expand_dims(x_test, -1)
print("x_train shape:", x_train.shape)

# convert class vectors to binary class matrices
y_train = keras.utils.to_categorical(y_train, num_classes)
y_test = keras.utils.to_categorical(y_test, num_classes)

"""
## Build the model
"""

conv_layers = [
    layers.Conv2D(4, kernel_size=(3, 3), activation="relu"),
    layers.MaxPooling2D(pool_size=(2, 2)),
    layers.Conv2D(8, kernel_size=(3, 3), activation="relu"),
    layers.MaxPooling2D(pool_size=(2, 2)),
    layers.Flatten(),
    layers.Dropout(0.5),
    # float32 output under mixed precision, as the mixed precision guide says.
    layers.Dense(num_classes, activation="softmax", dtype="float32"),
]
if args.seeding == "seeded_model":
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for layer in conv_layers:
        x = layer(x)
    model = keras_repro.SeededModel(inputs, x, seed=0)
else:
    model = keras.Sequential([keras.Input(shape=input_shape), *conv_layers])

if args.seeding == "seed_model_tf":
    keras_repro.seed_model(model, 0)
    tf.random.set_seed(0)
elif args.seeding == "seed_model":
    keras_repro.seed_model(model, 0)

model.summary()

"""
## Train the model
"""

batch_size = 32

optimizer = keras.optimizers.Adam()
if args.seeding == "mixed_precision":
    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
model.compile(loss="categorical_crossentropy", optimizer=optimizer, metrics=["accuracy"])

model.fit(x_train, y_train, batch_size=batch_size, epochs=args.epochs, validation_split=0.1, verbose=2)

"""
## Evaluate the trained model
"""

score = model.evaluate(x_test, y_test, verbose=0)
print("Test loss:", score[0])
print("Test accuracy:", score[1])
