"""Structured data classification from scratch.

After keras-io `examples/structured_data/structured_data_classification_from_scratch.py`.

The example's code structure is kept: a table of numerical and categorical
features split into training and validation sets with
``dataframe.sample(frac=0.2, random_state=1337)``, a ``tf.data`` pipeline
of feature dictionaries whose categorical columns are one-hot encoded by
`IntegerLookup` and `StringLookup` layers in a ``map``, shuffled with
``ds.shuffle(buffer_size=len(dataframe))`` (no seed), each numerical
feature normalized by a `Normalization` layer adapted on that shuffled
dataset, a dictionary of `Input`s, a custom ``Classifier`` layer
(``Dense -> Dropout -> Dense``) over their concatenation, and
``fit(train_ds, validation_data=val_ds)``. The heart disease CSV is
replaced by a synthetic table of the same columns and size from a fixed
generator (a dictionary of NumPy columns instead of a pandas DataFrame), and
training is shortened.

`--seeding`:

- ``none``: as in the example, nothing seeded.
- ``keras``: ``keras.utils.set_random_seed(0)`` at the top.
- ``seed_model``: ``keras_repro.seed_model(model, 0)`` after the model is
  built, nothing else. The shuffles stay unseeded, so the batches differ
  between runs from the first step.

As in the example, the dictionary passed to ``keras.Model`` holds the
normalized tensors, not the `Input`s of the numerical features: Keras makes
those tensors inputs of their own, so the `Normalization` layers are not
part of the model, and their statistics (which an unseeded shuffle changes:
float sums in another order) are no part of its state. A check must not
count them.
"""

import argparse

import keras
import numpy as np
import tensorflow as tf
from keras import layers

import keras_repro

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--seeding", default="none", choices=["none", "keras", "seed_model"])
args = parser.parse_args()

if args.seeding == "keras":
    keras.utils.set_random_seed(0)

"""
## Preparing the data
"""

# Synthetic stand-in for heart.csv: 303 rows, the same 14 columns and types.
table_rng = np.random.default_rng(303)
n = 303
dataframe = {
    "age": table_rng.integers(29, 78, n).astype("float32"),
    "sex": table_rng.integers(0, 2, n),
    "cp": table_rng.integers(0, 5, n),
    "trestbps": table_rng.integers(94, 201, n).astype("float32"),
    "chol": table_rng.integers(126, 565, n).astype("float32"),
    "fbs": table_rng.integers(0, 2, n),
    "restecg": table_rng.integers(0, 3, n),
    "thalach": table_rng.integers(71, 203, n).astype("float32"),
    "exang": table_rng.integers(0, 2, n),
    "oldpeak": np.round(table_rng.uniform(0.0, 6.2, n), 1).astype("float32"),
    "slope": table_rng.integers(1, 4, n).astype("float32"),
    "ca": table_rng.integers(0, 4, n),
    "thal": table_rng.choice(["fixed", "normal", "reversible"], n),
    "target": table_rng.integers(0, 2, n),
}

# dataframe.sample(frac=0.2, random_state=1337) and dataframe.drop(val.index)
val_index = np.sort(np.random.RandomState(1337).permutation(n)[: int(round(0.2 * n))])
train_index = np.setdiff1d(np.arange(n), val_index)
val_dataframe = {k: v[val_index] for k, v in dataframe.items()}
train_dataframe = {k: v[train_index] for k, v in dataframe.items()}

"""
## Define dataset metadata
"""

TARGET_FEATURE_NAME = "target"
NUMERIC_FEATURE_NAMES = ["age", "trestbps", "thalach", "oldpeak", "slope", "chol"]
CATEGORICAL_FEATURES_WITH_VOCABULARY = {
    name: sorted(np.unique(values).tolist())
    for name, values in dataframe.items()
    if name not in NUMERIC_FEATURE_NAMES + [TARGET_FEATURE_NAME]
}
FEATURE_NAMES = NUMERIC_FEATURE_NAMES + list(CATEGORICAL_FEATURES_WITH_VOCABULARY.keys())

"""
## Feature preprocessing with Keras layers
"""


def encode_categorical(features, target):
    for feature_name in features:
        if feature_name in CATEGORICAL_FEATURES_WITH_VOCABULARY:
            lookup_class = layers.StringLookup if features[feature_name].dtype == "string" else layers.IntegerLookup
            vocabulary = CATEGORICAL_FEATURES_WITH_VOCABULARY[feature_name]
            index = lookup_class(vocabulary=vocabulary, mask_token=None, num_oov_indices=0, output_mode="binary")
            features[feature_name] = index(features[feature_name])
    return dict(features), target


def encode_numerical_feature(feature, name, dataset):
    normalizer = layers.Normalization()
    feature_ds = dataset.map(lambda x, y: x[name])
    feature_ds = feature_ds.map(lambda x: tf.expand_dims(x, -1))
    normalizer.adapt(feature_ds)
    return normalizer(feature)


def dataframe_to_dataset(dataframe):
    dataframe = dict(dataframe)
    labels = dataframe.pop("target")
    ds = tf.data.Dataset.from_tensor_slices((dataframe, labels)).map(encode_categorical)
    ds = ds.shuffle(buffer_size=len(labels))
    return ds


train_ds = dataframe_to_dataset(train_dataframe)
val_ds = dataframe_to_dataset(val_dataframe)
train_ds = train_ds.batch(32)
val_ds = val_ds.batch(32)

"""
## Build a model
"""


def create_model_inputs():
    inputs = {}
    for feature_name in FEATURE_NAMES:
        if feature_name in CATEGORICAL_FEATURES_WITH_VOCABULARY:
            num_categories = len(CATEGORICAL_FEATURES_WITH_VOCABULARY[feature_name])
            inputs[feature_name] = layers.Input(name=feature_name, shape=(num_categories,), dtype="int64")
        else:
            feature_input = layers.Input(name=feature_name, shape=(1,), dtype="float32")
            inputs[feature_name] = encode_numerical_feature(feature_input, feature_name, train_ds)
    return inputs


class Classifier(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense_1 = layers.Dense(32, activation="relu")
        self.dropout = layers.Dropout(0.5)
        self.dense_2 = layers.Dense(1, activation="sigmoid")

    def call(self, inputs):
        all_features = layers.concatenate(list(inputs.values()))
        x = self.dense_1(all_features)
        x = self.dropout(x)
        return self.dense_2(x)

    def build(self, input_shape):
        self.built = True


def create_model():
    all_inputs = create_model_inputs()
    output = Classifier()(all_inputs)
    return keras.Model(all_inputs, output)


model = create_model()
if args.seeding == "seed_model":
    keras_repro.seed_model(model, 0)
model.compile("adam", "binary_crossentropy", metrics=["accuracy"])

"""
## Train the model
"""

model.fit(train_ds, epochs=args.epochs, validation_data=val_ds, verbose=2)
