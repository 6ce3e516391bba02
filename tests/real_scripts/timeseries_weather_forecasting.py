"""Weather forecasting with an LSTM, after keras-io `examples/timeseries/timeseries_weather_forecasting.py`.

The example's code structure is kept: features normalized with the training
split's mean and std, ``keras.utils.timeseries_dataset_from_array`` windows
(``sequence_length = past // step``, ``sampling_rate=step``; not shuffled),
the input shape taken from one batch, ``Input -> LSTM(32) -> Dense(1)``,
Adam with an explicit learning rate, MSE, and `EarlyStopping` plus a
best-only weights `ModelCheckpoint` on ``val_loss``. The Jena climate
download is replaced by a synthetic 7-feature series from a fixed
generator, and the windows and the LSTM are scaled down.

`--seeding`:

- ``none``: as in the example, nothing seeded.
- ``keras``: ``keras.utils.set_random_seed(0)`` at the top.
- ``initializers``: the LSTM's and the Dense layer's initializers passed
  explicitly with integer seeds, no global seeding. The LSTM has no dropout
  and the windows are not shuffled, so nothing in training draws random
  numbers (the `LSTMCell` still owns a `SeedGenerator`, never drawn from).
"""

import argparse
import os
import tempfile

import keras
import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--seeding", default="none", choices=["none", "keras", "initializers"])
args = parser.parse_args()

if args.seeding == "keras":
    keras.utils.set_random_seed(0)

"""
## Climate data
"""

# Synthetic stand-in for the Jena climate CSV: 7 selected features
# (pressure, temperature, ...), hourly-ish, from a fixed generator.
data_rng = np.random.default_rng(2016)
n_rows = 1200
t = np.arange(n_rows, dtype="float64")
features = np.stack(
    [np.sin(2 * np.pi * t / (50 + 10 * k)) + 0.1 * data_rng.normal(size=n_rows) for k in range(7)], axis=1
).astype("float32")

split_fraction = 0.715
train_split = int(split_fraction * int(features.shape[0]))
step = 6

past = 60
future = 12
learning_rate = 0.001
batch_size = 64
epochs = args.epochs


def normalize(data, train_split):
    data_mean = data[:train_split].mean(axis=0)
    data_std = data[:train_split].std(axis=0)
    return (data - data_mean) / data_std


features = normalize(features, train_split)
train_data = features[0 : train_split - 1]
val_data = features[train_split:]

"""
## Training dataset
"""

start = past + future
end = start + train_split

x_train = train_data[:, :7]
y_train = features[start:end][:, [1]]

sequence_length = int(past / step)

dataset_train = keras.utils.timeseries_dataset_from_array(
    x_train,
    y_train,
    sequence_length=sequence_length,
    sampling_rate=step,
    batch_size=batch_size,
)

"""
## Validation dataset
"""

x_end = len(val_data) - past - future

label_start = train_split + past + future

x_val = val_data[:x_end][:, :7]
y_val = features[label_start:][:, [1]]

dataset_val = keras.utils.timeseries_dataset_from_array(
    x_val,
    y_val,
    sequence_length=sequence_length,
    sampling_rate=step,
    batch_size=batch_size,
)

for batch in dataset_train.take(1):
    inputs, targets = batch

print("Input shape:", inputs.numpy().shape)
print("Target shape:", targets.numpy().shape)

"""
## Training
"""

seeded = args.seeding == "initializers"
inputs = keras.layers.Input(shape=(inputs.shape[1], inputs.shape[2]))
lstm_out = keras.layers.LSTM(
    8,
    kernel_initializer=keras.initializers.GlorotUniform(seed=1) if seeded else "glorot_uniform",
    recurrent_initializer=keras.initializers.Orthogonal(seed=2) if seeded else "orthogonal",
    bias_initializer=keras.initializers.Zeros(),
)(inputs)
outputs = keras.layers.Dense(
    1, kernel_initializer=keras.initializers.GlorotUniform(seed=3) if seeded else "glorot_uniform"
)(lstm_out)

model = keras.Model(inputs=inputs, outputs=outputs)
model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss="mse")
model.summary()

workdir = tempfile.mkdtemp(prefix="weather-")
path_checkpoint = os.path.join(workdir, "model_checkpoint.weights.h5")
es_callback = keras.callbacks.EarlyStopping(monitor="val_loss", min_delta=0, patience=5)

modelckpt_callback = keras.callbacks.ModelCheckpoint(
    monitor="val_loss",
    filepath=path_checkpoint,
    verbose=1,
    save_weights_only=True,
    save_best_only=True,
)

history = model.fit(
    dataset_train,
    epochs=epochs,
    validation_data=dataset_val,
    callbacks=[es_callback, modelckpt_callback],
    verbose=2,
)
