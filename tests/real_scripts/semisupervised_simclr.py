"""Contrastive pretraining (SimCLR), after keras-io `examples/vision/semisupervised_simclr.py`.

The example's code structure is kept: an unlabeled and a labeled
``tf.data`` pipeline, each with an unseeded ``Dataset.shuffle``, zipped into
one; augmenters of `Rescaling`, `RandomFlip`, `RandomTranslation`,
`RandomZoom` and a custom `RandomColorAffine` layer that calls unseeded
``tf.random.uniform`` in its ``call``; a supervised baseline ``fit`` with
``validation_data``; a `ContrastiveModel(keras.Model)` whose custom
``compile(contrastive_optimizer, probe_optimizer)`` keeps both optimizers as
attributes (``super().compile()`` gets none, so Keras makes an unused
default one), whose ``train_step`` augments each batch twice and steps both
optimizers from two `tf.GradientTape` blocks, with its own ``test_step`` and
``metrics``; then a fine-tuning model built around the pretrained encoder.
The STL-10 download is replaced by synthetic 32x32 images, and the
networks and datasets are scaled down.

`--seeding`:

- ``none``: as in the example, nothing seeded.
- ``keras``: ``keras.utils.set_random_seed(0)`` at the top.
- ``seed_model_tf``: ``tf.random.set_seed(0)`` at the top (the shuffles and
  ``tf.random.uniform`` take their seeds from it) and
  ``keras_repro.seed_model`` on the baseline and the contrastive model (their
  weights and the augmentation layers' generators are keyed) and on the
  fine-tuning model's new augmenter, whose new head gets a seeded
  initializer (seeding the whole fine-tuning model would re-initialize the
  pretrained encoder).
  NumPy and Python's ``random`` stay unseeded, and nothing in training draws
  from them (building the fine-tuning model's layers does, between fits).

``--unseeded-finetuning`` (with ``seed_model_tf``) leaves the fine-tuning
model's new augmenter and head unseeded, as when a user seeds only the
models they built first: the third ``fit`` starts from other weights.
"""

import argparse
import math

import keras
import numpy as np
import tensorflow as tf
from keras import layers

import keras_repro

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--seeding", default="none", choices=["none", "keras", "seed_model_tf"])
parser.add_argument("--unseeded-finetuning", action="store_true")
args = parser.parse_args()

if args.seeding == "keras":
    keras.utils.set_random_seed(0)
elif args.seeding == "seed_model_tf":
    tf.random.set_seed(0)


def seed(model, value):
    if args.seeding == "seed_model_tf":
        keras_repro.seed_model(model, value)


"""
## Hyperparameter setup
"""
# Dataset hyperparameters
unlabeled_dataset_size = 64
labeled_dataset_size = 16
image_size = 32

# Algorithm hyperparameters
num_epochs = args.epochs
batch_size = 40  # Corresponds to 2 steps per epoch
width = 8
temperature = 0.1
# Stronger augmentations for contrastive, weaker ones for supervised training
contrastive_augmentation = {"min_area": 0.25, "brightness": 0.6, "jitter": 0.2}
classification_augmentation = {"min_area": 0.75, "brightness": 0.3, "jitter": 0.1}

"""
## Dataset
"""

# Synthetic stand-in for tfds "stl10" (a fixed generator).
data_rng = np.random.default_rng(96)


def split(n, labeled=True):
    images = data_rng.integers(0, 256, size=(n, image_size, image_size, 3)).astype("float32")
    labels = data_rng.integers(0, 10, size=n) if labeled else -np.ones(n, "int64")
    return tf.data.Dataset.from_tensor_slices((images, labels))


def prepare_dataset():
    steps_per_epoch = (unlabeled_dataset_size + labeled_dataset_size) // batch_size
    unlabeled_batch_size = unlabeled_dataset_size // steps_per_epoch
    labeled_batch_size = labeled_dataset_size // steps_per_epoch

    unlabeled_train_dataset = (
        split(unlabeled_dataset_size, labeled=False)
        .shuffle(buffer_size=10 * unlabeled_batch_size)
        .batch(unlabeled_batch_size)
    )
    labeled_train_dataset = (
        split(labeled_dataset_size).shuffle(buffer_size=10 * labeled_batch_size).batch(labeled_batch_size)
    )
    test_dataset = split(16).batch(batch_size).prefetch(buffer_size=tf.data.AUTOTUNE)

    train_dataset = tf.data.Dataset.zip((unlabeled_train_dataset, labeled_train_dataset)).prefetch(
        buffer_size=tf.data.AUTOTUNE
    )
    return train_dataset, labeled_train_dataset, test_dataset


train_dataset, labeled_train_dataset, test_dataset = prepare_dataset()

"""
## Image augmentations
"""


class RandomColorAffine(layers.Layer):
    def __init__(self, brightness=0, jitter=0, **kwargs):
        super().__init__(**kwargs)
        self.brightness = brightness
        self.jitter = jitter

    def get_config(self):
        config = super().get_config()
        config.update({"brightness": self.brightness, "jitter": self.jitter})
        return config

    def call(self, images, training=True):
        if training:
            batch_size = tf.shape(images)[0]
            brightness_scales = 1 + tf.random.uniform(
                (batch_size, 1, 1, 1), minval=-self.brightness, maxval=self.brightness
            )
            jitter_matrices = tf.random.uniform((batch_size, 1, 3, 3), minval=-self.jitter, maxval=self.jitter)
            color_transforms = tf.eye(3, batch_shape=[batch_size, 1]) * brightness_scales + jitter_matrices
            images = tf.clip_by_value(tf.matmul(images, color_transforms), 0, 1)
        return images


def get_augmenter(min_area, brightness, jitter):
    zoom_factor = 1.0 - math.sqrt(min_area)
    return keras.Sequential(
        [
            layers.Rescaling(1 / 255),
            layers.RandomFlip("horizontal"),
            layers.RandomTranslation(zoom_factor / 2, zoom_factor / 2),
            layers.RandomZoom((-zoom_factor, 0.0), (-zoom_factor, 0.0)),
            RandomColorAffine(brightness, jitter),
        ]
    )


"""
## Encoder architecture
"""


def get_encoder():
    return keras.Sequential(
        [
            layers.Conv2D(width, kernel_size=3, strides=2, activation="relu"),
            layers.Conv2D(width, kernel_size=3, strides=2, activation="relu"),
            layers.Conv2D(width, kernel_size=3, strides=2, activation="relu"),
            layers.Conv2D(width, kernel_size=3, strides=2, activation="relu"),
            layers.Flatten(),
            layers.Dense(width, activation="relu"),
        ],
        name="encoder",
    )


"""
## Supervised baseline model
"""

baseline_model = keras.Sequential(
    [
        keras.Input((image_size, image_size, 3)),
        get_augmenter(**classification_augmentation),
        get_encoder(),
        layers.Dense(10),
    ],
    name="baseline_model",
)
seed(baseline_model, 1)
baseline_model.compile(
    optimizer=keras.optimizers.Adam(),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")],
)
baseline_history = baseline_model.fit(labeled_train_dataset, epochs=num_epochs, validation_data=test_dataset, verbose=0)

"""
## Self-supervised model for contrastive pretraining
"""


class ContrastiveModel(keras.Model):
    def __init__(self):
        super().__init__()
        self.temperature = temperature
        self.contrastive_augmenter = get_augmenter(**contrastive_augmentation)
        self.classification_augmenter = get_augmenter(**classification_augmentation)
        self.encoder = get_encoder()
        self.projection_head = keras.Sequential(
            [keras.Input(shape=(width,)), layers.Dense(width, activation="relu"), layers.Dense(width)],
            name="projection_head",
        )
        self.linear_probe = keras.Sequential([layers.Input(shape=(width,)), layers.Dense(10)], name="linear_probe")

    def compile(self, contrastive_optimizer, probe_optimizer, **kwargs):
        super().compile(**kwargs)
        self.contrastive_optimizer = contrastive_optimizer
        self.probe_optimizer = probe_optimizer
        self.probe_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.contrastive_loss_tracker = keras.metrics.Mean(name="c_loss")
        self.contrastive_accuracy = keras.metrics.SparseCategoricalAccuracy(name="c_acc")
        self.probe_loss_tracker = keras.metrics.Mean(name="p_loss")
        self.probe_accuracy = keras.metrics.SparseCategoricalAccuracy(name="p_acc")

    @property
    def metrics(self):
        return [
            self.contrastive_loss_tracker,
            self.contrastive_accuracy,
            self.probe_loss_tracker,
            self.probe_accuracy,
        ]

    def contrastive_loss(self, projections_1, projections_2):
        projections_1 = tf.math.l2_normalize(projections_1, axis=1)
        projections_2 = tf.math.l2_normalize(projections_2, axis=1)
        similarities = tf.matmul(projections_1, projections_2, transpose_b=True) / self.temperature
        batch_size = tf.shape(projections_1)[0]
        contrastive_labels = tf.range(batch_size)
        self.contrastive_accuracy.update_state(contrastive_labels, similarities)
        self.contrastive_accuracy.update_state(contrastive_labels, tf.transpose(similarities))
        loss_1_2 = keras.losses.sparse_categorical_crossentropy(contrastive_labels, similarities, from_logits=True)
        loss_2_1 = keras.losses.sparse_categorical_crossentropy(
            contrastive_labels, tf.transpose(similarities), from_logits=True
        )
        return (loss_1_2 + loss_2_1) / 2

    def train_step(self, data):
        (unlabeled_images, _), (labeled_images, labels) = data
        images = tf.concat((unlabeled_images, labeled_images), axis=0)
        augmented_images_1 = self.contrastive_augmenter(images, training=True)
        augmented_images_2 = self.contrastive_augmenter(images, training=True)
        with tf.GradientTape() as tape:
            features_1 = self.encoder(augmented_images_1, training=True)
            features_2 = self.encoder(augmented_images_2, training=True)
            projections_1 = self.projection_head(features_1, training=True)
            projections_2 = self.projection_head(features_2, training=True)
            contrastive_loss = self.contrastive_loss(projections_1, projections_2)
        gradients = tape.gradient(
            contrastive_loss, self.encoder.trainable_weights + self.projection_head.trainable_weights
        )
        self.contrastive_optimizer.apply_gradients(
            zip(gradients, self.encoder.trainable_weights + self.projection_head.trainable_weights)
        )
        self.contrastive_loss_tracker.update_state(contrastive_loss)

        preprocessed_images = self.classification_augmenter(labeled_images, training=True)
        with tf.GradientTape() as tape:
            features = self.encoder(preprocessed_images, training=False)
            class_logits = self.linear_probe(features, training=True)
            probe_loss = self.probe_loss(labels, class_logits)
        gradients = tape.gradient(probe_loss, self.linear_probe.trainable_weights)
        self.probe_optimizer.apply_gradients(zip(gradients, self.linear_probe.trainable_weights))
        self.probe_loss_tracker.update_state(probe_loss)
        self.probe_accuracy.update_state(labels, class_logits)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        labeled_images, labels = data
        preprocessed_images = self.classification_augmenter(labeled_images, training=False)
        features = self.encoder(preprocessed_images, training=False)
        class_logits = self.linear_probe(features, training=False)
        probe_loss = self.probe_loss(labels, class_logits)
        self.probe_loss_tracker.update_state(probe_loss)
        self.probe_accuracy.update_state(labels, class_logits)
        return {m.name: m.result() for m in self.metrics[2:]}


pretraining_model = ContrastiveModel()
seed(pretraining_model, 2)
pretraining_model.compile(
    contrastive_optimizer=keras.optimizers.Adam(),
    probe_optimizer=keras.optimizers.Adam(),
)
pretraining_history = pretraining_model.fit(train_dataset, epochs=num_epochs, validation_data=test_dataset, verbose=0)

"""
## Supervised finetuning of the pretrained encoder
"""

# seed_model on the whole fine-tuning model would re-initialize the pretrained
# encoder: only its new parts are seeded.
seed_finetuning = args.seeding == "seed_model_tf" and not args.unseeded_finetuning
finetuning_augmenter = get_augmenter(**classification_augmentation)
if seed_finetuning:
    seed(finetuning_augmenter, 3)
head_initializer = keras.initializers.GlorotUniform(seed=4) if seed_finetuning else "glorot_uniform"
finetuning_model = keras.Sequential(
    [
        keras.Input((image_size, image_size, 3)),
        finetuning_augmenter,
        pretraining_model.encoder,
        layers.Dense(10, kernel_initializer=head_initializer),
    ],
    name="finetuning_model",
)
finetuning_model.compile(
    optimizer=keras.optimizers.Adam(),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")],
)
finetuning_history = finetuning_model.fit(
    labeled_train_dataset, epochs=num_epochs, validation_data=test_dataset, verbose=0
)
print("finetuning accuracy:", finetuning_history.history["val_acc"][-1])
