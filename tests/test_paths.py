import keras
import numpy as np
import pytest

from keras_repro import paths


def _mlp(extra_first=False):
    layers = [keras.Input((4,))]
    if extra_first:
        layers.append(keras.layers.Dense(3, name="inserted"))
    layers += [keras.layers.Dense(8, name="hidden"), keras.layers.Dropout(0.1), keras.layers.Dense(1)]
    return keras.Sequential(layers)


def test_paths_ignore_keras_auto_name_counter():
    a, b = _mlp(), _mlp()  # second model's layers are auto-named dense_1, dropout_1 ...
    assert [layer.name for layer in a.layers] != [layer.name for layer in b.layers]
    assert list(paths.weight_paths(a)) == list(paths.weight_paths(b))
    assert list(paths.seed_generator_paths(a)) == list(paths.seed_generator_paths(b)) == ["dropout#0/seed_generator"]


def test_explicit_names_survive_insertion_of_other_layers():
    before = paths.weight_paths(_mlp())
    after = paths.weight_paths(_mlp(extra_first=True))
    assert {"hidden/kernel", "hidden/bias"} <= set(before) & set(after)
    assert "inserted/kernel" in after and "inserted/kernel" not in before


def test_subclassed_models_use_attribute_names_and_nested_models_nest():
    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.proj = keras.layers.Dense(4)
            self.drop = keras.layers.Dropout(0.2)

        def call(self, x, training=False):
            return self.drop(self.proj(x), training=training)

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.blocks = [Block(), Block()]
            self.head = keras.Sequential([keras.layers.Dense(2), keras.layers.Dense(1, name="out")])

        def call(self, x, training=False):
            for block in self.blocks:
                x = block(x, training=training)
            return self.head(x)

    net = Net()
    net(np.zeros((1, 3)))
    assert list(paths.layer_paths(net)) == [
        "",
        "blocks/0",
        "blocks/0/proj",
        "blocks/0/drop",
        "blocks/1",
        "blocks/1/proj",
        "blocks/1/drop",
        "head",
        "head/dense#0",
        "head/out",
    ]
    assert "blocks/1/proj/kernel" in paths.weight_paths(net)
    assert list(paths.seed_generator_paths(net)) == ["blocks/0/drop/seed_generator", "blocks/1/drop/seed_generator"]


def test_every_weight_and_seed_generator_is_found_once():
    inp = keras.Input((5, 3))
    x = keras.layers.LSTM(4, dropout=0.1, return_sequences=True)(inp)
    x = keras.layers.MultiHeadAttention(2, 4, dropout=0.1)(x, x)
    x = keras.layers.GRU(3)(x)
    x = keras.layers.GaussianNoise(0.1)(x)
    x = keras.layers.BatchNormalization()(x)
    model = keras.Model(inp, keras.layers.Dense(2)(x))
    weights = paths.weight_paths(model)
    assert len(weights) == len(model.weights)
    assert {id(v) for v in weights.values()} == {id(v) for v in model.weights}
    generators = paths.seed_generator_paths(model)
    weight_ids = {id(v) for v in model.weights}
    states = {id(v) for v in model.non_trainable_variables if id(v) not in weight_ids}
    assert {id(g.state) for g in generators.values()} == states
    assert "multi_head_attention#0/dropout_layer/seed_generator" in generators
    assert "lstm#0/cell/recurrent_kernel" in weights


def test_shared_layer_gets_one_path():
    shared = keras.layers.Dense(2, name="shared")
    a, b = keras.Input((2,)), keras.Input((2,))
    model = keras.Model([a, b], keras.layers.Add()([shared(a), shared(b)]))
    assert list(paths.weight_paths(model)) == ["shared/kernel", "shared/bias"]


def test_is_auto_name():
    assert paths.is_auto_name(keras.layers.Dense(1))
    assert paths.is_auto_name(keras.layers.Dense(1, name="dense_17"))
    assert not paths.is_auto_name(keras.layers.Dense(1, name="encoder"))


def test_non_layer_is_rejected():
    with pytest.raises(
        TypeError, match=r"^Invalid model: 'model' \(of type str\)\. Expected a Keras model or layer\.$"
    ):
        paths.layer_paths("model")
