"""The deterministic-kernel switch: turned on, queried, and what it says it cannot do
(in-process: these are facts about this process, not reproducibility claims)."""

import importlib.util
import warnings

import pytest
import tensorflow as tf
from tensorflow.python.framework import config as tf_config

import keras_repro as kr
from keras_repro import determinism as det
from procs import child_env
from procs import run_pythons


@pytest.fixture
def op_determinism_restored():
    """Tests may turn TF op determinism on; turn it back off for the tests that follow."""
    was = tf_config.is_op_determinism_enabled()
    yield
    if not was:
        tf_config.disable_op_determinism()


@pytest.mark.tensorflow_only("TF op determinism")
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


@pytest.mark.tensorflow_only("TF op determinism")
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
    monkeypatch.setattr(det, "_jax_gpus", lambda: True)
    with pytest.warns(kr.ReproducibilityWarning, match="XLA_FLAGS=--xla_gpu_deterministic_ops=true python"):
        assert kr.enable_determinism() == []
    monkeypatch.setattr(det, "_jax_gpus", lambda: False)  # the flag only changes GPU kernels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kr.enable_determinism() == []
    assert not kr.determinism_enabled()
    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_deterministic_ops=true")
    assert kr.determinism_enabled()


def test_the_deterministic_environment_adds_the_xla_flag_once_and_keeps_what_is_set():
    from keras_repro.determinism import JAX_DETERMINISTIC_FLAG
    from keras_repro.determinism import deterministic_environment

    env = deterministic_environment({"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert env["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=2 {JAX_DETERMINISTIC_FLAG}"
    assert deterministic_environment(env)["XLA_FLAGS"] == env["XLA_FLAGS"]
    assert env["TF_DETERMINISTIC_OPS"] == "1" and env["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert deterministic_environment({"CUBLAS_WORKSPACE_CONFIG": ":16:8"})["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


JAX_AUDIT = """
import warnings
import keras
import keras_repro as kr
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    kr.enable_determinism()
found = {f.code: f for f in kr.audit()}
off = found.get("op-determinism-off")
emit({"backend": keras.backend.backend(), "enabled": kr.determinism_enabled(),
      "warnings": [str(w.message) for w in caught if "XLA_FLAGS" in str(w.message)],
      "off": None if off is None else [off.severity, off.fix]})
"""


@pytest.mark.jax
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed (the jax extra)")
def test_on_jax_the_switch_is_a_start_flag_and_on_the_cpu_its_absence_is_only_info():
    without, with_flag = run_pythons(
        [JAX_AUDIT, JAX_AUDIT],
        envs=[
            child_env({"KERAS_BACKEND": "jax"}),
            child_env({"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_gpu_deterministic_ops=true"}),
        ],
    )
    assert without["backend"] == "jax" and without["enabled"] is False
    severity, fix = without["off"]
    assert severity == "info"  # XLA's CPU kernels are deterministic without the flag
    assert "XLA_FLAGS=--xla_gpu_deterministic_ops=true python train.py" in fix
    assert "enable_determinism" not in fix  # it cannot turn the flag on
    assert without["warnings"] == []  # no GPU: nothing to warn about
    assert with_flag["enabled"] is True and with_flag["off"] is None
