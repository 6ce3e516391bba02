"""A stateless JAX `train_step`, after keras-io `guides/custom_train_step_in_jax.py`.

The guide's code structure is kept: a `CustomModel(keras.Model)` with a
stateless ``compute_loss_and_updates`` built on ``stateless_call`` and
``stateless_compute_loss``, and a ``train_step(self, state, data)`` that
takes the gradients with ``jax.value_and_grad``, applies them with
``optimizer.stateless_apply``, updates each metric with
``stateless_update_state`` and returns ``(logs, state)``. A Dropout layer is
added, so that the step draws random numbers too; the data are synthetic,
as in the guide, but from a fixed generator. Runs on the JAX backend only.

`--seeding`:

- ``none``: as in the guide, nothing seeded.
- ``keras``: ``keras.utils.set_random_seed(0)`` at the top.
"""

import argparse

import jax
import keras
import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--seeding", default="none", choices=["none", "keras"])
args = parser.parse_args()

if args.seeding == "keras":
    keras.utils.set_random_seed(0)


class CustomModel(keras.Model):
    def compute_loss_and_updates(
        self, trainable_variables, non_trainable_variables, metrics_variables, x, y, sample_weight, training=False
    ):
        y_pred, non_trainable_variables = self.stateless_call(
            trainable_variables, non_trainable_variables, x, training=training
        )
        loss, (trainable_variables, non_trainable_variables, metrics_variables) = self.stateless_compute_loss(
            trainable_variables,
            non_trainable_variables,
            metrics_variables,
            x=x,
            y=y,
            y_pred=y_pred,
            sample_weight=sample_weight,
            training=training,
        )
        return loss, (y_pred, non_trainable_variables, metrics_variables)

    def train_step(self, state, data):
        trainable_variables, non_trainable_variables, optimizer_variables, metrics_variables = state
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        grad_fn = jax.value_and_grad(self.compute_loss_and_updates, has_aux=True)
        (loss, (y_pred, non_trainable_variables, metrics_variables)), grads = grad_fn(
            trainable_variables, non_trainable_variables, metrics_variables, x, y, sample_weight, training=True
        )
        trainable_variables, optimizer_variables = self.optimizer.stateless_apply(
            optimizer_variables, grads, trainable_variables
        )
        new_metrics_vars = []
        logs = {}
        for metric in self.metrics:
            this_metric_vars = metrics_variables[len(new_metrics_vars) : len(new_metrics_vars) + len(metric.variables)]
            if metric.name == "loss":
                this_metric_vars = metric.stateless_update_state(this_metric_vars, loss, sample_weight=sample_weight)
            else:
                this_metric_vars = metric.stateless_update_state(
                    this_metric_vars, y, y_pred, sample_weight=sample_weight
                )
            logs[metric.name] = metric.stateless_result(this_metric_vars)
            new_metrics_vars += this_metric_vars
        state = (trainable_variables, non_trainable_variables, optimizer_variables, new_metrics_vars)
        return logs, state


inputs = keras.Input(shape=(32,))
hidden = keras.layers.Dropout(0.2)(keras.layers.Dense(16, activation="relu")(inputs))
model = CustomModel(inputs, keras.layers.Dense(1)(hidden))
model.compile(optimizer="adam", loss="mse", metrics=["mae"])
data = np.random.default_rng(3)
x = data.random((256, 32))
y = data.random((256, 1))
model.fit(x, y, epochs=args.epochs, verbose=0)
