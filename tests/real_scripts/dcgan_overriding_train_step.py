"""DCGAN overriding `Model.train_step`, after keras-io `examples/generative/dcgan_overriding_train_step.py`.

The example's code structure is kept: a `GAN(keras.Model)` holding the
discriminator and the generator, a custom ``compile(d_optimizer,
g_optimizer, loss_fn)`` that keeps both optimizers as attributes (so
``model.optimizer`` is Keras' default and unused), a ``SeedGenerator(1337)``
for the latent vectors, label noise from an unseeded ``tf.random.uniform``,
`Mean` metric trackers, a `GANMonitor` callback sampling images with its own
``SeedGenerator(42)``, and ``fit`` on a shuffled, batched, prefetched
``tf.data`` pipeline. The image download is replaced by synthetic 16x16
images, and both networks are scaled down.

`--seeding`:

- ``none``: as in the example, nothing seeded globally.
- ``keras``: ``keras.utils.set_random_seed(0)`` at the top.

``--perturb-d-optimizer MARKER`` changes only the discriminator optimizer
between runs: the first run that finds no file ``MARKER`` creates it and uses
the example's learning rate; a run that finds it uses a slightly different
one. Everything else, the generator optimizer included, is identical.
"""

import argparse
import os

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from keras import ops

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--seeding", default="none", choices=["none", "keras"])
parser.add_argument("--perturb-d-optimizer", metavar="MARKER", default=None)
args = parser.parse_args()

if args.seeding == "keras":
    keras.utils.set_random_seed(0)

"""
## Prepare the data
"""

image_size = 16
batch_size = 16
# Synthetic stand-in for the CelebA faces (a fixed generator, same in every run).
data_rng = np.random.default_rng(7)
all_images = data_rng.uniform(size=(96, image_size, image_size, 3)).astype("float32")
dataset = tf.data.Dataset.from_tensor_slices(all_images)
dataset = dataset.shuffle(buffer_size=1024).batch(batch_size).prefetch(32)

"""
## Create the discriminator
"""

discriminator = keras.Sequential(
    [
        keras.Input(shape=(image_size, image_size, 3)),
        layers.Conv2D(8, kernel_size=4, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Conv2D(16, kernel_size=4, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Flatten(),
        layers.Dropout(0.2),
        layers.Dense(1, activation="sigmoid"),
    ],
    name="discriminator",
)

"""
## Create the generator
"""

latent_dim = 16

generator = keras.Sequential(
    [
        keras.Input(shape=(latent_dim,)),
        layers.Dense(4 * 4 * 16),
        layers.Reshape((4, 4, 16)),
        layers.Conv2DTranspose(16, kernel_size=4, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Conv2DTranspose(8, kernel_size=4, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Conv2D(3, kernel_size=5, padding="same", activation="sigmoid"),
    ],
    name="generator",
)

"""
## Override `train_step`
"""


class GAN(keras.Model):
    def __init__(self, discriminator, generator, latent_dim):
        super().__init__()
        self.discriminator = discriminator
        self.generator = generator
        self.latent_dim = latent_dim
        self.seed_generator = keras.random.SeedGenerator(1337)

    def compile(self, d_optimizer, g_optimizer, loss_fn):
        super().compile()
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        self.loss_fn = loss_fn
        self.d_loss_metric = keras.metrics.Mean(name="d_loss")
        self.g_loss_metric = keras.metrics.Mean(name="g_loss")

    @property
    def metrics(self):
        return [self.d_loss_metric, self.g_loss_metric]

    def train_step(self, real_images):
        # Sample random points in the latent space
        batch_size = ops.shape(real_images)[0]
        random_latent_vectors = keras.random.normal(shape=(batch_size, self.latent_dim), seed=self.seed_generator)

        # Decode them to fake images
        generated_images = self.generator(random_latent_vectors)

        # Combine them with real images
        combined_images = ops.concatenate([generated_images, real_images], axis=0)

        # Assemble labels discriminating real from fake images
        labels = ops.concatenate([ops.ones((batch_size, 1)), ops.zeros((batch_size, 1))], axis=0)
        # Add random noise to the labels - important trick!
        labels += 0.05 * tf.random.uniform(tf.shape(labels))

        # Train the discriminator
        with tf.GradientTape() as tape:
            predictions = self.discriminator(combined_images)
            d_loss = self.loss_fn(labels, predictions)
        grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))

        # Sample random points in the latent space
        random_latent_vectors = keras.random.normal(shape=(batch_size, self.latent_dim), seed=self.seed_generator)

        # Assemble labels that say "all real images"
        misleading_labels = ops.zeros((batch_size, 1))

        # Train the generator (note that we should *not* update the weights
        # of the discriminator)!
        with tf.GradientTape() as tape:
            predictions = self.discriminator(self.generator(random_latent_vectors))
            g_loss = self.loss_fn(misleading_labels, predictions)
        grads = tape.gradient(g_loss, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))

        # Update metrics
        self.d_loss_metric.update_state(d_loss)
        self.g_loss_metric.update_state(g_loss)
        return {
            "d_loss": self.d_loss_metric.result(),
            "g_loss": self.g_loss_metric.result(),
        }


"""
## Create a callback that periodically generates images
"""


class GANMonitor(keras.callbacks.Callback):
    def __init__(self, num_img=3, latent_dim=128):
        self.num_img = num_img
        self.latent_dim = latent_dim
        self.seed_generator = keras.random.SeedGenerator(42)

    def on_epoch_end(self, epoch, logs=None):
        random_latent_vectors = keras.random.normal(shape=(self.num_img, self.latent_dim), seed=self.seed_generator)
        generated_images = self.model.generator(random_latent_vectors)
        generated_images *= 255
        generated_images.numpy()  # the example saves them as PNG files here


"""
## Train the end-to-end model
"""

d_learning_rate = 0.0001
if args.perturb_d_optimizer is not None:
    if os.path.exists(args.perturb_d_optimizer):
        d_learning_rate = 0.00011
    else:
        with open(args.perturb_d_optimizer, "w") as marker:
            marker.write("first run\n")

gan = GAN(discriminator=discriminator, generator=generator, latent_dim=latent_dim)
gan.compile(
    d_optimizer=keras.optimizers.Adam(learning_rate=d_learning_rate),
    g_optimizer=keras.optimizers.Adam(learning_rate=0.0001),
    loss_fn=keras.losses.BinaryCrossentropy(),
)

gan.fit(dataset, epochs=args.epochs, callbacks=[GANMonitor(num_img=3, latent_dim=latent_dim)], verbose=2)
