"""Keras callbacks of keras_repro, one per module.

- `DeterminismCallback` (`determinism_callback`) makes `fit` check its own
  reproducibility: it turns on deterministic kernels, audits the run, records
  fingerprints of the training state into a trace file as training goes,
  and, given the trace of an earlier run, stops at the first step where this
  run differs from it.
- `ExactBackupAndRestore` (`exact_backup_and_restore`) makes a run that was
  killed and started again finish bit-identical to one that never stopped;
  its file format is in `backup_file`.
"""

from keras_repro.callbacks.determinism_callback import DeterminismCallback
from keras_repro.callbacks.exact_backup_and_restore import ExactBackupAndRestore
from keras_repro.trace import NondeterminismWarning

__all__ = ["DeterminismCallback", "ExactBackupAndRestore", "NondeterminismWarning"]
