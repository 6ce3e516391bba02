"""Atomic file writes and versioned JSON documents.

Every file keras_repro writes (traces, manifests, RNG states, backups, sweep
results) goes through here: written to a temporary file in the same folder,
flushed and fsynced, then renamed over the target, so a crash or a kill never
leaves a half-written file under the real name. JSON documents carry a
``"format"`` name and a ``"version"`` number; readers check both and raise
`ValueError` naming the file and what was expected.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Union

PathLike = Union[str, "os.PathLike[str]"]


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Writes `data` to `path` atomically (temp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: folders cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_document(path: PathLike, kind: str, version: int, body: dict[str, Any]) -> None:
    """Atomically writes a versioned JSON document ``{"format", "version", **body}``."""
    document = {"format": kind, "version": version, **body}
    text = json.dumps(document, indent=1, sort_keys=True, allow_nan=False)
    atomic_write_bytes(path, text.encode("utf-8") + b"\n")


def read_document(path: PathLike, kind: str, versions: tuple[int, ...]) -> dict[str, Any]:
    """Reads a document written by `write_document`, checking format and version.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is empty, not JSON, of another format, or of a
            version not in `versions`; the message names the file.
    """
    path = Path(path)
    raw = path.read_bytes()
    if not raw.strip():
        raise ValueError(f"{path}: the file is empty; expected a {kind} document.")
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a valid {kind} document (corrupt or truncated JSON: {e}).") from None
    if not isinstance(document, dict) or document.get("format") != kind:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise ValueError(f"{path}: expected a {kind} document, found format {found!r}.")
    if document.get("version") not in versions:
        raise ValueError(
            f"{path}: {kind} version {document.get('version')!r} is not supported "
            f"(supported: {', '.join(map(str, versions))})."
        )
    return document
