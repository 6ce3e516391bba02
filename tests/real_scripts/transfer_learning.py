"""Transfer learning and fine-tuning, after keras-io `guides/transfer_learning.py`.

The guide's end-to-end example is kept in structure: images resized in a
``tf.data`` map, random augmentation layers (`RandomFlip`, `RandomRotation`)
applied in a sequential ``map``, batching, prefetching and caching; a base
model frozen with ``base_model.trainable = False`` and called with
``training=False`` (so its `BatchNormalization` stays in inference mode) under
a new head (`Rescaling`, `GlobalAveragePooling2D`, `Dropout`, `Dense`);
``fit`` of the head, then ``base_model.trainable = True``, a new ``compile``
with a low learning rate and a second ``fit`` (fine-tuning). The
cats_vs_dogs download is replaced by synthetic images from a fixed
generator, and the pre-trained Xception by a small convolutional base (its
weights are not downloaded).

`--seeding`:

- ``none``: as in the guide, nothing seeded.
- ``keras``: ``keras.utils.set_random_seed(0)`` at the top.
- ``seeded_model``: the model built as ``keras_repro.SeededModel(inputs,
  outputs, seed=0)``; the augmentation layers, which run in the data
  pipeline and not in the model, get explicit seeds
  (``RandomFlip(..., seed=1)``, ``RandomRotation(..., seed=2)``).

``--unseeded-augmentation`` leaves the augmentation layers without a seed
(with ``seeded_model``: the model is seeded, the data pipeline is not).
"""

import argparse

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from tensorflow import data as tf_data

import keras_repro

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--seeding", default="none", choices=["none", "keras", "seeded_model"])
parser.add_argument("--unseeded-augmentation", action="store_true")
args = parser.parse_args()

if args.seeding == "keras":
    keras.utils.set_random_seed(0)

"""
## Getting the data
"""

# Synthetic stand-in for tfds "cats_vs_dogs" (a fixed generator), images of
# varying sizes as in the original.
data_rng = np.random.default_rng(1000)


def images(n):
    sizes = data_rng.integers(28, 40, size=n)
    return [data_rng.integers(0, 256, size=(s, s, 3)).astype("uint8") for s in sizes], data_rng.integers(0, 2, size=n)


def as_dataset(xs, ys):
    return tf_data.Dataset.from_generator(
        lambda: iter(zip(xs, ys)),
        output_signature=(tf.TensorSpec((None, None, 3), tf.uint8), tf.TensorSpec((), tf.int64)),
    )


train_ds = as_dataset(*images(64))
validation_ds = as_dataset(*images(16))

"""
## Standardizing the data
"""

resize_fn = keras.layers.Resizing(32, 32)

train_ds = train_ds.map(lambda x, y: (resize_fn(x), y))
validation_ds = validation_ds.map(lambda x, y: (resize_fn(x), y))

"""
## Using random data augmentation
"""

augmentation_seeds = (1, 2) if args.seeding == "seeded_model" and not args.unseeded_augmentation else (None, None)
augmentation_layers = [
    layers.RandomFlip("horizontal", seed=augmentation_seeds[0]),
    layers.RandomRotation(0.1, seed=augmentation_seeds[1]),
]


def data_augmentation(x):
    for layer in augmentation_layers:
        x = layer(x)
    return x


train_ds = train_ds.map(lambda x, y: (data_augmentation(x), y))

batch_size = 16

train_ds = train_ds.batch(batch_size).prefetch(tf_data.AUTOTUNE).cache()
validation_ds = validation_ds.batch(batch_size).prefetch(tf_data.AUTOTUNE).cache()

"""
## Build a model
"""

# Stand-in for `keras.applications.Xception(weights="imagenet", include_top=False)`.
base_inputs = keras.Input(shape=(32, 32, 3))
b = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(base_inputs)
b = layers.BatchNormalization()(b)
b = layers.Activation("relu")(b)
b = layers.SeparableConv2D(16, 3, padding="same", use_bias=False)(b)
b = layers.BatchNormalization()(b)
b = layers.Activation("relu")(b)
base_model = keras.Model(base_inputs, b, name="base_model")

# Freeze the base_model
base_model.trainable = False

# Create new model on top
inputs = keras.Input(shape=(32, 32, 3))

# Pre-trained Xception weights requires that input be scaled
# from (0, 255) to a range of (-1., +1.), the rescaling layer
# outputs: `(inputs * scale) + offset`
scale_layer = keras.layers.Rescaling(scale=1 / 127.5, offset=-1)
x = scale_layer(inputs)

# The base model contains batchnorm layers. We want to keep them in inference mode
# when we unfreeze the base model for fine-tuning, so we make sure that the
# base_model is running in inference mode here.
x = base_model(x, training=False)
x = keras.layers.GlobalAveragePooling2D()(x)
x = keras.layers.Dropout(0.2)(x)  # Regularize with dropout
outputs = keras.layers.Dense(1)(x)
if args.seeding == "seeded_model":
    model = keras_repro.SeededModel(inputs, outputs, seed=0)
else:
    model = keras.Model(inputs, outputs)

"""
## Train the top layer
"""

model.compile(
    optimizer=keras.optimizers.Adam(),
    loss=keras.losses.BinaryCrossentropy(from_logits=True),
    metrics=[keras.metrics.BinaryAccuracy()],
)

print("Fitting the top layer of the model")
model.fit(train_ds, epochs=args.epochs, validation_data=validation_ds, verbose=2)

"""
## Do a round of fine-tuning of the entire model
"""

base_model.trainable = True

model.compile(
    optimizer=keras.optimizers.Adam(1e-5),  # Low learning rate
    loss=keras.losses.BinaryCrossentropy(from_logits=True),
    metrics=[keras.metrics.BinaryAccuracy()],
)

print("Fitting the end-to-end model")
model.fit(train_ds, epochs=1, validation_data=validation_ds, verbose=2)
