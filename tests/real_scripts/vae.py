"""Variational AutoEncoder, after keras-io `examples/generative/vae.py`.

The example's code structure is kept: a `Sampling` layer drawing epsilon
with its own ``keras.random.SeedGenerator(1337)``, a functional encoder
(``[z_mean, z_log_var, z]``) and decoder, a `VAE(keras.Model)` with `Mean`
loss trackers and a custom `train_step` (``tf.GradientTape``,
``self.optimizer.apply_gradients``), and ``fit(digits, epochs,
batch_size)`` on a NumPy array, so Keras shuffles it. The MNIST download is
replaced by synthetic 28x28 digits from a fixed generator, and the
encoder/decoder are scaled down.

`--seeding`:

- ``none``: as in the example, nothing seeded.
- ``keras``: ``keras.utils.set_random_seed(0)`` at the top.
- ``seed_model``: ``keras_repro.seed_model(vae, 0)`` alone: the weights and
  the `Sampling` generator are keyed by path, but the array shuffle is
  Keras' own and TensorFlow's global seed is unset.
- ``seed_model_tf``: ``seed_model(vae, 0)`` and ``tf.random.set_seed(0)``.
"""

import argparse

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from keras import ops

import keras_repro

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--seeding", default="none", choices=["none", "keras", "seed_model", "seed_model_tf"])
args = parser.parse_args()

if args.seeding == "keras":
    keras.utils.set_random_seed(0)

"""
## Create a sampling layer
"""


class Sampling(layers.Layer):
    """Uses (z_mean, z_log_var) to sample z, the vector encoding a digit."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(1337)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        batch = ops.shape(z_mean)[0]
        dim = ops.shape(z_mean)[1]
        epsilon = keras.random.normal(shape=(batch, dim), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon


"""
## Build the encoder
"""

latent_dim = 2

encoder_inputs = keras.Input(shape=(28, 28, 1))
x = layers.Conv2D(4, 3, activation="relu", strides=2, padding="same")(encoder_inputs)
x = layers.Conv2D(8, 3, activation="relu", strides=2, padding="same")(x)
x = layers.Flatten()(x)
x = layers.Dense(16, activation="relu")(x)
z_mean = layers.Dense(latent_dim, name="z_mean")(x)
z_log_var = layers.Dense(latent_dim, name="z_log_var")(x)
z = Sampling()([z_mean, z_log_var])
encoder = keras.Model(encoder_inputs, [z_mean, z_log_var, z], name="encoder")

"""
## Build the decoder
"""

latent_inputs = keras.Input(shape=(latent_dim,))
x = layers.Dense(7 * 7 * 8, activation="relu")(latent_inputs)
x = layers.Reshape((7, 7, 8))(x)
x = layers.Conv2DTranspose(8, 3, activation="relu", strides=2, padding="same")(x)
x = layers.Conv2DTranspose(4, 3, activation="relu", strides=2, padding="same")(x)
decoder_outputs = layers.Conv2DTranspose(1, 3, activation="sigmoid", padding="same")(x)
decoder = keras.Model(latent_inputs, decoder_outputs, name="decoder")

"""
## Define the VAE as a `Model` with a custom `train_step`
"""


class VAE(keras.Model):
    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.total_loss_tracker = keras.metrics.Mean(name="total_loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")

    @property
    def metrics(self):
        return [
            self.total_loss_tracker,
            self.reconstruction_loss_tracker,
            self.kl_loss_tracker,
        ]

    def train_step(self, data):
        with tf.GradientTape() as tape:
            z_mean, z_log_var, z = self.encoder(data)
            reconstruction = self.decoder(z)
            reconstruction_loss = ops.mean(
                ops.sum(
                    keras.losses.binary_crossentropy(data, reconstruction),
                    axis=(1, 2),
                )
            )
            kl_loss = -0.5 * (1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var))
            kl_loss = ops.mean(ops.sum(kl_loss, axis=1))
            total_loss = reconstruction_loss + kl_loss
        grads = tape.gradient(total_loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        self.total_loss_tracker.update_state(total_loss)
        self.reconstruction_loss_tracker.update_state(reconstruction_loss)
        self.kl_loss_tracker.update_state(kl_loss)
        return {
            "loss": self.total_loss_tracker.result(),
            "reconstruction_loss": self.reconstruction_loss_tracker.result(),
            "kl_loss": self.kl_loss_tracker.result(),
        }


"""
## Train the VAE
"""

# Synthetic stand-in for the MNIST digits (a fixed generator, same in every run).
data_rng = np.random.default_rng(99)
mnist_digits = data_rng.integers(0, 256, size=(256, 28, 28), dtype=np.uint8)
mnist_digits = np.expand_dims(mnist_digits, -1).astype("float32") / 255

vae = VAE(encoder, decoder)
if args.seeding == "seed_model":
    keras_repro.seed_model(vae, 0)
elif args.seeding == "seed_model_tf":
    keras_repro.seed_model(vae, 0)
    tf.random.set_seed(0)
vae.compile(optimizer=keras.optimizers.Adam())
vae.fit(mnist_digits, epochs=args.epochs, batch_size=32, verbose=2)
