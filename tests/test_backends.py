"""The JAX and PyTorch backends, tested like TensorFlow: every claim in two fresh processes.

Each child starts with ``KERAS_BACKEND=jax`` or ``torch``. What is pinned
here is what holds there as it does on TensorFlow (seeding, traces, a one-ULP nudge
caught, kill-and-resume bit-identical, ``keras-repro check``), and what
differs between backends by design (Keras' stateless random kernels are
per backend: the same seed gives other initial weights on TensorFlow than
on JAX or torch, and a comparison of the two says so).
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from digests import reference_digest
from keras_repro.check import check_script
from keras_repro.locate import locate
from keras_repro.trace import diff_traces
from keras_repro.trace import load_trace
from procs import child_env
from procs import run_pythons
from test_locate import probed_and_plain_runs_agree_up_to_the_probed_step

pytestmark = pytest.mark.timeout(600)


def _backend(name: str, module: str):
    missing = importlib.util.find_spec(module) is None
    why = f"{module} is not installed (the {name} extra)"
    return pytest.param(name, marks=[getattr(pytest.mark, name), pytest.mark.skipif(missing, reason=why)], id=name)


BACKENDS = [_backend("jax", "jax"), _backend("torch", "torch")]

ROOT = Path(__file__).resolve().parents[1]

TRAIN = """
import keras, numpy as np
import keras_repro as kr
inputs = keras.Input((6,))
h = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
h = keras.layers.Dropout(0.3, name="drop")(h)
model = kr.SeededModel(inputs, keras.layers.Dense(1, name="out")(h), seed=7)
model.compile(keras.optimizers.Adam(0.01), "mse")
x = np.random.default_rng(0).normal(size=(96, 6)).astype("float32")
y = x[:, :2].sum(axis=1, keepdims=True)
initial = kr.fingerprint_variables(model)

class Nudge(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if NUDGE and epoch == 1:
            kernel = self.model.get_layer("out").kernel
            value = keras.ops.convert_to_numpy(kernel.value).copy()
            value.reshape(-1)[0] = np.nextafter(value.reshape(-1)[0], np.float32(np.inf))
            kernel.assign(value)

model.fit(x, y, batch_size=8, epochs=3, shuffle=True, verbose=0,
          callbacks=[Nudge(), kr.DeterminismCallback(TRACE, every="batch")])
emit({"backend": keras.backend.backend(), "initial": initial})
"""


@pytest.fixture(scope="module", params=BACKENDS)
def runs(request, tmp_path_factory):
    backend = {"KERAS_BACKEND": request.param}
    folder = tmp_path_factory.mktemp(request.param)
    tensorflow = {"KERAS_BACKEND": "tensorflow"}
    plan = {"run1": (backend, False), "run2": (backend, False), "nudged": (backend, True), "tf": (tensorflow, False)}
    codes = [
        f"TRACE = {str(folder / name) + '.jsonl'!r}; NUDGE = {nudge}\n" + TRAIN for name, (_, nudge) in plan.items()
    ]
    results = run_pythons(codes, envs=[child_env(env) for env, _ in plan.values()])
    return request.param, dict(zip(plan, results)), {name: folder / f"{name}.jsonl" for name in plan}


def test_runs_repeat_bit_for_bit_batch_by_batch(runs):
    backend, results, traces = runs
    assert results["run1"]["backend"] == backend and results["tf"]["backend"] == "tensorflow"
    assert results["run1"]["initial"] == results["run2"]["initial"]
    assert diff_traces(traces["run1"], traces["run2"]).divergence is None
    manifest = load_trace(traces["run1"]).manifest
    assert manifest["keras"]["backend"] == backend and manifest["backend_version"]
    if backend == "jax":
        assert manifest["jaxlib"]
    records = load_trace(traces["run1"]).records
    assert len(records) == 1 + 3 * 12 + 1 and len({r["fingerprint"] for r in records}) == len(records) - 1


def test_a_one_ulp_nudge_is_caught_at_its_record(runs):
    _, _, traces = runs
    divergence = diff_traces(traces["run1"], traces["nudged"]).divergence
    assert divergence is not None and divergence.kind == "step", divergence
    assert (divergence.epoch, divergence.batch) == (2, 0) and "out/kernel" in divergence.variables


def test_the_same_seed_gives_other_weights_on_another_backend_and_the_comparison_says_why(runs):
    # Keras' stateless random kernels differ per backend: a pin of that fact,
    # so that a change (for better or worse) is noticed.
    backend, results, traces = runs
    assert results["tf"]["initial"]["out/bias"] == results["run1"]["initial"]["out/bias"]  # zeros
    assert results["tf"]["initial"]["out/kernel"] != results["run1"]["initial"]["out/kernel"]
    divergence = diff_traces(traces["tf"], traces["run1"]).divergence
    assert divergence.kind == "start"
    assert f"keras.backend: 'tensorflow' != {backend!r}" in divergence.message


@pytest.mark.parametrize("backend", BACKENDS)
def test_keras_repro_check_gives_the_verdicts_it_gives_on_tensorflow(backend, monkeypatch):
    for name, value in child_env({"KERAS_BACKEND": backend}).items():
        monkeypatch.setenv(name, value)
    good = check_script(ROOT / "examples" / "reproducible_mlp.py", ["--epochs", "2"])
    assert good.reproducible, good.summary()
    bad = check_script(ROOT / "examples" / "seeded_from_time.py")
    assert not bad.reproducible and bad.divergence.kind == "start", bad.summary()
    if backend == "jax":
        assert "op-determinism-off" not in bad.summary()  # only info on a CPU: not offered as a cause


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_killed_run_resumes_bit_identical(backend, tmp_path):
    script = ROOT / "tests" / "resume_script.py"
    env = child_env({"KERAS_BACKEND": backend, "PYTHONHASHSEED": "0"})

    def run(out, *args):
        return subprocess.run(
            [sys.executable, str(script), str(out), *map(str, args)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    # With step digests and the data digest: both are in the backup, and resumed.
    straight = run(tmp_path / "straight", "--save-freq", "epoch", "--steps")
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = run(tmp_path / "killed", "--save-freq", 5, "--kill-at", 33, "--steps")
    assert killed.returncode == -9, killed.stderr[-3000:]
    resumed = run(tmp_path / "killed", "--save-freq", 5, "--kill-at", 33, "--steps")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = {name: json.loads((tmp_path / name / "final.json").read_text()) for name in ("straight", "killed")}
    assert final["killed"] == final["straight"]
    records = load_trace(tmp_path / "straight" / "trace.jsonl").records
    assert load_trace(tmp_path / "killed" / "trace.jsonl").records == records
    assert all(r["data"] and r["steps"]["state"] for r in records if r["type"] == "epoch")


DIGESTS = """
import warnings
import keras, numpy as np
import keras_repro as kr
from keras_repro.fingerprint import tracked_state
warnings.simplefilter("ignore")
kr.seed_everything(2)
model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(6, name="hidden"), keras.layers.BatchNormalization(),
                          keras.layers.Dropout(0.2, seed=1), keras.layers.Dense(1, name="head")])
model.compile("adam", "mse")
x = np.random.default_rng(0).normal(size=(40, 5)).astype("float32")
model.fit(x, x[:, :1], batch_size=8, epochs=2, shuffle=False, verbose=0,
          callbacks=[kr.DeterminismCallback(TRACE, steps=True, audit="off")])
state = tracked_state(model)
weights = [keras.ops.convert_to_numpy(v) for p, v in state.variables.items() if state.kinds[p] == "weight"]
emit({"backend": keras.backend.backend(), "weights": [[w.dtype.str, w.tolist()] for w in weights]})
"""


@pytest.mark.jax
@pytest.mark.torch
def test_data_and_step_digests_on_every_backend(tmp_path):
    # The same batches give the same data digests on TensorFlow, JAX and
    # torch (the digest is of bit patterns), and each backend's device
    # digest of the final weights is the documented formula's.
    backends = ["tensorflow"] + [name for name in ("jax", "torch") if importlib.util.find_spec(name)]
    traces = {b: tmp_path / f"{b}.jsonl" for b in backends}
    codes = [f"TRACE = {str(traces[b])!r}\n" + DIGESTS for b in backends]
    results = dict(zip(backends, run_pythons(codes, envs=[child_env({"KERAS_BACKEND": b}) for b in backends])))
    data = {}
    for backend, result in results.items():
        assert result["backend"] == backend
        epochs = [r for r in load_trace(traces[backend]).records if r["type"] == "epoch"]
        assert [(r["steps"]["first"], len(r["steps"]["state"])) for r in epochs] == [(1, 5), (6, 5)]
        weights = [np.asarray(values, dtype=dtype) for dtype, values in result["weights"]]
        assert epochs[-1]["steps"]["state"][-1] == reference_digest(weights), backend
        data[backend] = [(r["data"], r["steps"]["data"]) for r in epochs]
    assert len({json.dumps(d) for d in data.values()}) == 1, data


TORCH = [b for b in BACKENDS if b.values[0] == "torch"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "script, stage, layer",
    [
        ("forward_noise", "forward", "noisy"),
        ("backward_scale_{backend}", "backward", "scaled"),
        ("data_noise", "data", None),
    ],
)
def test_locate_probes_a_step_as_on_tensorflow(backend, script, stage, layer, monkeypatch, tmp_path):
    for name, value in child_env({"KERAS_BACKEND": backend}).items():
        monkeypatch.setenv(name, value)
    path = ROOT / "tests" / "locate_scripts" / f"{script.format(backend=backend)}.py"
    result = check_script(path, keep=tmp_path)
    assert not result.reproducible and result.divergence.step_exact, result.summary()
    where = locate(path, (), result.divergence, "epoch", tmp_path)
    assert (where.stage, where.layer, where.step, where.fit) == (stage, layer, 1, 0), where
    # The checked runs' step digests named step 1: no re-run recording every batch.
    assert not (tmp_path / "locate" / "batch1").exists()
    if stage == "backward":
        assert "gradient with respect to its inputs" in where.message


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_probed_run_reaches_the_probed_step_as_an_unprobed_run_does(backend, monkeypatch, tmp_path):
    # As tests/test_locate.py checks on TF, with the gradient of every trainable weight.
    for name, value in child_env({"KERAS_BACKEND": backend}).items():
        monkeypatch.setenv(name, value)
    probe = probed_and_plain_runs_agree_up_to_the_probed_step(tmp_path)
    layers = ["hidden", "hidden", "norm", "norm", "out", "out"]
    assert [path for path, _ in probe["gradients"]] == [
        f"{layer}/{name}" for layer, name in zip(layers, ["kernel", "bias", "gamma", "beta", "kernel", "bias"])
    ]


COMPILED = """
import warnings
import keras, numpy as np
import keras_repro as kr
warnings.simplefilter("ignore")
kr.seed_everything(3)
model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)])
kr.seed_model(model, 3)
model.compile("adam", "mse", jit_compile=JIT)
x = np.random.default_rng(0).normal(size=(256, 16)).astype("float32")
model.fit(x, x[:, :1] * 2, batch_size=32, epochs=2, verbose=0, shuffle=False)
emit({"jit": bool(model.jit_compile), "fingerprint": kr.fingerprint(model),
      "findings": [[f.code, f.severity] for f in kr.audit(model)]})
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", TORCH)
def test_torch_compile_repeats_itself_and_differs_from_eager_as_the_audit_says(backend):
    env = {"KERAS_BACKEND": backend}
    eager, compiled, again = run_pythons(
        [COMPILED.replace("JIT", "False"), COMPILED.replace("JIT", "True"), COMPILED.replace("JIT", "True")],
        envs=[env] * 3,
        timeout=500,
    )
    assert (eager["jit"], compiled["jit"]) == (False, True)
    assert compiled["fingerprint"] == again["fingerprint"]  # two compiled runs agree
    assert compiled["fingerprint"] != eager["fingerprint"]  # Inductor's kernels round otherwise
    assert ["torch-compile", "info"] in compiled["findings"]  # on CPU; a warning on a GPU without determinism
    assert "torch-compile" not in [code for code, _ in eager["findings"]]
