"""Check a training script for reproducibility by running it several times.

The script runs unmodified, each time in a fresh Python process with a fixed
``PYTHONHASHSEED``, under a small runner (``python -m keras_repro.check``)
that adds one `DeterminismCallback` (recording only: it does not turn on
deterministic kernels, so the script is checked as it is) to every
`keras.Model.fit` call. The traces of the runs are then compared record by
record; the first divergence, the environment differences that can explain
it and the audit findings of the first run are reported.

Example:

```python
from keras_repro.check import check_script

result = check_script("examples/reproducible_mlp.py", runs=2)
print(result.summary())
```
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import runpy
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import keras

from keras_repro import _files
from keras_repro.callbacks import DeterminismCallback
from keras_repro.determinism import audit
from keras_repro.trace import Divergence, compare_traces, load_trace

__all__ = ["CheckResult", "ScriptError", "check_script"]

PROGRESS_MARK = "@@keras-repro-progress@@"
FINDINGS_FORMAT = "keras_repro.check_findings"
_TRACE_ENV = "KERAS_REPRO_CHECK_TRACE"
_EVERY_ENV = "KERAS_REPRO_CHECK_EVERY"
_FINDINGS_ENV = "KERAS_REPRO_CHECK_FINDINGS"
HASH_SEED = "0"


class ScriptError(RuntimeError):
    """The checked script failed (or never called `fit`) in one of the runs.

    Attributes:
        run: the run number (1-based).
        returncode: the script's exit status.
        output: the tail of the script's standard error.
    """

    def __init__(self, run: int, returncode: int, output: str, reason: str | None = None):
        self.run, self.returncode, self.output = run, returncode, output
        super().__init__(reason or f"the script failed in run {run} (exit status {returncode})")


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
        divergence: where it differed (`keras_repro.trace.Divergence`).
        findings: audit findings of run 1 (`keras_repro.Finding` fields as dicts).
        folder: where the traces and the script's output are kept, if kept.
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

    def summary(self) -> str:
        """A readable report, as `keras-repro check` prints it."""
        if self.reproducible:
            lines = [
                f"reproducible: {self.runs} runs of {self.script} are bit-identical "
                f"({self.records_compared} records compared over {self.fits} fit call(s)); "
                f"final fingerprint {self.final_fingerprint}"
            ]
        else:
            lines = [
                f"NOT reproducible: run {self.diverging_run} of {self.script} differs from run 1",
                f"  first divergence: {self.divergence}",
            ]
            if self.divergence is not None and self.divergence.manifest_differences:
                lines.append("  environment differences that can change results:")
                lines += [f"    {d}" for d in self.divergence.manifest_differences]
        relevant = [f for f in self.findings if f["severity"] in ("error", "warning")]
        if relevant:
            lines.append("audit findings (run 1):" if self.reproducible else "  audit findings that can explain it (run 1):")
            for f in relevant:
                about = f" [{f['subject']}]" if f.get("subject") else ""
                lines.append(f"    {f['severity'].upper()} {f['code']}{about}: {f['what']} Fix: {f['fix']}")
        if self.folder:
            lines.append(f"traces and output kept in {self.folder}")
        return "\n".join(lines)


def _validate(script: Any, runs: Any, every: Any) -> tuple[Path, int, Union[str, int]]:
    path = Path(os.fspath(script))
    if not path.is_file():
        raise FileNotFoundError(f"script not found: {path}")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"script not readable: {path}")
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 2:
        raise ValueError(f"Invalid runs: {runs!r}. Comparing needs an integer >= 2.")
    if isinstance(every, str) and every.isdigit():
        every = int(every)
    if not (every in ("epoch", "batch") or (isinstance(every, int) and not isinstance(every, bool) and every > 0)):
        raise ValueError(f"Invalid every: {every!r}. Allowed: 'epoch', 'batch' or a positive number of batches.")
    return path, runs, every


def _run_once(
    script: Path, args: Sequence[str], run: int, folder: Path, every: Union[str, int],
    progress: Callable[[str], None] | None,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PYTHONHASHSEED": HASH_SEED,
        _TRACE_ENV: str(folder / "trace.jsonl"),
        _EVERY_ENV: str(every),
        _FINDINGS_ENV: str(folder / "findings.json"),
    }
    env.pop("KERAS_REPRO_SEED", None)
    with open(folder / "stdout.txt", "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "keras_repro.check", str(script), *args],
            stdout=out, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, text=True,
        )
        errors: list[str] = []
        for line in proc.stderr:  # progress marks are consumed, the rest kept
            if line.startswith(PROGRESS_MARK):
                if progress is not None:
                    progress(f"run {run}: {line[len(PROGRESS_MARK):].strip()}")
            else:
                errors.append(line)
        proc.wait()
    (folder / "stderr.txt").write_text("".join(errors), encoding="utf-8")
    tail = "".join(errors)[-6000:]
    if proc.returncode != 0:
        raise ScriptError(run, proc.returncode, tail)
    if not (folder / "trace.jsonl").exists():
        raise ScriptError(run, 0, tail, reason=f"the script never completed a model.fit call in run {run}: nothing to compare")


def check_script(
    script: Union[str, os.PathLike],
    args: Sequence[str] = (),
    runs: int = 2,
    every: Union[str, int] = "epoch",
    keep: Union[str, os.PathLike, None] = None,
    progress: Callable[[str], None] | None = None,
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

    Returns:
        A `CheckResult`.

    Raises:
        FileNotFoundError, PermissionError: the script cannot be read.
        ValueError: bad `runs` or `every`.
        ScriptError: the script failed, or never finished a `fit`, in a run.
    """
    path, runs, every = _validate(script, runs, every)
    folder = Path(keep) if keep is not None else Path(tempfile.mkdtemp(prefix="keras-repro-check-"))
    try:
        for run in range(1, runs + 1):
            if progress is not None:
                progress(f"run {run} of {runs}: starting {path}")
            _run_once(path, args, run, folder / f"run{run}", every, progress)
        first = load_trace(folder / "run1" / "trace.jsonl")
        findings = tuple(_files.read_document(folder / "run1" / "findings.json", FINDINGS_FORMAT, (1,))["findings"])
        diverging_run, divergence = None, None
        for run in range(2, runs + 1):
            divergence = compare_traces(first, folder / f"run{run}" / "trace.jsonl")
            if divergence is not None:
                diverging_run = run
                break
        return CheckResult(
            script=str(path),
            runs=runs,
            reproducible=divergence is None,
            records_compared=len(first.records),
            fits=len({r["fit"] for r in first.records}),
            final_fingerprint=first.records[-1]["fingerprint"] if first.records else None,
            diverging_run=diverging_run,
            divergence=divergence,
            findings=findings,
            folder=str(folder) if keep is not None else None,
        )
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- runner
# What runs inside each checked process: `python -m keras_repro.check SCRIPT ARGS`.


class _Progress(keras.callbacks.Callback):
    """Prints epoch progress marks on stderr for the parent process."""

    def __init__(self, fit_index: int):
        super().__init__()
        self.fit_index = fit_index

    def on_epoch_begin(self, epoch, logs=None):
        total = (self.params or {}).get("epochs")
        # Fits and epochs are numbered from 0, as in traces and Keras callbacks.
        sys.stderr.write(f"{PROGRESS_MARK} fit {self.fit_index}, epoch {epoch} of {total}\n")
        sys.stderr.flush()


def _instrument(trace: str, every: Union[str, int], findings_path: str) -> None:
    recorder = DeterminismCallback(trace=trace, every=every, deterministic_ops=False, audit="off")
    original = keras.Model.fit
    signature = inspect.signature(original)
    local = threading.local()
    fits = [0]

    @functools.wraps(original)
    def fit(self, *args, **kwargs):
        if getattr(local, "active", False):  # a subclass's fit calling super().fit
            return original(self, *args, **kwargs)
        bound = signature.bind(self, *args, **kwargs)
        callbacks = bound.arguments.get("callbacks") or []
        if fits[0] == 0:
            findings = audit(self, data=bound.arguments.get("x"))
            _files.write_document(
                findings_path, FINDINGS_FORMAT, 1, {"findings": [dataclasses.asdict(f) for f in findings]}
            )
        bound.arguments["callbacks"] = [*callbacks, recorder, _Progress(fits[0])]
        fits[0] += 1
        local.active = True
        try:
            return original(*bound.args, **bound.kwargs)
        finally:
            local.active = False

    keras.Model.fit = fit


def _main(argv: Sequence[str]) -> None:
    if not argv:
        sys.exit("usage: python -m keras_repro.check SCRIPT [ARGS...] (run by keras-repro check)")
    for name in (_TRACE_ENV, _EVERY_ENV, _FINDINGS_ENV):
        if name not in os.environ:
            sys.exit(f"{name} is not set: this runner is started by `keras-repro check`.")
    every = os.environ[_EVERY_ENV]
    _instrument(os.environ[_TRACE_ENV], int(every) if every.isdigit() else every, os.environ[_FINDINGS_ENV])
    script = os.path.abspath(argv[0])
    sys.argv = [argv[0], *argv[1:]]
    sys.path.insert(0, os.path.dirname(script))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    _main(sys.argv[1:])
