"""A layer whose forward pass adds a constant that differs in every process."""

import keras
from _common import PER_PROCESS
from _common import fit


class AddOffset(keras.layers.Layer):
    def call(self, x):
        return x + PER_PROCESS * 1e-3


model = keras.Sequential(
    [
        keras.Input((4,)),
        keras.layers.Dense(8, name="hidden"),
        AddOffset(name="noisy"),
        keras.layers.Dense(1, name="out"),
    ]
)
fit(model)
