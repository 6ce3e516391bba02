"""Trace files of a training run, and comparing two of them.

A trace is a JSON Lines file (UTF-8). The first line is a header (format
``"keras_repro.trace"``, version, the run's manifest and the recording
frequency); then one record per line: ``fit_begin`` (the start fingerprint:
weights and RNG state), ``epoch`` or ``batch`` records, ``fit_end``, one
group per ``fit`` call; the last line is an ``end`` record holding the number
of lines.

A record (version 2) holds ``type``, ``fit``, ``epoch``, ``batch``,
``step`` (the training step), ``fingerprint`` (of all tracked variables),
``variables`` (``[path, digest]`` pairs), ``kinds`` (one letter per
variable: ``w`` weight, ``g`` seed generator, ``o`` optimizer, ``x`` other),
``data`` (the digest of the batches trained on since the fit began, or null),
``summaries`` (``[sum, L2 norm]`` in float64 of each floating-point variable,
null for others, in the order of ``variables``; `keras_repro.drift`; on
records at fit boundaries and epoch ends, and on the first batch record of
each epoch) and,
at fit boundaries and epoch ends, ``rng`` (a digest per global stream).
``fit_begin`` records also carry the variables' ``schema``, the audit
``findings`` of the run and ``tf_global_seed_set``. Version 1 traces
(no kinds, data or findings) are still read, and so are version 2 traces
without summaries (they compare as before, without a drift). Each line
carries its sequence number and, as ``crc``, the XXH3-64 of the canonical
JSON (sorted keys, no spaces) of the rest of the line, so a truncated,
edited, reordered or corrupted file is detected, never read as good.

While a run is going, the trace is written to ``<path>.partial``; the
complete file appears under ``<path>`` (atomically) only when ``fit`` ends.
A run that crashes leaves only ``<path>.partial``, which loads only with
``allow_incomplete=True``.

Example:

```python
import keras_repro as kr

divergence = kr.compare_traces("run1.jsonl", "run2.jsonl")
if divergence is not None:
    print(divergence)            # where, which variables, and what in the environment differs
```
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import xxhash

from keras_repro import _files
from keras_repro import _validate
from keras_repro.divergence import DIVERGENCE_KINDS
from keras_repro.divergence import Divergence
from keras_repro.divergence import NondeterminismError
from keras_repro.divergence import NondeterminismWarning
from keras_repro.divergence import RecordComparator
from keras_repro.divergence import TraceComparison
from keras_repro.divergence import compare_records
from keras_repro.drift import drift
from keras_repro.manifest import diff_manifests

__all__ = [
    "DIVERGENCE_KINDS",
    "Divergence",
    "IncompleteTraceError",
    "NondeterminismError",
    "NondeterminismWarning",
    "Trace",
    "TraceError",
    "TraceWriter",
    "TraceComparison",
    "compare_records",
    "compare_traces",
    "diff_traces",
    "load_trace",
]

TRACE_FORMAT = "keras_repro.trace"
TRACE_VERSION = 2
#: Versions this module reads. Version 1 records carry no variable kinds, data
#: digests or findings; kinds are inferred from the paths.
READABLE_VERSIONS = (1, 2)
PARTIAL_SUFFIX = ".partial"
RECORD_TYPES = ("fit_begin", "epoch", "batch", "fit_end")


class TraceError(ValueError):
    """A trace file (or trace data) is empty, truncated, corrupt or of another format."""


class IncompleteTraceError(TraceError):
    """A trace has no final ``end`` record: the run did not finish."""


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _crc(record: Mapping[str, Any]) -> str:
    return xxhash.xxh3_64_hexdigest(_canonical(record).encode())


def encode_line(record: Mapping[str, Any]) -> str:
    """One trace line: the record's canonical JSON with its checksum appended as ``"crc"``."""
    if not record:
        raise ValueError("A trace record cannot be empty.")
    text = _canonical(record)
    crc = xxhash.xxh3_64_hexdigest(text.encode())
    return f'{text[:-1]},"crc":"{crc}"}}\n'


@dataclasses.dataclass
class Trace:
    """A loaded trace.

    Attributes:
        header: the header record (``manifest``, ``every``, ...).
        records: the ``fit_begin``/``epoch``/``batch``/``fit_end`` records in order.
        complete: whether the trace ended with its ``end`` record.
        path: the file it came from, if any.
    """

    header: dict[str, Any]
    records: list[dict[str, Any]]
    complete: bool = True
    path: str | None = None

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest of the run that wrote the trace."""
        return self.header.get("manifest") or {}

    @property
    def every(self) -> Any:
        """How often the run recorded: ``"epoch"``, ``"batch"`` or a number of batches."""
        return self.header.get("every")

    def describe(self) -> str:
        return self.path if self.path is not None else "<in-memory trace>"


def _fail(path: str, message: str, error: type[TraceError] = TraceError) -> TraceError:
    return error(f"{path}: {message}")


def _parse_lines(lines: list[str], name: str, allow_incomplete: bool, ends_with_newline: bool) -> Trace:
    if not lines or not any(line.strip() for line in lines):
        raise _fail(name, f"the file is empty; expected a {TRACE_FORMAT} file.")
    parsed: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        last = number == len(lines)
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            if number == 1:
                raise _fail(name, f"not a {TRACE_FORMAT} file (line 1 is not a trace header: {e}).") from None
            if last and not ends_with_newline and allow_incomplete:
                break  # the line being written when the run stopped
            what = "truncated" if last and not ends_with_newline else "corrupt"
            raise _fail(name, f"line {number} is {what} (not valid JSON: {e}).") from None
        crc = record.pop("crc", None)
        if crc != _crc(record):
            if number == 1 and record.get("format") != TRACE_FORMAT:
                raise _fail(name, f"not a {TRACE_FORMAT} file (found format {record.get('format')!r}).")
            raise _fail(name, f"line {number} fails its checksum: the file was changed or corrupted.")
        if record.get("seq") != number - 1:
            raise _fail(
                name,
                f"line {number} has sequence number {record.get('seq')!r}, expected {number - 1}: "
                "lines are missing, duplicated or reordered.",
            )
        parsed.append(record)
    header = parsed[0]
    if header.get("type") != "header" or header.get("format") != TRACE_FORMAT:
        raise _fail(name, f"not a {TRACE_FORMAT} file (line 1 is not a trace header).")
    if header.get("version") not in READABLE_VERSIONS:
        raise _fail(
            name,
            f"{TRACE_FORMAT} version {header.get('version')!r} is not supported "
            f"(supported: {', '.join(map(str, READABLE_VERSIONS))}).",
        )
    body = parsed[1:]
    complete = bool(body) and body[-1].get("type") == "end"
    if complete:
        end = body.pop()
        if end.get("records") != len(parsed):
            raise _fail(name, f"the end record counts {end.get('records')!r} lines, the file has {len(parsed)}.")
    for index, record in enumerate(body, start=2):
        if record.get("type") not in RECORD_TYPES:
            raise _fail(name, f"line {index} has an unknown record type {record.get('type')!r}.")
    if not complete and not allow_incomplete:
        raise _fail(
            name,
            "the trace is incomplete (no end record): the run that wrote it did not finish. "
            "Load it with allow_incomplete=True to read the records it has.",
            IncompleteTraceError,
        )
    return Trace(header=header, records=body, complete=complete, path=name)


def load_trace(path: _files.PathLike, allow_incomplete: bool = False) -> Trace:
    """Reads and verifies a trace file.

    Every line's checksum and sequence number are checked, and the file must
    end with its ``end`` record unless `allow_incomplete` is True (then a
    last line cut off mid-write is dropped; any other damage still raises).

    Args:
        path: the trace file, or the ``.partial`` file of a run that stopped.
        allow_incomplete: accept a trace without its end record.

    Returns:
        A `Trace`.

    Raises:
        FileNotFoundError: no such file (the message names the ``.partial``
            file when the run left one).
        IncompleteTraceError: the trace has no end record and
            `allow_incomplete` is False.
        TraceError: empty, corrupt, truncated or not a trace (a `ValueError`).

    Example:

    ```python
    import keras_repro as kr
    from keras_repro.trace import load_trace

    trace = load_trace("run.jsonl")
    trace.records[0]["fingerprint"]
    ```
    """
    path = Path(path)
    if not path.exists():
        partial = Path(str(path) + PARTIAL_SUFFIX)
        hint = (
            f" An incomplete trace {partial} exists: the run did not finish; load it with allow_incomplete=True."
            if partial.exists()
            else ""
        )
        raise FileNotFoundError(f"{path}: no such trace file.{hint}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _fail(str(path), f"corrupt (not UTF-8 text: {e}).") from None
    return _parse_lines(text.splitlines(), str(path), allow_incomplete, text.endswith("\n"))


class TraceWriter:
    """Writes a trace: appends to ``<path>.partial``, publishes ``<path>`` atomically on `finish`.

    With ``path=None`` the lines are kept in memory (see `trace`).

    Several fit calls append to one trace: `finish` publishes the trace so
    far, and `resume` continues it for the next fit.
    """

    def __init__(self, path: _files.PathLike | None) -> None:
        self.path = None if path is None else Path(path)
        self.partial = None if path is None else Path(str(path) + PARTIAL_SUFFIX)
        self._file = None
        self._lines: list[str] = []  # in-memory writers only
        self._seq = 0
        self.started = False
        self.finished = False

    def start(self, header: Mapping[str, Any]) -> None:
        """Starts a new trace, removing any earlier trace under the same path."""
        self.close()
        self._seq = 0
        self._lines = []
        self.started, self.finished = True, False
        if self.path is not None:
            for stale in (self.path, self.partial):
                if stale.exists():
                    stale.unlink()
            self.partial.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.partial, "w", encoding="utf-8")  # noqa: SIM115 - open across records
        self.write({"type": "header", "format": TRACE_FORMAT, "version": TRACE_VERSION, **header})

    def resume(self) -> None:
        """Continues a trace after `finish` (or after `close`, when a fit stopped with an error)."""
        if not self.finished:
            if self.path is not None and self._file is None:
                self._file = open(self.partial, "a", encoding="utf-8")  # noqa: SIM115
            return
        self.finished = False
        if self.path is None:
            self._lines.pop()  # the end record
            self._seq -= 1
            return
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
        _parse_lines([line.rstrip("\n") for line in lines], str(self.path), False, True)
        lines.pop()  # the end record
        self._file = open(self.partial, "w", encoding="utf-8")  # noqa: SIM115
        self._file.writelines(lines)
        self._file.flush()
        self._seq = len(lines)

    def continue_run(self, header: Mapping[str, Any], records: list[Mapping[str, Any]]) -> None:
        """Starts this writer as the continuation of an interrupted run.

        The interrupted run's `header` and the `records` kept from it are
        written back as they were (sequence numbers included), and new
        records follow them.
        """
        self.close()
        self.started, self.finished = True, False
        lines = [encode_line(record) for record in (header, *records)]
        self._seq = len(lines)
        if self.path is None:
            self._lines = lines
            return
        if self.path.exists():
            self.path.unlink()
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.partial, "w", encoding="utf-8")  # noqa: SIM115 - open across records
        self._file.writelines(lines)
        self._file.flush()

    def write(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Appends one record (adding its sequence number and checksum); returns it."""
        record = {**record, "seq": self._seq}
        line = encode_line(record)
        if self.path is None:
            self._lines.append(line)
        elif self._file is None:
            raise RuntimeError(f"The trace {self.partial} is not open for writing (start or resume it).")
        else:
            self._file.write(line)
            self._file.flush()
        self._seq += 1
        return record

    def finish(self) -> None:
        """Writes the end record and publishes the complete trace atomically."""
        end = encode_line({"type": "end", "records": self._seq + 1, "seq": self._seq})
        self.finished = True
        if self.path is None:
            self._lines.append(end)
            self._seq += 1
            return
        self.close()
        data = self.partial.read_bytes() + end.encode("utf-8")
        _files.atomic_write_bytes(self.path, data)
        self.partial.unlink()

    def close(self) -> None:
        """Closes the partial file without publishing it (the run did not finish)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def trace(self) -> Trace:
        """The trace written so far, complete or not (in-memory writers only)."""
        if self.path is not None:
            raise ValueError(f"This trace is written to {self.path}; load it with load_trace.")
        return _parse_lines("".join(self._lines).splitlines(), "<in-memory trace>", True, True)


def _as_trace(value: Any, name: str) -> Trace:
    if isinstance(value, Trace):
        return value
    if isinstance(value, (str, os.PathLike)):
        return load_trace(value)
    raise _validate.type_error(f"trace {name}", value, "Expected a path to a trace file or a Trace from load_trace")


def diff_traces(a: _files.PathLike | Trace, b: _files.PathLike | Trace) -> TraceComparison:
    """Compares two traces record by record: the first divergence and the notes.

    A run is reproducible when the training state (every weight, every
    optimizer's variables, every seed generator training drew from) and the
    data the model trained on agree at every record. Differences in state
    nothing used (a global random stream, a seed generator whose state never
    changed) are notes, not divergences; see `keras_repro.divergence`.

    Args:
        a: a trace file path or a loaded `Trace` (the reference run).
        b: another.

    Returns:
        A `keras_repro.divergence.TraceComparison`.

    Raises:
        TraceError: a file is corrupt, truncated or incomplete (see `load_trace`).
        ValueError: the traces were recorded with different ``every`` settings.

    Example:

    ```python
    from keras_repro.trace import diff_traces

    result = diff_traces("run1.jsonl", "run2.jsonl")
    print(result.divergence or "bit-identical", *result.notes, sep="\n")
    ```
    """
    trace_a, trace_b = _as_trace(a, "a"), _as_trace(b, "b")
    if trace_a.every != trace_b.every:
        raise ValueError(
            f"The traces were recorded with different frequencies (every={trace_a.every!r} in "
            f"{trace_a.describe()}, every={trace_b.every!r} in {trace_b.describe()}) and cannot "
            "be compared record by record."
        )
    differences = tuple(d for d in diff_manifests(trace_a.manifest, trace_b.manifest) if d.affects_results)
    labels = (trace_a.describe(), trace_b.describe())
    if labels[0] == labels[1]:
        labels = ("a", "b")
    comparator = RecordComparator(differences, labels)
    apart = None
    for index in range(max(len(trace_a.records), len(trace_b.records))):
        ra = trace_a.records[index] if index < len(trace_a.records) else None
        rb = trace_b.records[index] if index < len(trace_b.records) else None
        if comparator.add(ra, rb) is not None:
            apart = drift(trace_a.records, trace_b.records, index)
            break
    return TraceComparison(comparator.divergence, comparator.notes, comparator.records, apart)


def compare_traces(a: _files.PathLike | Trace, b: _files.PathLike | Trace) -> Divergence | None:
    """Finds the first point where two traces differ; None when the runs agree.

    The same comparison as `diff_traces` (whose notes say what differed
    without being used), returning only the divergence.

    Args:
        a: a trace file path or a loaded `Trace`.
        b: another.

    Returns:
        None when the traces agree, else the first `Divergence`.

    Raises:
        TraceError: a file is corrupt, truncated or incomplete (see `load_trace`).
        ValueError: the traces were recorded with different ``every`` settings.

    Example:

    ```python
    import keras_repro as kr

    d = kr.compare_traces("run1.jsonl", "run2.jsonl")
    print("identical" if d is None else d)
    ```
    """
    return diff_traces(a, b).divergence
