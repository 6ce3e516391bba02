"""The audit: one finding per condition (in-process: these are facts about this process,
not reproducibility claims)."""

import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_repro as kr
from keras_repro.audit import AuditError
from keras_repro.audit import Finding

aud = sys.modules["keras_repro.audit"]  # `keras_repro.audit` is the function

GPU = ["/physical_device:GPU:0"]


@pytest.fixture
def clean_process(monkeypatch):
    """A process with nothing to report: hash seed set, root seed recorded, determinism on."""
    monkeypatch.setattr(aud, "hashseed_set_at_start", lambda: True)
    monkeypatch.setattr(aud, "get_root_seed", lambda: 1)
    monkeypatch.setattr(aud, "determinism_enabled", lambda: True)
    monkeypatch.setattr(aud, "initial_environ", lambda: dict(os.environ))
    monkeypatch.setattr(aud, "_gpu_devices", lambda: [])


@pytest.fixture
def no_seeds(monkeypatch):
    monkeypatch.setattr(aud, "get_root_seed", lambda: None)
    monkeypatch.setattr(aud, "_keras_seed", lambda: None)
    monkeypatch.setattr(aud, "tf_global_seed", lambda: None)


def codes(findings, severity=None):
    return [f.code for f in findings if severity is None or f.severity == severity]


def only(findings, code):
    found = [f for f in findings if f.code == code]
    assert len(found) == 1, findings
    return found[0]


def test_finding_validates_severity_and_reads_well():
    with pytest.raises(ValueError, match="Invalid severity: 'fatal'"):
        Finding("fatal", "x", "what", "why", "fix")
    text = str(Finding("warning", "code-x", "What.", "Why.", "Fix.", subject="a/b"))
    assert text == "WARNING code-x [a/b]: What. Why: Why. Fix: Fix."


def test_a_clean_process_has_no_findings(clean_process):
    assert kr.audit() == []


def test_hashseed_unset(clean_process, monkeypatch):
    monkeypatch.setattr(aud, "hashseed_set_at_start", lambda: False)
    finding = only(kr.audit(), "hashseed-unset")
    assert finding.severity == "warning" and "PYTHONHASHSEED=0 python" in finding.fix


def test_root_seed_unset(clean_process, no_seeds, monkeypatch):
    finding = only(kr.audit(), "root-seed-unset")
    assert finding.severity == "error" and "seed_everything" in finding.fix
    monkeypatch.setattr(aud, "tf_global_seed", lambda: 42)  # seeded, but not through keras_repro
    assert only(kr.audit(), "root-seed-unset").severity == "warning"


def test_a_seeded_model_seeds_the_global_streams_itself(clean_process, no_seeds):
    inputs = keras.Input((4,))
    seeded = kr.SeededModel(inputs, keras.layers.Dense(1)(inputs), seed=3)
    assert "root-seed-unset" not in codes(kr.audit(seeded))  # its fit seeds them
    plain = kr.seed_model(keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]), 3)
    # seed_model does not seed the global streams; but the model's own randomness
    # is seeded, so "nothing is seeded" would be false: info, not an error.
    finding = only(kr.audit(plain), "root-seed-unset")
    assert finding.severity == "info" and "seeded explicitly" in finding.what
    unseeded = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    assert only(kr.audit(unseeded), "root-seed-unset").severity == "error"


def test_seeded_initializers_beside_an_unseeded_dropout_are_not_called_nothing_seeded(clean_process, no_seeds):
    seed = keras.initializers.GlorotUniform(seed=1)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, kernel_initializer=seed), keras.layers.Dropout(0.5)]
    )
    findings = kr.audit(model)
    assert "unseeded-seed-generator" in codes(findings)
    finding = only(findings, "root-seed-unset")
    assert finding.severity == "error"  # the Dropout masks are not seeded
    assert "nothing is seeded" not in finding.what and "initializers are seeded explicitly" in finding.what


@pytest.mark.tensorflow_only("TF op determinism and XLA interplay, with TF's GPU list patched")
def test_op_determinism_off_is_an_error_with_a_gpu(clean_process, monkeypatch):
    monkeypatch.setattr(aud, "determinism_enabled", lambda: False)
    assert only(kr.audit(), "op-determinism-off").severity == "warning"
    monkeypatch.setattr(aud, "_gpu_devices", lambda: GPU)
    finding = only(kr.audit(), "op-determinism-off")
    assert finding.severity == "error" and "GPU:0" in finding.what


def test_start_only_env_vars_changed_after_start(clean_process, monkeypatch):
    monkeypatch.setattr(
        aud, "initial_environ", lambda: {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    )
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    finding = only(kr.audit(), "env-changed-after-start")
    assert finding.subject == "CUBLAS_WORKSPACE_CONFIG" and "before starting Python" in finding.fix


def test_start_only_env_vars_missing_on_a_gpu_machine(clean_process, monkeypatch):
    monkeypatch.setattr(aud, "_backend", lambda: "jax")
    monkeypatch.setattr(aud, "_gpu_devices", lambda: ["cuda:0"])
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    finding = only(kr.audit(), "env-missing-at-start")
    assert finding.severity == "error" and finding.subject == "XLA_FLAGS"


def test_unseeded_seed_generator(clean_process):
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(4, kernel_initializer="zeros"),
            keras.layers.Dropout(0.5),
            keras.layers.Dropout(0.5, seed=1, name="seeded"),
        ]
    )
    finding = only(kr.audit(model), "unseeded-seed-generator")
    assert finding.subject == "dropout#0/seed_generator" and finding.severity == "warning"


def test_shared_initializer_instance(clean_process):
    shared = keras.initializers.GlorotUniform(seed=3)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(4, kernel_initializer=shared),
            keras.layers.Dense(4, kernel_initializer=shared),
        ]
    )
    w0, w1 = (keras.ops.convert_to_numpy(layer.kernel) for layer in model.layers)
    assert np.array_equal(w0, w1)  # what the finding is about
    finding = only(kr.audit(model), "shared-initializer")
    assert "dense#0/kernel_initializer" in finding.what and "dense#1/kernel_initializer" in finding.what
    separate = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(4, kernel_initializer="glorot_uniform"),
            keras.layers.Dense(4, kernel_initializer=keras.initializers.GlorotUniform(seed=3)),
        ]
    )
    assert "shared-initializer" not in codes(kr.audit(separate))


def test_unseeded_initializers_are_info(clean_process):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4), keras.layers.Dense(4, name="out")])
    finding = only(kr.audit(model), "unseeded-initializer")
    assert finding.severity == "info" and "2 random initializers" in finding.what
    seeded = kr.seed_model(keras.Sequential([keras.Input((4,)), keras.layers.Dense(4), keras.layers.Dropout(0.1)]), 5)
    assert kr.audit(seeded) == []


def test_tf_data_nondeterministic_order(clean_process, monkeypatch):
    monkeypatch.setattr(aud, "tf_op_determinism_enabled", lambda: False)
    options = tf.data.Options()
    options.deterministic = False
    dataset = tf.data.Dataset.range(8).with_options(options)
    finding = only(kr.audit(data=dataset), "data-nondeterministic-order")
    assert finding.severity == "warning" and "options().deterministic=False" in finding.what
    per_op = tf.data.Dataset.range(8).map(lambda x: x + 1, num_parallel_calls=2, deterministic=False)
    finding = only(kr.audit(data=per_op), "data-nondeterministic-order")
    assert finding.subject.startswith("ParallelMapDataset")
    monkeypatch.setattr(aud, "tf_op_determinism_enabled", lambda: True)  # TF then overrides both
    assert only(kr.audit(data=dataset), "data-nondeterministic-order").severity == "info"


def test_tf_data_parallel_random_ops(clean_process, monkeypatch):
    monkeypatch.setattr(aud, "tf_op_determinism_enabled", lambda: False)
    tf.random.set_seed(0)  # op seeds derived from it: a sequential map repeats

    def noisy(x):
        return tf.cast(x, tf.float32) + tf.random.uniform(())

    def scale(x):
        return tf.cast(x, tf.float32) * 2.0

    base = tf.data.Dataset.range(8)
    finding = only(kr.audit(data=base.map(noisy, num_parallel_calls=tf.data.AUTOTUNE)), "data-parallel-random")
    assert "RandomUniform" in finding.what
    assert codes(kr.audit(data=base.map(noisy))) == []  # sequential: reproducible
    assert codes(kr.audit(data=base.map(noisy, num_parallel_calls=1))) == []
    assert codes(kr.audit(data=base.map(scale, num_parallel_calls=4))) == []
    augment = keras.layers.RandomFlip("horizontal")
    images = tf.data.Dataset.from_tensor_slices(np.zeros((4, 8, 8, 3), "float32")).batch(2)
    assert "data-parallel-random" in codes(kr.audit(data=images.map(augment, num_parallel_calls=2)))


def test_py_dataset_with_workers(clean_process):
    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            return np.zeros((2, 4)), np.zeros((2, 1))

    assert only(kr.audit(data=Batches(workers=2)), "data-parallel-random").severity == "warning"
    assert kr.audit(data=Batches()) == []


@pytest.mark.tensorflow_only("TF op determinism and XLA interplay, with TF's GPU list patched")
def test_gpu_layers_without_a_deterministic_kernel(clean_process, monkeypatch):
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(2, 3),
            keras.layers.Resizing(4, 4, interpolation="nearest", name="shrink"),
        ]
    )
    assert "gpu-no-deterministic-kernel" not in codes(kr.audit(model))
    monkeypatch.setattr(aud, "_gpu_devices", lambda: GPU)
    finding = only(kr.audit(model), "gpu-no-deterministic-kernel")
    assert finding.subject == "shrink" and "ResizeNearestNeighborGrad" in finding.why


@pytest.mark.tensorflow_only("TF op determinism and XLA interplay, with TF's GPU list patched")
def test_jit_compile_interplay(clean_process, monkeypatch):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, kernel_initializer="zeros")])
    model.compile("sgd", "mse", jit_compile=True)
    monkeypatch.setattr(aud, "tf_op_determinism_enabled", lambda: False)
    assert only(kr.audit(model), "jit-compile").severity == "info"
    monkeypatch.setattr(aud, "_gpu_devices", lambda: GPU)
    assert only(kr.audit(model), "jit-compile").severity == "error"
    monkeypatch.setattr(aud, "tf_op_determinism_enabled", lambda: True)  # turned on after compile()
    finding = only(kr.audit(model), "jit-compile")
    assert finding.severity == "warning" and "before compile()" in finding.fix
    model.compile("sgd", "mse", jit_compile=False)
    assert "jit-compile" not in codes(kr.audit(model))


def test_audit_reports_a_failing_check_instead_of_raising(clean_process, monkeypatch):
    def broken():
        raise RuntimeError("driver exploded")

    monkeypatch.setattr(aud, "_gpu_devices", broken)
    finding = only(kr.audit(), "audit-check-failed")
    assert finding.severity == "info" and "driver exploded" in finding.what


def test_audit_sorts_by_severity_and_rejects_non_models(clean_process, no_seeds, monkeypatch):
    monkeypatch.setattr(aud, "hashseed_set_at_start", lambda: False)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)])
    severities = [f.severity for f in kr.audit(model)]
    assert severities == ["error", "warning", "info"]
    with pytest.raises(TypeError, match="Invalid model: 'model.keras'"):
        kr.audit("model.keras")


def test_audit_error_lists_the_findings():
    finding = Finding("error", "root-seed-unset", "No seed.", "Why.", "Fix.")
    error = AuditError([finding])
    assert isinstance(error, RuntimeError) and error.findings == [finding] and "root-seed-unset" in str(error)


# --- precision: nothing reported that cannot change a result ---------------------------


def generator_findings(model):
    return [(f.severity, f.subject) for f in kr.audit(model) if f.code == "unseeded-seed-generator"]


def test_generators_that_are_never_drawn_from_are_not_reported(no_seeds):
    idle = keras.Sequential(
        [
            keras.Input((3, 2)),
            keras.layers.LSTM(4, return_sequences=True),  # LSTMCell's generator, dropout=0
            keras.layers.GRU(4, dropout=0.0, recurrent_dropout=0.0),
            keras.layers.Dropout(0.0),
            keras.layers.GaussianNoise(0.0),
        ]
    )
    assert generator_findings(idle) == []
    used = keras.Sequential(
        [
            keras.Input((3, 2)),
            keras.layers.LSTM(4, recurrent_dropout=0.1, return_sequences=True),
            keras.layers.GRU(4, dropout=0.2),
            keras.layers.Dropout(0.5),
        ]
    )
    assert [severity for severity, _ in generator_findings(used)] == ["warning"] * 3


def test_a_generator_seeded_from_a_recorded_seeding_is_only_info(monkeypatch):
    monkeypatch.setattr(aud, "get_root_seed", lambda: None)
    monkeypatch.setattr(aud, "_keras_seed", lambda: None)
    before = keras.layers.Dropout(0.5)  # seed drawn from an unseeded stream
    kr.seed_everything(3)
    monkeypatch.setattr(aud, "get_root_seed", lambda: 3)
    keras.layers.Dense(2)  # other draws in between are fine
    after = keras.layers.Dropout(0.5)
    keras.utils.set_random_seed(11)
    monkeypatch.setattr(aud, "_keras_seed", lambda: 11)
    keras_seeded = keras.layers.Dropout(0.5)
    model = keras.Sequential([keras.Input((2,)), before, after, keras_seeded])
    found = dict((subject, severity) for severity, subject in generator_findings(model))
    assert found == {
        "dropout#0/seed_generator": "warning",
        "dropout#1/seed_generator": "info",
        "dropout#2/seed_generator": "info",
    }


@pytest.mark.tensorflow_only("Keras shuffles arrays with tf.random on the TF backend")
def test_an_unseeded_keras_array_shuffle_is_reported(no_seeds):
    x = np.zeros((8, 2), "float32")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert "array-shuffle-unseeded" in codes(kr.audit(model, data=x))
    assert "array-shuffle-unseeded" in codes(kr.audit(model, data={"a": x, "b": x}))
    assert "array-shuffle-unseeded" not in codes(kr.audit(model, data=x, shuffle=False))
    assert "array-shuffle-unseeded" not in codes(kr.audit(model, data=tf.data.Dataset.from_tensor_slices(x)))
    inputs = keras.Input((2,))
    seeded = kr.SeededModel(inputs, keras.layers.Dense(1)(inputs), seed=1)
    assert "array-shuffle-unseeded" not in codes(kr.audit(seeded, data=x))  # its fit orders epochs itself


def test_unseeded_randomness_in_a_tf_data_pipeline_is_reported(no_seeds, monkeypatch):
    monkeypatch.setattr(aud, "tf_op_determinism_enabled", lambda: False)
    tf.random.set_seed(None)
    ds = tf.data.Dataset.range(10).shuffle(10).map(lambda v: tf.random.uniform(()) + tf.cast(v, tf.float32))
    found = {(f.code, f.subject) for f in kr.audit(data=ds)}
    assert {("data-unseeded-shuffle", "ShuffleDatasetV3"), ("data-unseeded-random", "MapDataset")} <= found
    flip = keras.layers.RandomFlip("horizontal")
    images = tf.data.Dataset.from_tensor_slices(tf.ones((4, 8, 8, 3)))
    augmented = images.map(lambda v: flip(v, training=True), num_parallel_calls=2)
    found = {(f.severity, f.code) for f in kr.audit(data=augmented)}
    assert {("warning", "data-random-layers"), ("warning", "data-parallel-random")} <= found
    tf.random.set_seed(1)
    seeded = tf.data.Dataset.range(10).shuffle(10).map(lambda v: tf.random.uniform(()) + tf.cast(v, tf.float32))
    assert not [c for c in codes(kr.audit(data=seeded)) if c.startswith("data-unseeded")]


def test_a_tf_random_generator_in_a_pipeline_is_named_as_such_not_as_an_unseeded_op(no_seeds):
    kr.seed_everything(0)  # seeds TensorFlow's global seed: it does not reach this generator
    noise = tf.random.Generator.from_non_deterministic_state()
    ds = tf.data.Dataset.range(4).map(lambda v: noise.normal(()) + tf.cast(v, tf.float32))
    found = {f.code: f for f in kr.audit(data=ds)}
    assert "data-unseeded-random" not in found
    assert found["data-random-generator"].subject == "MapDataset"
    assert "RngReadAndSkip" in found["data-random-generator"].what
    assert "from_seed" in found["data-random-generator"].fix


def test_random_layers_in_a_pipeline_are_not_reported_when_seeded(no_seeds, monkeypatch):
    monkeypatch.setattr(aud, "tf_op_determinism_enabled", lambda: False)
    images = tf.data.Dataset.from_tensor_slices(tf.ones((4, 8, 8, 3)))
    seeded = keras.layers.RandomFlip("horizontal", seed=5)
    unseeded = keras.layers.RandomFlip("horizontal")
    assert "data-random-layers" not in codes(kr.audit(data=images.map(lambda v: seeded(v, training=True))))
    assert "data-random-layers" in codes(kr.audit(data=images.map(lambda v: unseeded(v, training=True))))
