"""Step digests: computed inside the train step, read once per record, and what they catch.

The digest is checked against an independent pure-Python computation of the
formula the module documents (in-process: that is a claim about arithmetic,
with and without XLA). The detection claims are checked between processes:
two identical runs list identical step digests; a one-ULP change of one
element, a swap of two elements, and a changed input row are each located
to their training step, and the exact host fingerprints of the epoch-end
record name the same variable (the cross-check of the two digests).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_repro as kr
from keras_repro import _step_hooks
from keras_repro import _words
from keras_repro.divergence import RecordComparator
from keras_repro.fingerprint import tracked_state
from keras_repro.step_digest import StepDigests
from keras_repro.step_digest import state_digest
from keras_repro.trace import diff_traces
from keras_repro.trace import load_trace
from tests.digests import reference_digest
from tests.procs import run_pythons


@pytest.mark.parametrize("jit_compile", [False, True])
def test_the_digest_of_each_step_is_the_documented_formula(jit_compile):
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4),
            keras.layers.Dropout(0.5),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(1, dtype="float64"),
        ]
    )
    model.compile("adam", "mse", jit_compile=jit_compile)
    digests = StepDigests(model, capacity=4)
    x = np.random.default_rng(0).normal(size=(24, 3)).astype("float32")
    model.fit(x, x[:, :1], batch_size=4, epochs=1, verbose=0, shuffle=False)
    read = digests.read()
    assert (read.first, len(read.state), read.lost) == (2, 4, 2)  # 6 steps, the buffer holds 4
    assert read.data == (None,) * 4  # no DataFingerprint installed
    state = tracked_state(model)
    weights = [keras.ops.convert_to_numpy(v) for p, v in state.variables.items() if state.kinds[p] == "weight"]
    assert read.state[-1] == reference_digest(weights)
    assert digests.read().state == ()  # nothing new since


def device_digest(arrays, compiled=False) -> str:
    """`state_digest` of `arrays`, by the backend's kernels, or (`compiled`) as the step runs it (`Ops.compiled`)."""
    ops = _words.ops()

    def digest(values):
        return state_digest(ops, values, {})

    with _step_hooks.x64():
        value = (ops.compiled(digest) if compiled else digest)([keras.ops.convert_to_tensor(a) for a in arrays])
        return f"{int(np.asarray(keras.ops.convert_to_numpy(value))) % 2**64:016x}"


def test_the_digest_as_the_step_runs_it_is_the_documented_formula_for_every_width():
    # `Ops.compiled`: with TensorFlow on a CPU, one XLA computation.
    rng = np.random.default_rng(5)
    arrays = [rng.normal(size=(3, 5)).astype(dtype) for dtype in ("float16", "float32", "float64")] + [
        rng.integers(-9, 9, size=7).astype("int8"),
        rng.integers(0, 2, size=6).astype(bool),
        np.float32(2.5),
    ]
    assert device_digest(arrays, compiled=True) == reference_digest(arrays)


def test_one_changed_element_and_a_swap_always_change_the_digest():
    rng = np.random.default_rng(3)
    base = rng.normal(size=(64, 33)).astype("float32")
    seen = {device_digest([base])}
    assert seen == {reference_digest([base])}
    for i, j in [(0, 1), (5, 2000), (2111, 2)]:
        swapped = base.reshape(-1).copy()
        swapped[[i, j]] = swapped[[j, i]]
        nudged = base.reshape(-1).copy()
        nudged[i] = np.nextafter(nudged[i], np.float32(np.inf))
        for changed in (swapped, nudged):
            value = device_digest([changed.reshape(base.shape)])
            assert value not in seen
            seen.add(value)
    with pytest.raises(ValueError, match="capacity: 0"):
        StepDigests(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]), capacity=0)


CHILD = """
import os, warnings
import numpy as np, keras, keras_repro as kr

mode, trace, reference = os.environ["MODE"], os.environ["TRACE"], os.environ.get("REFERENCE") or None
warnings.simplefilter("ignore")
kr.seed_everything(5)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu", name="hidden"),
                          keras.layers.Dropout(0.3), keras.layers.Dense(1, name="head")])
kr.seed_model(model, 5)
model.compile(keras.optimizers.Adam(0.01), "mse")
x = np.random.default_rng(0).random((64, 4), dtype="float32")
y = x.sum(axis=1, keepdims=True)
if mode == "data":
    x[40, 2] += 1.0  # a row of batch 2 of every epoch: training step 3 first

class Change(keras.callbacks.Callback):
    async_safe = True  # a batch hook that keeps Keras' asynchronous dispatch as the recording does
    def on_train_batch_begin(self, batch, logs=None):
        if self._epoch == 1 and batch == 2 and mode in ("nudge", "swap"):  # before training step 7
            if hasattr(self.model, "jax_state_sync"):
                self.model.jax_state_sync()  # JAX: the step's state back in the variables, and read from them next
            kernel = self.model.get_layer("hidden").kernel
            value = kernel.numpy()
            if mode == "nudge":
                value[1, 3] = np.nextafter(value[1, 3], np.float32(np.inf))
            else:
                value[0, 0], value[2, 5] = value[2, 5], value[0, 0]
            kernel.assign(value)
    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

callback = kr.DeterminismCallback(trace, reference=reference, steps=True)
result = {"error": None}
try:
    model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0, callbacks=[Change(), callback])
except kr.NondeterminismError as e:
    result["error"] = {"kind": e.kind, "step": e.step, "variables": list(e.variables), "message": str(e)}
emit(result)
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("steps")

    def env(name, mode, reference=None):
        return {"MODE": mode, "TRACE": str(folder / f"{name}.jsonl"), "REFERENCE": reference or ""}

    (first,) = run_pythons([CHILD], envs=[env("a", "base")])
    names = [("b", "base"), ("nudge", "nudge"), ("swap", "swap"), ("data", "data")]
    envs = [env(n, m, str(folder / "a.jsonl") if n == "nudge" else None) for n, m in names]
    results = dict(zip([n for n, _ in names], run_pythons([CHILD] * len(names), envs=envs)))
    return folder, {"a": first, **results}


def test_two_processes_list_identical_step_digests(runs):
    folder, results = runs
    a, b = load_trace(folder / "a.jsonl"), load_trace(folder / "b.jsonl")
    assert a.records == b.records and kr.compare_traces(a, b) is None
    listed = [(r["type"], r["steps"]["first"], len(r["steps"]["state"])) for r in a.records if "steps" in r]
    assert listed == [("epoch", 1, 4), ("epoch", 5, 4), ("epoch", 9, 4)]  # every step, numbered by step
    states = [s for r in a.records if "steps" in r for s in r["steps"]["state"]]
    assert len(set(states)) == 12  # the weights change every step
    assert all(r["steps"]["lost"] == 0 for r in a.records if "steps" in r)


@pytest.mark.parametrize("mode", ["nudge", "swap"])
def test_a_changed_or_swapped_element_is_located_to_its_step(runs, mode):
    folder, _ = runs
    # The nudged run compared itself with "a" and stopped at the divergence: its trace is partial.
    name = "nudge.jsonl.partial" if mode == "nudge" else f"{mode}.jsonl"
    changed = load_trace(folder / name, allow_incomplete=True)
    divergence = diff_traces(folder / "a.jsonl", changed).divergence
    assert (divergence.kind, divergence.step, divergence.epoch) == ("step", 7, 1)
    # The exact host fingerprints at the end of that epoch name the variable: the two digests agree.
    assert divergence.variables[:1] == ("hidden/kernel",)
    assert "First divergence at training step 7 (fit 0, epoch 1)" in divergence.message


def test_the_reference_run_raises_at_the_step_as_it_trains(runs):
    error = runs[1]["nudge"]["error"]
    assert (error["kind"], error["step"]) == ("step", 7)
    assert "hidden/kernel" in error["variables"]


def test_a_changed_input_row_is_a_data_divergence_at_its_step(runs):
    folder, _ = runs
    divergence = diff_traces(folder / "a.jsonl", folder / "data.jsonl").divergence
    assert (divergence.kind, divergence.step) == ("data", 3)
    assert "The input data differs (order or content) from training step 3 (fit 0, epoch 0)" in divergence.message


def test_a_trace_without_step_digests_still_compares_with_one_that_has_them(runs):
    folder, _ = runs
    with_steps = load_trace(folder / "a.jsonl").records
    without = [{k: v for k, v in r.items() if k != "steps"} for r in load_trace(folder / "swap.jsonl").records]
    comparator = RecordComparator()
    divergence = next(d for d in (comparator.add(x, y) for x, y in zip(with_steps, without)) if d is not None)
    # Located as before step digests: to the epoch-end record after the change.
    assert (divergence.kind, divergence.epoch, divergence.step) == ("step", 1, 8)
    assert "hidden/kernel" in divergence.variables


@pytest.mark.skipif(keras.backend.backend() == "torch", reason="Keras takes steps_per_execution=1 only on PyTorch")
def test_several_steps_per_execution_record_every_step(tmp_path):
    def steps(per_execution):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3), keras.layers.Dense(1)])
        model.compile("adam", "mse", steps_per_execution=per_execution)
        trace = tmp_path / f"{per_execution}.jsonl"
        callback = kr.DeterminismCallback(trace, steps=True, audit="off")
        x = np.linspace(0, 1, 16, dtype="float32").reshape(8, 2)
        model.fit(x, x[:, :1], batch_size=2, epochs=1, shuffle=False, verbose=0, callbacks=[callback])
        (epoch,) = [r for r in load_trace(trace).records if r["type"] == "epoch"]
        return epoch["data"], epoch["steps"]

    data, listed = steps(1)
    assert (listed["first"], len(listed["state"])) == (1, 4)
    assert steps(3) == (data, listed)  # also on JAX, where Keras keeps only one step's logs per execution


class TwoUpdatesPerStep(keras.Model):
    """A custom train step that applies its optimizer twice per batch, as a GAN's critic loop does."""

    def train_step(self, data):
        import tensorflow as tf

        x, y = data
        for _ in range(2):
            with tf.GradientTape() as tape:
                loss = keras.ops.mean((self(x, training=True) - y) ** 2)
            grads = tape.gradient(loss, self.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        return {"loss": loss}


@pytest.mark.tensorflow_only("the custom train step uses tf.GradientTape")
def test_steps_are_numbered_by_the_training_step_each_one_ends_at(tmp_path):
    # Two optimizer updates per train_step: the record lists the steps as
    # training steps 2, 4, ..., and a comparison names the one it differs at.
    keras.utils.set_random_seed(0)
    inputs = keras.Input((2,))
    model = TwoUpdatesPerStep(inputs, keras.layers.Dense(1)(inputs))
    model.compile("sgd")
    trace = tmp_path / "t.jsonl"
    x = np.linspace(0, 1, 16, dtype="float32").reshape(8, 2)
    callback = kr.DeterminismCallback(trace, steps=True, audit="off")
    model.fit(x, x[:, :1], batch_size=2, epochs=1, shuffle=False, verbose=0, callbacks=[callback])
    (epoch,) = [r for r in load_trace(trace).records if r["type"] == "epoch"]
    assert (epoch["step"], epoch["steps"]["first"], epoch["steps"]["at"]) == (8, 2, [2, 4, 6, 8])
    other = {**epoch, "steps": {**epoch["steps"], "state": [*epoch["steps"]["state"][:2], "0" * 16, "1" * 16]}}
    divergence = RecordComparator().add(epoch, other)
    assert (divergence.step, divergence.step_exact) == (6, True)
    assert "training step 6 " in divergence.message


def test_step_digests_saved_without_their_training_steps_still_restore():
    # Backups written before rows held the training step have two columns:
    # they load, and the steps are then numbered from the record's step.
    from keras_repro.step_digest import peek_state
    from keras_repro.step_digest import restore_state

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    steps = StepDigests(model, capacity=8)
    restore_state(model, [[11, 12], [13, 14]])
    assert peek_state(model) == [[11, 12, -1], [13, 14, -1]]
    read = steps.read()
    assert read.numbers == (None, None)
    assert read.to_record(9) == {"first": 8, "state": [f"{11:016x}", f"{13:016x}"], "data": [None, None], "lost": 0}


def test_steps_an_idle_optimizer_is_ahead_of_are_numbered_one_by_one():
    # Distillation: the teacher's optimizer (count 16) is reachable from the
    # distiller, whose own count starts at 0, so the training step stays 16
    # for a while. Such numbers cannot tell the steps apart: they are
    # numbered one by one up to the record's step, in both runs alike.
    from keras_repro.step_digest import StepsRead

    read = StepsRead(0, ("a", "b", "c"), (None, None, None), 0, (16, 16, 17))
    assert read.to_record(17) == {"first": 15, "state": ["a", "b", "c"], "data": [None, None, None], "lost": 0}
    assert "at" in StepsRead(0, ("a", "b"), (None, None), 0, (3, 6)).to_record(6)
