"""The deterministic-kernel switch: turned on, queried, and what it says it cannot do
(in-process: these are facts about this process, not reproducibility claims)."""

import pytest
import tensorflow as tf
from tensorflow.python.framework import config as tf_config

import keras_repro as kr
from keras_repro import determinism as det


@pytest.fixture
def op_determinism_restored():
    """Tests may turn TF op determinism on; turn it back off for the tests that follow."""
    was = tf_config.is_op_determinism_enabled()
    yield
    if not was:
        tf_config.disable_op_determinism()


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


def test_determinism_enabled_says_so_when_tf_moves_its_private_query(monkeypatch):
    # No silent guess from TF_DETERMINISTIC_OPS: the installed versions are named.
    from keras_repro._compat import UnsupportedVersionError

    monkeypatch.delattr(tf_config, "is_op_determinism_enabled")
    with pytest.raises(UnsupportedVersionError, match="is_op_determinism_enabled"):
        kr.determinism_enabled()


def test_jax_cannot_be_switched_from_inside(monkeypatch):
    monkeypatch.setattr(det, "_backend", lambda: "jax")
    monkeypatch.setattr(det, "tensorflow_module", lambda import_it: None)
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    with pytest.warns(kr.ReproducibilityWarning, match="XLA_FLAGS=--xla_gpu_deterministic_ops=true python"):
        assert kr.enable_determinism() == []
    assert not kr.determinism_enabled()
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_deterministic_ops=true")
    assert kr.determinism_enabled()
