"""A Dropout layer whose seed differs in every process: its masks differ from the first step."""

import keras
from _common import PER_PROCESS
from _common import fit

model = keras.Sequential(
    [
        keras.Input((4,)),
        keras.layers.Dense(8, name="hidden"),
        keras.layers.Dropout(0.5, seed=int(PER_PROCESS * 2**31), name="drop"),
        keras.layers.Dense(1, name="out"),
    ]
)
fit(model)
