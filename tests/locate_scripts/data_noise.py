"""A PyDataset whose batches get noise from an unseeded NumPy generator."""

import keras
import numpy as np
from _common import X
from _common import Y
from _common import fit

noise = np.random.default_rng()  # unseeded: other noise in every process


class Noisy(keras.utils.PyDataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        x = X[index * 8 : (index + 1) * 8]
        return x + noise.normal(0.0, 1e-3, x.shape).astype("float32"), Y[index * 8 : (index + 1) * 8]


model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="hidden"), keras.layers.Dense(1, name="out")])
fit(model, Noisy())
