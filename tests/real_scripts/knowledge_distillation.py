"""Knowledge distillation, after keras-io `examples/vision/knowledge_distillation.py`.

The example's code structure is kept: a teacher and a smaller student
(`Sequential` convnets), ``student_scratch = keras.models.clone_model(student)``,
a `Distiller(keras.Model)` whose custom ``compile`` takes the student and
distillation losses, ``alpha`` and ``temperature``, and whose
``compute_loss`` runs the teacher; then three ``fit`` calls on NumPy arrays
(teacher, distiller, student from scratch), each followed by `evaluate`.
The MNIST download is replaced by synthetic 28x28 digits from a fixed
generator, and the convnets are scaled down.

`--seeding`:

- ``none``: as in the example, nothing seeded.
- ``keras``: ``keras.utils.set_random_seed(0)`` at the top.
"""

import argparse

import keras
import numpy as np
from keras import layers
from keras import ops

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--seeding", default="none", choices=["none", "keras"])
args = parser.parse_args()

if args.seeding == "keras":
    keras.utils.set_random_seed(0)

"""
## Construct `Distiller()` class
"""


class Distiller(keras.Model):
    def __init__(self, student, teacher):
        super().__init__()
        self.teacher = teacher
        self.student = student

    def compile(
        self,
        optimizer,
        metrics,
        student_loss_fn,
        distillation_loss_fn,
        alpha=0.1,
        temperature=3,
    ):
        """Configure the distiller.

        Args:
            optimizer: Keras optimizer for the student weights
            metrics: Keras metrics for evaluation
            student_loss_fn: Loss function of difference between student
                predictions and ground-truth
            distillation_loss_fn: Loss function of difference between soft
                student predictions and soft teacher predictions
            alpha: weight to student_loss_fn and 1-alpha to distillation_loss_fn
            temperature: Temperature for softening probability distributions.
                Larger temperature gives softer distributions.
        """
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

        loss = self.alpha * student_loss + (1 - self.alpha) * distillation_loss
        return loss

    def call(self, x):
        return self.student(x)


"""
## Create student and teacher models
"""

# Create the teacher
teacher = keras.Sequential(
    [
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(16, (3, 3), strides=(2, 2), padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.MaxPooling2D(pool_size=(2, 2), strides=(1, 1), padding="same"),
        layers.Conv2D(32, (3, 3), strides=(2, 2), padding="same"),
        layers.Flatten(),
        layers.Dense(10),
    ],
    name="teacher",
)

# Create the student
student = keras.Sequential(
    [
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(4, (3, 3), strides=(2, 2), padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.MaxPooling2D(pool_size=(2, 2), strides=(1, 1), padding="same"),
        layers.Conv2D(8, (3, 3), strides=(2, 2), padding="same"),
        layers.Flatten(),
        layers.Dense(10),
    ],
    name="student",
)

# Clone student for later comparison
student_scratch = keras.models.clone_model(student)

"""
## Prepare the dataset
"""

# Synthetic stand-in for `keras.datasets.mnist.load_data()` (fixed generator).
data_rng = np.random.default_rng(2020)
x_train = data_rng.integers(0, 256, size=(256, 28, 28), dtype=np.uint8)
x_test = data_rng.integers(0, 256, size=(64, 28, 28), dtype=np.uint8)
y_train = (x_train[:, :, :14].mean(axis=(1, 2)) // 25.6).astype("int64").clip(0, 9)
y_test = (x_test[:, :, :14].mean(axis=(1, 2)) // 25.6).astype("int64").clip(0, 9)

# Normalize data
x_train = x_train.astype("float32") / 255.0
x_train = np.reshape(x_train, (-1, 28, 28, 1))

x_test = x_test.astype("float32") / 255.0
x_test = np.reshape(x_test, (-1, 28, 28, 1))

"""
## Train the teacher
"""

# Train teacher as usual
teacher.compile(
    optimizer=keras.optimizers.Adam(),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=[keras.metrics.SparseCategoricalAccuracy()],
)

# Train and evaluate teacher on data.
teacher.fit(x_train, y_train, epochs=args.epochs, verbose=2)
teacher.evaluate(x_test, y_test, verbose=0)

"""
## Distill teacher to student
"""

# Initialize and compile distiller
distiller = Distiller(student=student, teacher=teacher)
distiller.compile(
    optimizer=keras.optimizers.Adam(),
    metrics=[keras.metrics.SparseCategoricalAccuracy()],
    student_loss_fn=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    distillation_loss_fn=keras.losses.KLDivergence(),
    alpha=0.1,
    temperature=10,
)

# Distill teacher to student
distiller.fit(x_train, y_train, epochs=args.epochs, verbose=2)

# Evaluate student on test dataset
distiller.evaluate(x_test, y_test, verbose=0)

"""
## Train student from scratch for comparison
"""

# Train student as done usually
student_scratch.compile(
    optimizer=keras.optimizers.Adam(),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=[keras.metrics.SparseCategoricalAccuracy()],
)

# Train and evaluate student trained from scratch.
student_scratch.fit(x_train, y_train, epochs=args.epochs, verbose=2)
student_scratch.evaluate(x_test, y_test, verbose=0)
