"""Deterministic-kernel switch and the audit: one finding per condition (in-process: these are
facts about this process, not reproducibility claims)."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import config as tf_config

import keras_repro as kr
from keras_repro import determinism as det
from keras_repro.determinism import AuditError, Finding

GPU = ["/physical_device:GPU:0"]


@pytest.fixture
def op_determinism_restored():
    """Tests may turn TF op determinism on; turn it back off for the tests that follow."""
    was = tf_config.is_op_determinism_enabled()
    yield
    if not was:
        tf_config.disable_op_determinism()


@pytest.fixture
def clean_process(monkeypatch):
    """A process with nothing to report: hash seed set, root seed recorded, determinism on."""
    monkeypatch.setattr(det, "hashseed_set_at_start", lambda: True)
    monkeypatch.setattr(det, "get_root_seed", lambda: 1)
    monkeypatch.setattr(det, "determinism_enabled", lambda: True)
    monkeypatch.setattr(det, "initial_environ", lambda: dict(os.environ))
    monkeypatch.setattr(det, "_gpu_devices", lambda: [])


@pytest.fixture
def no_seeds(monkeypatch):
    monkeypatch.setattr(det, "get_root_seed", lambda: None)
    monkeypatch.setattr(det, "_keras_seed", lambda: None)
    monkeypatch.setattr(det, "_tf_global_seed", lambda: None)


def codes(findings, severity=None):
    return [f.code for f in findings if severity is None or f.severity == severity]


def only(findings, code):
    found = [f for f in findings if f.code == code]
    assert len(found) == 1, findings
    return found[0]


def test_enable_determinism_turns_on_tf_op_determinism(op_determinism_restored):
    tf_config.disable_op_determinism()
    assert not kr.determinism_enabled()
    with kr.isolated_rng(seed=3):
        assert kr.enable_determinism() == ["tensorflow.op_determinism"]
    assert kr.determinism_enabled() and tf_config.is_op_determinism_enabled()


def test_enable_determinism_warns_when_tf_random_ops_will_raise(op_determinism_restored):
    with kr.isolated_rng():
        tf.random.set_seed(None)
        with pytest.warns(kr.ReproducibilityWarning, match="Random ops require a seed"):
            kr.enable_determinism()


def test_determinism_enabled_falls_back_to_the_env_var(monkeypatch):
    def broken():
        raise AttributeError("private API moved")

    monkeypatch.setattr(tf_config, "is_op_determinism_enabled", broken)
    monkeypatch.setenv("TF_DETERMINISTIC_OPS", "1")
    assert kr.determinism_enabled()
    monkeypatch.setenv("TF_DETERMINISTIC_OPS", "0")
    assert not kr.determinism_enabled()


def test_jax_cannot_be_switched_from_inside(monkeypatch):
    monkeypatch.setattr(det, "_backend", lambda: "jax")
    monkeypatch.setattr(det, "tensorflow_module", lambda import_it: None)
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    with pytest.warns(kr.ReproducibilityWarning, match="XLA_FLAGS=--xla_gpu_deterministic_ops=true python"):
        assert kr.enable_determinism() == []
    assert not kr.determinism_enabled()
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_deterministic_ops=true")
    assert kr.determinism_enabled()


def test_finding_validates_severity_and_reads_well():
    with pytest.raises(ValueError, match="Invalid severity: 'fatal'"):
        Finding("fatal", "x", "what", "why", "fix")
    text = str(Finding("warning", "code-x", "What.", "Why.", "Fix.", subject="a/b"))
    assert text == "WARNING code-x [a/b]: What. Why: Why. Fix: Fix."


def test_a_clean_process_has_no_findings(clean_process):
    assert kr.audit() == []


def test_hashseed_unset(clean_process, monkeypatch):
    monkeypatch.setattr(det, "hashseed_set_at_start", lambda: False)
    finding = only(kr.audit(), "hashseed-unset")
    assert finding.severity == "warning" and "PYTHONHASHSEED=0 python" in finding.fix


def test_root_seed_unset(clean_process, no_seeds, monkeypatch):
    finding = only(kr.audit(), "root-seed-unset")
    assert finding.severity == "error" and "seed_everything" in finding.fix
    monkeypatch.setattr(det, "_tf_global_seed", lambda: 42)  # seeded, but not through keras_repro
    assert only(kr.audit(), "root-seed-unset").severity == "warning"


def test_op_determinism_off_is_an_error_with_a_gpu(clean_process, monkeypatch):
    monkeypatch.setattr(det, "determinism_enabled", lambda: False)
    assert only(kr.audit(), "op-determinism-off").severity == "warning"
    monkeypatch.setattr(det, "_gpu_devices", lambda: GPU)
    finding = only(kr.audit(), "op-determinism-off")
    assert finding.severity == "error" and "GPU:0" in finding.what


def test_start_only_env_vars_changed_after_start(clean_process, monkeypatch):
    monkeypatch.setattr(det, "initial_environ", lambda: {k: v for k, v in os.environ.items()
                                                           if k != "CUBLAS_WORKSPACE_CONFIG"})
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    finding = only(kr.audit(), "env-changed-after-start")
    assert finding.subject == "CUBLAS_WORKSPACE_CONFIG" and "before starting Python" in finding.fix


def test_start_only_env_vars_missing_on_a_gpu_machine(clean_process, monkeypatch):
    monkeypatch.setattr(det, "_backend", lambda: "jax")
    monkeypatch.setattr(det, "_gpu_devices", lambda: ["cuda:0"])
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    finding = only(kr.audit(), "env-missing-at-start")
    assert finding.severity == "error" and finding.subject == "XLA_FLAGS"


def test_unseeded_seed_generator(clean_process):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, kernel_initializer="zeros"),
                              keras.layers.Dropout(0.5), keras.layers.Dropout(0.5, seed=1, name="seeded")])
    finding = only(kr.audit(model), "unseeded-seed-generator")
    assert finding.subject == "dropout#0/seed_generator" and finding.severity == "warning"


def test_shared_initializer_instance(clean_process):
    shared = keras.initializers.GlorotUniform(seed=3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, kernel_initializer=shared),
                              keras.layers.Dense(4, kernel_initializer=shared)])
    w0, w1 = (keras.ops.convert_to_numpy(layer.kernel) for layer in model.layers)
    assert np.array_equal(w0, w1)  # what the finding is about
    finding = only(kr.audit(model), "shared-initializer")
    assert "dense#0/kernel_initializer" in finding.what and "dense#1/kernel_initializer" in finding.what
    separate = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, kernel_initializer="glorot_uniform"),
                                 keras.layers.Dense(4, kernel_initializer=keras.initializers.GlorotUniform(seed=3))])
    assert "shared-initializer" not in codes(kr.audit(separate))


def test_unseeded_initializers_are_info(clean_process):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4), keras.layers.Dense(4, name="out")])
    finding = only(kr.audit(model), "unseeded-initializer")
    assert finding.severity == "info" and "2 random initializers" in finding.what
    seeded = kr.seed_model(keras.Sequential([keras.Input((4,)), keras.layers.Dense(4), keras.layers.Dropout(0.1)]), 5)
    assert kr.audit(seeded) == []


def test_tf_data_nondeterministic_order(clean_process, monkeypatch):
    monkeypatch.setattr(det, "_tf_op_determinism", lambda: False)
    options = tf.data.Options()
    options.deterministic = False
    dataset = tf.data.Dataset.range(8).with_options(options)
    finding = only(kr.audit(data=dataset), "data-nondeterministic-order")
    assert finding.severity == "warning" and "options().deterministic=False" in finding.what
    per_op = tf.data.Dataset.range(8).map(lambda x: x + 1, num_parallel_calls=2, deterministic=False)
    finding = only(kr.audit(data=per_op), "data-nondeterministic-order")
    assert finding.subject.startswith("ParallelMapDataset")
    monkeypatch.setattr(det, "_tf_op_determinism", lambda: True)  # TF then overrides both
    assert only(kr.audit(data=dataset), "data-nondeterministic-order").severity == "info"


def test_tf_data_parallel_random_ops(clean_process, monkeypatch):
    monkeypatch.setattr(det, "_tf_op_determinism", lambda: False)

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


def test_gpu_layers_without_a_deterministic_kernel(clean_process, monkeypatch):
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3),
                              keras.layers.Resizing(4, 4, interpolation="nearest", name="shrink")])
    assert "gpu-no-deterministic-kernel" not in codes(kr.audit(model))
    monkeypatch.setattr(det, "_gpu_devices", lambda: GPU)
    finding = only(kr.audit(model), "gpu-no-deterministic-kernel")
    assert finding.subject == "shrink" and "ResizeNearestNeighborGrad" in finding.why


def test_jit_compile_interplay(clean_process, monkeypatch):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, kernel_initializer="zeros")])
    model.compile("sgd", "mse", jit_compile=True)
    monkeypatch.setattr(det, "_tf_op_determinism", lambda: False)
    assert only(kr.audit(model), "jit-compile").severity == "info"
    monkeypatch.setattr(det, "_gpu_devices", lambda: GPU)
    assert only(kr.audit(model), "jit-compile").severity == "error"
    monkeypatch.setattr(det, "_tf_op_determinism", lambda: True)  # turned on after compile()
    finding = only(kr.audit(model), "jit-compile")
    assert finding.severity == "warning" and "before compile()" in finding.fix
    model.compile("sgd", "mse", jit_compile=False)
    assert "jit-compile" not in codes(kr.audit(model))


def test_audit_reports_a_failing_check_instead_of_raising(clean_process, monkeypatch):
    def broken():
        raise RuntimeError("driver exploded")

    monkeypatch.setattr(det, "_gpu_devices", broken)
    finding = only(kr.audit(), "audit-check-failed")
    assert finding.severity == "info" and "driver exploded" in finding.what


def test_audit_sorts_by_severity_and_rejects_non_models(clean_process, no_seeds, monkeypatch):
    monkeypatch.setattr(det, "hashseed_set_at_start", lambda: False)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)])
    severities = [f.severity for f in kr.audit(model)]
    assert severities == ["error", "warning", "info"]
    with pytest.raises(TypeError, match="Invalid model: 'model.keras'"):
        kr.audit("model.keras")


def test_audit_error_lists_the_findings():
    finding = Finding("error", "root-seed-unset", "No seed.", "Why.", "Fix.")
    error = AuditError([finding])
    assert isinstance(error, RuntimeError) and error.findings == [finding] and "root-seed-unset" in str(error)
