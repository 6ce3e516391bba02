"""Two fits; in the second, a layer inside a nested model adds a per-process constant.

Fit 0 trains a hidden layer with a head. Fit 1 reuses the hidden layer inside
an `encoder` model that is itself used as a layer of a functional model,
followed by a layer whose output is shifted by a number that differs in
every process. The runs agree through fit 0 and part in fit 1's forward pass
of ``encoder/noisy``.
"""

import keras
from _common import PER_PROCESS
from _common import fit


class AddOffset(keras.layers.Layer):
    def __init__(self, offset, **kwargs):
        super().__init__(**kwargs)
        self.offset = offset

    def call(self, x):
        return x + self.offset


hidden = keras.layers.Dense(8, name="hidden")
first = keras.Sequential([keras.Input((4,)), hidden, keras.layers.Dense(1, name="out")], name="first")
fit(first)

encoder = keras.Sequential([keras.Input((4,)), hidden, AddOffset(PER_PROCESS * 1e-3, name="noisy")], name="encoder")
inputs = keras.Input((4,))
second = keras.Model(inputs, keras.layers.Dense(1, name="head")(encoder(inputs)), name="second")
fit(second)
