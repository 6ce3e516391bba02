"""Time series classification from scratch.

After keras-io `examples/timeseries/timeseries_classification_from_scratch.py`.

The example's code structure is kept: univariate series reshaped to
``(n, timesteps, 1)``, the training set shuffled once with NumPy's global
``np.random.permutation``, labels mapped to ``0..num_classes-1``, a fully
convolutional network (three ``Conv1D -> BatchNormalization -> ReLU``
blocks, ``GlobalAveragePooling1D``, softmax), `ModelCheckpoint`
(``save_best_only``), `ReduceLROnPlateau` and `EarlyStopping` on
``val_loss``, ``fit(..., validation_split=0.2)`` on arrays, then the best
model reloaded with ``keras.models.load_model`` and evaluated. The FordA
download is replaced by synthetic series from a fixed generator, and the
network and the callbacks' patience are scaled down.

`--seeding`:

- ``none``: as in the example, nothing seeded.
- ``keras``: ``keras.utils.set_random_seed(0)`` at the top.
- ``seed_model_tf``: ``keras_repro.seed_model(model, 0)`` and
  ``tf.random.set_seed(0)`` only. NumPy's global RNG stays unseeded, and the
  script's own ``np.random.permutation`` draws from it.
"""

import argparse
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

import keras_repro

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--seeding", default="none", choices=["none", "keras", "seed_model_tf"])
args = parser.parse_args()

if args.seeding == "keras":
    keras.utils.set_random_seed(0)

"""
## Load the data: the FordA dataset
"""

# Synthetic stand-in for FordA_TRAIN.tsv / FordA_TEST.tsv: noisy sines whose
# frequency tells the class (-1 or 1), from a fixed generator.
data_rng = np.random.default_rng(3601)


def readucr(n):
    y = data_rng.choice([-1, 1], size=n)
    t = np.linspace(0, 1, 64)
    x = np.sin(2 * np.pi * np.outer(3 + y, t)) + 0.5 * data_rng.normal(size=(n, 64))
    return x.astype("float32"), y.astype(int)


x_train, y_train = readucr(160)
x_test, y_test = readucr(48)

x_train = x_train.reshape((x_train.shape[0], x_train.shape[1], 1))
x_test = x_test.reshape((x_test.shape[0], x_test.shape[1], 1))

num_classes = len(np.unique(y_train))

idx = np.random.permutation(len(x_train))
x_train = x_train[idx]
y_train = y_train[idx]

y_train[y_train == -1] = 0
y_test[y_test == -1] = 0

"""
## Build a model
"""


def make_model(input_shape):
    input_layer = keras.layers.Input(input_shape)

    conv1 = keras.layers.Conv1D(filters=8, kernel_size=3, padding="same")(input_layer)
    conv1 = keras.layers.BatchNormalization()(conv1)
    conv1 = keras.layers.ReLU()(conv1)

    conv2 = keras.layers.Conv1D(filters=8, kernel_size=3, padding="same")(conv1)
    conv2 = keras.layers.BatchNormalization()(conv2)
    conv2 = keras.layers.ReLU()(conv2)

    conv3 = keras.layers.Conv1D(filters=8, kernel_size=3, padding="same")(conv2)
    conv3 = keras.layers.BatchNormalization()(conv3)
    conv3 = keras.layers.ReLU()(conv3)

    gap = keras.layers.GlobalAveragePooling1D()(conv3)

    output_layer = keras.layers.Dense(num_classes, activation="softmax")(gap)

    return keras.models.Model(inputs=input_layer, outputs=output_layer)


model = make_model(input_shape=x_train.shape[1:])
if args.seeding == "seed_model_tf":
    keras_repro.seed_model(model, 0)
    tf.random.set_seed(0)

"""
## Train the model
"""

epochs = args.epochs
batch_size = 32
workdir = tempfile.mkdtemp(prefix="timeseries-classification-")
best_model = os.path.join(workdir, "best_model.keras")

callbacks = [
    keras.callbacks.ModelCheckpoint(best_model, save_best_only=True, monitor="val_loss"),
    keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, min_lr=0.0001),
    keras.callbacks.EarlyStopping(monitor="val_loss", patience=2, verbose=1),
]
model.compile(
    optimizer="adam",
    loss="sparse_categorical_crossentropy",
    metrics=["sparse_categorical_accuracy"],
)
history = model.fit(
    x_train,
    y_train,
    batch_size=batch_size,
    epochs=epochs,
    callbacks=callbacks,
    validation_split=0.2,
    verbose=2,
)

"""
## Evaluate model on test data
"""

model = keras.models.load_model(best_model)

test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)

print("Test accuracy", test_acc)
print("Test loss", test_loss)
