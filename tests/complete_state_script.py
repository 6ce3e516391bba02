"""Models whose training state lives beyond `model.optimizer`, and a script training them.

Importable (tests/test_complete_state.py builds the models in-process) and
runnable, for the two-process and kill-and-resume tests:

    python complete_state_script.py OUT_DIR MODEL [--every epoch|batch]
        [--backup] [--kill-at-epoch E]

MODEL is one of:

- ``gan``: a GAN after keras-io ``examples/generative/dcgan_overriding_train_step.py``
  (custom ``compile(d_optimizer, g_optimizer, loss_fn)`` calling
  ``super().compile()``, a ``train_step`` with two `GradientTape`s, latent
  vectors from ``keras.random.normal(..., seed=self.seed_generator)``), with
  tiny dense networks on synthetic vectors;
- ``distiller``: a teacher/student distiller after keras-io
  ``examples/vision/knowledge_distillation.py`` (custom ``compile`` with the
  student and distillation losses, ``alpha`` and ``temperature``, a custom
  ``compute_loss``); the teacher is trained first with its own optimizer;
- ``mixed``: a small model under the ``"mixed_float16"`` global policy (set
  here, in this process only), compiled with a
  `keras.optimizers.LossScaleOptimizer` around Adam whose loss scale grows
  every few steps.

The script calls ``keras.utils.set_random_seed(0)`` first, trains with a
`DeterminismCallback` writing OUT_DIR/trace.jsonl (``audit="off"``), with
``--backup`` also an ``ExactBackupAndRestore(OUT_DIR/backup, save_freq="epoch")``.
``--kill-at-epoch E`` SIGKILLs the process after the second batch of epoch
E (0-based), once: a marker file OUT_DIR/killed remembers it, so running the
same command again resumes and finishes. At the end it writes
OUT_DIR/final.json: the fingerprint, every variable's digest and kind,
each optimizer's step count by path, and a `LossScaleOptimizer`'s loss scale
and growth counter.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from keras import ops

import keras_repro as kr
from keras_repro.fingerprint import fingerprint_details

LATENT_DIM = 3
FEATURES = 4
BATCH_SIZE = 8
EPOCHS = 4

# ----------------------------------------------------------------------------- GAN


class GAN(keras.Model):
    """The keras-io DCGAN's structure, with the label noise drawn from the model's seed generator.

    (The example draws it with an unseeded ``tf.random.uniform``, whose
    kernel state no checkpoint can hold.)
    """

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
        batch_size = ops.shape(real_images)[0]
        random_latent_vectors = keras.random.normal(shape=(batch_size, self.latent_dim), seed=self.seed_generator)
        generated_images = self.generator(random_latent_vectors)
        combined_images = ops.concatenate([generated_images, real_images], axis=0)
        labels = ops.concatenate([ops.ones((batch_size, 1)), ops.zeros((batch_size, 1))], axis=0)
        labels += 0.05 * keras.random.uniform(ops.shape(labels), seed=self.seed_generator)

        with tf.GradientTape() as tape:
            predictions = self.discriminator(combined_images)
            d_loss = self.loss_fn(labels, predictions)
        grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))

        random_latent_vectors = keras.random.normal(shape=(batch_size, self.latent_dim), seed=self.seed_generator)
        misleading_labels = ops.zeros((batch_size, 1))
        with tf.GradientTape() as tape:
            predictions = self.discriminator(self.generator(random_latent_vectors))
            g_loss = self.loss_fn(misleading_labels, predictions)
        grads = tape.gradient(g_loss, self.generator.trainable_weights)
        self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))

        self.d_loss_metric.update_state(d_loss)
        self.g_loss_metric.update_state(g_loss)
        return {"d_loss": self.d_loss_metric.result(), "g_loss": self.g_loss_metric.result()}


def make_gan(d_optimizer: keras.optimizers.Optimizer | None = None) -> GAN:
    """A compiled GAN; `d_optimizer` defaults to Adam, as in the example."""
    discriminator = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            layers.Dense(8),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Dropout(0.2),
            layers.Dense(1, activation="sigmoid"),
        ],
        name="discriminator",
    )
    generator = keras.Sequential(
        [keras.Input((LATENT_DIM,)), layers.Dense(8), layers.LeakyReLU(negative_slope=0.2), layers.Dense(FEATURES)],
        name="generator",
    )
    gan = GAN(discriminator=discriminator, generator=generator, latent_dim=LATENT_DIM)
    gan.compile(
        d_optimizer=d_optimizer or keras.optimizers.Adam(learning_rate=0.001),
        g_optimizer=keras.optimizers.Adam(learning_rate=0.001),
        loss_fn=keras.losses.BinaryCrossentropy(),
    )
    return gan


def gan_data(batches: int = 6) -> tf.data.Dataset:
    """Synthetic "images": `batches` batches of 8 vectors, in the same order every epoch."""
    images = np.random.default_rng(7).normal(size=(batches * BATCH_SIZE, FEATURES)).astype("float32")
    return tf.data.Dataset.from_tensor_slices(images).batch(BATCH_SIZE)


# ----------------------------------------------------------------------------- distiller


class Distiller(keras.Model):
    """The keras-io distiller: the student's predictions, trained against labels and the teacher."""

    def __init__(self, student, teacher):
        super().__init__()
        self.teacher = teacher
        self.student = student

    def compile(self, optimizer, metrics, student_loss_fn, distillation_loss_fn, alpha=0.1, temperature=3):
        super().compile(optimizer=optimizer, metrics=metrics)
        self.student_loss_fn = student_loss_fn
        self.distillation_loss_fn = distillation_loss_fn
        self.alpha = alpha
        self.temperature = temperature

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, allow_empty=False):
        teacher_pred = self.teacher(x, training=False)
        student_loss = self.student_loss_fn(y, y_pred)
        distillation_loss = self.distillation_loss_fn(
            ops.softmax(teacher_pred / self.temperature, axis=1),
            ops.softmax(y_pred / self.temperature, axis=1),
        ) * (self.temperature**2)
        return self.alpha * student_loss + (1 - self.alpha) * distillation_loss

    def call(self, x):
        return self.student(x)


def distiller_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(32, FEATURES)).astype("float32")
    return x, (x[:, 0] > x[:, 1]).astype("int32") + (x[:, 2] > 0).astype("int32")


def make_distiller() -> Distiller:
    """A distiller whose teacher (compiled with its own optimizer) has been trained first."""
    x, y = distiller_data()
    teacher = keras.Sequential(
        [keras.Input((FEATURES,)), layers.Dense(16), layers.LeakyReLU(negative_slope=0.2), layers.Dense(3)],
        name="teacher",
    )
    student = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            layers.Dense(4),
            layers.Dropout(0.1),
            layers.LeakyReLU(negative_slope=0.2),
            layers.Dense(3),
        ],
        name="student",
    )
    teacher.compile(
        optimizer=keras.optimizers.Adam(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
    )
    teacher.fit(x, y, epochs=2, batch_size=BATCH_SIZE, verbose=0)
    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(
        optimizer=keras.optimizers.Adam(),
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
        student_loss_fn=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        distillation_loss_fn=keras.losses.KLDivergence(),
        alpha=0.1,
        temperature=10,
    )
    return distiller


# ----------------------------------------------------------------------------- mixed precision


def make_mixed() -> keras.Model:
    """Under the current policy (set "mixed_float16" first): a model with a growing loss scale."""
    model = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            layers.Dense(16, activation="relu"),
            layers.Dropout(0.2),
            layers.Dense(1, dtype="float32"),
        ]
    )
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.01), dynamic_growth_steps=5)
    model.compile(optimizer=optimizer, loss="mse")
    return model


def mixed_data() -> tuple[np.ndarray, np.ndarray]:
    """6 batches of 8; with `make_mixed`, the first step of epochs 0, 2 and 3 overflows and is skipped."""
    x = np.random.default_rng(2).normal(size=(48, FEATURES)).astype("float32")
    return x, x[:, :2].sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------- the script


def _build(name: str):
    """The model and the `fit` arguments for its data."""
    if name == "gan":
        return make_gan(), {"x": gan_data(), "shuffle": False}
    if name == "distiller":
        x, y = distiller_data()
        return make_distiller(), {"x": x, "y": y, "batch_size": BATCH_SIZE, "shuffle": False}
    keras.mixed_precision.set_global_policy("mixed_float16")
    x, y = mixed_data()
    return make_mixed(), {"x": x, "y": y, "batch_size": BATCH_SIZE, "shuffle": False}


class KillAtEpoch(keras.callbacks.Callback):
    """SIGKILLs the process after the second batch of `epoch`, once (see `marker`)."""

    def __init__(self, epoch: int | None, marker: Path):
        super().__init__()
        self.kill_epoch = epoch
        self.marker = marker
        self.epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.kill_epoch is not None and self.epoch == self.kill_epoch and batch == 1 and not self.marker.exists():
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("model", choices=["gan", "distiller", "mixed"])
    parser.add_argument("--every", default="epoch")
    parser.add_argument("--backup", action="store_true")
    parser.add_argument("--kill-at-epoch", type=int)
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    model, data = _build(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    callbacks = [kr.DeterminismCallback(trace=args.out / "trace.jsonl", every=args.every, audit="off")]
    if args.backup:
        callbacks.append(kr.callbacks.ExactBackupAndRestore(args.out / "backup", save_freq="epoch"))
    callbacks.append(KillAtEpoch(args.kill_at_epoch, args.out / "killed"))
    model.fit(**data, epochs=EPOCHS, verbose=0, callbacks=callbacks)

    details = fingerprint_details(model)
    final = {
        "fingerprint": details.digest,
        "variables": details.variables,
        "kinds": details.kinds,
        "iterations": details.iterations,
        "optimizer_steps": {
            path: int(keras.ops.convert_to_numpy(optimizer.iterations))
            for path, optimizer in kr.paths.optimizer_paths(model).items()
        },
        "policy": keras.mixed_precision.global_policy().name,
    }
    if isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer):
        final["loss_scale"] = {
            "dynamic_scale": float(model.optimizer.dynamic_scale.numpy()),
            "step_counter": int(model.optimizer.step_counter.numpy()),
        }
    (args.out / "final.json").write_text(json.dumps(final))


if __name__ == "__main__":
    main()
