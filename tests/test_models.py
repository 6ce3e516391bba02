"""Tests for keras_repro.models: SeededModel, seed_model, and SeededModel.fit's data order.

Reproducibility claims (same weights, same training, save/load, resume,
order independence) are checked between two separate processes: the first
builds, trains and saves; the second builds the same models after drawing
from every RNG and constructing unrelated layers (and with another
PYTHONHASHSEED), trains them, loads the first one's files and resumes its
half-trained model.
"""

import random
import warnings

import keras
import numpy as np
import pytest

import keras_repro as kr
from keras_repro import paths
from procs import run_python

# The model of the shared runs calls keras.random without a seed inside call(): JAX refuses that while tracing.
UNSEEDED_CALL_TF_ONLY = pytest.mark.tensorflow_only("an unseeded keras.random call inside call(), which JAX refuses")

L = keras.layers

CHILD = r'''
import hashlib, os, random, warnings
import numpy as np

PERTURB = os.environ.get("KR_TEST_PERTURB") == "1"
ROLE = os.environ["KR_TEST_ROLE"]
TMP = os.environ["KR_TEST_TMP"]
warnings.simplefilter("ignore")
import keras
import tensorflow as tf
import keras_repro as kr
from keras_repro import paths

L = keras.layers
if PERTURB:  # draws and unrelated layers before anything is built
    random.random(); np.random.rand(); tf.random.uniform(())
    L.Dense(3); L.Dropout(0.5); L.GaussianNoise(0.1)
    keras.Sequential([keras.Input((2,)), L.Dense(2), L.Dense(2), L.Dropout(0.1)])

def sha(a):
    a = np.ascontiguousarray(a)
    return hashlib.sha256(a.dtype.str.encode() + str(a.shape).encode() + a.tobytes()).hexdigest()[:16]

def hashes(model):
    return {p: sha(v.numpy()) for p, v in paths.weight_paths(model).items()}

def states(model):
    return {p: [int(s) for s in g.state.numpy()] for p, g in paths.seed_generator_paths(model).items()}

def conv_model():
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3)(inp)
    x = L.BatchNormalization()(x)
    x = L.GaussianNoise(0.1)(x)
    x = L.Flatten()(x)
    x = L.Dense(8, activation="relu")(x)
    x = L.Dropout(0.3)(x)
    return kr.SeededModel(inp, L.Dense(1)(x), seed=42)

def seq_model():
    inp = keras.Input((6,), dtype="int32")
    x = L.Embedding(20, 8)(inp)
    x = L.MultiHeadAttention(num_heads=2, key_dim=4, dropout=0.2)(x, x)
    x = L.LSTM(4, return_sequences=True)(x)
    x = L.GRU(4)(x)
    inner = keras.Sequential([L.Dense(4), L.Dropout(0.2), L.Dense(4)], name="inner")
    return kr.SeededModel(inp, L.Dense(1)(inner(x)), seed=42)

class Noise(L.Layer):
    """Calls keras.random without a seed: covered by fit's global seeding."""
    def call(self, x, training=False):
        return x + keras.random.normal(keras.ops.shape(x), stddev=0.01) if training else x

@keras.saving.register_keras_serializable("kr_test")
class Net(kr.SeededModel):
    def __init__(self, seed, units=8, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.units = units
        self.hidden = L.Dense(units, activation="relu")
        self.attention = L.MultiHeadAttention(num_heads=2, key_dim=4, dropout=0.1)
        self.noise = Noise()
        self.drop = L.Dropout(0.3)
        self.flat = L.Flatten()
        self.out = L.Dense(1)
    def call(self, x, training=False):
        h = self.hidden(x)
        h = self.attention(h, h, training=training)
        return self.out(self.flat(self.drop(self.noise(h, training=training), training=training)))
    def get_config(self):
        return {**super().get_config(), "units": self.units}

def plain_sequential():
    model = keras.Sequential([L.Dense(8, activation="relu"), L.Dropout(0.2), L.Dense(1)])
    return kr.seed_model(model, 42)  # not built yet: built by fit

def variant_model(variant):
    names = ["a", "b", "c"] if variant == "base" else ["c", "new", "a"]
    inp = keras.Input((8,))
    x = inp
    for name in names:
        x = L.Dense(8, name=name)(x)
    return kr.SeededModel(inp, L.Dense(1, name="out")(x), seed=42)

def resume_model():
    inp = keras.Input((5,))
    model = kr.SeededModel(inp, L.Dense(1)(L.Dense(6, activation="tanh")(inp)), seed=3)
    model.compile(keras.optimizers.SGD(0.05), "mse")
    return model

data = np.random.RandomState(0)
images, img_y = data.rand(24, 8, 8, 3).astype("float32"), data.rand(24, 1).astype("float32")
tokens, tok_y = data.randint(0, 20, (24, 6)).astype("int32"), data.rand(24, 1).astype("float32")
seqs, seq_y = data.rand(24, 3, 5).astype("float32"), data.rand(24, 1).astype("float32")
flat, flat_y = data.rand(23, 5).astype("float32"), data.rand(23, 1).astype("float32")

out = {"init": {}, "fit": {}, "gens": {}}
models = {
    "conv": (conv_model(), images, img_y),
    "seq": (seq_model(), tokens, tok_y),
    "net": (Net(seed=42), seqs, seq_y),
    "plain": (plain_sequential(), flat, flat_y),
}
models["net"][0](seqs[:1])  # built eagerly; "net_fit" below is built by fit
out["twice_identical"] = (
    hashes(conv_model()) == hashes(models["conv"][0]) and hashes(seq_model()) == hashes(models["seq"][0])
)
for name, (model, x, y) in models.items():
    if model.built:
        out["init"][name] = hashes(model)
net_fit = Net(seed=42)
models["net_fit"] = (net_fit, seqs, seq_y)
for name, (model, x, y) in models.items():
    model.compile(keras.optimizers.Adam(0.01), "mse")
    model.fit(x, y, epochs=2, batch_size=5, shuffle=True, verbose=0)
    out["fit"][name] = hashes(model)
    out["gens"][name] = states(model)
out["variant"] = hashes(variant_model("base" if ROLE == "first" else "variant"))
out["orders"] = [kr.epoch_permutation(42, e, 37).tolist() for e in range(3)]

straight = resume_model()
straight.fit(flat, flat_y, epochs=4, batch_size=4, verbose=0)
out["resume_straight"] = hashes(straight)
if ROLE == "first":
    for name in ("conv", "seq", "net"):
        models[name][0].save(os.path.join(TMP, f"{name}.keras"))
    half = resume_model()
    half.fit(flat, flat_y, epochs=2, batch_size=4, verbose=0)
    half.save(os.path.join(TMP, "half.keras"))
else:
    out["loaded"] = {}
    for name in ("conv", "seq", "net"):
        loaded = keras.models.load_model(os.path.join(TMP, f"{name}.keras"), safe_mode=True)
        out["loaded"][name] = {"type": type(loaded).__name__, "seed": loaded.seed, "weights": hashes(loaded)}
    half = keras.models.load_model(os.path.join(TMP, "half.keras"), safe_mode=True)
    half.fit(flat, flat_y, epochs=4, initial_epoch=2, batch_size=4, verbose=0)
    out["resumed"] = hashes(half)
emit(out)
'''


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The first process builds, trains and saves; the second, perturbed, does the same and loads."""
    tmp = str(tmp_path_factory.mktemp("seeded_models"))
    first = run_python(CHILD, env={"PYTHONHASHSEED": "0", "KR_TEST_ROLE": "first", "KR_TEST_TMP": tmp})
    second = run_python(
        CHILD,
        env={"PYTHONHASHSEED": "1", "KR_TEST_ROLE": "second", "KR_TEST_TMP": tmp, "KR_TEST_PERTURB": "1"},
    )
    return first, second


@UNSEEDED_CALL_TF_ONLY
def test_initial_weights_are_identical_across_processes_whatever_ran_before(two_runs):
    first, second = two_runs
    assert set(first["init"]) == {"conv", "seq", "net"}  # "plain" is built by fit
    assert first["init"] == second["init"]
    # The models hold every kind of weight the rules name.
    seq = first["init"]["seq"]
    for path in (
        "embedding#0/embeddings",
        "multi_head_attention#0/query_dense/kernel",
        "lstm#0/cell/recurrent_kernel",
        "gru#0/cell/kernel",
        "inner/dense#1/kernel",
    ):
        assert path in seq
    assert {"conv2d#0/kernel", "batch_normalization#0/gamma"} <= set(first["init"]["conv"])


@UNSEEDED_CALL_TF_ONLY
def test_training_with_dropout_noise_and_shuffle_is_identical_across_processes(two_runs):
    first, second = two_runs
    assert set(first["fit"]) == {"conv", "seq", "net", "plain", "net_fit"}
    assert first["fit"] == second["fit"]
    assert first["gens"] == second["gens"]
    # Each Dropout/GaussianNoise generator advanced once per step (24 samples / 5 = 5 steps x 2 epochs).
    assert first["gens"]["conv"]["dropout#0/seed_generator"][1] == 10
    assert first["gens"]["conv"]["gaussian_noise#0/seed_generator"][1] == 10


@UNSEEDED_CALL_TF_ONLY
def test_building_twice_in_one_process_gives_identical_weights(two_runs):
    first, second = two_runs
    assert first["twice_identical"] is True and second["twice_identical"] is True


@UNSEEDED_CALL_TF_ONLY
def test_subclassed_model_built_by_fit_equals_one_built_by_a_call(two_runs):
    first, _ = two_runs
    assert first["fit"]["net_fit"] == first["fit"]["net"]


@UNSEEDED_CALL_TF_ONLY
def test_explicit_names_keep_weights_when_other_layers_are_inserted_removed_or_reordered(two_runs):
    first, second = two_runs
    base, variant = first["variant"], second["variant"]
    assert "b/kernel" in base and "b/kernel" not in variant and "new/kernel" in variant
    for path in ("a/kernel", "a/bias", "c/kernel", "out/kernel"):
        assert base[path] == variant[path], path


@UNSEEDED_CALL_TF_ONLY
def test_save_then_load_in_another_process_gives_same_seed_and_weights(two_runs):
    first, second = two_runs
    for name, cls in (("conv", "SeededFunctional"), ("seq", "SeededFunctional"), ("net", "Net")):
        loaded = second["loaded"][name]
        assert loaded["type"] == cls and loaded["seed"] == 42
        assert loaded["weights"] == first["fit"][name]


@UNSEEDED_CALL_TF_ONLY
def test_resumed_fit_in_another_process_equals_uninterrupted_fit(two_runs):
    first, second = two_runs
    assert second["resumed"] == first["resume_straight"] == second["resume_straight"]


@UNSEEDED_CALL_TF_ONLY
def test_epoch_permutation_is_the_same_in_both_processes_and_here(two_runs):
    first, second = two_runs
    here = [kr.epoch_permutation(42, e, 37).tolist() for e in range(3)]
    assert first["orders"] == second["orders"] == here
    assert here[0] != here[1] != here[2]


@UNSEEDED_CALL_TF_ONLY
def test_random_weights_sharing_a_shape_are_distinct(two_runs):
    first, _ = two_runs
    for name, weights in first["init"].items():
        random_weights = {
            p: h for p, h in weights.items() if p.rsplit("/", 1)[-1] in ("kernel", "recurrent_kernel", "embeddings")
        }
        assert len(set(random_weights.values())) == len(random_weights), name


# ------------------------------------------------------------------ in one process


def _values(model):
    return {p: v.numpy().copy() for p, v in paths.weight_paths(model).items()}


def _mlp(seed=42, **dense_kwargs):
    inputs = keras.Input((4,))
    x = L.Dense(8, name="hidden", **dense_kwargs)(inputs)
    x = L.Dropout(0.5, name="drop")(x)
    return kr.SeededModel(inputs, L.Dense(8, name="head", **dense_kwargs)(x), seed=seed)


def test_shared_initializer_instance_is_cloned_not_shared_nor_changed():
    shared = keras.initializers.GlorotUniform(seed=1)
    inputs = keras.Input((8,))
    x = L.Dense(8, kernel_initializer=shared, name="a")(inputs)
    outputs = L.Dense(8, kernel_initializer=shared, name="b")(x)
    plain = keras.Model(inputs, outputs)
    assert np.array_equal(plain.get_layer("a").kernel.numpy(), plain.get_layer("b").kernel.numpy())  # Keras
    kr.seed_model(plain, 42)
    assert not np.array_equal(plain.get_layer("a").kernel.numpy(), plain.get_layer("b").kernel.numpy())
    assert shared.seed == 1 and plain.get_layer("a").kernel_initializer is not shared
    assert plain.get_layer("a").kernel_initializer.seed == kr.derive_seed(42, "a", "kernel_initializer")


def test_multi_head_attention_and_bidirectional_parts_are_distinct():
    inputs = keras.Input((5, 8))
    x = L.MultiHeadAttention(num_heads=2, key_dim=4)(inputs, inputs)
    x = L.Bidirectional(L.GRU(4))(x)
    model = kr.SeededModel(inputs, x, seed=0)
    values = _values(model)
    q, k, v = (values[f"multi_head_attention#0/{p}_dense/kernel"] for p in ("query", "key", "value"))
    assert not np.array_equal(q, k) and not np.array_equal(k, v) and not np.array_equal(q, v)
    assert not np.array_equal(
        values["bidirectional#0/forward_layer/cell/kernel"], values["bidirectional#0/backward_layer/cell/kernel"]
    )


def test_reinitialized_weights_equal_keras_built_with_the_derived_seeds():
    # Including the LSTM bias Keras builds from two bias_initializer calls and ones.
    def build(**initializers):
        inputs = keras.Input((3, 2))
        return keras.Model(inputs, L.LSTM(4, name="rnn", **initializers)(inputs))

    seeded = kr.seed_model(build(bias_initializer="random_normal"), 0)
    derived = {
        attr: kr.derive_seed(0, "rnn/cell", attr)
        for attr in ("kernel_initializer", "recurrent_initializer", "bias_initializer")
    }
    reference = build(
        kernel_initializer=keras.initializers.GlorotUniform(seed=derived["kernel_initializer"]),
        recurrent_initializer=keras.initializers.Orthogonal(seed=derived["recurrent_initializer"]),
        bias_initializer=keras.initializers.RandomNormal(seed=derived["bias_initializer"]),
    )
    assert _equal(seeded, reference)
    assert np.array_equal(_values(seeded)["rnn/cell/bias"][4:8], np.ones(4, "float32"))


def test_seed_generators_restart_at_the_derived_seed():
    model = _mlp()
    generator = paths.seed_generator_paths(model)["drop/seed_generator"]
    assert generator.state.numpy().tolist() == [kr.derive_seed(42, "drop/seed_generator"), 0]


def test_reseed_reinitializes_weights_and_generators():
    model = _mlp(seed=42)
    original = _values(model)
    model.compile("sgd", "mse")
    model.fit(np.ones((8, 4)), np.ones((8, 8)), epochs=1, batch_size=4, verbose=0)
    assert model.reseed(7) is model and model.seed == 7
    generator = paths.seed_generator_paths(model)["drop/seed_generator"]
    assert generator.state.numpy().tolist() == [kr.derive_seed(7, "drop/seed_generator"), 0]
    assert not np.array_equal(_values(model)["hidden/kernel"], original["hidden/kernel"])
    model.reseed(42)
    assert all(np.array_equal(v, original[p]) for p, v in _values(model).items())  # biases too


def test_get_config_carries_the_seed_and_classes_are_registered():
    model = _mlp(seed=5)
    assert model.get_config()["seed"] == 5
    clone = kr.SeededModel.from_config(model.get_config())
    assert type(clone) is kr.SeededFunctional and clone.seed == 5
    assert all(np.array_equal(v, _values(model)[p]) for p, v in _values(clone).items())
    assert keras.saving.get_registered_name(kr.SeededModel) == "keras_repro>SeededModel"
    assert keras.saving.get_registered_name(kr.SeededFunctional) == "keras_repro>SeededFunctional"


def test_seed_model_on_an_unbuilt_sequential_seeds_it_when_built():
    def make():
        return kr.seed_model(keras.Sequential([L.Dense(8), L.Dropout(0.2), L.Dense(2)]), 3)

    a, b = make(), make()
    random.random()  # would shift Keras' own seeds for layers built from here
    a(np.zeros((1, 4)))
    b.build((None, 4))
    assert all(np.array_equal(v, _values(b)[p]) for p, v in _values(a).items())
    assert a.layers[0].kernel_initializer.seed == kr.derive_seed(3, "dense#0", "kernel_initializer")


class _Scaled(L.Layer):
    """A custom layer whose weight comes from an initializer it does not keep."""

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="random_normal", name="w")

    def call(self, x):
        return x * self.w


def test_unmappable_weight_is_named_in_a_warning_or_an_error_in_strict_mode():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, _Scaled(name="scaled")(L.Dense(3)(inputs)))
    with pytest.warns(kr.UnseededWeightWarning, match=r"'scaled/w'.*w_initializer"):
        kr.seed_model(model, 1)
    with pytest.raises(ValueError, match=r"'scaled/w'"):
        kr.seed_model(model, 1, strict=True)
    assert issubclass(kr.UnseededWeightWarning, kr.ReproducibilityWarning)


def test_known_layers_seed_without_warnings():
    inputs = keras.Input((6, 6, 3))
    x = L.SeparableConv2D(4, 3)(inputs)
    x = L.DepthwiseConv2D(3)(x)
    x = L.LayerNormalization()(x)
    x = L.Flatten()(x)
    x = L.PReLU()(L.GaussianDropout(0.1)(x))
    with warnings.catch_warnings():
        warnings.simplefilter("error", kr.UnseededWeightWarning)
        kr.seed_model(keras.Model(inputs, x), 1, strict=True)


def test_bad_inputs_are_rejected_with_clear_errors():
    with pytest.raises(TypeError, match="keras.Model"):
        kr.seed_model(L.Dense(3), 1)
    with pytest.raises(TypeError, match="keras.Model"):
        kr.seed_model("model", 1)
    model = keras.Sequential([keras.Input((2,)), L.Dense(1)])
    with pytest.raises(ValueError, match="-1"):
        kr.seed_model(model, -1)
    with pytest.raises(TypeError, match="1.5"):
        kr.seed_model(model, 1.5)
    with pytest.raises(TypeError, match="strict"):
        kr.seed_model(model, 1, strict="yes")
    inputs = keras.Input((2,))
    with pytest.raises(TypeError, match="'42'"):
        kr.SeededModel(inputs, L.Dense(1)(inputs), seed="42")
    with pytest.raises(TypeError, match="needs a seed"):
        kr.SeededModel(inputs, L.Dense(1)(inputs))
    with pytest.raises(TypeError, match="from_config"):
        keras.models.clone_model(_mlp())
    with pytest.raises(ValueError):
        _mlp().reseed(2**32)

    class Forgetful(kr.SeededModel):
        def __init__(self, **kwargs):
            keras.Model.__init__(self, **kwargs)

    with pytest.raises(TypeError, match=r"super\(\).__init__\(seed=seed"):
        Forgetful()


# ------------------------------------------------------------------ fit: data order


def _regression(seed=5, dropout=False):
    inputs = keras.Input((4,), name="features")
    x = L.Dense(6, activation="tanh", name="hidden")(inputs)
    if dropout:
        x = L.Dropout(0.3)(x)
    model = kr.SeededModel(inputs, L.Dense(1, name="out")(x), seed=seed)
    model.compile(keras.optimizers.SGD(0.05), "mse")
    return model


def _reference_like(model):
    """A plain Keras model with the same layers' initial weights, trained without shuffling."""
    reference = keras.Model.from_config(keras.Model(model.inputs, model.outputs).get_config())
    reference.set_weights(model.get_weights())
    reference.compile(keras.optimizers.SGD(0.05), "mse")
    return reference


def _equal(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))


_rs = np.random.RandomState(0)
X = _rs.rand(23, 4).astype("float32")
Y = _rs.rand(23, 1).astype("float32")
W = _rs.rand(23).astype("float32")


def test_fit_orders_each_epoch_by_epoch_permutation_with_split_weights_and_dicts():
    model = _regression()
    reference = _reference_like(model)
    history = model.fit({"features": X}, Y, sample_weight=W, validation_split=0.25, epochs=3, batch_size=4, verbose=0)
    train = 17  # Keras keeps the last 25% (floor) for validation, before shuffling
    for epoch in range(3):
        order = kr.epoch_permutation(5, epoch, train)
        reference.fit(
            {"features": X[:train][order]},
            Y[:train][order],
            sample_weight=W[:train][order],
            batch_size=4,
            shuffle=False,
            verbose=0,
        )
    assert _equal(model, reference)
    assert history.epoch == [0, 1, 2]
    assert history.history["val_loss"][-1] == pytest.approx(
        model.evaluate({"features": X[train:]}, Y[train:], sample_weight=W[train:], verbose=0)
    )


def test_fit_shuffle_batch_shuffles_within_batches_only():
    model = _regression()
    reference = _reference_like(model)
    model.fit(X, Y, epochs=2, batch_size=4, shuffle="batch", verbose=0)
    for epoch in range(2):
        order = kr.epoch_permutation(5, epoch, 23, block_size=4)
        reference.fit(X[order], Y[order], batch_size=4, shuffle=False, verbose=0)
    assert _equal(model, reference)


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise KeyboardInterrupt


class _Epochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_begin(self, epoch, logs=None):
        self.seen.append(epoch)


def test_resuming_with_initial_epoch_or_backup_and_restore_sees_the_same_order(tmp_path):
    straight = _regression(dropout=False)
    straight.fit(X, Y, epochs=4, batch_size=4, verbose=0)

    resumed = _regression(dropout=False)
    resumed.fit(X, Y, epochs=2, batch_size=4, verbose=0)
    epochs = _Epochs()
    history = resumed.fit(X, Y, epochs=4, initial_epoch=2, batch_size=4, verbose=0, callbacks=[epochs])
    assert _equal(straight, resumed)
    assert epochs.seen == [2, 3] and history.epoch == [2, 3]

    # Epochs of 4 steps over passes of 6 batches: epoch k starts at batch 4k.
    straight_steps = _regression(dropout=False)
    straight_steps.fit(X, Y, epochs=3, steps_per_epoch=4, batch_size=4, verbose=0)
    resumed_steps = _regression(dropout=False)
    resumed_steps.fit(X, Y, epochs=1, steps_per_epoch=4, batch_size=4, verbose=0)
    resumed_steps.fit(X, Y, epochs=3, initial_epoch=1, steps_per_epoch=4, batch_size=4, verbose=0)
    assert _equal(straight_steps, resumed_steps) and not _equal(straight_steps, straight)

    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    interrupted = _regression(dropout=False)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(X, Y, epochs=4, batch_size=4, verbose=0, callbacks=[backup, _Interrupt()])
    restarted = _regression(dropout=False)
    epochs = _Epochs()
    restarted.fit(X, Y, epochs=4, batch_size=4, verbose=0, callbacks=[backup, epochs])
    assert epochs.seen == [2, 3]
    assert _equal(straight, restarted)


def test_fit_does_not_replace_the_recorded_root_seed_and_leaves_datasets_alone():
    import tensorflow as tf

    before = kr.get_root_seed()
    model = _regression()
    model.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    assert kr.get_root_seed() == before
    dataset = tf.data.Dataset.from_tensor_slices((X, Y)).batch(8)
    reference = _reference_like(model)
    model.fit(dataset, epochs=1, verbose=0, shuffle=True)
    reference.fit(dataset, epochs=1, verbose=0)
    assert _equal(model, reference)
