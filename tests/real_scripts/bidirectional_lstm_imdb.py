"""Bidirectional LSTM on IMDB, after keras-io `examples/nlp/bidirectional_lstm_imdb.py`.

The example's code structure is kept: a functional model ``Input(shape=(None,),
dtype="int32") -> Embedding -> Bidirectional(LSTM(return_sequences=True)) ->
Bidirectional(LSTM) -> Dense(1, sigmoid)``, reviews padded with
``keras.utils.pad_sequences``, and ``fit(x_train, y_train, batch_size, epochs,
validation_data=(x_val, y_val))`` on NumPy arrays. The IMDB download is
replaced by synthetic variable-length reviews from a fixed generator, and the
vocabulary, review length and layer sizes are scaled down.

`--seeding`:

- ``none``: as in the example, nothing seeded.
- ``keras``: ``keras.utils.set_random_seed(0)`` at the top.
- ``seed_model_tf``: ``keras_repro.seed_model(model, 0)`` and
  ``tf.random.set_seed(0)`` (for the array shuffle) only.
- ``initializers``: every initializer passed explicitly with an integer seed
  (``GlorotUniform(seed=...)``, ``Orthogonal(seed=...)``, ...), no global
  seeding, ``shuffle=False``. The LSTMs have no dropout, so nothing in
  training draws random numbers (each `LSTMCell` still owns a
  `SeedGenerator`, never drawn from).
"""

import argparse

import keras
import numpy as np
import tensorflow as tf
from keras import initializers
from keras import layers

import keras_repro

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--seeding", default="none", choices=["none", "keras", "seed_model_tf", "initializers"])
args = parser.parse_args()

if args.seeding == "keras":
    keras.utils.set_random_seed(0)

max_features = 200  # Only consider the top 200 words
maxlen = 20  # Only consider the first 20 words of each movie review


def lstm(units, seed, **kwargs):
    """An LSTM; with ``--seeding initializers``, every initializer seeded explicitly."""
    if args.seeding == "initializers":
        kwargs.update(
            kernel_initializer=initializers.GlorotUniform(seed=seed),
            recurrent_initializer=initializers.Orthogonal(seed=seed + 1),
            bias_initializer=initializers.Zeros(),
        )
    return layers.LSTM(units, **kwargs)


seeded = args.seeding == "initializers"

"""
## Build the model
"""

# Input for variable-length sequences of integers
inputs = keras.Input(shape=(None,), dtype="int32")
# Embed each integer in a 16-dimensional vector
x = layers.Embedding(
    max_features, 16, embeddings_initializer=initializers.RandomUniform(-0.05, 0.05, seed=10) if seeded else "uniform"
)(inputs)
# Add 2 bidirectional LSTMs
x = layers.Bidirectional(lstm(8, seed=20, return_sequences=True))(x)
x = layers.Bidirectional(lstm(8, seed=30))(x)
# Add a classifier
outputs = layers.Dense(
    1,
    activation="sigmoid",
    kernel_initializer=initializers.GlorotUniform(seed=40) if seeded else "glorot_uniform",
)(x)
model = keras.Model(inputs, outputs)
if args.seeding == "seed_model_tf":
    keras_repro.seed_model(model, 0)
    tf.random.set_seed(0)
model.summary()

"""
## Load the IMDB movie review sentiment data
"""

# Synthetic stand-in for `keras.datasets.imdb.load_data(num_words=max_features)`:
# lists of word indices of varying length, from a fixed generator.
data_rng = np.random.default_rng(25000)


def reviews(n):
    sequences = [list(data_rng.integers(1, max_features, size=data_rng.integers(5, 40))) for _ in range(n)]
    labels = np.array([int(np.mean(s) > max_features / 2) for s in sequences])
    return sequences, labels


(x_train, y_train), (x_val, y_val) = reviews(160), reviews(32)
print(len(x_train), "Training sequences")
print(len(x_val), "Validation sequences")
# Use pad_sequence to standardize sequence length:
# this will truncate sequences longer than 20 words and zero-pad sequences shorter than 20 words.
x_train = keras.utils.pad_sequences(x_train, maxlen=maxlen)
x_val = keras.utils.pad_sequences(x_val, maxlen=maxlen)

"""
## Train and evaluate the model
"""

model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
model.fit(
    x_train,
    y_train,
    batch_size=32,
    epochs=args.epochs,
    validation_data=(x_val, y_val),
    shuffle=not seeded,
    verbose=2,
)
