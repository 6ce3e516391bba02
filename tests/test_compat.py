"""Every private Keras / TF accessor resolves on the installed versions, and fails loudly when one is missing."""

import random
import re
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_repro import _compat
from procs import run_python

PACKAGE = Path(__file__).resolve().parents[1] / "keras_repro"


def _keras_at_least(major, minor):
    return tuple(int(p) for p in keras.__version__.split(".")[:2]) >= (major, minor)


def _built_dense():
    layer = keras.layers.Dense(2, name="d")
    layer.build((None, 3))
    return layer


# ---------------------------------------------------------------- one door


def test_no_other_module_reaches_into_private_keras_or_tf_modules():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent.name == "_compat":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\b(keras\.src|tensorflow\.python|jax\._src|torch\._C)\b", line):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert not offenders, "private framework modules used outside keras_repro/_compat/:\n" + "\n".join(offenders)


def test_every_public_accessor_is_documented_with_the_versions_checked():
    for name in _compat.__all__:
        value = getattr(_compat, name)
        if callable(value) and not isinstance(value, type) and name not in ("installed_versions", "tensorflow_module"):
            assert value.__doc__ and "Checked on" in value.__doc__, name


# ---------------------------------------------------------------- Keras accessors


def test_keras_naming_and_variable_accessors_resolve():
    assert _compat.to_snake_case("Conv2D") == "conv2d"
    assert _compat.to_snake_case("MultiHeadAttention") == "multi_head_attention"
    layer = _built_dense()
    own = _compat.layer_own_variables(layer)
    assert [v.name for v in own] == ["kernel", "bias"]
    assert all(_compat.is_keras_variable(v) for v in own)
    assert not _compat.is_keras_variable(np.zeros(2)) and not _compat.is_keras_variable(tf.Variable(1.0))
    assert not _compat.in_stateless_scope()
    assert _compat.replace_deferred_initializer(own[0], keras.initializers.Zeros()) is False  # it has a value


def test_deferred_initializer_is_replaced_inside_a_stateless_scope():
    with keras.StatelessScope():
        assert _compat.in_stateless_scope()
        variable = keras.Variable(initializer=keras.initializers.Ones(), shape=(2,), name="v")
        assert _compat.replace_deferred_initializer(variable, keras.initializers.Constant(3.0)) is True
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable.value), [3.0, 3.0])


def test_layer_stores_resolve():
    dropout = keras.layers.Dropout(0.5, seed=1)
    assert _compat.layer_seed_generators(dropout) == [dropout.seed_generator]
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="a"), dropout])
    assert [layer.name for layer in _compat.layer_tracked_layers(model)][-2:] == ["a", dropout.name]
    _compat.set_seed_generator_initial_seed(dropout.seed_generator, 77)
    assert dropout.seed_generator.get_config()["seed"] == 77


def test_model_classes_and_functions_resolve():
    assert issubclass(_compat.random_initializer_class(), keras.initializers.Initializer)
    assert isinstance(keras.initializers.GlorotUniform(), _compat.random_initializer_class())
    assert not isinstance(keras.initializers.Zeros(), _compat.random_initializer_class())
    inputs = keras.Input((2,))
    outputs = keras.layers.Dense(1)(inputs)
    assert isinstance(keras.Model(inputs, outputs), _compat.functional_class())
    assert _compat.functional_init_arguments((inputs, outputs), {})
    assert _compat.functional_init_arguments((), {"inputs": inputs, "outputs": outputs})
    assert not _compat.functional_init_arguments((), {})
    x, y = np.arange(10.0).reshape(10, 1), np.arange(10.0)
    (x_train, y_train), (x_val, y_val) = _compat.train_validation_split((x, y), validation_split=0.2)
    assert len(x_train) == 8 and len(x_val) == 2 and y_val.tolist() == [8.0, 9.0]


def test_optimizer_and_resume_accessors_resolve():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("adam", "mse")
    model.fit(np.zeros((4, 3)), np.zeros((4, 2)), verbose=0)
    assert [id(v) for v in _compat.optimizer_built_for(model.optimizer)] == [id(v) for v in model.trainable_variables]
    assert _compat.optimizer_step_variable(model.optimizer) is model.optimizer.iterations
    assert int(_compat.optimizer_step_variable(model.optimizer).numpy()) == 1
    _compat.set_initial_epoch(model, 3)
    history = model.fit(np.zeros((4, 3)), np.zeros((4, 2)), epochs=5, verbose=0)
    assert len(history.history["loss"]) == 2  # epochs 3 and 4, as after BackupAndRestore


def test_keras_global_seed_generator_accessors():
    previous = _compat.keras_global_seed_generator()
    try:
        generator = keras.random.SeedGenerator(5)
        _compat.set_keras_global_seed_generator(generator)
        assert _compat.keras_global_seed_generator() is generator
        keras.random.uniform(())  # draws from the global generator
        assert keras.ops.convert_to_numpy(generator.state).tolist()[1] > 0
        _compat.set_keras_global_seed_generator(None)
        assert _compat.keras_global_seed_generator() is None
    finally:
        _compat.set_keras_global_seed_generator(previous)


def test_keras_random_seed_is_read_or_reported_unsupported():
    state = random.getstate(), np.random.get_state()
    try:
        keras.utils.set_random_seed(1234)
        if _keras_at_least(3, 10):
            assert _compat.keras_random_seed() == 1234
        else:
            with pytest.raises(_compat.UnsupportedVersionError, match=f"Keras {re.escape(keras.__version__)}"):
                _compat.keras_random_seed()
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])


# ---------------------------------------------------------------- TensorFlow accessors


def test_tf_seed_accessors_round_trip():
    tf.random.set_seed(None)
    assert _compat.tf_global_seed() is None and _compat.tf_op_seed_rng_state() is None
    with pytest.raises(ValueError, match="no global seed"):
        _compat.set_tf_op_seed_rng_state(random.Random(0).getstate())
    tf.random.set_seed(11)
    assert _compat.tf_global_seed() == 11
    tf.random.uniform(())
    saved = _compat.tf_op_seed_rng_state()
    first = [tf.random.uniform(()).numpy() for _ in range(3)]
    tf.random.set_seed(11)  # as set_rng_state does: resets the op-seed RNG and TF's kernel cache
    assert [tf.random.uniform(()).numpy() for _ in range(3)] != first
    tf.random.set_seed(11)
    _compat.set_tf_op_seed_rng_state(saved)
    assert [tf.random.uniform(()).numpy() for _ in range(3)] == first
    tf.random.set_seed(None)


def test_tf_global_generator_accessors():
    tf.random.set_global_generator(tf.random.Generator.from_seed(3))
    assert _compat.tf_global_generator() is tf.random.get_global_generator()
    _compat.tf_reset_global_generator()
    assert _compat.tf_global_generator() is None
    tf.random.get_global_generator()  # TF makes a fresh one on demand
    assert _compat.tf_global_generator() is not None


def test_tf_dataset_graph_def_lists_the_pipeline_stages():
    dataset = tf.data.Dataset.range(4).map(lambda v: v + 1, num_parallel_calls=2).batch(2)
    ops = {node.op for node in _compat.tf_dataset_graph_def(dataset).node}
    assert {"RangeDataset", "ParallelMapDatasetV2", "BatchDatasetV2"} <= ops


def test_tf_op_determinism_query_in_another_process():
    result = run_python(
        """
        import tensorflow as tf
        from keras_repro import _compat
        before = _compat.tf_op_determinism_enabled()
        tf.config.experimental.enable_op_determinism()
        emit([before, _compat.tf_op_determinism_enabled()])
        """
    )
    assert result == [False, True]
    assert (
        run_python(
            "from keras_repro import _compat\nemit(_compat.tf_op_determinism_enabled())",
            env={"TF_DETERMINISTIC_OPS": "1"},
        )
        is True
    )


def test_tensorflow_module_is_only_the_loaded_one_unless_asked(monkeypatch):
    assert _compat.tensorflow_module(import_it=False) is tf
    assert _compat.tensorflow_module(import_it=True) is tf
    monkeypatch.delitem(sys.modules, "tensorflow")
    assert _compat.tensorflow_module(import_it=False) is None


# ---------------------------------------------------------------- loud when missing


@pytest.mark.parametrize(
    "module, attribute, call",
    [
        ("keras.src.utils.naming", "to_snake_case", lambda: _compat.to_snake_case("Dense")),
        ("keras.src.backend.common.stateless_scope", "in_stateless_scope", _compat.in_stateless_scope),
        ("keras.src.backend.common.global_state", "get_global_attribute", _compat.keras_global_seed_generator),
        ("keras.src.initializers.random_initializers", "RandomInitializer", _compat.random_initializer_class),
        ("keras.src.models.functional", "Functional", _compat.functional_class),
        ("keras.src.models.model", "functional_init_arguments", lambda: _compat.functional_init_arguments((), {})),
        ("keras.src.utils.rng_utils", "get_random_seed", _compat.keras_random_seed),
        ("tensorflow.python.framework.config", "is_op_determinism_enabled", _compat.tf_op_determinism_enabled),
        ("tensorflow.python.ops.stateful_random_ops", "global_generator", _compat.tf_global_generator),
    ],
)
def test_a_missing_private_api_raises_naming_the_versions(monkeypatch, module, attribute, call):
    import importlib

    target = importlib.import_module(module)
    if not hasattr(target, attribute):
        pytest.skip(f"{module}.{attribute} is not in this version")
    monkeypatch.delattr(target, attribute)
    with pytest.raises(_compat.UnsupportedVersionError) as e:
        call()
    message = str(e.value)
    assert f"Keras {keras.__version__}" in message and f"TensorFlow {tf.__version__}" in message
    assert _compat.KERAS_CHECKED in message and attribute in message


def test_a_missing_private_attribute_raises_naming_it():
    class Stripped:
        pass

    with pytest.raises(_compat.UnsupportedVersionError, match=r"Stripped\._layers.*super\(\)\.__init__"):
        _compat.layer_tracked_layers(Stripped())
    with pytest.raises(_compat.UnsupportedVersionError, match=r"Stripped\._trainable_variables"):
        _compat.layer_own_variables(Stripped())
    with pytest.raises(_compat.UnsupportedVersionError, match=r"Stripped\._initial_seed"):
        _compat.set_seed_generator_initial_seed(Stripped(), 1)
    with pytest.raises(_compat.UnsupportedVersionError, match=r"Stripped\._as_serialized_graph"):
        _compat.tf_dataset_graph_def(Stripped())
    assert issubclass(_compat.UnsupportedVersionError, RuntimeError)


# ---------------------------------------------------------------- layer bookkeeping attributes

# Private attributes of Keras' own layers that hold a part of the layer
# (a sublayer or seed generator of its own), so paths names the part after
# the attribute (``multi_head_attention#0/dropout_layer``). Every other
# private attribute holding a layer or seed generator must be bookkeeping.
DELIBERATE_PRIVATE_CHILDREN = {
    ("MultiHeadAttention", "_query_dense"),
    ("MultiHeadAttention", "_key_dense"),
    ("MultiHeadAttention", "_value_dense"),
    ("MultiHeadAttention", "_output_dense"),
    ("MultiHeadAttention", "_softmax"),
    ("MultiHeadAttention", "_dropout_layer"),
}


def _holds_part(value):
    if isinstance(value, keras.metrics.Metric):
        return False
    if isinstance(value, (keras.layers.Layer, keras.random.SeedGenerator)):
        return True
    if isinstance(value, (list, tuple)):
        return any(_holds_part(item) for item in value)
    if isinstance(value, dict):
        return any(_holds_part(item) for item in value.values())
    return False


def _layers_in(value):
    if isinstance(value, keras.layers.Layer):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _layers_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _layers_in(item)


def _private_parts(model):
    """(class, attribute) for private attributes of Keras layers holding a layer or seed generator."""
    found, seen, todo = set(), set(), [model]
    while todo:
        layer = todo.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        for attribute, value in _compat.layer_attributes(layer).items():
            if attribute.startswith("_self_"):
                continue
            if attribute.startswith("_") and type(layer).__module__.startswith("keras.") and _holds_part(value):
                found.add((type(layer).__name__, attribute))
            todo.extend(_layers_in(value))
    return found


def _zoo():
    inputs = keras.Input((6, 4))
    x = keras.layers.LSTM(4, dropout=0.1, recurrent_dropout=0.1, return_sequences=True)(inputs)
    x = keras.layers.MultiHeadAttention(2, 4, dropout=0.1)(x, x)
    x = keras.layers.Attention()([x, x])
    x = keras.layers.AdditiveAttention()([x, x])
    x = keras.layers.TimeDistributed(keras.layers.Dense(4))(x)
    x = keras.layers.Bidirectional(keras.layers.GRU(3, dropout=0.1, return_sequences=True))(x)
    x = keras.layers.RNN([keras.layers.SimpleRNNCell(3, dropout=0.1), keras.layers.LSTMCell(2)])(x)
    x = keras.layers.GaussianNoise(0.1)(x)
    x = keras.layers.GaussianDropout(0.1)(x)
    x = keras.layers.AlphaDropout(0.1)(x)
    x = keras.layers.LayerNormalization()(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.SpectralNormalization(keras.layers.Dense(3))(x)
    inner = keras.Sequential([keras.layers.Dense(3), keras.layers.Dropout(0.2)], name="inner")
    outputs = keras.layers.Dense(1)(inner(x))
    functional = keras.Model(inputs, outputs)
    functional.compile("adam", "mse", metrics=["mae"])
    functional.fit(np.zeros((4, 6, 4)), np.zeros((4, 1)), verbose=0)

    images = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.RandomFlip(),
            keras.layers.RandomRotation(0.1),
            keras.layers.RandomZoom(0.1),
            keras.layers.RandomTranslation(0.1, 0.1),
            keras.layers.RandomContrast(0.1),
            keras.layers.Conv2D(2, 3),
            keras.layers.SpatialDropout2D(0.1),
            keras.layers.Flatten(),
            keras.layers.Dense(1),
        ]
    )
    images(np.zeros((1, 8, 8, 3)), training=True)

    sequences = keras.Sequential(
        [
            keras.Input((5, 4, 3)),
            keras.layers.ConvLSTM1D(2, 2, dropout=0.1, recurrent_dropout=0.1),
            keras.layers.Flatten(),
            keras.layers.Dense(1),
        ]
    )
    sequences.compile("sgd", "mse")
    sequences.fit(np.zeros((2, 5, 4, 3)), np.zeros((2, 1)), verbose=0)

    tokens = keras.Sequential(
        [keras.Input((4,), dtype="int32"), keras.layers.Embedding(5, 3), keras.layers.Dropout(0.1)]
    )
    tokens(np.zeros((1, 4), dtype="int32"))
    return [functional, images, sequences, tokens]


def test_every_private_layer_attribute_holding_a_layer_part_is_bookkeeping_or_a_deliberate_child():
    bookkeeping = _compat.layer_bookkeeping_attributes()
    found = set()
    for model in _zoo():
        found |= _private_parts(model)
    unexpected = sorted(
        (cls, attribute)
        for cls, attribute in found
        if attribute not in bookkeeping and (cls, attribute) not in DELIBERATE_PRIVATE_CHILDREN
    )
    assert not unexpected, (
        f"Keras {keras.__version__} keeps layers or seed generators in private attributes that are "
        f"neither bookkeeping nor known parts: {unexpected}. Add each to "
        "_compat.LAYER_BOOKKEEPING_ATTRIBUTES (another view of parts found elsewhere) or to "
        "DELIBERATE_PRIVATE_CHILDREN (a part of its own, named after the attribute), after "
        "checking what paths.layer_paths then gives."
    )
    # The bookkeeping attributes the zoo exercises are really there: the list is not stale.
    assert {"_layers", "_seed_generators", "_functional", "_operations"} <= {a for _, a in found}
    assert DELIBERATE_PRIVATE_CHILDREN <= found


def test_bookkeeping_attributes_include_tf_self_attributes():
    assert _compat.is_layer_bookkeeping_attribute("_layers")
    assert _compat.is_layer_bookkeeping_attribute("_self_unconditional_checkpoint_dependencies")
    assert not _compat.is_layer_bookkeeping_attribute("_dropout_layer")
    assert not _compat.is_layer_bookkeeping_attribute("seed_generator")


# ---------------------------------------------------------------- the supported range


def test_lower_bounds_in_pyproject_are_the_versions_ci_tests():
    root = PACKAGE.parent
    bounds = dict(re.findall(r'^    "([a-z]+)>=([\d.]+)",$', (root / "pyproject.toml").read_text(), re.M))
    ci = (root / ".ci" / "run").read_text()
    pinned = dict(re.findall(r"^OLDEST_(KERAS|TENSORFLOW)=([\d.]+)$", ci, re.M))
    assert bounds["keras"] == pinned["KERAS"] and bounds["tensorflow"] == pinned["TENSORFLOW"]
