"""Where two runs first differ, and what the records say can explain it.

Two runs are compared record by record (trace records: the start of each
`fit`, then every epoch or batch, then its end). The verdict is about the
training state and its inputs:

- a difference in a weight, an optimizer variable (of any optimizer the
  model holds), another tracked variable, or in the data the model trained
  on since the previous record is a divergence, reported at the first record
  where it appears;
- a difference in a seed generator's state is a divergence only once the
  generator is drawn from (its state changes in either run); one that never
  changes (an `LSTMCell`'s generator with ``dropout=0``) is a note;
- a difference in a global random stream (Python, NumPy, TensorFlow, Keras'
  global generator) is a note: it matters only if something draws from it,
  and then it shows up in the state or the data, and the divergence says the
  stream already differed.

A divergence names its kind (``"start"``, ``"data"``, ``"step"``, ``"rng"``
or ``"length"``), the variables, the environment differences and the audit
findings that can explain that kind (deterministic kernels cannot explain
different initial weights), and the earlier notes it connects to.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any

from keras_repro._causes import explanation
from keras_repro._causes import relevant_findings
from keras_repro._causes import relevant_manifest
from keras_repro.manifest import ManifestDifference
from keras_repro.seeds import ReproducibilityWarning

if TYPE_CHECKING:
    from keras_repro.drift import Drift

__all__ = [
    "DIVERGENCE_KINDS",
    "Divergence",
    "KIND_CODES",
    "NondeterminismError",
    "NondeterminismWarning",
    "RecordComparator",
    "TraceComparison",
    "compare_records",
    "shown_names",
    "variable_table",
    "where",
]

DIVERGENCE_KINDS = ("start", "data", "step", "rng", "length", "replica")
#: The letter a trace record's ``"kinds"`` uses for each tracked-variable kind.
KIND_CODES = {"weight": "w", "seed_generator": "g", "optimizer": "o", "other": "x"}
_KIND_OF_CODE = {code: kind for kind, code in KIND_CODES.items()}
#: Tracked-variable kinds whose difference is a divergence at once.
_STATE_KINDS = frozenset({"weight", "optimizer", "other"})
_SHOWN = 5  # names shown in a message


class NondeterminismWarning(ReproducibilityWarning):
    """A verified mismatch against a reference run, when training is to go on.

    `keras_repro.DeterminismCallback` warns with it under
    ``on_mismatch="warn"``; the `Divergence` is in the callback's
    ``divergence`` attribute.
    """


@dataclasses.dataclass(frozen=True)
class Divergence:
    """Where two runs first differ.

    Attributes:
        kind: ``"start"`` (different weights or optimizer state when a fit
            began), ``"data"`` (the model trained on different input data
            since the previous record), ``"step"`` (weights or optimizer
            state differ after an epoch or batch), ``"rng"`` (a seed
            generator that training drew from differs, the weights agreeing),
            ``"length"`` (one run recorded other or more steps) or
            ``"replica"`` (inside one data-parallel run, a replica's copy of
            mirrored variables differs from replica 0's).
        fit: index of the fit call (0 for the first).
        epoch: the epoch, when known.
        batch: the batch within the epoch, for batch records.
        step: the training step (optimizer step count) at that record.
        variables: the differing variable paths, in model order: the
            training state first, then seed generators, then global streams
            that already differed earlier, as ``rng/<stream>``.
        manifest_differences: environment differences that can change
            results and can explain this kind of divergence.
        message: a readable account of all the above.
        findings: audit findings (as dicts) recorded by the reference run
            that can explain this kind of divergence.
        notes: earlier differences in state nothing had used yet.
        step_exact: whether `step` is the first training step that differs
            (found by step digests, ``DeterminismCallback(steps=True)``),
            not the step of the first record that differs.
    """

    kind: str
    fit: int | None
    epoch: int | None
    batch: int | None
    step: int | None
    variables: tuple[str, ...]
    manifest_differences: tuple[ManifestDifference, ...]
    message: str
    findings: tuple[dict[str, Any], ...] = ()
    notes: tuple[str, ...] = ()
    step_exact: bool = False

    def __str__(self) -> str:
        return self.message


class NondeterminismError(RuntimeError):
    """Two runs that should be identical are not; says where and why it may be.

    A `RuntimeError` rather than an `AssertionError`: it reports a verified
    fact about a run (two runs differ), not a broken invariant of the code,
    and it must not be lost where assertions are treated specially.

    Attributes:
        divergence: the `Divergence` (also as the fields below).
        kind, fit, epoch, batch, step, variables, manifest_differences: see
            `Divergence`.
    """

    def __init__(self, divergence: Divergence) -> None:
        super().__init__(divergence.message)
        self.divergence = divergence
        self.kind = divergence.kind
        self.fit = divergence.fit
        self.epoch = divergence.epoch
        self.batch = divergence.batch
        self.step = divergence.step
        self.variables = divergence.variables
        self.manifest_differences = divergence.manifest_differences


@dataclasses.dataclass(frozen=True)
class TraceComparison:
    """The outcome of comparing two runs.

    Attributes:
        divergence: the first `Divergence`, or None when the runs agree in
            every record.
        notes: differences in state that nothing in training used (a global
            stream, an idle seed generator), each a sentence.
        records: how many record pairs were compared.
        drift: how far apart the runs are from the divergence on
            (`keras_repro.drift.Drift`), when they differ and their records
            carry float summaries.
    """

    divergence: Divergence | None
    notes: tuple[str, ...]
    records: int
    drift: Drift | None = None

    @property
    def reproducible(self) -> bool:
        return self.divergence is None


def _infer_kind(path: str) -> str:
    """The variable kind of a path in a version-1 trace, which did not record kinds."""
    if path.startswith("optimizer/"):
        return "optimizer"
    if path.rsplit("/", 1)[-1].startswith("seed_generator"):
        return "seed_generator"
    return "other" if path.startswith("unlisted/") else "weight"


def variable_table(record: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """``{path: (digest, kind)}`` of a trace record, in model order.

    A record lists its variables as ``[path, digest]`` pairs and their kinds
    as one letter each, in the same order, in ``"kinds"`` (`KIND_CODES`);
    records without it (trace version 1) get kinds inferred from the paths.
    """
    entries = record.get("variables") or ()
    codes = record.get("kinds")
    if isinstance(codes, str) and len(codes) == len(entries):
        return {path: (digest, _KIND_OF_CODE.get(code, "other")) for (path, digest), code in zip(entries, codes)}
    return {path: (digest, _infer_kind(path)) for path, digest in entries}


def record_key(record: Mapping[str, Any]) -> tuple:
    return (record.get("type"), record.get("fit"), record.get("epoch"), record.get("batch"))


def where(record: Mapping[str, Any]) -> str:
    """A readable position: ``the start of fit 0``, ``fit 0, end of epoch 2`` ..."""
    kind, fit, epoch, batch = record_key(record)
    if kind == "fit_begin":
        return f"the start of fit {fit}"
    if kind == "fit_end":
        return f"the end of fit {fit} (after epoch {epoch})"
    if kind == "batch":
        return f"fit {fit}, epoch {epoch}, batch {batch}"
    return f"fit {fit}, end of epoch {epoch}"


def shown_names(paths: Iterable[str]) -> str:
    """The first few of `paths`, comma-separated, and how many more there are."""
    paths = list(paths)
    shown = ", ".join(paths[:_SHOWN])
    return shown + (f" and {len(paths) - _SHOWN} more" if len(paths) > _SHOWN else "")


class RecordComparator:
    """Compares two runs record by record, as their records come.

    `DeterminismCallback` feeds it one record pair at a time during training;
    `keras_repro.trace.diff_traces` feeds it two whole traces. `add` returns
    the first `Divergence` (and None before and after it); `notes` lists the
    differences in state that nothing has used so far.

    Args:
        manifest_differences: the differences between the two runs'
            manifests that can change results.
        labels: how the two runs are called in messages.
    """

    def __init__(
        self,
        manifest_differences: tuple[ManifestDifference, ...] = (),
        labels: tuple[str, str] = ("a", "b"),
    ) -> None:
        self.manifest_differences = tuple(manifest_differences)
        self.labels = labels
        self.divergence: Divergence | None = None
        self.records = 0
        self._findings: tuple[dict[str, Any], ...] = ()
        self._tf_unseeded = False
        self._generators: dict[str, str] = {}  # differing, not yet drawn from: path -> first seen
        self._streams: dict[str, str] = {}  # differing global streams: name -> first seen
        self._streams_drawn: set[str] = set()  # of those, the ones whose state changed during a fit
        self._previous: tuple[dict, dict] | None = None
        # The last records' global streams (both present), and their fit: a change between
        # records of one fit happened in training, one between fits in the script around them.
        self._previous_rng: tuple[dict, dict] | None = None
        self._previous_rng_fit: Any = None

    @property
    def notes(self) -> tuple[str, ...]:
        notes = []
        if self._streams:
            first = next(iter(self._streams.values()))
            drawn = self._drawn_streams()
            used = (
                f"training drew from it ({', '.join(drawn)} changed during a fit), but"
                if drawn
                else "but nothing in training drew from it:"
            )
            notes.append(
                f"the global random state ({', '.join(self._streams)}) differs from {first} on, "
                f"{used} the training state and data agree at every record compared"
            )
        by_record: dict[str, list[str]] = {}
        for path, seen in self._generators.items():
            by_record.setdefault(seen, []).append(path)
        for seen, generators in by_record.items():
            if len(generators) == 1:
                notes.append(
                    f"the seed generator {generators[0]} differs from {seen} on, but was never drawn "
                    "from (its state did not change in either run)"
                )
            else:
                notes.append(
                    f"the seed generators {shown_names(generators)} differ from {seen} on, but were never "
                    "drawn from (their states did not change in either run)"
                )
        return tuple(notes)

    def add(self, a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> Divergence | None:
        """Compares the next pair of records (either None: that run has no record there)."""
        if self.divergence is not None:
            return None
        self.records += 1
        if a is not None and a.get("type") == "fit_begin":
            if "findings" in a:
                self._findings = tuple(a.get("findings") or ())
            self._tf_unseeded = a.get("tf_global_seed_set") is False
        self.divergence = self._compare(a, b)
        return self.divergence

    def _divergence(self, kind: str, record: Mapping[str, Any], variables, message: tuple[str, str]) -> Divergence:
        """A divergence: `message` is (what differs, what already differed earlier)."""
        differences = relevant_manifest(self.manifest_differences, kind)
        findings = relevant_findings(self._findings, kind)
        head, earlier = message
        if kind == "data" and self._tf_unseeded and not any(f["code"] == "array-shuffle-unseeded" for f in findings):
            head += (
                " TensorFlow's global seed was not set: Keras' array shuffle, Dataset.shuffle and "
                "random ops without a seed draw new seeds in every process."
            )
        return Divergence(
            kind,
            record.get("fit"),
            record.get("epoch"),
            record.get("batch"),
            record.get("step"),
            tuple(variables),
            differences,
            head + explanation(differences, findings) + earlier,
            findings,
            self.notes,
        )

    def _compare(self, a, b) -> Divergence | None:
        la, lb = self.labels
        if a is None or b is None:
            present = a if a is not None else b
            missing, other = (la, lb) if a is None else (lb, la)
            return self._divergence(
                "length",
                present,
                (),
                (
                    f"The runs recorded different numbers of steps: {missing} has nothing where "
                    f"{other} has {where(present)}.",
                    "",
                ),
            )
        if record_key(a) != record_key(b):
            return self._divergence(
                "length",
                a,
                (),
                (
                    f"The runs recorded different steps: {la} has {where(a)} where {lb} has {where(b)} "
                    "(one stopped earlier, or they trained for different numbers of epochs or batches).",
                    "",
                ),
            )
        here = where(a)
        ta, tb = variable_table(a), variable_table(b)
        used = self._used_generators(ta, tb)
        self._previous = (ta, tb)
        ra, rb = a.get("rng"), b.get("rng")
        rng = None if ra is None or rb is None else (ra, rb)
        previous_rng = self._previous_rng if self._previous_rng_fit == a.get("fit") else None
        if rng is not None:
            self._streams_drawn.update(s for s in self._streams if _changed(s, rng, previous_rng))
            self._previous_rng, self._previous_rng_fit = rng, a.get("fit")
        state = [p for p, (d, kind) in ta.items() if kind in _STATE_KINDS and p in tb and tb[p][0] != d]
        only_a = [p for p in ta if p not in tb]
        only_b = [p for p in tb if p not in ta]
        generators = [p for p, (d, kind) in ta.items() if kind == "seed_generator" and p in tb and tb[p][0] != d]
        for path in generators:
            self._generators.setdefault(path, here)
        drawn = [p for p in self._generators if p in used]
        data_a, data_b = a.get("data"), b.get("data")
        data_differs = data_a is not None and data_b is not None and data_a != data_b
        earlier = self._earlier(drawn)
        connected = drawn + [f"rng/{s}" for s in self._streams]
        found = first_differing_step(a, b)
        if found is not None:
            return self._step_divergence(a, found, state + only_a + only_b, connected, earlier)
        if data_differs:
            also = (
                f" The training state differs too ({shown_names(state + only_a + only_b)})."
                if state or only_a or only_b
                else ""
            )
            return self._divergence(
                "data",
                a,
                state + only_a + only_b + connected,
                (
                    f"The input data differs (order or content) from {self._data_since(a)}: the batches "
                    f"the model trained on up to {here} are not the same in the two runs.{also}",
                    earlier,
                ),
            )
        if state or only_a or only_b:
            parts = []
            if state:
                parts.append(f"{len(state)} of {len(ta)} variables differ, first: {shown_names(state)}")
            if only_a:
                parts.append(f"only {la} has {shown_names(only_a)}")
            if only_b:
                parts.append(f"only {lb} has {shown_names(only_b)}")
            detail = "; ".join(parts)
            if a.get("type") == "fit_begin":
                return self._divergence(
                    "start",
                    a,
                    state + only_a + only_b,
                    (
                        f"The runs started fit {a.get('fit')} from different weights or optimizer state "
                        f"({detail}): they were built or initialized differently, or restored from "
                        "different checkpoints, so nothing after this point can match.",
                        earlier,
                    ),
                )
            return self._divergence(
                "step",
                a,
                state + only_a + only_b + connected,
                (f"First divergence at {here} (training step {a.get('step')}): {detail}.", earlier),
            )
        if drawn:
            return self._divergence(
                "rng",
                a,
                connected,
                (
                    f"At {here} the seed generators {shown_names(drawn)} differ and training drew from them, "
                    f"though the weights still agree: the random draws (Dropout masks, noise, "
                    "augmentation) of the two runs are not the same.",
                    earlier,
                ),
            )
        if rng is not None:
            for stream in [s for s in ra if ra.get(s) != rb.get(s)] + [s for s in rb if s not in ra]:
                if stream not in self._streams:
                    self._streams[stream] = here
                    if _changed(stream, rng, previous_rng):  # it agreed at the record before: one run drew
                        self._streams_drawn.add(stream)
        return None

    def _step_divergence(
        self,
        record: Mapping[str, Any],
        found: tuple[int, str],
        differing: list[str],
        connected: list[str],
        earlier: str,
    ) -> Divergence:
        """The divergence at the first training step whose step digests differ (``steps=True`` records)."""
        step, what = found
        at = f"training step {step} (fit {record.get('fit')}, epoch {record.get('epoch')})"
        by = (
            f"; at {where(record)}, {shown_names(differing)} differ"
            if differing
            else f"; at {where(record)} the recorded variables agree again"
        )
        if what == "data":
            head = (
                f"The input data differs (order or content) from {at} on: the step digests of the "
                f"batches the model trained on part there{by}."
            )
            kind = "data"
        else:
            head = (
                f"First divergence at {at}: the digest of the model's variables after that step "
                f"differs, the data agreeing{by}."
            )
            kind = "step"
        divergence = self._divergence(kind, record, differing + connected, (head, earlier))
        return dataclasses.replace(divergence, batch=None, step=step, step_exact=True)

    def _used_generators(self, ta: dict, tb: dict) -> set[str]:
        """Seed generators whose state changed since the previous record, in either run."""
        if self._previous is None:
            return set()
        pa, pb = self._previous
        return {
            p
            for p, (d, kind) in {**ta, **tb}.items()
            if kind == "seed_generator"
            and ((p in pa and p in ta and pa[p][0] != ta[p][0]) or (p in pb and p in tb and pb[p][0] != tb[p][0]))
        }

    def _drawn_streams(self) -> list[str]:
        """The differing global streams whose state changed between two records of one fit, in either run,
        from the record before they first differed on (a stream that comes to differ mid-fit was drawn
        from to get there; a change between fits is the script's, not training's)."""
        return [s for s in self._streams if s in self._streams_drawn]

    def _earlier(self, drawn: list[str]) -> str:
        parts = [f"the seed generator {p} already differed at {self._generators[p]}" for p in drawn]
        if self._streams:
            first = next(iter(self._streams.values()))
            streams = f"the global random state ({', '.join(self._streams)}) already differed at {first}"
            drawn_streams = self._drawn_streams()
            if drawn_streams:
                parts.append(
                    f"{streams}, and it was drawn from while training ran ({', '.join(drawn_streams)} changed "
                    "during a fit): a draw from it can explain this"
                )
            else:
                parts.append(
                    f"{streams}, but did not change during a fit in either run: no draw from it "
                    "during training explains this, only a value drawn from it before a fit"
                )
        if not parts:
            return ""
        tail = ", and training drew from what differed" if drawn else ""
        return " Earlier, " + "; ".join(parts) + tail + "."

    def _data_since(self, record: Mapping[str, Any]) -> str:
        if record.get("type") == "batch":
            return f"fit {record.get('fit')}, epoch {record.get('epoch')}, up to batch {record.get('batch')}"
        return f"fit {record.get('fit')}, epoch {record.get('epoch')}"


def _changed(stream: str, rng: tuple[dict, dict], previous: tuple[dict, dict] | None) -> bool:
    """Whether the state of the global `stream` changed since the `previous` record, in either run."""
    return previous is not None and any(now.get(stream) != before.get(stream) for now, before in zip(rng, previous))


def first_differing_step(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[int, str] | None:
    """The first training step at which two records' step digests differ, and in what.

    Steps are matched by number (``at``, else ``first``, ``first + 1``,
    ...); only those both records list are compared (a resumed run, or a
    buffer that overflowed, lists fewer). Returns
    ``(step, "data")`` when the data digests differ there (both present),
    ``(step, "state")`` when only the variables' digests do, None when the
    common steps agree or either record has no step digests.
    """
    sa, sb = a.get("steps"), b.get("steps")
    if not sa or not sb:
        return None
    listed_b = dict(zip(_numbers(sb), zip(sb["state"], sb["data"])))
    for step, state, data in zip(_numbers(sa), sa["state"], sa["data"]):
        other = listed_b.get(step)
        if other is None:
            continue
        if data is not None and other[1] is not None and data != other[1]:
            return step, "data"
        if state != other[0]:
            return step, "state"
    return None


def _numbers(steps: Mapping[str, Any]) -> list[int]:
    """The training step of each step a record lists."""
    return steps.get("at") or list(range(steps["first"], steps["first"] + len(steps["state"])))


def compare_records(
    a: Mapping[str, Any] | None,
    b: Mapping[str, Any] | None,
    manifest_differences: tuple[ManifestDifference, ...] = (),
    labels: tuple[str, str] = ("a", "b"),
) -> Divergence | None:
    """Compares two trace records at the same position on their own; None when they agree.

    Without the records before them, a seed generator or global stream that
    differs cannot be known to have been used, so only the training state,
    the data and the record positions are compared. Use `RecordComparator`
    for whole runs.
    """
    return RecordComparator(manifest_differences, labels).add(a, b)
