import json

import keras
import numpy as np
import pytest

import keras_repro as kr
from keras_repro.state import model_rng_state
from keras_repro.state import set_model_rng_state
from procs import run_pythons

_MODEL = """
import numpy as np, keras, keras_repro as kr
def build():
    inits = kr.initializers.SeededInitializers(3)
    return keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(8, kernel_initializer=inits.glorot_uniform(key="a")),
        keras.layers.Dropout(0.5, seed=11),
        keras.layers.GaussianNoise(0.3, seed=12),
        keras.layers.Dense(1, kernel_initializer=inits.glorot_uniform(key="b")),
    ])
x = np.linspace(0, 1, 64, dtype="float32").reshape(16, 4)
y = x.sum(axis=1, keepdims=True)
def train(model, epochs):
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, y, epochs=epochs, batch_size=4, shuffle=False, verbose=0)
"""


def test_rng_state_carries_dropout_and_global_streams_to_another_process(tmp_path):
    weights, rng = tmp_path / "w.weights.h5", tmp_path / "rng.json"
    straight = (
        _MODEL
        + """
model = build(); train(model, 4)
emit([w.tolist() for w in model.get_weights()])
"""
    )
    first_half = (
        _MODEL
        + f"""
kr.seed_everything(1)
model = build(); train(model, 2)
model.save_weights({str(weights)!r}); kr.save_rng_state(model, {str(rng)!r})
emit(None)
"""
    )
    a, _ = run_pythons([straight, first_half])
    resume = (
        _MODEL
        + f"""
import random
random.random()  # the new process's global streams start elsewhere
model = build(); model.load_weights({str(weights)!r})
naive = keras.models.clone_model(model); naive.set_weights(model.get_weights())
kr.load_rng_state(model, {str(rng)!r})
train(model, 2)
train(naive, 2)
emit({{"exact": [w.tolist() for w in model.get_weights()],
       "naive": [w.tolist() for w in naive.get_weights()]}})
"""
    )
    (b,) = run_pythons([resume])
    assert b["exact"] == a  # bit-identical to the uninterrupted run
    assert b["naive"] != a  # without the RNG state the masks replay: the gap this closes


def test_state_round_trip_in_memory_and_json():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dropout(0.5, seed=1)])
    state = json.loads(json.dumps(model_rng_state(model)))
    model(np.ones((2, 3)), training=True)
    assert model_rng_state(model)["seed_generators"] != state["seed_generators"]
    set_model_rng_state(model, state)
    assert model_rng_state(model)["seed_generators"] == state["seed_generators"]


def test_state_from_another_model_is_refused_and_changes_nothing(tmp_path):
    source = keras.Sequential([keras.Input((3,)), keras.layers.Dropout(0.5, seed=1, name="drop")])
    target = keras.Sequential([keras.Input((3,)), keras.layers.GaussianNoise(0.1, seed=2)])
    path = tmp_path / "rng.json"
    kr.save_rng_state(source, path)
    before = model_rng_state(target)
    with pytest.raises(ValueError) as e:
        kr.load_rng_state(target, path)
    assert "drop/seed_generator" in str(e.value) and "gaussian_noise#0/seed_generator" in str(e.value)
    assert str(path) in str(e.value)
    assert model_rng_state(target) == before


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b'{"format": "keras_repro.rng_state", "vers', "corrupt or truncated"),
        (b'{"format": "something.else", "version": 1}', "found format 'something.else'"),
        (b'{"format": "keras_repro.rng_state", "version": 7}', "version 7 is not supported"),
    ],
)
def test_bad_rng_state_files_give_clear_errors(tmp_path, content, message):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dropout(0.5, seed=1)])
    path = tmp_path / "rng.json"
    path.write_bytes(content)
    before = model_rng_state(model)
    with pytest.raises(ValueError, match=message):
        kr.load_rng_state(model, path)
    assert model_rng_state(model) == before


def test_missing_file_raises_file_not_found(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dropout(0.5, seed=1)])
    with pytest.raises(FileNotFoundError):
        kr.load_rng_state(model, tmp_path / "nope.json")


def test_save_is_atomic_when_the_write_fails(tmp_path, monkeypatch):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dropout(0.5, seed=1)])
    path = tmp_path / "rng.json"
    kr.save_rng_state(model, path)
    good = path.read_bytes()
    import keras_repro._files as files

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "fsync", fail)
    model(np.ones((2, 3)), training=True)
    with pytest.raises(OSError, match="disk full"):
        kr.save_rng_state(model, path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["rng.json"]  # no temp file left behind
