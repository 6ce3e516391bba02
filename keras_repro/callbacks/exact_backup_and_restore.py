"""`ExactBackupAndRestore`: `BackupAndRestore` that resumes bit for bit."""

from __future__ import annotations

import concurrent.futures
import os
import threading
import uuid
import warnings
from pathlib import Path
from typing import Any

import keras

from keras_repro import _compat
from keras_repro import _validate
from keras_repro import _warnings
from keras_repro import data_fingerprint
from keras_repro import step_digest
from keras_repro.callbacks.backup_file import BACKUP_FORMAT
from keras_repro.callbacks.backup_file import BACKUP_VERSION
from keras_repro.callbacks.backup_file import build_optimizers
from keras_repro.callbacks.backup_file import check_model_signature
from keras_repro.callbacks.backup_file import ensure_built
from keras_repro.callbacks.backup_file import model_signature
from keras_repro.callbacks.backup_file import optimizer_references
from keras_repro.callbacks.backup_file import read_backup_file
from keras_repro.callbacks.backup_file import seal_backup_file
from keras_repro.callbacks.backup_file import verify_restored
from keras_repro.fingerprint import fingerprint_details
from keras_repro.fingerprint import tracked_variables
from keras_repro.seeds import ReproducibilityWarning
from keras_repro.state import ResumePoint
from keras_repro.state import check_model_rng_state
from keras_repro.state import get_resume_point
from keras_repro.state import mid_epoch_resumable
from keras_repro.state import model_rng_state
from keras_repro.state import set_model_rng_state
from keras_repro.state import set_resume_point

__all__ = ["ExactBackupAndRestore"]

# The backup being published in this process, by folder. A `fit` that ends by
# an exception (a callback raising KeyboardInterrupt, say) does not reach
# `on_train_end`, so nothing waits for its last publication: a callback that
# reads the same folder later in this process (a new `fit`, usually with a new
# callback) must wait for it, or it could read the document of the previous
# backup and then load the weights of the one renamed over it meanwhile.
_IN_FLIGHT: dict[Path, concurrent.futures.Future] = {}
_IN_FLIGHT_LOCK = threading.Lock()


def _folder_key(backup_dir: Path) -> Path:
    return Path(os.path.abspath(backup_dir))


def _forget(key: Path, future: concurrent.futures.Future) -> None:
    with _IN_FLIGHT_LOCK:
        if _IN_FLIGHT.get(key) is future:
            del _IN_FLIGHT[key]


class ExactBackupAndRestore(keras.callbacks.Callback):
    """`keras.callbacks.BackupAndRestore` that resumes bit for bit.

    Keras' callback backs up the weights and the epoch number only. A run
    resumed from it restarts every layer `SeedGenerator` (Dropout,
    GaussianNoise, random augmentation ...) at its first state, so it replays
    the first epochs' masks, and with an integer `save_freq` it restarts the
    interrupted epoch from its first batch on mid-epoch weights. This
    callback also saves and restores:

    - every layer seed generator, keyed by its stable path
      (`keras_repro.paths`), and the global RNG streams;
    - the optimizer state (with the weights) and the data position: the
      epoch and the number of batches of it already trained. A
      `keras_repro.SeededModel` trained on arrays resumes its epoch-keyed
      data stream at exactly that batch.

    A backup is one file, ``backup_dir/backup.weights.h5``: Keras' weights
    file (with the optimizer state) carrying the rest in an HDF5 attribute,
    with a checksum of every stored array. It is written under a temporary
    name, then checksummed, fsynced and renamed on a background thread while
    training goes on (the next backup, the end of `fit`, and a later restore
    from the same folder in this process wait for it), so a kill at any point
    leaves the previous backup whole. A corrupted backup, one from a
    different model, or a mid-epoch backup that this model and input cannot
    resume exactly raises `ValueError` when training starts and
    changes nothing, on disk or in the model.

    Resuming mid-epoch (an integer `save_freq`) needs a `SeededModel`
    trained on in-memory arrays with ``shuffle=True``; for other models and
    inputs use ``save_freq="epoch"`` (an integer `save_freq` then raises a
    `ValueError` at the start of `fit` rather than resume inexactly).

    Args:
        backup_dir: folder for the backup files (created if missing).
        save_freq: ``"epoch"``, or a number of batches between backups.
        double_checkpoint: also keep the previous backup, and fall back to it
            (with a warning) when the latest one cannot be read.
        delete_checkpoint: remove the backup files when `fit` completes.

    Example:

    ```python
    import numpy as np
    import keras
    import keras_repro as kr

    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(1)(keras.layers.Dropout(0.2)(inputs))
    model = kr.SeededModel(inputs, outputs, seed=42)
    model.compile("adam", "mse")
    x, y = np.ones((64, 4)), np.ones((64, 1))
    # Killed and started again, this script finishes with the same weights.
    model.fit(x, y, epochs=3, verbose=0,
              callbacks=[kr.callbacks.ExactBackupAndRestore("/tmp/backup", save_freq=1)])
    ```
    """

    def __init__(
        self,
        backup_dir: str | os.PathLike,
        save_freq: str | int = "epoch",
        double_checkpoint: bool = False,
        delete_checkpoint: bool = True,
    ) -> None:
        super().__init__()
        self.backup_dir = _validate.check_path("backup_dir", backup_dir)
        if save_freq != "epoch" and not (_validate.is_integer(save_freq) and save_freq >= 1):
            raise _validate.value_error("save_freq", save_freq, "Expected 'epoch' or a positive number of batches")
        self.save_freq = save_freq if save_freq == "epoch" else int(save_freq)
        self.double_checkpoint = _validate.check_bool("double_checkpoint", double_checkpoint)
        self.delete_checkpoint = _validate.check_bool("delete_checkpoint", delete_checkpoint)
        self._restored_for: int | None = None  # id of the model restored by restore_before_fit
        self._publisher: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: concurrent.futures.Future | None = None
        self._epoch = 0
        self._since_save = 0
        self._last_batch = -1
        if save_freq != "epoch":
            self.on_train_batch_end = self._batch_end

    # --- paths ------------------------------------------------------------------

    @property
    def _latest_path(self) -> Path:
        return self.backup_dir / "backup.weights.h5"

    @property
    def _previous_path(self) -> Path:
        return self.backup_dir / "backup.previous.weights.h5"

    # --- restore ----------------------------------------------------------------

    def restore_before_fit(self, model) -> ResumePoint | None:
        """Restores the latest backup into `model`; returns where to resume.

        `keras_repro.SeededModel.fit` calls this before training starts (so it
        can start the data stream at the right batch); for other models it
        runs at the start of `fit`.
        """
        self._restored_for = id(model)
        self._wait()
        found = self._read_backup()
        if found is None:
            return None
        path, document = found
        if document["step"] > 0 and not mid_epoch_resumable(model):
            raise ValueError(
                f"{path}: this backup was taken after {document['step']} batches of epoch "
                f"{document['epoch']}, and only a keras_repro.SeededModel trained on in-memory "
                "arrays with shuffle=True can resume there exactly. Nothing was restored."
            )
        check_model_signature(model, document, path)
        try:
            check_model_rng_state(model, document["rng"])
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        ensure_built(model)
        build_optimizers(model, document["optimizers"], path)
        self._load_exactly(model, path, document)
        return ResumePoint(document["epoch"], document["step"], document["iterations"])

    @staticmethod
    def _load_exactly(model, path: Path, document: dict[str, Any]) -> None:
        """Loads the backup, verifies every variable, and undoes the load if one is off."""
        tracked = tracked_variables(model)
        before = {p: keras.ops.convert_to_numpy(v) for p, v in tracked.items()}
        rng_before = model_rng_state(model)
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            model.load_weights(path)
        set_model_rng_state(model, document["rng"])
        try:
            verify_restored(model, document["variables"], path, "; ".join(str(w.message) for w in said))
        except ValueError:
            for p, variable in tracked.items():
                variable.assign(before[p])
            set_model_rng_state(model, rng_before)
            raise
        data_fingerprint.restore_state(model, document["data_digest"])
        step_digest.restore_state(model, document.get("step_digests"))  # absent from older backups
        for w in said:  # Keras' own warnings about the loading, as it gave them
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    def _read_backup(self) -> tuple[Path, dict[str, Any]] | None:
        candidates = [self._latest_path] + ([self._previous_path] if self.double_checkpoint else [])
        first_error = None
        for path in candidates:
            if not path.exists():
                continue
            try:
                document = read_backup_file(path)
            except ValueError as e:
                first_error = first_error or e
                continue
            if first_error is not None:
                _warnings.warn(
                    f"The latest backup could not be read ({first_error}); resuming from the previous one.",
                    ReproducibilityWarning,
                )
            return path, document
        if first_error is not None:
            raise first_error
        return None

    def on_train_begin(self, logs=None):
        model = self.model
        if self.save_freq != "epoch" and not mid_epoch_resumable(model):
            raise ValueError(
                f"ExactBackupAndRestore(save_freq={self.save_freq}) backs up in the middle of "
                "epochs, and only a keras_repro.SeededModel trained on in-memory arrays with "
                "shuffle=True can resume there exactly. Use save_freq='epoch' for this model."
            )
        if self._restored_for != id(model):  # not restored by SeededModel.fit
            point = self.restore_before_fit(model)
            set_resume_point(model, point)
            if point is not None:
                _compat.set_initial_epoch(model, point.epoch)  # how Keras' BackupAndRestore resumes
        self._restored_for = None
        point = get_resume_point(model)
        self._epoch = point.epoch if point is not None else 0
        self._since_save = 0

    # --- save -------------------------------------------------------------------

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._last_batch = -1

    def _batch_end(self, batch, logs=None):
        done = batch - self._last_batch
        self._last_batch = batch
        self._since_save += done
        steps = (self.params or {}).get("steps")
        if self._since_save >= self.save_freq and not (steps and batch + 1 >= steps):
            self._save(self._epoch, batch + 1)  # the epoch's end saves itself (on_epoch_end)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch" or self._since_save >= self.save_freq:
            self._save(epoch + 1, 0)

    def _save(self, epoch: int, step: int) -> None:
        self._wait()  # one backup at a time, in order
        model = self.model
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        # One file per backup: Keras' weights file (optimizer included) with
        # the state in an attribute. It is written under a temporary name and
        # published (checksummed, fsynced, renamed) on a background thread
        # while training goes on: a kill at any point leaves the previous
        # backup whole, and training waits only for the weights to be copied.
        temporary = self.backup_dir / f".tmp-{uuid.uuid4().hex[:16]}.weights.h5"
        ensure_built(model)
        try:
            model.save_weights(temporary)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        details = fingerprint_details(model)
        document = {
            "format": BACKUP_FORMAT,
            "version": BACKUP_VERSION,
            "epoch": epoch,
            "step": step,
            "iterations": details.iterations or 0,
            "signature": model_signature(model),
            "rng": model_rng_state(model),
            "optimizers": optimizer_references(model),
            "variables": details.variables,
            "data_digest": data_fingerprint.peek_state(model),
            "step_digests": step_digest.peek_state(model),
        }
        if self._publisher is None:
            self._publisher = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="keras_repro-backup")
        self._pending = self._publisher.submit(self._publish, temporary, document)
        key = _folder_key(self.backup_dir)
        with _IN_FLIGHT_LOCK:
            _IN_FLIGHT[key] = self._pending
        self._pending.add_done_callback(lambda future: _forget(key, future))
        self._since_save = 0

    def _publish(self, temporary: Path, document: dict[str, Any]) -> None:
        try:
            seal_backup_file(temporary, document)
            if self.double_checkpoint and self._latest_path.exists():
                os.replace(self._latest_path, self._previous_path)
            os.replace(temporary, self._latest_path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def _wait(self) -> None:
        """Waits until the last backup is published; raises its error, if any.

        Also waits for a backup to the same folder that another fit (or
        another callback) of this process left being published; its error,
        if any, is not this callback's to raise (the previous backup is then
        whole and is the latest).
        """
        pending, self._pending = self._pending, None
        with _IN_FLIGHT_LOCK:
            other = _IN_FLIGHT.get(_folder_key(self.backup_dir))
        if other is not None and other is not pending:
            concurrent.futures.wait([other])
        if pending is not None:
            pending.result()

    def on_train_end(self, logs=None):
        self._wait()
        set_resume_point(self.model, None)
        if not self.delete_checkpoint:
            return
        for path in [self._latest_path, self._previous_path, *self.backup_dir.glob(".tmp-*.weights.h5")]:
            path.unlink(missing_ok=True)
        try:
            self.backup_dir.rmdir()
        except OSError:
            pass  # not empty: other files are not ours to delete

    def get_config(self) -> dict[str, Any]:
        return {
            "backup_dir": os.fspath(self.backup_dir),
            "save_freq": self.save_freq,
            "double_checkpoint": self.double_checkpoint,
            "delete_checkpoint": self.delete_checkpoint,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ExactBackupAndRestore:
        return cls(**config)
