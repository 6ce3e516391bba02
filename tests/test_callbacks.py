"""DeterminismCallback: identical traces from two processes, caught perturbations, trace handling.

Reproducibility claims (identical traces; a deliberately changed run caught at
exactly the right step and variable) are checked between separate processes
(tests/procs.py). The in-process tests check the callback's mechanics with
``deterministic_ops=False`` so that they leave TF's process-wide op
determinism switch alone.
"""

import importlib
import warnings

import keras
import numpy as np
import pytest

import keras_repro as kr
from keras_repro.callbacks import NondeterminismWarning
from keras_repro.trace import IncompleteTraceError
from keras_repro.trace import TraceError
from keras_repro.trace import load_trace
from tests.procs import run_pythons

audit_module = importlib.import_module("keras_repro.audit")  # kr.audit is the function

# A tiny model with an unseeded Dropout, trained in two fit calls (epochs 0-2,
# then 3), shuffled, with the callback. MODE selects a deliberate change.
CHILD = """
import os, random, warnings
import numpy as np, keras, keras_repro as kr

mode, trace, reference = os.environ["MODE"], os.environ["TRACE"], os.environ.get("REFERENCE") or None
warnings.simplefilter("ignore")
kr.seed_everything(7)
if mode == "dropout_seed":
    random.random()  # moves the seed the unseeded Dropout draws from Python's random
model = keras.Sequential([
    keras.Input((4,)),
    keras.layers.Dense(8, activation="relu", name="hidden",
                       kernel_initializer=keras.initializers.GlorotUniform(seed=1)),
    keras.layers.Dropout(0.5),
    keras.layers.Dense(1, kernel_initializer=keras.initializers.GlorotUniform(seed=2)),
])
model.compile(keras.optimizers.Adam(0.01), "mse", jit_compile=mode == "jit")
if mode == "rng":
    random.random()  # same weights, different Python RNG state at fit start
x = np.random.default_rng(0).random((64, 4), dtype="float32")
y = x.sum(axis=1, keepdims=True)

class Nudge(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if mode == "nudge" and epoch == 2:  # one ULP on one element, before the record
            kernel = self.model.get_layer("hidden").kernel
            value = kernel.numpy()
            value[1, 3] = np.nextafter(value[1, 3], np.float32(np.inf))
            kernel.assign(value)

callback = kr.DeterminismCallback(trace, reference=reference)
result = {"error": None}
try:
    model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[Nudge(), callback])
    model.fit(x, y, epochs=4, initial_epoch=3, batch_size=16, verbose=0, callbacks=[Nudge(), callback])
except kr.NondeterminismError as e:
    result["error"] = {"kind": e.kind, "fit": e.fit, "epoch": e.epoch, "batch": e.batch,
                       "variables": list(e.variables), "message": str(e)}
result["notes"] = list(callback.notes)
result["jit_compile"] = bool(model.jit_compile)
result["published"] = os.path.exists(trace)
result["partial"] = os.path.exists(trace + ".partial")
emit(result)
"""


def run_children(tmp_path, specs):
    """specs: (name, mode, reference name or None) -> {name: result}."""
    envs = [
        {
            "MODE": mode,
            "TRACE": str(tmp_path / f"{name}.jsonl"),
            "REFERENCE": str(tmp_path / f"{ref}.jsonl") if ref else "",
        }
        for name, mode, ref in specs
    ]
    results = run_pythons([CHILD] * len(specs), envs=envs)
    return {name: result for (name, _, _), result in zip(specs, results)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run "a" first; then, at once, an identical run "b" and the changed runs, all against "a"."""
    folder = tmp_path_factory.mktemp("runs")
    results = run_children(folder, [("a", "base", None)])
    results.update(
        run_children(
            folder,
            [
                ("b", "base", "a"),
                ("nudge", "nudge", "a"),
                ("rng", "rng", "a"),
                ("dropout_seed", "dropout_seed", "a"),
                ("jit", "jit", "a"),
            ],
        )
    )
    return folder, results


def test_two_processes_write_identical_traces(runs):
    folder, results = runs
    assert results["a"]["error"] is None and results["b"]["error"] is None  # b checked a as it went
    assert results["a"]["published"] and not results["a"]["partial"]
    a, b = load_trace(folder / "a.jsonl"), load_trace(folder / "b.jsonl")
    assert a.records == b.records
    assert kr.compare_traces(a, b) is None
    assert [d.key for d in kr.diff_manifests(a.manifest, b.manifest) if d.affects_results] == []
    # the traces say something: 2 fits, weights and the Dropout counter move every epoch
    assert [(r["type"], r["fit"], r["epoch"]) for r in a.records] == [
        ("fit_begin", 0, None),
        ("epoch", 0, 0),
        ("epoch", 0, 1),
        ("epoch", 0, 2),
        ("fit_end", 0, 2),
        ("fit_begin", 1, None),
        ("epoch", 1, 3),
        ("fit_end", 1, 3),
    ]
    epochs = [dict(r["variables"]) for r in a.records if r["type"] == "epoch"]
    moving = ["hidden/kernel", "optimizer/iterations"]
    if keras.backend.backend() != "torch":  # on torch an unseeded Dropout draws from torch's generator instead
        moving.append("dropout#0/seed_generator")
    for key in moving:
        assert len({e[key] for e in epochs}) == len(epochs), key
    assert [r["step"] for r in a.records if r["type"] == "epoch"] == [4, 8, 12, 16]
    # JAX's switch is an XLA flag that must be set before the process starts: the callback cannot.
    assert a.manifest["determinism"]["enabled"] is (keras.backend.backend() != "jax")


@pytest.fixture(scope="module")
def perturbed_runs(runs):
    return runs[1]


def test_one_ulp_nudge_is_caught_at_that_epoch_and_variable(perturbed_runs):
    error = perturbed_runs["nudge"]["error"]
    assert (error["kind"], error["fit"], error["epoch"], error["batch"]) == ("step", 0, 2, None)
    assert error["variables"] == ["hidden/kernel"]
    assert "fit 0, end of epoch 2" in error["message"] and "hidden/kernel" in error["message"]
    assert not perturbed_runs["nudge"]["published"] and perturbed_runs["nudge"]["partial"]


def test_a_global_stream_nothing_drew_from_is_a_note_not_a_mismatch(perturbed_runs):
    # random.random() after the model was built: same weights, masks and data,
    # different Python RNG state that training never reads.
    run = perturbed_runs["rng"]
    assert run["error"] is None and run["published"]
    assert len(run["notes"]) == 1
    assert "global random state (python) differs from the start of fit 0" in run["notes"][0]
    assert "nothing in training drew from it" in run["notes"][0]
    assert perturbed_runs["b"]["notes"] == []


@pytest.mark.skipif(
    keras.backend.backend() == "torch",
    reason="on torch an unseeded Dropout draws its masks from torch's global generator, not from its "
    "SeedGenerator (keras/src/backend/torch/random.py, dropout): moving Python's random changes no mask",
)
def test_unseeded_dropout_drawing_another_seed_is_caught_where_its_masks_change_the_weights(perturbed_runs):
    # The Dropout seed differs from the start, but only a draw from it makes
    # it matter: the first epoch's weights differ, and the report connects the two.
    error = perturbed_runs["dropout_seed"]["error"]
    assert (error["kind"], error["fit"], error["epoch"]) == ("step", 0, 0)
    assert "hidden/kernel" in error["variables"] and "dropout#0/seed_generator" in error["variables"]
    assert "the seed generator dropout#0/seed_generator already differed at the start of fit 0" in error["message"]
    assert "training drew from what differed" in error["message"]


@pytest.mark.tensorflow_only("Keras turns XLA off under TF op determinism")
def test_jit_compiled_model_matches_once_the_callback_turns_xla_off(perturbed_runs):
    # compile(jit_compile=True) then determinism at fit start: without Keras'
    # rule applied by the callback, XLA kernels would round differently.
    assert perturbed_runs["jit"]["error"] is None
    assert perturbed_runs["jit"]["jit_compile"] is False


# --- in-process mechanics -------------------------------------------------------------


def data(n=40):
    x = np.linspace(-1, 1, n * 3, dtype="float32").reshape(n, 3)
    return x, x.sum(axis=1, keepdims=True)


def sequential():
    return keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4, name="hidden"),
            keras.layers.Dropout(0.2, seed=1),
            keras.layers.Dense(1),
        ]
    )


def functional():
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(1, name="out")(keras.layers.Dense(4)(inputs)))


class Net(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.encoder = keras.layers.Dense(4)
        self.drop = keras.layers.Dropout(0.2, seed=2)
        self.head = keras.layers.Dense(1)

    def call(self, x, training=False):
        return self.head(self.drop(self.encoder(x), training=training))


def seeded():
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(1)(keras.layers.Dropout(0.2)(keras.layers.Dense(4, name="hidden")(inputs)))
    return kr.SeededModel(inputs, outputs, seed=3)


def callback(path=None, **kwargs):
    kwargs.setdefault("deterministic_ops", False)
    kwargs.setdefault("audit", "off")
    return kr.DeterminismCallback(path, **kwargs)


def fit(model, callbacks, epochs=2, initial_epoch=0, batch_size=8):
    if not model.compiled:
        model.compile("sgd", "mse")
    x, y = data()
    return model.fit(
        x,
        y,
        epochs=epochs,
        initial_epoch=initial_epoch,
        batch_size=batch_size,
        verbose=0,
        shuffle=False,
        callbacks=callbacks,
    )


@pytest.mark.parametrize(
    "bad, error, message",
    [
        ({"every": 0}, ValueError, "Invalid every: 0"),
        ({"every": -3}, ValueError, "Invalid every: -3"),
        ({"every": "epochs"}, ValueError, "Invalid every: 'epochs'"),
        ({"every": 2.5}, TypeError, "Invalid every: 2.5"),
        ({"every": True}, TypeError, "Invalid every: True"),
        ({"on_mismatch": "explode"}, ValueError, "Invalid on_mismatch: 'explode'. Allowed values: 'raise', 'warn'"),
        ({"audit": "loud"}, ValueError, "Invalid audit: 'loud'. Allowed values: 'warn', 'raise', 'off'"),
        ({"deterministic_ops": "yes"}, TypeError, "Invalid deterministic_ops: 'yes'"),
        ({"trace": 42}, TypeError, "Invalid trace: 42"),
        ({"reference": ["a.jsonl"]}, TypeError, "Invalid reference"),
    ],
)
def test_bad_arguments_are_rejected(bad, error, message):
    with pytest.raises(error, match=message):
        kr.DeterminismCallback(**bad)


def test_bad_reference_files_are_rejected_at_construction(tmp_path):
    with pytest.raises(FileNotFoundError):
        callback(reference=tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(TraceError, match="empty"):
        callback(reference=tmp_path / "empty.jsonl")
    path = tmp_path / "run.jsonl"
    fit(sequential(), [callback(path)])
    lines = path.read_text().splitlines(keepends=True)
    (tmp_path / "cut.jsonl").write_text("".join(lines[:-1]))
    with pytest.raises(IncompleteTraceError):
        callback(reference=tmp_path / "cut.jsonl")
    (tmp_path / "bad.jsonl").write_text("".join(lines[:2]) + lines[2].replace("0", "1", 1) + "".join(lines[3:]))
    with pytest.raises(TraceError, match="line 3"):
        callback(reference=tmp_path / "bad.jsonl")
    with pytest.raises(ValueError, match="every='epoch'.*every='batch'"):
        callback(reference=path, every="batch")


def test_get_config_round_trip(tmp_path):
    cb = kr.DeterminismCallback(
        tmp_path / "t.jsonl", every=3, on_mismatch="warn", deterministic_ops=False, audit="off", steps=True
    )
    config = cb.get_config()
    assert config == {
        "trace": str(tmp_path / "t.jsonl"),
        "reference": None,
        "every": 3,
        "on_mismatch": "warn",
        "deterministic_ops": False,
        "audit": "off",
        "data": True,
        "replicas": True,
        "steps": True,
    }
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(cb))
    assert isinstance(restored, kr.DeterminismCallback) and restored.get_config() == config
    assert kr.callbacks.DeterminismCallback is kr.DeterminismCallback


def test_epoch_recording_leaves_keras_batch_hooks_alone():
    # No batch hook: Keras keeps dispatching batch callbacks asynchronously.
    assert getattr(callback(every="epoch").on_train_batch_end, "_is_default", False)
    assert not getattr(callback(every="batch").on_train_batch_end, "_is_default", False)


@pytest.mark.parametrize(
    "make", [sequential, functional, Net, seeded], ids=["sequential", "functional", "subclassed", "seeded"]
)
def test_works_with_every_kind_of_model_and_several_fits(tmp_path, make):
    path = tmp_path / "run.jsonl"
    model = make()
    cb = callback(path)
    fit(model, [cb, keras.callbacks.History()], epochs=2)
    fit(model, [cb], epochs=3, initial_epoch=2)
    trace = load_trace(path)
    assert [(r["type"], r["fit"], r["epoch"]) for r in trace.records] == [
        ("fit_begin", 0, None),
        ("epoch", 0, 0),
        ("epoch", 0, 1),
        ("fit_end", 0, 1),
        ("fit_begin", 1, None),
        ("epoch", 1, 2),
        ("fit_end", 1, 2),
    ]
    assert [r["step"] for r in trace.records] == [0, 5, 10, 10, 10, 15, 15]
    last = trace.records[-1]
    assert dict(last["variables"]) == kr.fingerprint_variables(model)
    assert last["fingerprint"] == kr.fingerprint(model)
    start = trace.records[0]
    assert [p for p, _, _ in start["schema"]] == [p for p, _ in start["variables"]]
    assert set(start["rng"]) == {"python", "numpy", "tensorflow", "keras", "root_seed"}
    assert not (tmp_path / "run.jsonl.partial").exists()


def test_batch_and_every_n_recording(tmp_path):
    path = tmp_path / "batch.jsonl"
    model = sequential()
    model.compile("adam", "mse")  # its slots are created in the first step
    fit(model, [callback(path, every="batch")], epochs=2)  # 5 batches per epoch
    records = load_trace(path).records
    keys = [(r["type"], r["epoch"], r["batch"]) for r in records]
    assert keys == [("fit_begin", None, None)] + [("batch", e, b) for e in (0, 1) for b in range(5)] + [
        ("fit_end", 1, None)
    ]
    if keras.backend.backend() == "tensorflow":  # other backends build the slots before training
        assert "optimizer/hidden/kernel/momentum" not in dict(records[0]["variables"])
    assert [p for p, _ in records[1]["variables"]] == [p for p, _ in records[-1]["variables"]]
    assert "optimizer/hidden/kernel/momentum" in dict(records[1]["variables"])
    path = tmp_path / "every2.jsonl"
    fit(sequential(), [callback(path, every=2)], epochs=2)
    records = load_trace(path).records
    assert [(r["epoch"], r["batch"], r["step"]) for r in records if r["type"] == "batch"] == [
        (0, 1, 2),
        (0, 3, 4),
        (1, 1, 7),
        (1, 3, 9),
    ]
    assert load_trace(path).every == 2


def test_works_alongside_early_stopping(tmp_path):
    path = tmp_path / "run.jsonl"
    stop = keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=1e9)
    history = fit(sequential(), [stop, callback(path)], epochs=10)
    trained = len(history.history["loss"])
    records = load_trace(path).records
    assert trained < 10
    assert [r["epoch"] for r in records if r["type"] == "epoch"] == list(range(trained))
    assert (records[-1]["type"], records[-1]["epoch"]) == ("fit_end", trained - 1)


def test_in_memory_records_without_a_trace_file():
    cb = callback(None)
    fit(sequential(), [cb], epochs=2)
    assert [r["type"] for r in cb.records] == ["fit_begin", "epoch", "epoch", "fit_end"]
    assert cb.last_record["type"] == "fit_end"


def test_a_crashed_fit_leaves_no_complete_trace(tmp_path):
    class Crash(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt("stopped")

    path = tmp_path / "run.jsonl"
    fit(sequential(), [callback(path)], epochs=1)
    assert path.exists()  # an earlier, complete run under the same path...
    with pytest.raises(KeyboardInterrupt):
        fit(sequential(), [callback(path), Crash()], epochs=3)
    with pytest.raises(FileNotFoundError, match="allow_incomplete=True"):
        load_trace(path)  # ...is not mistaken for this run's trace
    with pytest.raises(IncompleteTraceError):
        load_trace(str(path) + ".partial")
    partial = load_trace(str(path) + ".partial", allow_incomplete=True)
    assert [r["type"] for r in partial.records] == ["fit_begin", "epoch"]


def test_fit_again_after_a_mismatch_error_keeps_writing_the_trace(tmp_path):
    reference = tmp_path / "ref.jsonl"
    fit(sequential(), [callback(reference)], epochs=1)
    cb = callback(tmp_path / "run.jsonl", reference=reference)
    model = sequential()
    with pytest.raises(kr.NondeterminismError):
        fit(model, [cb], epochs=1)
    fit(model, [cb], epochs=1)  # comparison is over; the trace goes on
    trace = load_trace(tmp_path / "run.jsonl")
    assert [(r["type"], r["fit"]) for r in trace.records] == [
        ("fit_begin", 0),
        ("fit_begin", 1),
        ("epoch", 1),
        ("fit_end", 1),
    ]


def test_mismatch_can_warn_and_training_goes_on(tmp_path):
    reference = tmp_path / "ref.jsonl"
    fit(sequential(), [callback(reference)], epochs=2)
    cb = callback(tmp_path / "other.jsonl", reference=reference, on_mismatch="warn")
    with pytest.warns(NondeterminismWarning, match="started fit 0 from different weights"):
        fit(sequential(), [cb], epochs=2)  # another model: other initial weights
    assert cb.divergence.kind == "start" and "hidden/kernel" in cb.divergence.variables
    assert load_trace(tmp_path / "other.jsonl").complete


def test_reference_may_be_the_trace_path_itself(tmp_path):
    path = tmp_path / "run.jsonl"
    model = sequential()
    fit(model, [callback(path)], epochs=1)
    with pytest.raises(kr.NondeterminismError, match="reference") as caught:
        fit(model, [callback(path, reference=path)], epochs=1)  # trained further: other weights
    assert caught.value.kind == "start" and caught.value.fit == 0


def test_audit_modes(tmp_path, monkeypatch):
    for name in ("get_root_seed", "_keras_seed", "tf_global_seed"):  # nothing seeded: an error finding
        monkeypatch.setattr(audit_module, name, lambda: None)
    with pytest.raises(kr.AuditError, match="root-seed-unset"):
        fit(sequential(), [callback(audit="raise")])
    cb = callback(audit="warn")
    model = sequential()
    with pytest.warns(kr.ReproducibilityWarning, match="root-seed-unset"):
        fit(model, [cb], epochs=1)
    assert "root-seed-unset" in [f.code for f in cb.findings]
    with warnings.catch_warnings():
        warnings.simplefilter("error", kr.ReproducibilityWarning)
        fit(model, [cb], epochs=2, initial_epoch=1)  # the same findings are not repeated
    quiet = callback(audit="off")
    fit(sequential(), [quiet], epochs=1)
    assert quiet.findings == []
