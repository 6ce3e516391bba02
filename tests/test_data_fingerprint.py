"""Data fingerprints: what the model trained on, compared between separate processes.

The digest itself (one-bit and swap sensitivity, every dtype) is checked in
process: that is arithmetic, not a reproducibility claim. That two runs give
the same digest for the same batches, and a data divergence (not a kernel one)
for a different order, is checked between two processes.
"""

import keras
import numpy as np
import pytest

import keras_repro as kr
from keras_repro import _step_hooks
from keras_repro import _words
from keras_repro import data_fingerprint
from tests.digests import reference_data_digest
from tests.procs import run_pythons


def digest(*leaves):
    """`batch_digest` of `leaves`, computed by the backend's kernels."""
    with _step_hooks.x64():
        leaves = tuple(None if v is None else keras.ops.convert_to_tensor(v) for v in leaves)
        value = data_fingerprint.batch_digest(_words.ops(), leaves)
        return int(np.asarray(keras.ops.convert_to_numpy(value)))


def test_the_digest_is_the_documented_formula_for_every_dtype():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(5, 3)).astype("float32")
    leaves = [
        x,
        rng.integers(-5, 5, 7),
        None,
        x.astype("float16"),
        x.astype("float64") if keras.backend.backend() != "jax" else x,  # JAX without x64: no float64
        x > 0,
        np.arange(4, dtype="uint8"),
        (x + 1j).astype("complex64"),
        np.array(2.5, "float32"),  # 0-d
        np.array(2.5, "float64" if keras.backend.backend() != "jax" else "float32"),
    ]
    assert digest(*leaves) % 2**64 == reference_data_digest(leaves)


def test_the_digest_sees_one_bit_a_swap_and_every_dtype():
    x = np.linspace(-1, 1, 24, dtype="float32").reshape(6, 4)
    base = digest(x, np.arange(6))
    flipped = x.copy()
    flipped.view(np.uint32)[2, 3] ^= 1  # one ULP
    assert digest(flipped, np.arange(6)) != base
    swapped = x[[1, 0, 2, 3, 4, 5]]
    assert digest(swapped, np.arange(6)) != base
    assert digest(x, np.arange(6)[::-1].copy()) != base  # labels count
    assert digest(x, np.arange(6)) == base
    for value in (
        x.astype("float16"),
        x.astype("float64"),
        x > 0,
        np.arange(4, dtype="uint8"),
        (x + 1j).astype("complex64"),
    ):
        assert isinstance(digest(value), int)
    if keras.backend.backend() == "tensorflow":  # the only backend with string tensors
        assert digest(np.array([b"a", b"b"])) != digest(np.array([b"b", b"a"]))


CHILD = """
import os, warnings
import numpy as np, keras, keras_repro as kr

warnings.simplefilter("ignore")
keras.utils.set_random_seed(int(os.environ["SHUFFLE_SEED"]))  # only the shuffle depends on it
init = lambda k: keras.initializers.GlorotUniform(seed=k)
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, kernel_initializer=init(1)),
                          keras.layers.Dense(1, kernel_initializer=init(2))])
model.compile("sgd", "mse")
x = np.arange(48, dtype="float32").reshape(16, 3) / 48
y = x.sum(axis=1, keepdims=True)
callback = kr.DeterminismCallback(os.environ["TRACE"], deterministic_ops=False, audit="off")
model.fit(x, y, epochs=2, batch_size=4, shuffle=True, verbose=0, callbacks=[callback])
emit({"data": [r["data"] for r in kr.trace.load_trace(os.environ["TRACE"]).records]})
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    specs = {"a": "1", "b": "1", "other_order": "2"}
    envs = [{"SHUFFLE_SEED": seed, "TRACE": str(folder / f"{name}.jsonl")} for name, seed in specs.items()]
    results = dict(zip(specs, run_pythons([CHILD] * len(specs), envs=envs)))
    return folder, results


def test_the_same_batches_give_the_same_data_digests_in_two_processes(runs):
    folder, results = runs
    assert results["a"]["data"] == results["b"]["data"]
    assert results["a"]["data"][0] is None  # fit_begin: nothing trained yet
    assert all(len(d) == 16 and int(d, 16) != 0 for d in results["a"]["data"][1:3])  # two epochs seen
    assert kr.compare_traces(folder / "a.jsonl", folder / "b.jsonl") is None


def test_another_batch_order_is_a_data_divergence(runs):
    folder, results = runs
    d = kr.compare_traces(folder / "a.jsonl", folder / "other_order.jsonl")
    assert (d.kind, d.fit, d.epoch) == ("data", 0, 0)
    assert "The input data differs (order or content) from fit 0, epoch 0" in d.message
