"""Fingerprints: coverage of every variable, one-ULP sensitivity, stable paths, the documented algorithm.

Stability across processes is checked in tests/test_callbacks.py, where two
separate processes write identical traces (fingerprints included).
"""

import json
import random

import keras
import numpy as np
import pytest
import xxhash

import keras_repro as kr
from keras_repro.fingerprint import Fingerprinter
from keras_repro.fingerprint import digest_array
from keras_repro.fingerprint import fingerprint_details
from keras_repro.fingerprint import fingerprint_rng_streams
from keras_repro.fingerprint import tracked_variables


def tiny_model(compile_it=True):
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4, name="hidden"),
            keras.layers.Dropout(0.5, seed=1),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(2),
        ]
    )
    if compile_it:
        model.compile(keras.optimizers.Adam(), "mse", metrics=["mae"])
    return model


@pytest.fixture(scope="module")
def trained():
    model = tiny_model()
    x = np.linspace(0, 1, 24, dtype="float32").reshape(8, 3)
    model.fit(x, np.ones((8, 2), "float32"), epochs=1, batch_size=4, verbose=0)
    return model, x


def nudge(variable, index=0):
    """Moves one element of `variable` by one ULP."""
    values = keras.ops.convert_to_numpy(variable).copy()
    flat = values.reshape(-1)
    flat[index] = np.nextafter(flat[index], np.array(np.inf, dtype=flat.dtype))
    variable.assign(values)


def test_covers_weights_seed_generators_and_optimizer_with_stable_paths(trained):
    model, _ = trained
    paths = list(kr.fingerprint_variables(model))
    assert paths[:8] == [
        "hidden/kernel",
        "hidden/bias",
        "batch_normalization#0/gamma",
        "batch_normalization#0/beta",
        "batch_normalization#0/moving_mean",
        "batch_normalization#0/moving_variance",
        "dense#0/kernel",
        "dense#0/bias",
    ]
    assert "dropout#0/seed_generator" in paths
    assert "optimizer/iterations" in paths and "optimizer/learning_rate" in paths
    for weight in ("hidden/kernel", "dense#0/bias", "batch_normalization#0/gamma"):
        assert f"optimizer/{weight}/momentum" in paths and f"optimizer/{weight}/velocity" in paths
    # every tracked variable once, and no auto-name counter in any path
    assert len(paths) == len(set(paths)) == 8 + 1 + 2 + 2 * 6
    assert not any("sequential" in p or "adam" in p for p in paths)


def test_metric_variables_are_excluded(trained):
    model, x = trained
    before = kr.fingerprint(model)
    model.evaluate(x, np.zeros((8, 2), "float32"), verbose=0)  # changes only metric accumulators
    assert any(float(keras.ops.convert_to_numpy(v)) != 0 for v in model.metrics_variables if v.shape == ())
    assert kr.fingerprint(model) == before


@pytest.mark.parametrize(
    "path",
    [
        "hidden/kernel",
        "dense#0/bias",
        "batch_normalization#0/moving_variance",
        "dropout#0/seed_generator",
        "optimizer/iterations",
        "optimizer/hidden/kernel/velocity",
    ],
)
def test_a_one_ulp_change_in_any_variable_changes_exactly_its_digest(trained, path):
    model, _ = trained
    variable = tracked_variables(model)[path]
    before = fingerprint_details(model)
    original = keras.ops.convert_to_numpy(variable).copy()
    try:
        if np.issubdtype(original.dtype, np.integer):
            variable.assign(original + np.ones_like(original))
        else:
            nudge(variable, index=original.size - 1)
        after = fingerprint_details(model)
    finally:
        variable.assign(original)
    assert after.digest != before.digest
    assert [p for p in before.variables if before.variables[p] != after.variables[p]] == [path]
    assert fingerprint_details(model).digest == before.digest  # restored: equal again


def test_fingerprint_of_functional_and_subclassed_models():
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(2, name="out")(keras.layers.Dense(4)(inputs))
    functional = keras.Model(inputs, outputs)
    assert list(kr.fingerprint_variables(functional)) == ["dense#0/kernel", "dense#0/bias", "out/kernel", "out/bias"]

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.encoder = keras.layers.Dense(4)
            self.drop = keras.layers.Dropout(0.1, seed=3)

        def call(self, x, training=False):
            return self.drop(self.encoder(x), training=training)

    net = Net()
    net(np.zeros((1, 3), "float32"))
    assert list(kr.fingerprint_variables(net)) == ["encoder/kernel", "encoder/bias", "drop/seed_generator"]


def test_documented_algorithm_reproduces_the_fingerprint():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, name="d")])
    entries = []
    for path, variable in (("d/kernel", model.layers[0].kernel), ("d/bias", model.layers[0].bias)):
        array = np.ascontiguousarray(keras.ops.convert_to_numpy(variable), dtype="<f4")
        shape = ",".join(map(str, array.shape))
        digest = xxhash.xxh3_64(f"float32|{shape}|".encode() + array.tobytes()).hexdigest()
        entries.append((path, shape, digest))
    text = "".join(f"{p}\tfloat32\t{s}\t{d}\n" for p, s, d in sorted(entries))
    assert kr.fingerprint(model) == xxhash.xxh3_128_hexdigest(text.encode())
    assert kr.fingerprint_variables(model) == {p: d for p, _, d in entries}


def test_digest_covers_dtype_and_shape_not_byte_order():
    a = np.arange(6, dtype="<f4")
    assert digest_array(a) == digest_array(a.astype(">f4"))
    assert digest_array(a) == digest_array(np.asfortranarray(a.reshape(2, 3)).reshape(6))
    assert digest_array(a) != digest_array(a.reshape(2, 3))
    assert digest_array(a) != digest_array(a.view("<i4"))  # same bytes, other dtype
    assert digest_array(np.zeros(0, "float32")) != digest_array(np.zeros(0, "float64"))
    assert digest_array(np.array(-0.0, "float32")) != digest_array(np.array(0.0, "float32"))


def test_fingerprint_rejects_non_models():
    with pytest.raises(TypeError, match="Expected a Keras model or layer"):
        kr.fingerprint("model.keras")
    with pytest.raises(TypeError, match="Expected a Keras model or layer"):
        kr.fingerprint_variables(None)


def test_rng_fingerprint_follows_every_stream():
    with kr.isolated_rng(seed=5):
        state = kr.rng_state()
        before = fingerprint_rng_streams()
        assert kr.fingerprint_rng() == kr.fingerprint_rng(state)
        random.random()
        np.random.rand()
        after = fingerprint_rng_streams()
        assert {s for s in before if before[s] != after[s]} == {"python", "numpy"}
        keras.random.uniform(())  # draws from the Keras global generator
        assert fingerprint_rng_streams()["keras"] != after["keras"]
        kr.set_rng_state(state)
        assert fingerprint_rng_streams() == before
        # a JSON round trip (as in a trace) does not change it
        assert kr.fingerprint_rng(json.loads(json.dumps(state))) == kr.fingerprint_rng(state)


def test_rng_fingerprint_rejects_bad_state():
    with pytest.raises(TypeError, match="rng_state"):
        kr.fingerprint_rng([1, 2])
    with pytest.raises(ValueError, match="missing entries"):
        kr.fingerprint_rng({"python": []})


def test_fingerprinter_reuses_its_plan_until_refreshed():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])
    model.compile(keras.optimizers.Adam(), "mse")
    fingerprinter = Fingerprinter(model)
    assert fingerprinter.details() == fingerprint_details(model)
    model.optimizer.build(model.trainable_variables)  # new slot variables
    assert "optimizer/d/kernel/momentum" not in fingerprinter.details().variables
    fingerprinter.refresh()
    assert fingerprinter.details() == fingerprint_details(model)
    assert "optimizer/d/kernel/momentum" in fingerprinter.details().variables
    nudge(model.layers[0].bias)
    assert fingerprinter.details().variables["d/bias"] == fingerprint_details(model).variables["d/bias"]
