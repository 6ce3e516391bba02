"""The runs of a checked script: started by `keras-repro check`, each in a fresh process.

`run_once` starts ``python -m keras_repro._runner SCRIPT ARGS`` with a fixed
``PYTHONHASHSEED`` and waits for it. Inside that process, `_main` makes
every `keras.Model.fit` record a trace with a `DeterminismCallback`
(recording only: deterministic kernels are left as the script sets them,
unless the check asked for them: then the process starts with
`keras_repro.determinism.deterministic_environment` and each fit turns the
backend's switch on)
and the audit findings of its model and data, optionally installs a probe of
one training step (`keras_repro._probe`, for `keras_repro.locate`), and runs
the script unmodified. Progress lines go to the parent on stderr, marked.
"""

from __future__ import annotations

import functools
import inspect
import os
import runpy
import subprocess
import sys
import threading
from collections.abc import Callable
from collections.abc import Sequence
from pathlib import Path

import keras

from keras_repro import _validate
from keras_repro._procs import child_environment
from keras_repro._procs import without_framework_logs
from keras_repro.audit import audit
from keras_repro.callbacks import DeterminismCallback
from keras_repro.determinism import deterministic_environment

__all__ = ["HASH_SEED", "ScriptError", "run_once"]

PROGRESS_MARK = "@@keras-repro-progress@@"
HASH_SEED = "0"
_TRACE_ENV = "KERAS_REPRO_CHECK_TRACE"
_EVERY_ENV = "KERAS_REPRO_CHECK_EVERY"
_PROBE_ENV = "KERAS_REPRO_CHECK_PROBE"  # "<probe file>:<fit>:<training step>"
_DETERMINISTIC_ENV = "KERAS_REPRO_CHECK_DETERMINISTIC"


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


def run_once(
    script: Path,
    args: Sequence[str],
    run: int,
    folder: Path,
    every: str | int,
    progress: Callable[[str], None] | None,
    probe: tuple[Path, int, int] | None = None,
    deterministic: bool = False,
) -> None:
    """Runs `script` once in a fresh process, recording every fit to ``folder/trace.jsonl``.

    Args:
        script: the training script.
        args: its arguments.
        run: the run's number, for messages.
        folder: where the trace, stdout.txt and stderr.txt go (created).
        every: the recording frequency.
        progress: called with progress lines, or None.
        probe: ``(probe file, fit, training step)`` to probe that step
            (`keras_repro._probe`), or None.
        deterministic: start the run with deterministic kernels on (the
            variables of `keras_repro.determinism.deterministic_environment`,
            and the backend's switch at the start of every fit).

    Raises:
        ScriptError: the script failed, or never completed a `fit`.
    """
    folder.mkdir(parents=True, exist_ok=True)
    extra = {"PYTHONHASHSEED": HASH_SEED, _TRACE_ENV: str(folder / "trace.jsonl"), _EVERY_ENV: str(every)}
    if probe is not None:
        extra[_PROBE_ENV] = f"{probe[0]}:{probe[1]}:{probe[2]}"
    if deterministic:
        extra.update(deterministic_environment())
        extra[_DETERMINISTIC_ENV] = "1"
    env = child_environment(extra)
    env.pop("KERAS_REPRO_SEED", None)
    if probe is None:
        env.pop(_PROBE_ENV, None)
    if not deterministic:
        env.pop(_DETERMINISTIC_ENV, None)
    with open(folder / "stdout.txt", "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "keras_repro._runner", str(script), *args],
            stdout=out,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        errors: list[str] = []
        for line in proc.stderr:  # progress marks are consumed, the rest kept
            if line.startswith(PROGRESS_MARK):
                if progress is not None:
                    progress(f"run {run}: {line[len(PROGRESS_MARK) :].strip()}")
            else:
                errors.append(line)
        proc.wait()
    (folder / "stderr.txt").write_text("".join(errors), encoding="utf-8")
    tail = "".join(without_framework_logs(errors))[-6000:]
    if proc.returncode != 0:
        raise ScriptError(run, proc.returncode, tail)
    if not (folder / "trace.jsonl").exists():
        raise ScriptError(
            run, 0, tail, reason=f"the script never completed a model.fit call in run {run}: nothing to compare"
        )


# --------------------------------------------------------------------------- in the run


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


def _instrument(trace: str, every: str | int, deterministic: bool) -> None:
    # Step digests (TF backend) locate a divergence to its training step in the checked runs themselves.
    recorder = DeterminismCallback(trace=trace, every=every, deterministic_ops=deterministic, audit="off", steps=True)
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
        # Recorded with the trace (the recorder's own audit is off: it cannot
        # see fit's data); a divergence names those that can explain it.
        recorder.findings = audit(self, data=bound.arguments.get("x"), shuffle=bound.arguments.get("shuffle", True))
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
        sys.exit("usage: python -m keras_repro._runner SCRIPT [ARGS...] (run by keras-repro check)")
    for name in (_TRACE_ENV, _EVERY_ENV):
        if name not in os.environ:
            sys.exit(f"{name} is not set: this runner is started by `keras-repro check`.")
    deterministic = os.environ.get(_DETERMINISTIC_ENV) == "1"
    if deterministic:
        # Switches that are no environment variable (torch's) are on from the
        # start too, so the audit before the first fit sees them on.
        from keras_repro.determinism import enable_determinism

        enable_determinism()
    _instrument(
        os.environ[_TRACE_ENV],
        _validate.check_every(os.environ[_EVERY_ENV], name=_EVERY_ENV),
        deterministic=deterministic,
    )
    probe = None
    if os.environ.get(_PROBE_ENV):
        from keras_repro import _probe

        path, fit, step = os.environ[_PROBE_ENV].rsplit(":", 2)
        probe = _probe.install(path, int(fit), int(step))  # wraps the instrumented fit
    script = os.path.abspath(argv[0])
    sys.argv = [argv[0], *argv[1:]]
    sys.path.insert(0, os.path.dirname(script))
    try:
        runpy.run_path(script, run_name="__main__")
    except BaseException as stop:
        if probe is None or not probe.completed(stop):
            raise


if __name__ == "__main__":
    _main(sys.argv[1:])
