"""The backup file of `ExactBackupAndRestore`: Keras' weights file plus the run state.

A backup is one HDF5 file, Keras' ``.weights.h5`` (loadable with
`model.load_weights`), whose attribute ``keras_repro_backup`` holds a JSON
document: format and version, the data position (epoch, step), the
optimizer step count, the model's weight signature, its RNG state and the
XXH3-128 of every stored array, so a truncated or corrupted file is
detected before anything is loaded from it.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import xxhash

from keras_repro import _compat
from keras_repro import _files
from keras_repro import paths
from keras_repro.fingerprint import fingerprint_variables

BACKUP_FORMAT = "keras_repro.backup"
BACKUP_VERSION = 2


def ensure_built(model) -> None:
    """Marks `model` built when all its layers are, as Keras' weights files require.

    A model without its own `call`, such as the Keras examples' GAN with a
    custom `train_step`, is never marked built by Keras, although every
    sub-model it trains is; its weights can be saved and loaded all the same.

    Raises:
        ValueError: a layer of the model is not built yet.
    """
    if model.built:
        return
    unbuilt = [path for path, layer in paths.layer_paths(model).items() if path and not layer.built]
    if unbuilt or len(paths.layer_paths(model)) == 1:
        raise ValueError(
            f"The model {model.name!r} is not built (unbuilt layers: {unbuilt[:5] or 'all'}), so its "
            "weights cannot be backed up or restored. Build it (model.build(input_shape), or call it "
            "on a batch) before fit."
        )
    model.built = True


def optimizer_references(model) -> dict[str, list[str] | None]:
    """For every optimizer of `model`, the weight paths it was built for, in its order.

    None for an optimizer that is not built yet. Keras stores an optimizer's
    variables by position, so an unbuilt optimizer must be built for the same
    weights in the same order before its state can be loaded
    (`build_optimizers`).
    """
    path_of = {id(v): p for p, v in paths.weight_paths(model).items()}
    references: dict[str, list[str] | None] = {}
    for name, optimizer in paths.optimizer_paths(model).items():
        if not optimizer.built:
            references[name] = None
            continue
        built_for = _compat.optimizer_built_for(optimizer)
        unknown = [v.path for v in built_for if id(v) not in path_of]
        if unknown:
            raise ValueError(
                f"The optimizer {name!r} updates variables that are not weights of the model "
                f"({unknown[:5]}): its state cannot be backed up by weight path."
            )
        references[name] = [path_of[id(v)] for v in built_for]
    return references


def build_optimizers(model, references: dict[str, list[str] | None], where: Path) -> None:
    """Builds each unbuilt optimizer of `model` for the weights it had in the backup.

    Raises:
        ValueError: the backup's optimizers are not the model's (other paths,
            or weights the model does not have); nothing is built then.
    """
    optimizers = paths.optimizer_paths(model)
    weights = paths.weight_paths(model)
    if set(references) != set(optimizers):
        raise ValueError(
            f"{where}: the backup's optimizers {sorted(references)} are not this model's "
            f"{sorted(optimizers)}. Nothing was restored; point backup_dir at this model's own backups."
        )
    plan = []
    for name, refs in references.items():
        optimizer = optimizers[name]
        if refs is None or optimizer.built:
            continue
        missing = [r for r in refs if r not in weights]
        if missing:
            raise ValueError(
                f"{where}: the optimizer {name!r} was built for weights this model does not "
                f"have: {missing[:5]}. Nothing was restored."
            )
        plan.append((optimizer, [weights[r] for r in refs]))
    # Under a tf.distribute strategy the slots must be mirrored like the
    # weights: build them in the model's strategy scope, as fit does.
    strategy = getattr(model, "distribute_strategy", None)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        for optimizer, variables in plan:
            optimizer.build(variables)


def verify_restored(model, expected: dict[str, str], where: Path, notes: str = "") -> None:
    """Raises `ValueError` unless every variable of `model` holds its backed-up value.

    Args:
        model: the model after loading.
        expected: ``{path: digest}`` of every tracked variable at the backup
            (`keras_repro.fingerprint.fingerprint_variables`).
        where: the backup file, for the message.
        notes: what Keras said while loading (its warnings), for the message.
    """
    restored = fingerprint_variables(model)
    missing = [p for p in expected if p not in restored]
    extra = [p for p in restored if p not in expected]
    wrong = [p for p in expected if p in restored and restored[p] != expected[p]]
    if not (missing or extra or wrong):
        return
    parts = []
    if wrong:
        parts.append(f"not restored to their backed-up values: {wrong[:8]}")
    if missing:
        parts.append(f"in the backup but not in this model: {missing[:8]}")
    if extra:
        parts.append(f"in this model but not in the backup: {extra[:8]}")
    said = f" Keras said while loading: {notes}" if notes else ""
    raise ValueError(
        f"{where}: the resume would not be exact, so it was refused and the model was left "
        f"as it was. Variables {'; '.join(parts)}.{said}"
    )


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
