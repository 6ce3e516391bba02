"""Training from a `keras.utils.PyDataset` with workers, after keras-io `guides/training_with_built_in_methods.py`.

The guide's structure is kept: the ``get_uncompiled_model`` /
``get_compiled_model`` MLP on flattened 28x28 digits (RMSprop, sparse
categorical cross-entropy), an ``ExamplePyDataset(keras.utils.PyDataset)``
whose ``__init__`` passes ``**kwargs`` (``workers=...``) to ``super()`` and
whose ``__getitem__`` returns one batch, and ``fit(train_py_dataset,
validation_data=val_py_dataset, epochs)``. As in many real PyDatasets,
``__getitem__`` first reads its samples (here a short sleep stands for the
file reads of the original image loaders) and then augments them with
NumPy's global RNG (random noise), so with ``workers > 1`` the worker
threads draw from one shared stream in an order the scheduler decides. The
MNIST download is replaced by synthetic digits from a fixed generator, and
the MLP is scaled down.

`--seeding`:

- ``none``: nothing seeded.
- ``keras``: ``keras.utils.set_random_seed(0)`` at the top (seeds the NumPy
  global RNG the augmentation draws from).

``--workers N`` (default 2) is passed to the PyDataset; threads, not
processes (``use_multiprocessing=False``).
"""

import argparse
import time

import keras
import numpy as np
from keras import layers

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--seeding", default="none", choices=["none", "keras"])
parser.add_argument("--workers", type=int, default=2)
args = parser.parse_args()

if args.seeding == "keras":
    keras.utils.set_random_seed(0)


def get_uncompiled_model():
    inputs = keras.Input(shape=(784,), name="digits")
    x = layers.Dense(16, activation="relu", name="dense_1")(inputs)
    x = layers.Dense(16, activation="relu", name="dense_2")(x)
    outputs = layers.Dense(10, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs=inputs, outputs=outputs)
    return model


def get_compiled_model():
    model = get_uncompiled_model()
    model.compile(
        optimizer="rmsprop",
        loss="sparse_categorical_crossentropy",
        metrics=["sparse_categorical_accuracy"],
    )
    return model


# Synthetic stand-in for `keras.datasets.mnist.load_data()` (a fixed generator).
data_rng = np.random.default_rng(784)
x_train = data_rng.uniform(size=(256, 784)).astype("float32")
y_train = (x_train[:, :392].mean(axis=1) * 20 % 10).astype("int64")
x_val = data_rng.uniform(size=(64, 784)).astype("float32")
y_val = (x_val[:, :392].mean(axis=1) * 20 % 10).astype("int64")


class ExamplePyDataset(keras.utils.PyDataset):
    def __init__(self, x, y, batch_size, augment=False, **kwargs):
        super().__init__(**kwargs)
        self.x = x
        self.y = y
        self.batch_size = batch_size
        self.augment = augment

    def __len__(self):
        return int(np.ceil(len(self.x) / float(self.batch_size)))

    def __getitem__(self, idx):
        batch_x = []
        for i in range(idx * self.batch_size, min((idx + 1) * self.batch_size, len(self.x))):
            time.sleep(0.0005)  # reading sample i from disk
            sample = self.x[i]
            if self.augment:
                sample = sample + np.random.normal(scale=0.05, size=sample.shape).astype("float32")
            batch_x.append(sample)
        batch_y = self.y[idx * self.batch_size : (idx + 1) * self.batch_size]
        return np.stack(batch_x), batch_y


train_py_dataset = ExamplePyDataset(x_train, y_train, batch_size=16, augment=True, workers=args.workers)
val_py_dataset = ExamplePyDataset(x_val, y_val, batch_size=16)

model = get_compiled_model()
model.fit(train_py_dataset, validation_data=val_py_dataset, epochs=args.epochs, verbose=2)
