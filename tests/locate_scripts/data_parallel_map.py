"""A tf.data pipeline whose parallel map adds noise from an unseeded generator.

The generator is created from the OS's entropy
(`tf.random.Generator.from_non_deterministic_state`), as augmentation code
often does, and used in ``Dataset.map(..., num_parallel_calls=2)``: other
noise in every process, whatever the seeding.
"""

import keras
import tensorflow as tf
from _common import X
from _common import Y
from _common import fit

noise = tf.random.Generator.from_non_deterministic_state()


def augment(x, y):
    return x + noise.normal(tf.shape(x), stddev=1e-3), y


data = tf.data.Dataset.from_tensor_slices((X, Y)).map(augment, num_parallel_calls=2).batch(8)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="hidden"), keras.layers.Dense(1, name="out")])
fit(model, data)
