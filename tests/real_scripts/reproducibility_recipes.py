"""Reproducibility in Keras models, after keras-io `examples/keras_recipes/reproducibility_recipes.py`.

The example's code structure is kept: ``keras.utils.set_random_seed(812)``
and ``tf.config.experimental.enable_op_determinism()`` at the top, seeded and
unseeded initializers called once each at the top level (as the example
shows them), a `Sequential` convnet with three `Dropout` layers compiled with
``jit_compile=False``, ``tf.data`` pipelines with a whole-dataset
``shuffle()`` without a seed and a parallel ``map`` that resizes the images,
``fit(train_data, epochs=2, validation_data=test_data)``, then `evaluate`.
The MNIST download is replaced by synthetic 28x28 digits from a fixed NumPy
generator, and the network is scaled down to train in seconds on a CPU.

`--seeding` picks how (or whether) the script is seeded:

- ``recipe``: as in the example.
- ``no_op_determinism``: ``keras.utils.set_random_seed(812)`` alone.
- ``initializers``: what the example's conclusion suggests on its own:
  every layer's ``kernel_initializer`` given a seed (biases start at
  zero), nothing else seeded (so the shuffle and the Dropout masks are not).
- ``none``: nothing seeded.
"""

import argparse

import keras
import numpy as np
import tensorflow as tf
from keras import initializers
from keras import layers

parser = argparse.ArgumentParser()
parser.add_argument("--seeding", default="recipe", choices=["recipe", "no_op_determinism", "initializers", "none"])
args = parser.parse_args()

if args.seeding in ("recipe", "no_op_determinism"):
    # Set the seed using keras.utils.set_random_seed. This will set:
    # 1) `numpy` seed
    # 2) backend random seed
    # 3) `python` random seed
    keras.utils.set_random_seed(812)
if args.seeding == "recipe":
    tf.config.experimental.enable_op_determinism()

"""
## Weight initialization in Keras
"""

initializers_list = [
    initializers.RandomNormal,
    initializers.GlorotNormal,
    initializers.HeUniform,
    initializers.Orthogonal,
]
for initializer in initializers_list:
    for iteration in range(2):
        result = float(initializer(seed=42)(shape=(1, 1))[0, 0])
        print(f"{initializer.__name__}: iteration {iteration}, result {result}")

glorot_normal_3 = keras.initializers.GlorotNormal()
glorot_normal_4 = keras.initializers.GlorotNormal()
result_3 = glorot_normal_3(shape=(3, 5))
result_4 = glorot_normal_4(shape=(3, 5))
print(f"Are the results equal? {np.allclose(result_3, result_4)}")

"""
## Reproducibility in model training process
"""


def seeded(seed):
    """A seeded kernel initializer (the ``initializers`` variant), else Keras' default."""
    return initializers.GlorotUniform(seed=seed) if args.seeding == "initializers" else "glorot_uniform"


def conv(filters, seed):
    return layers.Conv2D(filters, (3, 3), activation="relu", kernel_initializer=seeded(seed))


def dense(units, seed, activation):
    return layers.Dense(units, activation=activation, kernel_initializer=seeded(seed))


def train_model(train_data: tf.data.Dataset, test_data: tf.data.Dataset) -> dict:
    model = keras.Sequential(
        [
            conv(4, 1),
            layers.MaxPooling2D((2, 2)),
            layers.Dropout(0.2),
            conv(4, 2),
            layers.MaxPooling2D((2, 2)),
            layers.Dropout(0.2),
            conv(4, 3),
            layers.GlobalAveragePooling2D(),
            dense(8, 4, "relu"),
            layers.Dropout(0.2),
            dense(10, 5, "softmax"),
        ]
    )

    model.compile(
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=False,
    )
    history = model.fit(train_data, epochs=2, validation_data=test_data, verbose=2)

    print(f"Model accuracy on test data: {model.evaluate(test_data, verbose=0)[1] * 100:.2f}%")

    return history.history


# Synthetic stand-in for `keras.datasets.mnist.load_data()`: a fixed generator,
# so the data are the same in every run whatever the seeding.
data_rng = np.random.default_rng(1234)
train_images = data_rng.integers(0, 256, size=(256, 28, 28), dtype=np.uint8)
test_images = data_rng.integers(0, 256, size=(64, 28, 28), dtype=np.uint8)
train_labels = (train_images[:, 10:18, 10:18].mean(axis=(1, 2)) // 25.6).astype("int64").clip(0, 9)
test_labels = (test_images[:, 10:18, 10:18].mean(axis=(1, 2)) // 25.6).astype("int64").clip(0, 9)

# Construct tf.data.Dataset objects
train_ds = tf.data.Dataset.from_tensor_slices((train_images, train_labels))
test_ds = tf.data.Dataset.from_tensor_slices((test_images, test_labels))


def prepare_dataset(image, label):
    # Cast and normalize the image
    image = tf.cast(image, tf.float32) / 255.0

    # Expand the channel dimension
    image = tf.expand_dims(image, axis=-1)

    # Resize the image
    image = tf.image.resize(image, (32, 32))

    return image, label


# Prepare the datasets, batch-map --> vectorized operations
train_data = (
    train_ds.shuffle(buffer_size=len(train_images))
    .batch(batch_size=64)
    .map(prepare_dataset, num_parallel_calls=tf.data.AUTOTUNE)
    .prefetch(buffer_size=tf.data.AUTOTUNE)
)

test_data = (
    test_ds.batch(batch_size=64)
    .map(prepare_dataset, num_parallel_calls=tf.data.AUTOTUNE)
    .prefetch(buffer_size=tf.data.AUTOTUNE)
)

history = train_model(train_data, test_data)
print({key: [round(value, 6) for value in values] for key, values in history.items()})
