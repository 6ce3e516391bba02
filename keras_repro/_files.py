"""Atomic file writes and versioned JSON documents.

Every file keras_repro writes (traces, manifests, RNG states, backups, sweep
results) goes through here: written to a temporary file in the same folder,
flushed and fsynced, then renamed over the target, so a crash or a kill never
leaves a half-written file under the real name. JSON documents carry a
``"format"`` name and a ``"version"`` number; readers check both and raise
`ValueError` naming the file and what was expected.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any
from typing import Union

PathLike = Union[str, "os.PathLike[str]"]

_UMASK = os.umask(0o022)  # read the process umask (os.umask can only set it) ...
os.umask(_UMASK)  # ... and put it back


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Writes `data` to `path` atomically (temp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes 0600; give the file the usual mode
            os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # The data is on disk before the rename, so whatever survives a kill
        # or a power loss is a complete file: the old one or the new one. (An
        # fsync of the folder would only make the new name durable sooner.)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_figure(figure: Any, path: PathLike) -> None:
    """Saves a matplotlib `figure` to `path` atomically, in the format its suffix names (``.png`` if none).

    Raises:
        ValueError: matplotlib cannot write images of that suffix (nothing is written).
    """
    path = Path(path)
    suffix = path.suffix.lstrip(".").lower() or "png"
    supported = figure.canvas.get_supported_filetypes()
    if suffix not in supported:
        raise ValueError(
            f"plot file {str(path)!r}: matplotlib cannot write {suffix!r} images. "
            f"Allowed suffixes: {', '.join('.' + s for s in sorted(supported))}"
        )
    buffer = io.BytesIO()
    figure.savefig(buffer, format=suffix)
    atomic_write_bytes(path, buffer.getvalue())


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
    return parse_document(path.read_bytes(), kind, versions, str(path))


def parse_document(raw: bytes | str, kind: str, versions: tuple[int, ...], where: str) -> dict[str, Any]:
    """Parses and checks a versioned JSON document; errors name `where`."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{where}: not a valid {kind} document (not UTF-8: {e}).") from None
    if not raw.strip():
        raise ValueError(f"{where}: the file is empty; expected a {kind} document.")
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not a valid {kind} document (corrupt or truncated JSON: {e}).") from None
    if not isinstance(document, dict) or document.get("format") != kind:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise ValueError(f"{where}: expected a {kind} document, found format {found!r}.")
    if document.get("version") not in versions:
        raise ValueError(
            f"{where}: {kind} version {document.get('version')!r} is not supported "
            f"(supported: {', '.join(map(str, versions))})."
        )
    return document
