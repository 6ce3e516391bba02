"""How far apart two runs are: float summaries per record, their drift, the plot."""

import json
import math

import numpy as np
import pytest

from keras_repro import cli
from keras_repro.drift import Drift
from keras_repro.drift import DriftPoint
from keras_repro.drift import drift
from keras_repro.drift import plot_drift
from keras_repro.drift import relative_difference
from keras_repro.drift import summarize
from keras_repro.trace import TraceWriter
from keras_repro.trace import diff_traces
from keras_repro.trace import load_trace
from procs import child_env
from procs import run_pythons


def test_summary_is_the_float64_sum_and_norm_and_none_for_integer_state():
    array = np.random.default_rng(0).normal(size=(7, 5)).astype("float32")
    values = [float(v) for v in array.reshape(-1)]
    total, norm = summarize(array)
    assert total == pytest.approx(math.fsum(values), rel=1e-12)
    assert norm == pytest.approx(math.sqrt(math.fsum(v * v for v in values)), rel=1e-12)
    assert summarize(np.arange(4, dtype="int64")) is None
    assert summarize(np.array([1.0, np.nan], "float32")) == ["nan", "nan"]
    assert summarize(np.array([1.0, np.inf], "float32")) == ["inf", "inf"]
    json.dumps(summarize(np.array([-np.inf], "float16")), allow_nan=False)  # trace-safe


def test_relative_difference_of_norms():
    assert relative_difference([0.0, 3.0], [0.0, 3.0]) == 0.0
    assert relative_difference([0.0, 0.0], [0.0, 0.0]) == 0.0
    assert relative_difference([0.0, 4.0], [0.0, 3.0]) == pytest.approx(0.25)
    assert math.isnan(relative_difference([0.0, "nan"], [0.0, 3.0]))
    assert relative_difference(["nan", "nan"], ["nan", "nan"]) == 0.0
    assert relative_difference(None, [0.0, 1.0]) is None


def _record(step, digest, summary):
    return {
        "type": "epoch",
        "fit": 0,
        "epoch": step,
        "batch": None,
        "step": step,
        "variables": [["w", digest], ["seed", "s"]],
        "summaries": [summary, None],
    }


def test_drift_lists_differing_variables_only_and_needs_summaries_in_every_record():
    a = [_record(1, "x", [1.0, 2.0]), _record(2, "y", [1.0, 2.0])]
    b = [_record(1, "x", [1.0, 2.0]), _record(2, "z", [1.0, 2.5])]
    result = drift(a, b, 1)
    assert [p.differences for p in result.points] == [(("w", pytest.approx(0.2)),)]
    assert drift(a, b, 0).points[0].differences == ()  # equal digests are not listed
    b[1] = {**b[1], "summaries": None}  # a record without summaries is left out
    assert drift(a, b, 1) is None
    assert [p.step for p in drift(a, b, 0).points] == [1]
    with pytest.raises(ValueError, match="start"):
        drift(a, b, -1)


def test_a_nan_is_listed_first():
    point = DriftPoint("x", 1, ())
    assert point.largest == 0.0
    a = [
        {
            "step": 1,
            "type": "epoch",
            "fit": 0,
            "epoch": 0,
            "batch": None,
            "variables": [["u", "1"], ["v", "2"]],
            "summaries": [[0, 1.0], [0, 1.0]],
        }
    ]
    b = [{**a[0], "variables": [["u", "3"], ["v", "4"]], "summaries": [[0, 2.0], [0, "nan"]]}]
    assert [name for name, _ in drift(a, b).points[0].differences] == ["v", "u"]


def test_plot_refuses_what_it_cannot_draw(tmp_path):
    result = Drift((DriftPoint("fit 0, end of epoch 0", 1, (("w", 1e-3),)),))
    with pytest.raises(ValueError, match=r"cannot write 'xyz' images\. Allowed suffixes: .*\.png"):
        plot_drift(result, tmp_path / "drift.xyz")
    with pytest.raises(TypeError, match="Drift"):
        plot_drift("drift", tmp_path / "drift.png")
    assert not list(tmp_path.iterdir())


# Three runs in fresh processes: the reference, one whose kernel is nudged by
# 1e-6 after epoch 1 (a wobble), one whose kernel is redrawn there (a run that
# goes elsewhere).
RUN = """
import sys, keras, numpy as np
import keras_repro as kr
kr.seed_everything(0)
x = np.linspace(0, 1, 256, dtype="float32").reshape(-1, 4); y = x.sum(1, keepdims=True)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
model.compile(keras.optimizers.SGD(0.05), "mse")
class Change(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        kernel = self.model.layers[0].kernel
        if epoch == 1 and MODE == "nudge":
            kernel.assign(kernel + 1e-6)
        if epoch == 1 and MODE == "jump":
            kernel.assign(np.random.default_rng(5).normal(size=kernel.shape).astype("float32"))
model.fit(x, y, epochs=5, batch_size=32, shuffle=False, verbose=0,
          callbacks=[Change(), kr.DeterminismCallback(trace=PATH, every=EVERY)])
emit(True)
"""


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    folder = tmp_path_factory.mktemp("drift")
    runs = [("none", "epoch"), ("nudge", "epoch"), ("jump", "epoch"), ("none", "batch"), ("jump", "batch")]
    paths = {(mode, every): folder / f"{mode}-{every}.jsonl" for mode, every in runs}
    codes = [f"MODE = {mode!r}; EVERY = {every!r}; PATH = {str(paths[mode, every])!r}\n" + RUN for mode, every in runs]
    run_pythons(codes, envs=[child_env()] * len(codes))
    return {mode if every == "epoch" else f"{mode}-batch": path for (mode, every), path in paths.items()}


def test_a_wobble_stays_small_and_a_run_that_went_elsewhere_is_large(traces):
    wobble = diff_traces(traces["none"], traces["nudge"])
    jump = diff_traces(traces["none"], traces["jump"])
    assert wobble.divergence.epoch == jump.divergence.epoch == 1
    for result in (wobble, jump):
        first = result.drift.points[0]
        assert first.where == "fit 0, end of epoch 1" and first.differences[0][0] == "dense#0/kernel"
        # fit_begin, epoch 0, then from epoch 1 to the fit_end record:
        assert len(result.drift.points) == len(load_trace(traces["none"]).records) - 2
    assert max(p.largest for p in wobble.drift.points) < 1e-4
    assert jump.drift.points[0].largest > 1e-2
    assert "relative difference of the norms at fit 0, end of epoch 1, step 4: " in wobble.drift.describe()


def test_batch_records_carry_summaries_once_per_epoch_and_drift_uses_those(traces):
    records = load_trace(traces["none-batch"]).records
    summarized = [(r["type"], r["epoch"], r["batch"]) for r in records if "summaries" in r]
    assert summarized == [("fit_begin", None, None)] + [("batch", e, 0) for e in range(5)] + [("fit_end", 4, None)]
    result = diff_traces(traces["none-batch"], traces["jump-batch"])
    assert result.divergence.epoch == 2 and result.divergence.batch == 0  # the kernel was redrawn after epoch 1
    assert [p.where for p in result.drift.points] == [
        "fit 0, epoch 2, batch 0",
        "fit 0, epoch 3, batch 0",
        "fit 0, epoch 4, batch 0",
        "the end of fit 0 (after epoch 4)",
    ]


def test_diff_prints_the_drift_and_plots_it(traces, tmp_path, capsys):
    image = tmp_path / "drift.png"
    assert cli.main(["diff", str(traces["none"]), str(traces["jump"]), "--plot", str(image)]) == 1
    out = capsys.readouterr().out
    assert "how far apart (relative difference of the norms, the largest first):" in out
    assert "  fit 0, end of epoch 1, step 4: " in out and f"drift drawn to {image}" in out
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli.main(["diff", str(traces["none"]), str(traces["jump"]), "--plot", str(tmp_path / "d.xyz")]) == 2
    assert "cannot write 'xyz' images" in capsys.readouterr().err
    assert not (tmp_path / "d.xyz").exists()


def test_diff_of_traces_without_summaries_says_the_drift_is_unknown(traces, tmp_path, capsys):
    stripped = []
    for name in ("none", "jump"):
        trace = load_trace(traces[name])
        path = tmp_path / f"{name}.jsonl"
        writer = TraceWriter(path)
        writer.start(trace.header)
        for record in trace.records:
            writer.write({k: v for k, v in record.items() if k not in ("summaries", "seq", "crc")})
        writer.finish()
        stripped.append(str(path))
    assert diff_traces(*stripped).drift is None
    assert cli.main(["diff", *stripped]) == 1
    assert "how far apart: unknown (the traces carry no float summaries)" in capsys.readouterr().out
