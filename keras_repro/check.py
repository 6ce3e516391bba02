"""Check a training script for reproducibility by running it several times.

The script runs unmodified, each time in a fresh Python process with a fixed
``PYTHONHASHSEED``, under a small runner (`keras_repro._runner`) that adds
one `DeterminismCallback` (recording only: it does not turn on
deterministic kernels, so the script is checked as it is) to every
`keras.Model.fit` call. The traces of the runs are then compared record by
record (`keras_repro.trace.diff_traces`); the first divergence, the
environment differences and audit findings that can explain it, and notes on
state that differed unused are reported. With ``locate=True`` the script is
run again to find where the divergence enters (`keras_repro.locate`).

Example:

```python
from keras_repro.check import check_script

result = check_script("examples/reproducible_mlp.py", runs=2)
print(result.summary())
```
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from keras_repro import _causes
from keras_repro import _validate
from keras_repro._runner import ScriptError
from keras_repro._runner import run_once
from keras_repro.drift import Drift
from keras_repro.locate import Location
from keras_repro.locate import locate as locate_divergence
from keras_repro.trace import Divergence
from keras_repro.trace import diff_traces
from keras_repro.trace import load_trace

__all__ = ["CheckResult", "ScriptError", "check_script"]


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """The outcome of `check_script`.

    Attributes:
        script: the script checked.
        runs: how many runs were compared.
        reproducible: whether every run matched the first, record for record.
        records_compared: records (fit starts, epochs or batches, fit ends)
            compared between run 1 and each other run.
        fits: `fit` calls per run.
        final_fingerprint: the fingerprint of every variable at the end of
            run 1.
        diverging_run: the first run that differed from run 1, or None.
        divergence: where it differed (`keras_repro.trace.Divergence`), with
            the audit findings of run 1 that can explain that kind of
            divergence in ``divergence.findings``.
        findings: audit findings of run 1, every fit (`keras_repro.Finding`
            fields as dicts).
        folder: where the traces and the script's output are kept, if kept.
        notes: differences between the runs in state nothing in training
            used (a global random stream, a seed generator never drawn
            from): they do not make the runs differ.
        location: where the divergence enters (`keras_repro.locate.Location`),
            when the check ran with ``locate=True`` and the runs differ.
        drift: how far apart the diverging run is from run 1 at each record
            from the divergence on (`keras_repro.drift.Drift`), or None.
    """

    script: str
    runs: int
    reproducible: bool
    records_compared: int
    fits: int
    final_fingerprint: str | None
    diverging_run: int | None
    divergence: Divergence | None
    findings: tuple[dict[str, Any], ...]
    folder: str | None
    notes: tuple[str, ...] = ()
    location: Location | None = None
    drift: Drift | None = None

    def summary(self) -> str:
        """A readable report, as `keras-repro check` prints it."""
        if self.reproducible:
            lines = [
                f"reproducible: {self.runs} runs of {self.script} are bit-identical in training state "
                f"and data ({self.records_compared} records compared over {self.fits} fit call(s)); "
                f"final fingerprint {self.final_fingerprint}"
            ]
            lines += [f"  note: {note}" for note in self.notes]
            racy = _causes.scheduling_dependent(tuple(self.findings))
            if racy:
                codes = ", ".join(sorted({f["code"] for f in racy}))
                lines.append(
                    f"  caution: the audit found randomness that depends on thread scheduling ({codes}); "
                    f"these {self.runs} runs agree, but the order can change in another run."
                )
            relevant = [f for f in self.findings if f["severity"] in ("error", "warning")]
            heading = "audit findings (run 1; what could make other runs differ):"
        else:
            lines = [
                f"NOT reproducible: run {self.diverging_run} of {self.script} differs from run 1",
                f"  first divergence: {self.divergence}",
            ]
            if self.drift is not None:
                lines.append(f"  how far apart: {self.drift.describe()}")
            if self.location is not None:
                lines.append(f"  where it enters: {self.location.message}")
            if self.divergence is not None and self.divergence.manifest_differences:
                lines.append("  environment differences that can change results:")
                lines += [f"    {d}" for d in self.divergence.manifest_differences]
            relevant = list(self.divergence.findings) if self.divergence is not None else []
            heading = "  audit findings that can explain it (run 1):"
        if relevant:
            lines.append(heading)
            for f in relevant:
                about = f" [{f['subject']}]" if f.get("subject") else ""
                lines.append(f"    {f['severity'].upper()} {f['code']}{about}: {f['what']} Fix: {f['fix']}")
        if self.folder:
            lines.append(f"traces and output kept in {self.folder}")
        return "\n".join(lines)


def _check_arguments(script: Any, runs: Any, every: Any) -> tuple[Path, int, str | int]:
    path = Path(os.fspath(script))
    if not path.is_file():
        raise FileNotFoundError(f"script not found: {path}")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"script not readable: {path}")
    runs = _validate.check_int("runs", runs, minimum=2, allowed="Comparing needs an integer >= 2")
    return path, runs, _validate.check_every(every)


def check_script(
    script: str | os.PathLike,
    args: Sequence[str] = (),
    runs: int = 2,
    every: str | int = "epoch",
    keep: str | os.PathLike | None = None,
    progress: Callable[[str], None] | None = None,
    locate: bool = False,
    deterministic: bool = False,
) -> CheckResult:
    """Runs `script` `runs` times in fresh processes and compares the runs.

    Args:
        script: path of the training script (run as ``python script args``).
        args: its command-line arguments.
        runs: how many runs (>= 2); each is compared with the first.
        every: record every ``"epoch"``, ``"batch"`` or N batches.
        keep: folder to keep each run's trace, findings and output in
            (``run1/``, ``run2/`` ...); by default a temporary folder that is
            removed afterwards.
        progress: called with a short line as runs and epochs go.
        locate: when the runs differ, run the script again to find where the
            difference enters (`keras_repro.locate.locate`: two more runs
            recording every batch unless ``every="batch"``, then two runs
            probing the first differing training step).
        deterministic: start every run with the backend's deterministic
            kernels on, whatever the script does: the variables of
            `keras_repro.determinism.deterministic_environment` in its
            environment (the only way on JAX, where the switch is an XLA
            flag read at start), and the backend's switch turned on at the
            start of every fit (``DeterminismCallback(deterministic_ops=True)``).

    Returns:
        A `CheckResult`.

    Raises:
        FileNotFoundError, PermissionError: the script cannot be read.
        ValueError: bad `runs` or `every`.
        ScriptError: the script failed, or never finished a `fit`, in a run.
    """
    path, runs, every = _check_arguments(script, runs, every)
    locate = _validate.check_bool("locate", locate)
    deterministic = _validate.check_bool("deterministic", deterministic)
    folder = Path(keep) if keep is not None else Path(tempfile.mkdtemp(prefix="keras-repro-check-"))
    try:
        for run in range(1, runs + 1):
            if progress is not None:
                progress(f"run {run} of {runs}: starting {path}")
            run_once(path, args, run, folder / f"run{run}", every, progress, deterministic=deterministic)
        first = load_trace(folder / "run1" / "trace.jsonl")
        diverging_run, divergence, apart, notes = None, None, None, []
        for run in range(2, runs + 1):
            comparison = diff_traces(first, folder / f"run{run}" / "trace.jsonl")
            divergence, apart = comparison.divergence, comparison.drift
            notes += [f"run {run}: {note}" if runs > 2 else note for note in comparison.notes]
            if divergence is not None:
                diverging_run = run
                break
        location = None
        if locate and divergence is not None:
            location = locate_divergence(path, args, divergence, every, folder, progress, deterministic)
        return CheckResult(
            script=str(path),
            runs=runs,
            reproducible=divergence is None,
            records_compared=len(first.records),
            fits=len({r["fit"] for r in first.records}),
            final_fingerprint=first.records[-1]["fingerprint"] if first.records else None,
            diverging_run=diverging_run,
            divergence=divergence,
            findings=_findings(first),
            folder=str(folder) if keep is not None else None,
            notes=tuple(notes),
            location=location,
            drift=apart,
        )
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)


def _findings(trace) -> tuple[dict[str, Any], ...]:
    """The audit findings a trace recorded at its fits' starts, each once."""
    seen, found = set(), []
    for record in trace.records:
        for finding in record.get("findings") or ():
            key = (finding["code"], finding.get("subject"))
            if key not in seen:
                seen.add(key)
                found.append(finding)
    return tuple(found)
