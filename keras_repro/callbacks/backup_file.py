"""The backup file of `ExactBackupAndRestore`: Keras' weights file plus the run state.

A backup is one HDF5 file, Keras' ``.weights.h5`` (loadable with
`model.load_weights`), whose attribute ``keras_repro_backup`` holds a JSON
document: format and version, the data position (epoch, step), the
optimizer step count, the model's weight signature, its RNG state and the
XXH3-128 of every stored array, so a truncated or corrupted file is
detected before anything is loaded from it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np
import xxhash

from keras_repro import _files, paths

BACKUP_FORMAT = "keras_repro.backup"
BACKUP_VERSION = 1


def iterations(model) -> int:
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        return 0
    return int(keras.ops.convert_to_numpy(optimizer.iterations))


def model_signature(model) -> list[list[Any]]:
    return [[path, list(v.shape), str(v.dtype)] for path, v in paths.weight_paths(model).items()]


def check_model_signature(model, document: dict[str, Any], where: Path) -> None:
    saved = {p: (shape, dtype) for p, shape, dtype in document["signature"]}
    current = {p: (shape, dtype) for p, shape, dtype in model_signature(model)}
    if saved == current:
        return
    missing = sorted(set(current) - set(saved))
    extra = sorted(set(saved) - set(current))
    changed = sorted(p for p in set(saved) & set(current) if saved[p] != current[p])
    raise ValueError(
        f"{where}: this backup is from a different model. Weights of this model missing "
        f"from the backup: {missing or 'none'}; in the backup but not in this model: "
        f"{extra or 'none'}; different shape or dtype: {changed or 'none'}. Nothing was "
        "restored; point backup_dir at this model's own backups."
    )


BACKUP_ATTRIBUTE = "keras_repro_backup"


def h5_digest(f) -> str:
    """XXH3-128 of every dataset in a Keras weights file (name, dtype, shape, bytes)."""
    digest = xxhash.xxh3_128()

    def visit(name, node):
        if isinstance(node, h5py.Dataset):
            value = np.ascontiguousarray(node[()])
            digest.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
            digest.update(value.tobytes())

    f.visititems(visit)
    return digest.hexdigest()


def seal_backup_file(path: Path, document: dict[str, Any]) -> None:
    """Adds the checksum of every array and the state `document` to a weights file, and fsyncs it."""
    with h5py.File(path, "r+") as f:
        document["weights_xxh3"] = h5_digest(f)
        f.attrs[BACKUP_ATTRIBUTE] = json.dumps(document, sort_keys=True)
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def read_backup_file(path: Path) -> dict[str, Any]:
    """The state document of a backup file, after checking the file is whole."""
    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get(BACKUP_ATTRIBUTE)
            if raw is None:
                raise ValueError(f"{path}: not a keras_repro backup (no {BACKUP_ATTRIBUTE} attribute).")
            document = _files.parse_document(raw, BACKUP_FORMAT, (BACKUP_VERSION,), str(path))
            if h5_digest(f) != document.get("weights_xxh3"):
                raise ValueError(f"{path}: the backup is corrupted (its weights fail their checksum).")
    except OSError as e:
        raise ValueError(f"{path}: the backup file cannot be read, it is corrupted or truncated ({e}).") from None
    return document
