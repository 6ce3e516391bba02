"""A reproducible model with Dropout and BatchNormalization: a probe must not change its steps."""

import keras
from _common import fit

model = keras.Sequential(
    [
        keras.Input((4,)),
        keras.layers.Dense(8, name="hidden"),
        keras.layers.BatchNormalization(name="norm"),
        keras.layers.Dropout(0.5, name="drop"),
        keras.layers.Dense(1, name="out"),
    ]
)
fit(model)
