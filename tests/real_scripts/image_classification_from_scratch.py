"""Image classification from scratch, after keras-io `examples/vision/image_classification_from_scratch.py`.

The example's code structure is kept: a batched ``tf.data`` dataset shuffled
with ``seed=1337`` (as ``image_dataset_from_directory(seed=1337)`` does),
data augmentation layers (`RandomFlip`, `RandomRotation`) applied in the
data pipeline with ``train_ds.map(..., num_parallel_calls=AUTOTUNE)``,
prefetching, a small Xception-style network (`Rescaling`, `SeparableConv2D`,
`BatchNormalization`, residual connections, `Dropout`), binary
cross-entropy on logits, and a `ModelCheckpoint` callback saving
``save_at_{epoch}.keras``. The Cats vs Dogs download is replaced by synthetic
32x32 images from a fixed generator, and the network is scaled down.

`--seeding`:

- ``none``: as in the example, nothing seeded.
- ``keras``: ``keras.utils.set_random_seed(0)`` at the top. The random
  augmentation still runs in a parallel ``map``.

``--sequential-map`` runs the augmentation ``map`` without
``num_parallel_calls``.
"""

import argparse
import os
import tempfile

import keras
import numpy as np
from keras import layers
from tensorflow import data as tf_data

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--seeding", default="none", choices=["none", "keras"])
parser.add_argument("--sequential-map", action="store_true")
args = parser.parse_args()

if args.seeding == "keras":
    keras.utils.set_random_seed(0)

"""
## Generate a `Dataset`
"""

image_size = (32, 32)
batch_size = 16

# Synthetic stand-in for the Cats vs Dogs images (a fixed generator).
data_rng = np.random.default_rng(1337)
images = data_rng.integers(0, 256, size=(96,) + image_size + (3,)).astype("float32")
labels = (images[:, :, :16, 0].mean(axis=(1, 2)) > images[:, :, 16:, 0].mean(axis=(1, 2))).astype("int32")
n_val = 32
train_ds = (
    tf_data.Dataset.from_tensor_slices((images[n_val:], labels[n_val:]))
    .shuffle(buffer_size=batch_size * 8, seed=1337)
    .batch(batch_size)
)
val_ds = tf_data.Dataset.from_tensor_slices((images[:n_val], labels[:n_val])).batch(batch_size)

"""
## Using image data augmentation
"""

data_augmentation_layers = [
    layers.RandomFlip("horizontal"),
    layers.RandomRotation(0.1),
]


def data_augmentation(images):
    for layer in data_augmentation_layers:
        images = layer(images)
    return images


"""
## Configure the dataset for performance
"""

# Apply `data_augmentation` to the training images.
if args.sequential_map:
    train_ds = train_ds.map(lambda img, label: (data_augmentation(img), label))
else:
    train_ds = train_ds.map(
        lambda img, label: (data_augmentation(img), label),
        num_parallel_calls=tf_data.AUTOTUNE,
    )
# Prefetching samples in GPU memory helps maximize GPU utilization.
train_ds = train_ds.prefetch(tf_data.AUTOTUNE)
val_ds = val_ds.prefetch(tf_data.AUTOTUNE)

"""
## Build a model
"""


def make_model(input_shape, num_classes):
    inputs = keras.Input(shape=input_shape)

    # Entry block
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Conv2D(8, 3, strides=2, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)

    previous_block_activation = x  # Set aside residual

    for size in [8, 16]:
        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)

        x = layers.Activation("relu")(x)
        x = layers.SeparableConv2D(size, 3, padding="same")(x)
        x = layers.BatchNormalization()(x)

        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)

        # Project residual
        residual = layers.Conv2D(size, 1, strides=2, padding="same")(previous_block_activation)
        x = layers.add([x, residual])  # Add back residual
        previous_block_activation = x  # Set aside next residual

    x = layers.SeparableConv2D(16, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)

    x = layers.GlobalAveragePooling2D()(x)
    if num_classes == 2:
        units = 1
    else:
        units = num_classes

    x = layers.Dropout(0.25)(x)
    # We specify activation=None so as to return logits
    outputs = layers.Dense(units, activation=None)(x)
    return keras.Model(inputs, outputs)


model = make_model(input_shape=image_size + (3,), num_classes=2)

"""
## Train the model
"""

epochs = args.epochs
workdir = tempfile.mkdtemp(prefix="image-classification-")

callbacks = [
    keras.callbacks.ModelCheckpoint(os.path.join(workdir, "save_at_{epoch}.keras")),
]
model.compile(
    optimizer=keras.optimizers.Adam(3e-4),
    loss=keras.losses.BinaryCrossentropy(from_logits=True),
    metrics=[keras.metrics.BinaryAccuracy(name="acc")],
)
model.fit(
    train_ds,
    epochs=epochs,
    callbacks=callbacks,
    validation_data=val_ds,
    verbose=2,
)
