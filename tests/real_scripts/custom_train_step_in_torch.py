"""A PyTorch `train_step`, after keras-io `guides/custom_train_step_in_torch.py`.

The guide's code structure is kept: a `CustomModel(keras.Model)` whose
``train_step(self, data)`` calls ``self.zero_grad()``, computes the loss
with ``compute_loss``, calls ``loss.backward()``, applies the gradients of
the parameters with ``self.optimizer.apply`` under ``torch.no_grad()``,
updates the metrics and returns their results. A Dropout layer is added, so
that the step draws random numbers too; the data are synthetic, as in the
guide, but from a fixed generator. Runs on the PyTorch backend only.

`--seeding`:

- ``none``: as in the guide, nothing seeded.
- ``keras``: ``keras.utils.set_random_seed(0)`` at the top.
"""

import argparse

import keras
import numpy as np
import torch

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--seeding", default="none", choices=["none", "keras"])
args = parser.parse_args()

if args.seeding == "keras":
    keras.utils.set_random_seed(0)


class CustomModel(keras.Model):
    def train_step(self, data):
        x, y = data
        self.zero_grad()
        y_pred = self(x, training=True)
        loss = self.compute_loss(y=y, y_pred=y_pred)
        loss.backward()
        trainable_weights = [v for v in self.trainable_weights]
        gradients = [v.value.grad for v in trainable_weights]
        with torch.no_grad():
            self.optimizer.apply(gradients, trainable_weights)
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
            else:
                metric.update_state(y, y_pred)
        return {m.name: m.result() for m in self.metrics}


inputs = keras.Input(shape=(32,))
hidden = keras.layers.Dropout(0.2)(keras.layers.Dense(16, activation="relu")(inputs))
model = CustomModel(inputs, keras.layers.Dense(1)(hidden))
model.compile(optimizer="adam", loss="mse", metrics=["mae"])
data = np.random.default_rng(3)
x = data.random((256, 32)).astype("float32")
y = data.random((256, 1)).astype("float32")
model.fit(x, y, epochs=args.epochs, verbose=0)
