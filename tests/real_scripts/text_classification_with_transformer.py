"""Text classification with a Transformer, after keras-io `examples/nlp/text_classification_with_transformer.py`.

The example's code structure is kept: a `TransformerBlock` layer
(`MultiHeadAttention`, a `Sequential` feed-forward net, two
`LayerNormalization`, two `Dropout`), a `TokenAndPositionEmbedding` layer
(two `Embedding`s), a functional classifier with
``GlobalAveragePooling1D`` and more `Dropout`, and ``fit(x_train, y_train,
batch_size, epochs, validation_data=(x_val, y_val))`` on NumPy arrays. The
IMDB download is replaced by synthetic reviews from a fixed generator, and
the vocabulary, sequence length and widths are scaled down.

`--seeding`:

- ``none``: as in the example, nothing seeded.
- ``keras``: ``keras.utils.set_random_seed(0)`` at the top.
- ``seed_everything``: ``keras_repro.seed_everything(0)`` at the top.
- ``seeded_model``: the classifier built as
  ``keras_repro.SeededModel(inputs=inputs, outputs=outputs, seed=0)``
  instead of ``keras.Model``, nothing else seeded.
"""

import argparse

import keras
import numpy as np
from keras import layers
from keras import ops

import keras_repro

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--seeding", default="none", choices=["none", "keras", "seed_everything", "seeded_model"])
args = parser.parse_args()

if args.seeding == "keras":
    keras.utils.set_random_seed(0)
elif args.seeding == "seed_everything":
    keras_repro.seed_everything(0)

"""
## Implement a Transformer block as a layer
"""


class TransformerBlock(layers.Layer):
    def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1):
        super().__init__()
        self.att = layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
        self.ffn = keras.Sequential(
            [
                layers.Dense(ff_dim, activation="relu"),
                layers.Dense(embed_dim),
            ]
        )
        self.layernorm1 = layers.LayerNormalization(epsilon=1e-6)
        self.layernorm2 = layers.LayerNormalization(epsilon=1e-6)
        self.dropout1 = layers.Dropout(rate)
        self.dropout2 = layers.Dropout(rate)

    def call(self, inputs):
        attn_output = self.att(inputs, inputs)
        attn_output = self.dropout1(attn_output)
        out1 = self.layernorm1(inputs + attn_output)
        ffn_output = self.ffn(out1)
        ffn_output = self.dropout2(ffn_output)
        return self.layernorm2(out1 + ffn_output)


"""
## Implement embedding layer
"""


class TokenAndPositionEmbedding(layers.Layer):
    def __init__(self, maxlen, vocab_size, embed_dim):
        super().__init__()
        self.token_emb = layers.Embedding(input_dim=vocab_size, output_dim=embed_dim)
        self.pos_emb = layers.Embedding(input_dim=maxlen, output_dim=embed_dim)

    def call(self, x):
        maxlen = ops.shape(x)[-1]
        positions = ops.arange(start=0, stop=maxlen, step=1)
        positions = self.pos_emb(positions)
        x = self.token_emb(x)
        return x + positions


"""
## Download and prepare dataset
"""

vocab_size = 200  # Only consider the top 200 words
maxlen = 16  # Only consider the first 16 words of each movie review
# Synthetic stand-in for `keras.datasets.imdb.load_data(num_words=vocab_size)`.
data_rng = np.random.default_rng(20000)


def reviews(n):
    sequences = [list(data_rng.integers(1, vocab_size, size=data_rng.integers(4, 30))) for _ in range(n)]
    labels = np.array([int(np.mean(s) > vocab_size / 2) for s in sequences])
    return sequences, labels


(x_train, y_train), (x_val, y_val) = reviews(160), reviews(32)
print(len(x_train), "Training sequences")
print(len(x_val), "Validation sequences")
x_train = keras.utils.pad_sequences(x_train, maxlen=maxlen)
x_val = keras.utils.pad_sequences(x_val, maxlen=maxlen)

"""
## Create classifier model using transformer layer
"""

embed_dim = 8  # Embedding size for each token
num_heads = 2  # Number of attention heads
ff_dim = 8  # Hidden layer size in feed forward network inside transformer

inputs = layers.Input(shape=(maxlen,))
embedding_layer = TokenAndPositionEmbedding(maxlen, vocab_size, embed_dim)
x = embedding_layer(inputs)
transformer_block = TransformerBlock(embed_dim, num_heads, ff_dim)
x = transformer_block(x)
x = layers.GlobalAveragePooling1D()(x)
x = layers.Dropout(0.1)(x)
x = layers.Dense(8, activation="relu")(x)
x = layers.Dropout(0.1)(x)
outputs = layers.Dense(2, activation="softmax")(x)

if args.seeding == "seeded_model":
    model = keras_repro.SeededModel(inputs=inputs, outputs=outputs, seed=0)
else:
    model = keras.Model(inputs=inputs, outputs=outputs)

"""
## Train and Evaluate
"""

model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(x_train, y_train, batch_size=32, epochs=args.epochs, validation_data=(x_val, y_val), verbose=2)
