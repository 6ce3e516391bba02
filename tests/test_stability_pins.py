"""REGRESSION PINS: stable paths and initial-weight fingerprints of a fixed model zoo.

Every random stream keras_repro seeds is a function of (root seed, stable
path): a weight's initial value of ``derive_seed(seed, layer path,
initializer attribute)``, a seed generator's state of ``derive_seed(seed,
generator path)``. A user who trained with seed 1234 last year must get the
same initial weights from seed 1234 today. The values below are literal
REGRESSION PINS of that promise for a small zoo of models (a Sequential MLP,
a functional model with Dropout and BatchNormalization, an LSTM model, a
MultiHeadAttention block, a subclassed model holding its layers in
attributes), all seeded with 1234:

- the stable paths of every weight (`keras_repro.paths.weight_paths`) and
  of every seed generator (`keras_repro.paths.seed_generator_paths`), with
  each generator's initial state ``[derived seed, 0]``;
- `keras_repro.fingerprint` of the model as built: every initial weight and
  every seed generator state, bit for bit.

They were recorded with the installed Keras and TensorFlow (the versions are
in `RECORDED_WITH`), TensorFlow backend, on CPU. They exist so that a Keras
upgrade, or a change in keras_repro, that moves a path or a derived seed
fails loudly here instead of silently changing every user's runs. Such a
change may be deliberate; then update `PINS` (run ``python
tests/test_stability_pins.py``, which prints them, computed in a fresh
process) and call it out in the changelog / release note as a break of seed
stability: the same seed gives different initial weights or Dropout masks
than in the previous release.

The pins are computed in a fresh interpreter (`procs.run_python`), not in
the one asserting them: nothing built or drawn earlier in the test process
can move them, and nothing it imported can mask a change.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import pytest

import keras_repro as kr
from keras_repro import paths
from procs import run_python

pytestmark = pytest.mark.tensorflow_only(
    "the pinned digests are TensorFlow's; other backends draw other initial weights (tests/test_backends.py)"
)

TESTS_DIR = str(Path(__file__).resolve().parent)
SEED = 1234

# Recorded with Keras 3.15.1 and TensorFlow 2.21.0 (TensorFlow backend, CPU).
RECORDED_WITH = {"keras": "3.15.1", "tensorflow": "2.21.0"}

# REGRESSION PINS: regenerate with `python tests/test_stability_pins.py`,
# only for a deliberate break of seed stability (see the module docstring).
PINS = {
    "mlp": {
        "weight_paths": [
            "dense#0/bias",
            "dense#0/kernel",
            "dense#1/bias",
            "dense#1/kernel",
            "hidden/bias",
            "hidden/kernel",
        ],
        "seed_generators": {},
        "fingerprint": "0b36404c7e622114ff1671719afa2d51",
    },
    "dropout_batchnorm": {
        "weight_paths": [
            "batch_normalization#0/beta",
            "batch_normalization#0/gamma",
            "batch_normalization#0/moving_mean",
            "batch_normalization#0/moving_variance",
            "dense#0/bias",
            "dense#0/kernel",
            "head/bias",
            "head/kernel",
        ],
        "seed_generators": {"dropout#0/seed_generator": [24078945, 0]},
        "fingerprint": "91cb636da5945e034ad41518b6cc1852",
    },
    "lstm": {
        "weight_paths": [
            "dense#0/bias",
            "dense#0/kernel",
            "lstm#0/cell/bias",
            "lstm#0/cell/kernel",
            "lstm#0/cell/recurrent_kernel",
        ],
        "seed_generators": {"lstm#0/cell/seed_generator": [904326317, 0]},
        "fingerprint": "982c5f6626aa65040b014b1783ef4d37",
    },
    "attention": {
        "weight_paths": [
            "dense#0/bias",
            "dense#0/kernel",
            "layer_normalization#0/beta",
            "layer_normalization#0/gamma",
            "multi_head_attention#0/key_dense/bias",
            "multi_head_attention#0/key_dense/kernel",
            "multi_head_attention#0/output_dense/bias",
            "multi_head_attention#0/output_dense/kernel",
            "multi_head_attention#0/query_dense/bias",
            "multi_head_attention#0/query_dense/kernel",
            "multi_head_attention#0/value_dense/bias",
            "multi_head_attention#0/value_dense/kernel",
        ],
        "seed_generators": {"multi_head_attention#0/dropout_layer/seed_generator": [453188977, 0]},
        "fingerprint": "532fe62a8332848b00ad556554feaf4c",
    },
    "subclassed": {
        "weight_paths": [
            "blocks/0/bias",
            "blocks/0/kernel",
            "blocks/1/bias",
            "blocks/1/kernel",
            "encoder/bias",
            "encoder/kernel",
            "out/bias",
            "out/kernel",
        ],
        "seed_generators": {"drop/seed_generator": [609426997, 0]},
        "fingerprint": "5316909f5b7eff69429c07fc3352a4b2",
    },
}


# ---------------------------------------------------------------- the zoo and the derivation


def _mlp() -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(8, activation="relu", name="hidden"),
            keras.layers.Dense(2),
        ]
    )
    return kr.seed_model(model, SEED)


def _dropout_batchnorm() -> keras.Model:
    inputs = keras.Input((4,))
    h = keras.layers.Dense(8)(inputs)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Dropout(0.5)(h)
    return kr.SeededModel(inputs, keras.layers.Dense(1, name="head")(h), seed=SEED)


def _lstm() -> keras.Model:
    inputs = keras.Input((5, 2))
    h = keras.layers.LSTM(3, dropout=0.1, recurrent_dropout=0.1)(inputs)
    return kr.SeededModel(inputs, keras.layers.Dense(1)(h), seed=SEED)


def _attention() -> keras.Model:
    inputs = keras.Input((3, 4))
    h = keras.layers.MultiHeadAttention(num_heads=2, key_dim=2, dropout=0.1)(inputs, inputs)
    h = keras.layers.LayerNormalization()(keras.layers.Add()([inputs, h]))
    outputs = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling1D()(h))
    return kr.SeededModel(inputs, outputs, seed=SEED)


class _Net(kr.SeededModel):
    def __init__(self, seed: int, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.encoder = keras.layers.Dense(6, activation="relu")
        self.blocks = [keras.layers.Dense(6), keras.layers.Dense(6)]
        self.drop = keras.layers.Dropout(0.2)
        self.out = keras.layers.Dense(1)

    def call(self, x, training=False):
        h = self.encoder(x)
        for block in self.blocks:
            h = block(h)
        return self.out(self.drop(h, training=training))


def _subclassed() -> keras.Model:
    model = _Net(seed=SEED)
    model(keras.ops.zeros((1, 4)))  # built on its first call, seeded when the build ends
    return model


ZOO = {
    "mlp": _mlp,
    "dropout_batchnorm": _dropout_batchnorm,
    "lstm": _lstm,
    "attention": _attention,
    "subclassed": _subclassed,
}


def compute_pins() -> dict:
    """Builds the zoo and returns the values `PINS` holds (the derivation of the pins).

    Run it in a fresh process (``python tests/test_stability_pins.py``
    does) with the TensorFlow backend.

    Returns:
        ``{model name: {"weight_paths": sorted paths, "seed_generators":
        {path: [seed, counter]}, "fingerprint": hex digest}}``.
    """
    pins = {}
    for name, build in ZOO.items():
        model = build()
        generators = paths.seed_generator_paths(model)
        pins[name] = {
            "weight_paths": sorted(paths.weight_paths(model)),
            "seed_generators": {
                path: [int(v) for v in keras.ops.convert_to_numpy(generator.state.value)]
                for path, generator in sorted(generators.items())
            },
            "fingerprint": kr.fingerprint(model),
        }
    return pins


_CHILD = """
import sys
sys.path.insert(0, {tests!r})
import keras, tensorflow
import test_stability_pins
emit({{
    "versions": {{"keras": keras.__version__, "tensorflow": tensorflow.__version__}},
    "pins": test_stability_pins.compute_pins(),
}})
"""
# The pins were recorded on CPU, so they are computed on CPU wherever this runs.
_CHILD_ENV = {"CUDA_VISIBLE_DEVICES": ""}


def _compute_in_a_fresh_process() -> dict:
    return run_python(_CHILD.format(tests=TESTS_DIR), env=_CHILD_ENV)


# ---------------------------------------------------------------- the checks


@pytest.fixture(scope="module")
def fresh():
    return _compute_in_a_fresh_process()


def _broken(name: str, what: str, pinned, computed, versions: dict) -> str:
    return (
        f"REGRESSION PIN broken: the {what} of zoo model {name!r} (seed {SEED}) changed.\n"
        f"  pinned:   {pinned!r}\n"
        f"  computed: {computed!r}\n"
        f"The pins were recorded with Keras {RECORDED_WITH['keras']} / TensorFlow "
        f"{RECORDED_WITH['tensorflow']}; this run used Keras {versions['keras']} / "
        f"TensorFlow {versions['tensorflow']}. A Keras upgrade or a change in keras_repro "
        "moved a stable path or a derived seed: the same seed no longer gives the same "
        "initial weights or Dropout masks. If that is deliberate, regenerate the pins "
        "(python tests/test_stability_pins.py), paste them into PINS and call the change "
        "out in the changelog / release note as a break of seed stability."
    )


def test_the_zoo_is_the_one_pinned(fresh):
    assert sorted(fresh["pins"]) == sorted(PINS), _broken(
        "*", "set of models", sorted(PINS), sorted(fresh["pins"]), fresh["versions"]
    )


@pytest.mark.parametrize("name", list(ZOO))
def test_stable_paths_and_derived_seeds_are_the_pinned_ones(fresh, name):
    pinned, computed = PINS[name], fresh["pins"][name]
    for what in ("weight_paths", "seed_generators"):
        assert computed[what] == pinned[what], _broken(
            name, what.replace("_", " "), pinned[what], computed[what], fresh["versions"]
        )


@pytest.mark.parametrize("name", list(ZOO))
def test_initial_weights_fingerprint_is_the_pinned_one(fresh, name):
    pinned, computed = PINS[name]["fingerprint"], fresh["pins"][name]["fingerprint"]
    assert computed == pinned, _broken(name, "fingerprint of the initial weights", pinned, computed, fresh["versions"])


if __name__ == "__main__":
    # Regenerates the pins in a fresh process, for a deliberate break only.
    result = _compute_in_a_fresh_process()
    print(f"# Recorded with Keras {result['versions']['keras']} and TensorFlow {result['versions']['tensorflow']}.")
    print(f"RECORDED_WITH = {result['versions']!r}")
    print("PINS = " + json.dumps(result["pins"], indent=4))  # JSON of these values is Python
