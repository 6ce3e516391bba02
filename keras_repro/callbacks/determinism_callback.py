"""`DeterminismCallback`: `fit` that records and verifies its own reproducibility."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import keras

from keras_repro import _validate
from keras_repro import _warnings
from keras_repro.audit import AuditError
from keras_repro.audit import Finding
from keras_repro.audit import audit
from keras_repro.data_fingerprint import DataFingerprint
from keras_repro.determinism import determinism_enabled
from keras_repro.determinism import enable_determinism
from keras_repro.distribute import replica_disagreement
from keras_repro.divergence import KIND_CODES
from keras_repro.divergence import RecordComparator
from keras_repro.divergence import shown_names
from keras_repro.divergence import where
from keras_repro.fingerprint import Fingerprinter
from keras_repro.fingerprint import fingerprint_rng_streams
from keras_repro.manifest import diff_manifests
from keras_repro.manifest import manifest
from keras_repro.seeds import ReproducibilityWarning
from keras_repro.seeds import rng_state
from keras_repro.state import ResumePoint
from keras_repro.state import get_resume_point
from keras_repro.step_digest import StepDigests
from keras_repro.trace import Divergence
from keras_repro.trace import NondeterminismError
from keras_repro.trace import NondeterminismWarning
from keras_repro.trace import Trace
from keras_repro.trace import TraceWriter
from keras_repro.trace import load_trace

__all__ = ["DeterminismCallback"]

_ON_MISMATCH = ("raise", "warn")
_AUDIT_MODES = ("warn", "raise", "off")


@keras.saving.register_keras_serializable(package="keras_repro")
class DeterminismCallback(keras.callbacks.Callback):
    """Makes `fit` verify that it trains reproducibly.

    At the start of each `fit` call the callback
    - turns on deterministic kernels (`keras_repro.enable_determinism`),
      unless ``deterministic_ops=False``. In TensorFlow this is a
      process-wide switch that stays on after `fit`. Because Keras turns XLA
      off when op determinism is on at `compile()`, the callback does the same
      for a model compiled with ``jit_compile=True`` (with a warning), so a
      run does not depend on whether determinism was enabled before or after
      `compile()`;
    - runs `keras_repro.audit` on the model: ``audit="warn"`` warns about
      errors and warnings found (once each), ``"raise"`` raises
      `keras_repro.determinism.AuditError` if it finds errors, ``"off"``
      skips it; the findings are in `findings`;
    - writes a trace header (with the environment manifest) and a
      ``fit_begin`` record: the fingerprint of every variable and of the
      global RNG state. (Keras builds a model that was never called, and a
      fresh optimizer's slots, in the first training step: those variables
      appear from the first epoch or batch record on.)

    Then, every epoch (``every="epoch"``), every batch (``"batch"``) or
    every N batches (``every=N``), it appends a record with the optimizer
    step, the model fingerprint and each variable's digest; and at the end of
    `fit` a ``fit_end`` record, after which the complete trace appears
    atomically under `trace`. Until then it is ``<trace>.partial``, so a run
    that crashes never leaves a trace that loads as complete. Several `fit`
    calls append to one trace (records carry the fit index); a new callback
    object starts the file afresh.

    A record covers the whole training state: every weight, the variables
    of every optimizer the model holds (the compiled one and those a custom
    `compile()` keeps in attributes, as GANs do; the record's ``step`` is the
    largest of their step counts), every seed generator, and, with
    ``data=True``, a digest of the batches trained on since the fit
    began.

    With `reference` (the trace of an earlier run) each record is compared
    with the reference's record at the same position as training goes
    (`keras_repro.divergence`): at the first difference in the training
    state or the data, the callback raises `keras_repro.NondeterminismError`
    (or, with ``on_mismatch="warn"``, warns and stops comparing), naming the
    fit, epoch and batch, the kind of divergence (initial state, data, a
    training step, a seed generator drawn from), the differing variables by
    path, and the environment differences and audit findings that can
    explain that kind. A difference in a global random stream, or in a seed
    generator that is never drawn from, changes nothing the run computes: it
    is listed in `notes`, and raises only if the training state or the data
    later differ (the error then says what already differed).

    In-process checks are not evidence of reproducibility: compare runs in
    separate processes (run the script twice, the second time with
    ``reference=`` the first run's trace).

    Args:
        trace: path of the trace file to write (JSON Lines); None keeps the
            records in memory (`records`).
        reference: path of an earlier run's trace (or a loaded
            `keras_repro.trace.Trace`) to compare against; it is loaded and
            verified when the callback is created. It may be the same path as
            `trace`: it is read before being replaced.
        every: ``"epoch"``, ``"batch"`` or a positive number of batches.
        on_mismatch: ``"raise"`` or ``"warn"``.
        deterministic_ops: whether to turn on deterministic kernels at the
            start of `fit`.
        audit: ``"warn"``, ``"raise"`` or ``"off"``.
        data: whether each record also fingerprints the batches the model
            trained on since the fit began (computed inside the train
            step; `keras_repro.data_fingerprint`), so that a divergence in the
            input data is told apart from one in the kernels. On
            TensorFlow, PyTorch and JAX (not under a
            `keras.distribution` or Flax NNX); elsewhere records carry
            no data digest.
        replicas: under a `tf.distribute` strategy with several local
            replicas, whether each record also checks that every replica's
            copy of every mirrored variable equals replica 0's
            (`keras_repro.distribute.replica_disagreement`); a replica that
            differs is a divergence of kind ``"replica"``, raised or warned
            as `on_mismatch` says, with or without a reference.
        steps: whether each record also lists a digest of the model's
            variables (and of the data) after every training step since the
            previous record, computed on the device inside the train step
            and read once per record (`keras_repro.step_digest`): a
            divergence is then located to its training step without
            recording every batch. Where `data` is; elsewhere records
            carry none.

    Example:

    ```python
    import numpy as np
    import keras
    import keras_repro as kr

    kr.seed_everything(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.ones((32, 4)), np.ones((32, 1))
    model.fit(x, y, epochs=2, verbose=0, callbacks=[kr.DeterminismCallback("run1.jsonl")])
    # In a second run of the same program:
    # callbacks=[kr.DeterminismCallback("run2.jsonl", reference="run1.jsonl")]
    ```
    """

    def __init__(
        self,
        trace: str | os.PathLike | None = None,
        reference: str | os.PathLike | Trace | None = None,
        every: str | int = "epoch",
        on_mismatch: str = "raise",
        deterministic_ops: bool = True,
        audit: str = "warn",
        data: bool = True,
        replicas: bool = True,
        steps: bool = False,
    ) -> None:
        super().__init__()
        self.trace = _validate.check_path("trace", trace, allow_none=True)
        self.every = _validate.check_every(every)
        # Batches per batch record (None: records at epoch ends only).
        self._batches_per_record = {"batch": 1, "epoch": None}.get(self.every, self.every)
        self.on_mismatch = _validate.check_choice("on_mismatch", on_mismatch, _ON_MISMATCH)
        self.deterministic_ops = _validate.check_bool("deterministic_ops", deterministic_ops)
        self.data = _validate.check_bool("data", data)
        self.replicas = _validate.check_bool("replicas", replicas)
        self.steps = _validate.check_bool("steps", steps)
        self.audit_mode = _validate.check_choice("audit", audit, _AUDIT_MODES)
        if isinstance(reference, Trace):
            self._reference = reference
            self.reference = reference.path
        else:
            self.reference = _validate.check_path("reference", reference, allow_none=True)
            self._reference = None if reference is None else load_trace(reference)
        if self._reference is not None and self._reference.every != self.every:
            raise ValueError(
                f"The reference trace {self._reference.describe()} was recorded with "
                f"every={self._reference.every!r}, this callback records every={self.every!r}: "
                "use the same setting to compare them."
            )
        self.findings: list[Finding] = []
        self.divergence: Divergence | None = None
        self.last_record: dict[str, Any] | None = None
        self._writer = TraceWriter(trace)
        self._fit = -1
        self._reference_index = 0
        self._comparator: RecordComparator | None = None
        self._data: DataFingerprint | None = None
        self._steps: StepDigests | None = None
        self._warned: set[tuple[str, str | None]] = set()
        self._epoch: int | None = None
        self._last_batch = -1
        self._begun = False
        self._resume_batches = 0
        self._fingerprinter: Fingerprinter | None = None
        self._stale = True
        if self.every != "epoch":
            # Only batch-level recording defines a batch hook: Keras dispatches
            # batch hooks asynchronously (and faster) when no callback has one.
            self.on_train_batch_end = self._record_batch

    # --- fit hooks --------------------------------------------------------------

    def on_train_begin(self, logs=None):
        self._fit += 1
        if self.data and (self._data is None or self._data.model is not self.model):
            self._data = DataFingerprint(self.model)
        if self.steps and (self._steps is None or self._steps.model is not self.model):
            per_epoch = self.params.get("steps") if isinstance(self.params, dict) else None
            self._steps = StepDigests(self.model, capacity=max(4096, (per_epoch or 0) + 1))
        if self.deterministic_ops:
            self._enable_determinism()
        if self.audit_mode != "off":
            self._run_audit()
        # The trace begins at the first epoch, once every callback's
        # on_train_begin has run: a backup restored there is then known.
        self._begun = False

    def _begin(self) -> None:
        self._begun = True
        point = get_resume_point(self.model)
        if point is not None and not self._writer.started:
            self._continue_interrupted(point)
            return
        if not self._writer.started:
            self._start_trace()
        else:
            self._writer.resume()
        if self._data is not None:
            self._data.reset()
        if self._steps is not None:
            self._steps.read()  # steps before this fit are not part of it
        # Keras does not tell callbacks the initial epoch: on_epoch_begin does.
        self._epoch = None
        self._record("fit_begin", rng=True)

    def _start_trace(self) -> None:
        header = {"manifest": manifest(), "every": self.every}
        self._writer.start(header)
        self._compare_manifest(header["manifest"])

    def _compare_manifest(self, this_run: dict[str, Any]) -> None:
        if self._reference is not None:
            differences = tuple(d for d in diff_manifests(self._reference.manifest, this_run) if d.affects_results)
            self._comparator = RecordComparator(differences, ("the reference run", "this run"))

    def _continue_interrupted(self, point: ResumePoint) -> None:
        """Continues the trace of the run this one resumes (see ExactBackupAndRestore).

        The interrupted run's trace is kept up to the backup (records at
        optimizer steps <= the backup's) and continued, so the finished trace
        is the one an uninterrupted run writes. Without it (no trace file)
        a new trace starts at the resume point.
        """
        previous = None
        for candidate in (self._writer.partial, self._writer.path):
            if candidate is not None and candidate.exists():
                previous = load_trace(candidate, allow_incomplete=True)
                break
        if previous is None:
            self._start_trace()
            kept = []
        else:
            kept = _before_resume(previous.records, point)
            self._writer.continue_run(previous.header, kept)
            self._compare_manifest(previous.manifest)
        if kept:
            self._fit = kept[-1]["fit"]
        if self._reference is not None:
            self._reference_index = len(_before_resume(self._reference.records, point))
        # A kill between the backup and this callback's record of the same
        # epoch end leaves that record out: the restored state is the state
        # it recorded, so write it now.
        last = kept[-1] if kept else None
        if (
            self.every == "epoch"
            and point.step == 0
            and point.epoch > 0
            and not (last is not None and last["type"] == "epoch" and last["epoch"] == point.epoch - 1)
        ):
            self._record("epoch", epoch=point.epoch - 1, rng=True)
        self._resume_batches = point.step

    def on_epoch_begin(self, epoch, logs=None):
        if not self._begun:
            self._begin()
        self._epoch = epoch
        # A run resumed mid-epoch starts that epoch after `step` batches.
        self._last_batch = self._resume_batches - 1
        self._resume_batches = 0

    def on_epoch_end(self, epoch, logs=None):
        if self.every == "epoch":
            self._record("epoch", epoch=epoch, rng=True)

    def _record_batch(self, batch, logs=None):
        every = self._batches_per_record
        crossed = (batch + 1) // every > (self._last_batch + 1) // every
        self._last_batch = batch
        if crossed:
            self._record("batch", epoch=self._epoch, batch=batch)

    def on_train_end(self, logs=None):
        if not self._begun:  # a fit that ran no epoch
            self._begin()
        self._record("fit_end", epoch=self._epoch, rng=True)
        self._writer.finish()

    # --- helpers ---------------------------------------------------------------

    @property
    def records(self) -> list[dict[str, Any]]:
        """The records so far, when `trace` is None (in memory); else load the file."""
        return self._writer.trace().records

    def _enable_determinism(self) -> None:
        was_on = determinism_enabled()
        enable_determinism()
        model = self.model
        if not was_on and keras.backend.backend() == "tensorflow" and getattr(model, "jit_compile", False) is True:
            # Keras' rule (trainer.model_supports_jit): no XLA with op determinism.
            model.jit_compile = False
            model.make_train_function(force=True)
            _warnings.warn(
                "DeterminismCallback turned on op determinism after compile(jit_compile=True); "
                "as Keras does when determinism is on at compile(), XLA is turned off for this "
                "model, so the run computes the same as one that enabled determinism first. "
                "Fix: call keras_repro.enable_determinism() before compile().",
                ReproducibilityWarning,
            )

    def _run_audit(self) -> None:
        self.findings = audit(self.model)
        errors = [f for f in self.findings if f.severity == "error"]
        if self.audit_mode == "raise" and errors:
            raise AuditError(errors)
        new = [f for f in self.findings if f.severity != "info" and (f.code, f.subject) not in self._warned]
        if new:
            self._warned.update((f.code, f.subject) for f in new)
            _warnings.warn("Reproducibility audit:\n" + "\n".join(f"- {f}" for f in new), ReproducibilityWarning)

    def _record(self, kind: str, epoch: int | None = None, batch: int | None = None, rng: bool = False) -> None:
        model = self.model
        if self._fingerprinter is None or self._fingerprinter.model is not model:
            self._fingerprinter = Fingerprinter(model)
        elif kind != "batch" or self._stale:
            # Batch records reuse the variable list of the previous record:
            # walking the model costs more than hashing a small one.
            self._fingerprinter.refresh()
        # The first training step may still build the model and the optimizer
        # slots: list the variables again after it.
        self._stale = kind == "fit_begin"
        # Float summaries cost more than the digests: records at fit
        # boundaries and epoch ends carry them, and of the batch records the
        # first of each epoch (by position, so that a resumed run writes the
        # same records as one that never stopped).
        summaries = rng or (batch is not None and batch + 1 == self._batches_per_record)
        details = self._fingerprinter.details(summaries=summaries)
        kinds = details.kinds
        record: dict[str, Any] = {
            "type": kind,
            "fit": self._fit,
            "epoch": epoch,
            "batch": batch,
            "step": details.iterations,
            "fingerprint": details.digest,
            "variables": [[path, digest] for path, digest in details.variables.items()],
            "kinds": "".join(KIND_CODES[kinds[path]] for path in details.variables),
            "data": None if kind == "fit_begin" or self._data is None else self._data.read(),
        }
        if details.summaries is not None:
            record["summaries"] = list(details.summaries.values())
        if self._steps is not None and kind != "fit_begin":
            steps = self._steps.read()
            if steps is not None and steps.state:
                record["steps"] = steps.to_record(details.iterations)
        if kind == "fit_begin":
            record["schema"] = [[p, dtype, list(shape)] for p, (dtype, shape) in details.schema.items()]
            record["findings"] = [dataclasses.asdict(f) for f in self.findings]
        if rng:
            state = rng_state()
            record["rng"] = fingerprint_rng_streams(state)
            if kind == "fit_begin" and state["tensorflow"] is not None:
                record["tf_global_seed_set"] = state["tensorflow"]["global_seed"] is not None
        self.last_record = self._writer.write(record)
        if self.replicas:
            self._check_replicas(self.last_record)
        self._compare(self.last_record)

    @property
    def notes(self) -> tuple[str, ...]:
        """Differences from the reference run in state nothing used so far (a global
        stream, an idle seed generator): notes, not mismatches."""
        return () if self._comparator is None else self._comparator.notes

    def _check_replicas(self, record: dict[str, Any]) -> None:
        if self.divergence is not None:
            return
        strategy = getattr(self.model, "distribute_strategy", None)
        found = replica_disagreement(self._fingerprinter.variables, strategy)
        if found is None:
            return
        replica, variables = found
        step = f" (training step {record['step']})" if record["step"] is not None else ""
        message = (
            f"Replica {replica} differs from replica 0 at {where(record)}{step}: {shown_names(variables)}. "
            "Every replica applies the same all-reduced update to its copy, so copies part only through "
            "a nondeterministic all-reduce or kernel, or code that changes one replica's copy."
        )
        self._mismatch(
            Divergence(
                "replica", record["fit"], record["epoch"], record["batch"], record["step"], variables, (), message
            )
        )

    def _mismatch(self, divergence: Divergence) -> None:
        """Raises or warns about `divergence`, as `on_mismatch` says."""
        self.divergence = divergence
        if self.on_mismatch == "raise":
            self._writer.close()
            context = []
            if self._reference is not None:
                context.append(f"Reference: {self._reference.describe()}")
            if self._writer.partial is not None:
                context.append(f"this run's trace so far: {self._writer.partial}")
            suffix = f" ({'; '.join(context)}.)" if context else ""
            raise NondeterminismError(dataclasses.replace(divergence, message=divergence.message + suffix))
        _warnings.warn(divergence.message, NondeterminismWarning)

    def _compare(self, record: dict[str, Any]) -> None:
        if self._comparator is None or self.divergence is not None:
            return
        records = self._reference.records
        expected = records[self._reference_index] if self._reference_index < len(records) else None
        self._reference_index += 1
        divergence = self._comparator.add(expected, record)
        if divergence is not None:
            self._mismatch(divergence)

    def get_config(self) -> dict[str, Any]:
        return {
            "trace": None if self.trace is None else os.fspath(self.trace),
            "reference": None if self.reference is None else os.fspath(self.reference),
            "every": self.every,
            "on_mismatch": self.on_mismatch,
            "deterministic_ops": self.deterministic_ops,
            "audit": self.audit_mode,
            "data": self.data,
            "replicas": self.replicas,
            "steps": self.steps,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DeterminismCallback:
        return cls(**config)


def _before_resume(records: list[dict[str, Any]], point: ResumePoint) -> list[dict[str, Any]]:
    """The records a run writes before the resume point `point`.

    Those at training steps before the backup's, and, at the backup's own
    step (a step that did not advance the optimizers, as a skipped
    mixed-precision step, records the same count), those at or before its
    position (epoch, batches done); less the end of the fit being resumed
    (it has not ended yet).
    """

    def before(record: dict[str, Any]) -> bool:
        step = record["step"] or 0
        if step != point.iterations:
            return step < point.iterations
        if record["type"] == "batch":
            return (record["epoch"], record["batch"] + 1) <= (point.epoch, point.step)
        if record["type"] == "epoch":
            return record["epoch"] < point.epoch
        return True

    kept = [r for r in records if before(r)]
    resumed_fit = max((r["fit"] for r in kept), default=0)
    return [r for r in kept if not (r["type"] == "fit_end" and r["fit"] == resumed_fit)]
