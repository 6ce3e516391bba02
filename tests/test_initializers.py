import math
import warnings

import keras
import numpy as np
import pytest

import keras_repro as kr
from keras_repro import initializers as kri
from procs import run_pythons

FAMILIES = {
    "glorot_uniform": keras.initializers.GlorotUniform,
    "glorot_normal": keras.initializers.GlorotNormal,
    "he_uniform": keras.initializers.HeUniform,
    "he_normal": keras.initializers.HeNormal,
    "lecun_uniform": keras.initializers.LecunUniform,
    "lecun_normal": keras.initializers.LecunNormal,
}
SHAPES = [(7, 5), (3, 3, 4, 8), (64,)]


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("shape", SHAPES)
def test_factory_is_bit_identical_to_keras_class(name, shape):
    init = getattr(kri, name)(seed=42, key="block/dense/kernel")
    reference = FAMILIES[name](seed=kr.derive_seed(42, "block/dense/kernel"))
    assert type(init) is keras.initializers.VarianceScaling
    a = keras.ops.convert_to_numpy(init(shape))
    b = keras.ops.convert_to_numpy(reference(shape))
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("distribution", ["uniform", "truncated_normal", "untruncated_normal", "normal"])
@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
def test_variance_scaling_is_bit_identical_to_keras(mode, distribution):
    init = kri.variance_scaling(0.37, mode, distribution, seed=9, key=("head", 2))
    reference = keras.initializers.VarianceScaling(0.37, mode, distribution, seed=kr.derive_seed(9, "head", 2))
    assert np.array_equal(keras.ops.convert_to_numpy(init((6, 4))), keras.ops.convert_to_numpy(reference((6, 4))))


def test_factory_config_is_plain_keras_with_int_seed():
    init = kri.he_normal(seed=1, key="k")
    config = keras.initializers.serialize(init)
    assert config["class_name"] == "VarianceScaling" and config["module"] == "keras.initializers"
    assert config["config"]["seed"] == kr.derive_seed(1, "k")
    clone = keras.initializers.deserialize(config)
    assert np.array_equal(keras.ops.convert_to_numpy(clone((3, 3))), keras.ops.convert_to_numpy(init((3, 3))))


def test_keys_give_distinct_initializers():
    a = kri.glorot_uniform(seed=0, key="a")((8, 8))
    b = kri.glorot_uniform(seed=0, key="b")((8, 8))
    c = kri.glorot_uniform(seed=1, key="a")((8, 8))
    assert not np.array_equal(a, b) and not np.array_equal(a, c)


def test_shared_keras_instance_gives_identical_weights_but_seeded_initializers_do_not():
    shared = keras.initializers.GlorotUniform(seed=3)
    inits = kri.SeededInitializers(3)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(6, kernel_initializer=shared),
            keras.layers.Dense(6, kernel_initializer=shared),
            keras.layers.Dense(6, kernel_initializer=inits.glorot_uniform()),
            keras.layers.Dense(6, kernel_initializer=inits.glorot_uniform()),
        ]
    )
    k = [layer.kernel.numpy() for layer in model.layers]
    assert np.array_equal(k[0], k[1])  # the Keras pitfall this class exists for
    assert not np.array_equal(k[2], k[3])


def test_seeded_initializers_keys_and_counter():
    inits = kri.SeededInitializers(5)
    keyed = inits.he_uniform(key="enc/kernel")
    assert keyed.seed == kri.he_uniform(seed=5, key="enc/kernel").seed
    first, second = inits.lecun_normal(), inits.lecun_normal()
    assert first.seed == kr.derive_seed(5, "SeededInitializers", 0)
    assert second.seed == kr.derive_seed(5, "SeededInitializers", 1)
    # A failed call does not consume a counter value.
    with pytest.raises(ValueError):
        inits.variance_scaling(scale=-1.0)
    assert inits.glorot_normal().seed == kr.derive_seed(5, "SeededInitializers", 2)
    assert repr(inits) == "SeededInitializers(seed=5)"


def test_seeded_initializers_warns_on_reused_key():
    inits = kri.SeededInitializers(5)
    inits.glorot_uniform(key="x")
    with pytest.warns(kr.ReproducibilityWarning, match="'x' was already used"):
        inits.he_normal(key="x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inits.he_normal(key="y")


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"scale": 0}, ValueError, "Invalid scale: 0"),
        ({"scale": -2.0}, ValueError, "Invalid scale: -2.0"),
        ({"scale": math.nan}, ValueError, "Invalid scale: nan"),
        ({"scale": math.inf}, ValueError, "Invalid scale: inf"),
        ({"scale": "1"}, TypeError, "Invalid scale: '1' (of type str). scale must be a finite number > 0."),
        ({"scale": True}, TypeError, "Invalid scale: True (of type bool)"),
        ({"mode": "fan"}, ValueError, "Invalid mode: 'fan'. Allowed values: 'fan_in', 'fan_out', 'fan_avg'."),
        ({"mode": 2}, TypeError, "Invalid mode: 2 (of type int). Allowed values: 'fan_in',"),
        (
            {"distribution": "gaussian"},
            ValueError,
            "Allowed values: 'uniform', 'truncated_normal', 'untruncated_normal', 'normal'.",
        ),
        ({"seed": -1}, ValueError, "Invalid seed: -1"),
        ({"seed": 1.0}, TypeError, "Invalid seed: 1.0"),
        ({"key": None}, TypeError, "Invalid key: None"),
        ({"key": 1.5}, TypeError, "Invalid key: 1.5"),
        ({"key": ""}, ValueError, "must be non-empty"),
        ({"key": ()}, ValueError, "must be non-empty"),
        ({"key": ("a", 1.5)}, TypeError, "Invalid seed path element: 1.5"),
    ],
)
def test_bad_arguments_name_the_value_and_the_allowed(kwargs, error, message):
    args = {"scale": 1.0, "mode": "fan_in", "distribution": "uniform", "seed": 1, "key": "k", **kwargs}
    with pytest.raises(error, match=message.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")):
        kri.variance_scaling(**args)


def test_factories_require_seed_and_key():
    with pytest.raises(TypeError):
        kri.glorot_uniform(seed=1)
    with pytest.raises(TypeError):
        kri.SeededInitializers(None)


def test_factory_docstrings_name_the_keras_class():
    assert "keras.initializers.HeNormal" in kri.he_normal.__doc__
    assert kri.he_normal.__name__ == "he_normal"


_BUILD = """
import random
import numpy as np
import keras_repro as kr
import keras
inits = kr.initializers.SeededInitializers(2024)
def build():
    return keras.Sequential([
        keras.Input((5,)),
        keras.layers.Dense(4, kernel_initializer=kr.initializers.he_normal(seed=2024, key="a")),
        keras.layers.Dense(4, kernel_initializer=inits.glorot_uniform()),
        keras.layers.Dense(4, kernel_initializer=inits.lecun_uniform(key="c")),
    ])
"""


def test_factories_identical_across_processes_and_saved_models_load_without_keras_repro(tmp_path):
    path = tmp_path / "m.keras"
    save = (
        _BUILD
        + f"""
random.random(); np.random.rand(); keras.layers.Dropout(0.3)  # unrelated draws first
model = build()
model.save({str(path)!r})
emit([w.tolist() for w in model.get_weights()])
"""
    )
    fresh = _BUILD + "emit([w.tolist() for w in build().get_weights()])\n"
    (saved,) = run_pythons([save], envs=[{"PYTHONHASHSEED": "1"}])
    load = f"""
import sys, keras
model = keras.models.load_model({str(path)!r}, safe_mode=True)
emit({{"weights": [w.tolist() for w in model.get_weights()],
       "keras_repro_imported": "keras_repro" in sys.modules}})
"""
    other, loaded = run_pythons([fresh, load], envs=[{"PYTHONHASHSEED": "2"}, None])
    assert saved == other
    assert loaded == {"weights": saved, "keras_repro_imported": False}
