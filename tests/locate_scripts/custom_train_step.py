"""A model whose own train_step scales its gradients by a per-process factor."""

import keras
import tensorflow as tf
from _common import PER_PROCESS
from _common import fit

FACTOR = 1.0 + PER_PROCESS * 1e-3


class Net(keras.Sequential):
    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            loss = self.compute_loss(x=x, y=y, y_pred=self(x, training=True))
        grads = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply([g * FACTOR for g in grads], self.trainable_weights)
        return {"loss": loss}


model = Net([keras.Input((4,)), keras.layers.Dense(8, name="hidden"), keras.layers.Dense(1, name="out")])
fit(model)
