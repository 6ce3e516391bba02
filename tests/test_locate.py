"""keras_repro.locate: where a divergence enters, found by probing a step in two fresh runs."""

import dataclasses
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_repro import _probe as _probe_module
from keras_repro import _probe_pass
from keras_repro._runner import run_once
from keras_repro.check import check_script
from keras_repro.divergence import Divergence
from keras_repro.locate import Location
from keras_repro.locate import compare_probes
from keras_repro.locate import locate
from keras_repro.locate import read_probe
from keras_repro.trace import load_trace

# The scripts here use TF ops (tf.custom_gradient, tf.data); tests/test_backends.py
# probes JAX and torch steps with scripts of their own.
pytestmark = pytest.mark.tensorflow_only("the locate scripts here use TF ops; test_backends.py covers JAX and torch")

SCRIPTS = Path(__file__).resolve().parent / "locate_scripts"


def _check_and_locate(name: str, folder: Path, every="epoch", step_exact=True) -> Location:
    script = SCRIPTS / f"{name}.py"
    result = check_script(script, every=every, keep=folder)
    assert not result.reproducible, result.summary()
    divergence = result.divergence
    if not step_exact:  # as from a check without step digests (another backend, an older trace)
        divergence = dataclasses.replace(divergence, step_exact=False)
    return locate(script, (), divergence, every, folder)


@pytest.mark.slow
def test_a_layer_adding_a_per_process_constant_is_located_in_its_forward_pass(tmp_path):
    where = _check_and_locate("forward_noise", tmp_path)
    assert (where.stage, where.layer, where.step, where.fit) == ("forward", "noisy", 1, 0), where
    assert "AddV2" in where.op_types and where.advice == ()
    assert "layer noisy (AddOffset)" in where.message
    # The checked runs' step digests found step 1: no re-run recording every batch.
    assert not (tmp_path / "locate" / "batch1").exists()


@pytest.mark.slow
def test_a_gradient_scaled_per_process_is_located_in_that_layers_backward_pass(tmp_path):
    # Without the step, two runs recording every batch find it first.
    where = _check_and_locate("backward_scale", tmp_path, step_exact=False)
    assert (tmp_path / "locate" / "batch1" / "trace.jsonl").exists()
    assert (where.stage, where.layer, where.step) == ("backward", "scaled", 1), where
    assert "IdentityN" in where.op_types  # tf.custom_gradient's op
    assert "gradient with respect to its inputs" in where.message


@pytest.mark.slow
def test_a_dropout_seeded_per_process_is_located_in_its_forward_pass_with_its_generator(tmp_path):
    where = _check_and_locate("dropout_seed", tmp_path)
    assert (where.stage, where.layer, where.step) == ("forward", "drop", 1), where
    assert "seed generators drop/seed_generator already differ" in where.message


@pytest.mark.slow
def test_noisy_batches_from_a_pydataset_are_located_in_the_data_x(tmp_path):
    # Recorded every batch: the step is known from the check, no re-run is needed.
    where = _check_and_locate("data_noise", tmp_path, every="batch")
    assert (where.stage, where.part, where.layer, where.step) == ("data", "x", None, 1), where
    assert not (tmp_path / "locate" / "batch1").exists()


@pytest.mark.slow
def test_unseeded_noise_in_a_parallel_tf_data_map_is_located_in_the_data_x(tmp_path):
    where = _check_and_locate("data_parallel_map", tmp_path)
    assert (where.stage, where.part, where.layer, where.step, where.fit) == ("data", "x", None, 1, 0), where


@pytest.mark.slow
def test_a_layer_inside_a_nested_model_in_a_second_fit_is_located_by_its_path(tmp_path):
    where = _check_and_locate("nested_second_fit", tmp_path)
    assert (where.stage, where.layer, where.step, where.fit) == ("forward", "encoder/noisy", 1, 1), where
    assert "layer encoder/noisy (AddOffset)" in where.message


@pytest.mark.slow
def test_a_custom_train_step_is_outside_with_the_differing_variables(tmp_path):
    where = _check_and_locate("custom_train_step", tmp_path)
    assert where.stage == "outside" and where.layer is None, where
    assert set(where.variables) == {"hidden/kernel", "hidden/bias", "out/kernel", "out/bias"}
    assert "Net.train_step" in where.message


def probed_and_plain_runs_agree_up_to_the_probed_step(tmp_path: Path) -> dict:
    """Probes step 3 of `dropout_norm.py` and runs it plainly; checks what both backends' tests share.

    Steps before the probed one stay compiled and unchanged by the probe's
    wrapper: the state the probe starts from is the plain run's at step 2,
    and training stops right after the probed step. Returns the probe.
    """
    script = SCRIPTS / "dropout_norm.py"
    probe_path = tmp_path / "probe" / "probe.json"
    run_once(script, [], 1, tmp_path / "probe", "epoch", None, probe=(probe_path, 0, 3))
    run_once(script, [], 2, tmp_path / "plain", "batch", None)
    probe = read_probe(probe_path)
    plain = {r["step"]: dict(r["variables"]) for r in load_trace(tmp_path / "plain" / "trace.jsonl").records}
    assert dict(probe["before"]) == plain[2]
    assert [c["layer"] for c in probe["calls"]] == ["hidden", "norm", "drop", "out", ""]
    assert all(None not in c["input_gradients"] + c["output_gradients"] for c in probe["calls"])
    end = load_trace(tmp_path / "probe" / "trace.jsonl").records[-1]
    assert (end["type"], end["step"]) == ("fit_end", 3)
    return probe


@pytest.mark.slow
def test_a_probed_run_reaches_the_probed_step_as_an_unprobed_run_does(tmp_path):
    probed_and_plain_runs_agree_up_to_the_probed_step(tmp_path)


def test_the_probe_puts_back_what_its_forward_pass_changes():
    # Dropout draws from its seed generator, BatchNormalization updates its
    # moving statistics, and the global streams may be drawn from: all of it
    # is as before once the probe has run, so the real step computes as it
    # would without it.
    import keras_repro as kr
    from keras_repro.fingerprint import fingerprint_variables

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(1),
        ]
    )
    model.compile("sgd", "mse")
    x, y = np.linspace(-1, 1, 32, dtype="float32").reshape(8, 4), np.ones((8, 1), "float32")
    model.fit(x, y, verbose=0)
    before, rng = fingerprint_variables(model), kr.fingerprint_rng()
    probe = _probe_module._Probe("unused.json", 0, 2)._capture(model, (x, y))
    assert fingerprint_variables(model) == before and kr.fingerprint_rng() == rng
    assert len(probe["calls"]) == 5 and all(c["output_gradients"][0] is not None for c in probe["calls"])


def test_the_probe_records_nested_layers_by_path_inside_their_parents_call():
    keras.utils.set_random_seed(0)
    block = keras.Sequential([keras.layers.Dense(3, name="a"), keras.layers.Dense(3, name="b")], name="block")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(block(inputs)))
    model.compile("sgd", "mse")
    x, y = np.ones((8, 4), "float32"), np.ones((8, 1), "float32")
    model.fit(x, y, verbose=0)
    calls = _probe_module._Probe("unused.json", 0, 2)._capture(model, (x, y))["calls"]
    assert [c["layer"] for c in calls] == ["block/a", "block/b", "block", "head", ""]
    block_call, root = calls[2], calls[4]
    assert block_call["start"] < calls[0]["start"] and calls[1]["end"] < block_call["end"]
    assert block_call["variables"] == ["block/a/kernel", "block/a/bias", "block/b/kernel", "block/b/bias"]
    assert root["variables"][-2:] == ["head/kernel", "head/bias"]


# ---------------------------------------------------------------------------- comparing probes (no runs)


def _call(layer, start, end, inputs="i", outputs="o", in_grad="gi", out_grad="go", variables=()):
    return {
        "layer": layer,
        "index": 0,
        "class": "Dense",
        "start": start,
        "end": end,
        "inputs": [inputs],
        "outputs": [outputs],
        "input_gradients": [in_grad],
        "output_gradients": [out_grad],
        "variables": list(variables),
        "op_types": ["MatMul"],
        "gradient_op_types": ["BiasAddGrad"],
    }


def _probe(calls, gradients=(("a/kernel", "g"),), after=(("a/kernel", "v"),), loss="l", x="x"):
    return {
        "fit": 0,
        "step": 5,
        "train_step": "keras",
        "data": {"x": [x], "y": ["y"], "sample_weight": [None]},
        "before": [["a/kernel", "w"]],
        "after": [list(p) for p in after],
        "calls": calls,
        "loss": loss,
        "gradients": [list(p) for p in gradients],
    }


def test_a_difference_made_by_the_models_own_call_is_located_there():
    # `a` agrees; the root model's call adds something between its layers.
    first = _probe([_call("a", 1, 2), _call("b", 3, 4), _call("", 0, 5)])
    second = _probe([_call("a", 1, 2), _call("b", 3, 4, inputs="I", outputs="O"), _call("", 0, 5, outputs="O")])
    where = compare_probes(first, second)
    assert (where.stage, where.layer) == ("forward", "")
    assert "the model's own call" in where.message


def test_the_innermost_layer_is_named_when_a_layer_inside_another_differs():
    first = _probe([_call("block/inner", 1, 2), _call("block", 0, 3), _call("", -1, 4)])
    second = _probe(
        [
            _call("block/inner", 1, 2, outputs="O"),
            _call("block", 0, 3, outputs="O"),
            _call("", -1, 4, outputs="O"),
        ]
    )
    assert compare_probes(first, second).layer == "block/inner"


def test_a_variable_gradient_differing_names_the_layer_and_advises_on_its_kernels():
    first = _probe([_call("a", 0, 1, variables=["a/kernel"]), _call("", -1, 2, variables=["a/kernel"])])
    second = _probe(
        [_call("a", 0, 1, variables=["a/kernel"]), _call("", -1, 2, variables=["a/kernel"])],
        gradients=(("a/kernel", "G"),),
    )
    where = compare_probes(first, second)
    assert (where.stage, where.layer, where.variables) == ("backward", "a", ("a/kernel",))
    assert where.op_types == ("BiasAddGrad", "MatMul")
    assert len(where.advice) == 1 and "keras_repro.enable_determinism()" in where.advice[0]


def test_a_seed_generator_differing_before_the_step_is_a_note_not_a_verdict():
    first = {**_probe([_call("drop", 0, 1)]), "generators": ["drop/seed_generator"]}
    second = {**_probe([_call("drop", 0, 1, outputs="O")]), "generators": ["drop/seed_generator"]}
    first["before"] = [*first["before"], ["drop/seed_generator", "s"]]
    second["before"] = [*second["before"], ["drop/seed_generator", "S"]]
    where = compare_probes(first, second)
    assert (where.stage, where.layer) == ("forward", "drop")
    assert "seed generators drop/seed_generator already differ" in where.message


def test_equal_gradients_and_different_new_values_are_the_optimizer():
    first, second = _probe([_call("a", 0, 1)]), _probe([_call("a", 0, 1)], after=(("a/kernel", "V"),))
    where = compare_probes(first, second)
    assert (where.stage, where.variables) == ("optimizer", ("a/kernel",))


def test_a_probe_where_nothing_differs_is_outside_and_says_so():
    where = compare_probes(_probe([_call("a", 0, 1)]), _probe([_call("a", 0, 1)]))
    assert where.stage == "outside" and "Nothing differs" in where.message


def test_the_batch_is_compared_first():
    where = compare_probes(_probe([_call("a", 0, 1)]), _probe([_call("a", 0, 1, outputs="O")], x="X"))
    assert (where.stage, where.part) == ("data", "x")


def test_probes_of_different_steps_are_refused():
    other = {**_probe([]), "step": 6}
    with pytest.raises(ValueError, match="different steps"):
        compare_probes(_probe([]), other)


def test_op_types_of_a_convolution_include_its_nondeterministic_gradient_kernels():
    import tensorflow as tf

    layer = keras.layers.Conv2D(2, 3)
    x = tf.constant(np.ones((1, 5, 5, 1), "float32"))
    layer(x)
    found = _probe_pass.op_types(layer, ((x,), {}))
    assert "Conv2D" in found["op_types"]
    assert {"Conv2DBackpropFilter", "Conv2DBackpropInput"} <= set(found["gradient_op_types"])


# ---------------------------------------------------------------------------- arguments


def _divergence(kind="step"):
    return Divergence(kind, 0, 0, None, 4, ("a/kernel",), (), "they differ")


def test_a_divergence_before_training_needs_no_runs(tmp_path):
    where = locate(SCRIPTS / "forward_noise.py", (), _divergence("start"), "epoch", tmp_path)
    assert where.stage == "outside" and where.variables == ("a/kernel",)
    assert not (tmp_path / "locate").exists()


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(TypeError, match="divergence"):
        locate(SCRIPTS / "forward_noise.py", (), "step 4", "epoch", tmp_path)
    with pytest.raises(TypeError, match="folder"):
        locate(SCRIPTS / "forward_noise.py", (), _divergence(), "epoch", None)
    with pytest.raises(ValueError, match="every"):
        locate(SCRIPTS / "forward_noise.py", (), _divergence(), "sometimes", tmp_path)
