"""Trace files: self-checking lines, incomplete and corrupt files, first-divergence search."""

import json

import pytest

import keras_repro as kr
from keras_repro.trace import Divergence
from keras_repro.trace import IncompleteTraceError
from keras_repro.trace import NondeterminismError
from keras_repro.trace import Trace
from keras_repro.trace import TraceError
from keras_repro.trace import TraceWriter
from keras_repro.trace import compare_traces
from keras_repro.trace import diff_traces
from keras_repro.trace import load_trace

MANIFEST = {"keras": {"version": "3"}, "root_seed": 1, "hostname": "a", "created": "t0"}
VARS = ["dense/kernel", "dense/bias", "optimizer/iterations"]


def record(kind, fit=0, epoch=None, batch=None, digests=("k", "b", "i"), rng=None, fp=None):
    rec = {
        "type": kind,
        "fit": fit,
        "epoch": epoch,
        "batch": batch,
        "step": epoch,
        "fingerprint": fp or "fp-" + "-".join(digests),
        "variables": [[p, d] for p, d in zip(VARS, digests)],
    }
    if rng is not None:
        rec["rng"] = rng
    return rec


RNG = {"python": "p", "numpy": "n", "tensorflow": "t", "keras": "k", "root_seed": "r"}


def standard_records(epochs=3, nudge_epoch=None, rng=RNG):
    records = [record("fit_begin", epoch=0, rng=rng)]
    for epoch in range(epochs):
        kernel = f"k{epoch}" + ("x" if nudge_epoch is not None and epoch >= nudge_epoch else "")
        records.append(record("epoch", epoch=epoch, digests=(kernel, f"b{epoch}", f"i{epoch}"), rng=RNG))
    last = tuple(d for _, d in records[-1]["variables"])
    records.append(record("fit_end", epoch=epochs - 1, digests=last, rng=RNG))
    return records


def write_trace(path, records, manifest=MANIFEST, every="epoch", finish=True):
    writer = TraceWriter(path)
    writer.start({"manifest": manifest, "every": every})
    for rec in records:
        writer.write(rec)
    if finish:
        writer.finish()
    else:
        writer.close()
    return path


def test_round_trip_and_atomic_publication(tmp_path):
    path = tmp_path / "run.jsonl"
    writer = TraceWriter(path)
    writer.start({"manifest": MANIFEST, "every": "epoch"})
    for rec in standard_records():
        writer.write(rec)
    assert not path.exists() and (tmp_path / "run.jsonl.partial").exists()  # not published mid-run
    writer.finish()
    assert path.exists() and not (tmp_path / "run.jsonl.partial").exists()
    trace = load_trace(path)
    assert trace.complete and trace.every == "epoch" and trace.manifest == MANIFEST
    assert [r["type"] for r in trace.records] == ["fit_begin", "epoch", "epoch", "epoch", "fit_end"]
    assert trace.records[1]["variables"] == [
        ["dense/kernel", "k0"],
        ["dense/bias", "b0"],
        ["optimizer/iterations", "i0"],
    ]
    lines = path.read_text().splitlines()
    assert json.loads(lines[-1])["type"] == "end" and json.loads(lines[-1])["records"] == len(lines)


def test_several_fits_append_to_one_trace(tmp_path):
    path = tmp_path / "run.jsonl"
    writer = TraceWriter(path)
    writer.start({"manifest": MANIFEST, "every": "epoch"})
    writer.write(record("fit_begin", fit=0, epoch=0))
    writer.finish()
    assert [r["fit"] for r in load_trace(path).records] == [0]
    writer.resume()
    assert not (tmp_path / "run.jsonl.partial").read_text().count('"type":"end"')
    writer.write(record("fit_begin", fit=1, epoch=1))
    writer.finish()
    assert [r["fit"] for r in load_trace(path).records] == [0, 1]


def test_in_memory_writer(tmp_path):
    writer = TraceWriter(None)
    writer.start({"manifest": MANIFEST, "every": "batch"})
    writer.write(record("fit_begin"))
    assert not writer.trace().complete
    writer.finish()
    writer.resume()
    writer.write(record("fit_begin", fit=1))
    writer.finish()
    trace = writer.trace()
    assert trace.complete and trace.every == "batch" and [r["fit"] for r in trace.records] == [0, 1]


def test_a_run_that_stops_leaves_only_a_partial_trace(tmp_path):
    path = write_trace(tmp_path / "run.jsonl", standard_records()[:3], finish=False)
    with pytest.raises(FileNotFoundError, match=r"run\.jsonl\.partial.*allow_incomplete=True"):
        load_trace(path)
    partial = tmp_path / "run.jsonl.partial"
    with pytest.raises(IncompleteTraceError, match="incomplete .*did not finish"):
        load_trace(partial)
    trace = load_trace(partial, allow_incomplete=True)
    assert not trace.complete and len(trace.records) == 3


def test_an_earlier_trace_under_the_same_path_is_removed_when_a_new_run_starts(tmp_path):
    path = write_trace(tmp_path / "run.jsonl", standard_records())
    write_trace(path, standard_records()[:2], finish=False)  # the new run crashes
    with pytest.raises(FileNotFoundError):
        load_trace(path)  # never the stale, complete trace of the earlier run


def lines_of(path):
    return path.read_text().splitlines(keepends=True)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda ls: [], "empty"),
        (lambda ls: ["\n"], "empty"),
        (lambda ls: ls[:-1] + [ls[-1][:25]], "line 7 is truncated"),
        (lambda ls: ls[:3] + [ls[3][:-12] + "\n"] + ls[4:], "line 4 is corrupt"),
        (lambda ls: ls[:2] + [ls[2].replace('"k0"', '"k9"')] + ls[3:], "line 3 fails its checksum"),
        (lambda ls: ls[:2] + ls[3:], "line 3 has sequence number 3, expected 2"),
        (lambda ls: ls[:2] + [ls[3], ls[2]] + ls[4:], "line 3 has sequence number 3, expected 2"),
        (lambda ls: ls[:3] + ls[2:], "line 4 has sequence number 2, expected 3"),
        (lambda ls: ['{"format": "keras_repro.manifest", "version": 1}\n'], "not a keras_repro.trace file"),
        (lambda ls: ["not json at all\n"], "not a keras_repro.trace file"),
        (lambda ls: ls[:-1], "incomplete"),
    ],
)
def test_damaged_trace_files_give_a_clear_error(tmp_path, damage, message):
    path = write_trace(tmp_path / "run.jsonl", standard_records())
    path.write_text("".join(damage(lines_of(path))))
    with pytest.raises(TraceError, match=message):
        load_trace(path)


def test_allow_incomplete_drops_only_a_line_cut_off_mid_write(tmp_path):
    write_trace(tmp_path / "run.jsonl", standard_records(), finish=False)
    partial = tmp_path / "run.jsonl.partial"
    lines = lines_of(partial)
    partial.write_text("".join(lines[:-1]) + lines[-1][:30])  # killed while writing the last line
    trace = load_trace(partial, allow_incomplete=True)
    assert len(trace.records) == len(lines) - 2 and not trace.complete
    partial.write_text("".join(lines[:2]) + lines[2][:30] + "\n" + "".join(lines[3:]))  # damage mid-file
    with pytest.raises(TraceError, match="line 3 is corrupt"):
        load_trace(partial, allow_incomplete=True)


def test_unsupported_version_and_bad_utf8(tmp_path):
    path = tmp_path / "run.jsonl"
    writer = TraceWriter(path)
    writer.start({"manifest": MANIFEST, "every": "epoch", "version": 99})
    writer.finish()
    with pytest.raises(TraceError, match="version 99 is not supported"):
        load_trace(path)
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(TraceError, match="not UTF-8"):
        load_trace(path)


def test_identical_traces_have_no_divergence(tmp_path):
    a = write_trace(tmp_path / "a.jsonl", standard_records())
    b = write_trace(tmp_path / "b.jsonl", standard_records(), manifest={**MANIFEST, "hostname": "b", "created": "t1"})
    assert compare_traces(a, b) is None
    assert kr.compare_traces(load_trace(a), str(b)) is None


def test_first_step_divergence_names_epoch_and_variables(tmp_path):
    a = write_trace(tmp_path / "a.jsonl", standard_records())
    b = write_trace(tmp_path / "b.jsonl", standard_records(nudge_epoch=1))
    d = compare_traces(a, b)
    assert isinstance(d, Divergence)
    assert (d.kind, d.fit, d.epoch, d.batch, d.variables) == ("step", 0, 1, None, ("dense/kernel",))
    assert "fit 0, end of epoch 1" in d.message and "dense/kernel" in d.message
    assert "manifests agree on everything that can change results" in d.message


def test_start_divergence_says_weights_differ(tmp_path):
    a = write_trace(tmp_path / "a.jsonl", standard_records())
    changed = standard_records()
    changed[0] = record("fit_begin", epoch=0, digests=("k", "B", "i"), rng=RNG)
    b = write_trace(tmp_path / "b.jsonl", changed, manifest={**MANIFEST, "root_seed": 2})
    d = compare_traces(a, b)
    assert (d.kind, d.fit, d.variables) == ("start", 0, ("dense/bias",))
    assert "started fit 0 from different weights" in d.message
    assert [m.key for m in d.manifest_differences] == ["root_seed"]  # hostname etc. not listed
    assert "root_seed" in d.message


def test_a_global_stream_difference_alone_is_a_note(tmp_path):
    a = write_trace(tmp_path / "a.jsonl", standard_records())
    b = write_trace(tmp_path / "b.jsonl", standard_records(rng={**RNG, "python": "other"}))
    assert compare_traces(a, b) is None
    result = diff_traces(a, b)
    assert result.reproducible and result.records == len(standard_records())
    assert len(result.notes) == 1 and "global random state (python) differs from the start of fit 0" in result.notes[0]
    # b's Python state is back to a's at the first epoch end: it changed, so something drew from it
    assert (
        "training drew from it (python changed during a fit), but the training state and data agree" in result.notes[0]
    )


def test_a_global_stream_that_changes_only_between_fits_was_not_drawn_from_in_training(tmp_path):
    # Python's state differs from the start, and changes between the fits (where
    # the script builds its next model) but never within one: no draw in training.
    def two_fits(python):
        return [{**r, "fit": fit, "rng": {**RNG, "python": python[fit]}} for fit in (0, 1) for r in standard_records()]

    a = write_trace(tmp_path / "a.jsonl", two_fits(("a0", "a1")))
    b = write_trace(tmp_path / "b.jsonl", two_fits(("b0", "b1")))
    (note,) = diff_traces(a, b).notes
    assert "global random state (python) differs from the start of fit 0 on, but nothing in training drew" in note


def step_divergence_with_numpy_differing(tmp_path, from_record):
    """The divergence of runs whose weights part at epoch 1 and whose NumPy state differs from `from_record` on."""
    a = write_trace(tmp_path / "a.jsonl", standard_records())
    changed = standard_records(nudge_epoch=1)
    for rec in changed[from_record:]:
        rec["rng"] = {**RNG, "numpy": "other"}
    d = compare_traces(a, write_trace(tmp_path / "b.jsonl", changed))
    assert (d.kind, d.epoch) == ("step", 1)
    return d


def test_a_global_stream_that_comes_to_differ_mid_run_was_drawn_from(tmp_path):
    d = step_divergence_with_numpy_differing(tmp_path, 1)  # the same at fit start, not from the end of epoch 0 on
    assert "global random state (numpy) already differed at fit 0, end of epoch 0" in d.message
    assert "it was drawn from while training ran (numpy changed during a fit)" in d.message


def test_a_global_stream_that_never_changes_is_noted_as_not_drawn_from(tmp_path):
    a = write_trace(tmp_path / "a.jsonl", standard_records())
    changed = standard_records()
    for rec in changed:
        rec["rng"] = {**RNG, "python": "other"}
    b = write_trace(tmp_path / "b.jsonl", changed)
    (note,) = diff_traces(a, b).notes
    assert "global random state (python) differs from the start of fit 0 on, but nothing in training drew" in note


def test_a_global_stream_difference_is_connected_to_a_later_divergence(tmp_path):
    a = write_trace(tmp_path / "a.jsonl", standard_records())
    b = write_trace(tmp_path / "b.jsonl", standard_records(rng={**RNG, "numpy": "other"}, nudge_epoch=1))
    d = compare_traces(a, b)
    assert (d.kind, d.epoch) == ("step", 1)
    assert d.variables == ("dense/kernel", "rng/numpy")
    assert "global random state (numpy) already differed at the start of fit 0" in d.message
    # b's NumPy state is back to a's by the end of epoch 0: something drew from (or reseeded) it
    assert "it was drawn from while training ran (numpy changed during a fit)" in d.message


def test_a_global_stream_that_never_changes_again_is_not_said_to_be_drawn_from(tmp_path):
    d = step_divergence_with_numpy_differing(tmp_path, 0)
    assert "global random state (numpy) already differed at the start of fit 0" in d.message
    assert "did not change during a fit in either run: no draw from it during training explains" in d.message
    assert "drawn from while training ran" not in d.message


def test_length_divergence(tmp_path):
    a = write_trace(tmp_path / "a.jsonl", standard_records(epochs=3))
    b = write_trace(tmp_path / "b.jsonl", standard_records(epochs=3) + [record("fit_begin", fit=1, epoch=3)])
    d = compare_traces(a, b)
    assert d.kind == "length" and d.fit == 1 and "nothing where" in d.message
    c = write_trace(tmp_path / "c.jsonl", standard_records(epochs=2))
    d = compare_traces(a, c)
    assert (d.kind, d.epoch) == ("length", 2) and "different steps" in d.message


def test_compare_rejects_other_frequencies_and_bad_arguments(tmp_path):
    a = write_trace(tmp_path / "a.jsonl", standard_records())
    b = write_trace(tmp_path / "b.jsonl", standard_records(), every="batch")
    with pytest.raises(ValueError, match="different frequencies"):
        compare_traces(a, b)
    with pytest.raises(TypeError, match="Expected a path to a trace file or a Trace"):
        compare_traces(a, 42)
    incomplete = write_trace(tmp_path / "c.jsonl", standard_records(), finish=False)
    with pytest.raises(FileNotFoundError):
        compare_traces(a, incomplete)
    partial = load_trace(tmp_path / "c.jsonl.partial", allow_incomplete=True)
    assert isinstance(partial, Trace) and not partial.complete
    assert compare_traces(a, partial) is None  # opted in: the records it has agree


def test_nondeterminism_error_carries_the_divergence(tmp_path):
    a = write_trace(tmp_path / "a.jsonl", standard_records())
    b = write_trace(tmp_path / "b.jsonl", standard_records(nudge_epoch=2))
    error = NondeterminismError(compare_traces(a, b))
    assert isinstance(error, RuntimeError)
    assert (error.kind, error.epoch, error.variables) == ("step", 2, ("dense/kernel",))
    assert str(error) == error.divergence.message
    assert kr.NondeterminismError is NondeterminismError


# --- what the verdict is about: training state and data; idle state is a note ----------


def state_records(generator_digests, data=None, findings=(), kinds="wwgo", tf_seeded=True):
    """fit_begin, two epochs, fit_end; a weight, a seed generator and an optimizer counter."""
    paths = ["dense/kernel", "dense/bias", "lstm/cell/seed_generator", "optimizer/iterations"]
    records = []
    for index, (kind, epoch) in enumerate([("fit_begin", None), ("epoch", 0), ("epoch", 1), ("fit_end", 1)]):
        digests = [f"k{index}", f"b{index}", generator_digests[index], f"i{index}"]
        rec = {
            "type": kind,
            "fit": 0,
            "epoch": epoch,
            "batch": None,
            "step": index,
            "fingerprint": "-".join(digests),
            "variables": [list(v) for v in zip(paths, digests)],
            "kinds": kinds,
            "data": None if kind == "fit_begin" else (data or {}).get(index, "d"),
        }
        if kind == "fit_begin":
            rec["findings"] = list(findings)
            rec["tf_global_seed_set"] = tf_seeded
        records.append(rec)
    return records


def finding(code, severity="warning"):
    return {"severity": severity, "code": code, "what": f"{code} found.", "why": "w", "fix": "f", "subject": None}


def test_a_seed_generator_that_is_never_drawn_from_is_a_note(tmp_path):
    # An LSTMCell's generator with dropout=0: its seed differs, its state never moves.
    a = write_trace(tmp_path / "a.jsonl", state_records(["g1"] * 4))
    b = write_trace(tmp_path / "b.jsonl", state_records(["g2"] * 4))
    result = diff_traces(a, b)
    assert result.divergence is None
    assert result.notes == (
        "the seed generator lstm/cell/seed_generator differs from the start of fit 0 on, but was "
        "never drawn from (its state did not change in either run)",
    )


def test_a_seed_generator_that_is_drawn_from_is_a_divergence(tmp_path):
    a = write_trace(tmp_path / "a.jsonl", state_records(["g1", "g1+1", "g1+2", "g1+2"]))
    b = write_trace(tmp_path / "b.jsonl", state_records(["g2", "g2+1", "g2+2", "g2+2"]))
    d = compare_traces(a, b)
    assert (d.kind, d.epoch, d.variables) == ("rng", 0, ("lstm/cell/seed_generator",))
    assert "training drew from them" in d.message and "already differed at the start of fit 0" in d.message


def test_different_data_is_reported_as_data_with_the_sources_found(tmp_path):
    findings = [
        finding("array-shuffle-unseeded"),
        finding("op-determinism-off"),
        finding("unseeded-initializer", "info"),
    ]
    a = write_trace(tmp_path / "a.jsonl", state_records(["g"] * 4, findings=findings, tf_seeded=False))
    b = write_trace(tmp_path / "b.jsonl", state_records(["g"] * 4, data={1: "other"}, findings=findings))
    d = compare_traces(a, b)
    assert (d.kind, d.fit, d.epoch) == ("data", 0, 0)
    assert "The input data differs (order or content) from fit 0, epoch 0" in d.message
    # data findings can explain data; kernels cannot, and info findings are not causes
    assert [f["code"] for f in d.findings] == ["array-shuffle-unseeded"]
    assert "array-shuffle-unseeded" in d.message


def test_op_determinism_is_not_offered_for_different_initial_weights(tmp_path):
    findings = [finding("op-determinism-off"), finding("root-seed-unset", "error"), finding("array-shuffle-unseeded")]
    a = write_trace(tmp_path / "a.jsonl", state_records(["g"] * 4, findings=findings))
    changed = state_records(["g"] * 4, findings=findings)
    changed[0]["variables"][0][1] = "other"
    b = write_trace(tmp_path / "b.jsonl", changed, manifest={**MANIFEST, "determinism": {"enabled": True}})
    d = compare_traces(a, b)
    assert d.kind == "start" and d.variables == ("dense/kernel",)
    assert [f["code"] for f in d.findings] == ["root-seed-unset"]
    assert d.manifest_differences == () and "op-determinism-off" not in d.message


def test_version_1_traces_still_load_and_compare(tmp_path):
    records = standard_records()
    for rec in records:
        rec.pop("kinds", None)
    a = write_trace(tmp_path / "a.jsonl", records)
    text = (tmp_path / "a.jsonl").read_text().splitlines()
    header = json.loads(text[0])
    header.pop("crc")
    header["version"] = 1
    from keras_repro.trace import encode_line

    (tmp_path / "v1.jsonl").write_text(encode_line(header) + "\n".join(text[1:]) + "\n")
    old = load_trace(tmp_path / "v1.jsonl")
    assert old.header["version"] == 1 and old.records == load_trace(a).records
    assert compare_traces(old, a) is None
    nudged = write_trace(tmp_path / "b.jsonl", standard_records(nudge_epoch=1))
    assert compare_traces(old, nudged).variables == ("dense/kernel",)
