"""A layer whose forward pass is the identity and whose gradient is scaled per process."""

import keras
import tensorflow as tf
from _common import PER_PROCESS
from _common import fit

FACTOR = 1.0 + PER_PROCESS * 1e-3


@tf.custom_gradient
def scaled_identity(x):
    def grad(dy):
        return dy * FACTOR

    return tf.identity(x), grad


class ScaleGradient(keras.layers.Layer):
    def call(self, x):
        return scaled_identity(x)


model = keras.Sequential(
    [
        keras.Input((4,)),
        keras.layers.Dense(8, name="hidden"),
        ScaleGradient(name="scaled"),
        keras.layers.Dense(1, name="out"),
    ]
)
fit(model)
