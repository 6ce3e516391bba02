"""Finding the TensorFlow module without paying for its import unless asked."""

from __future__ import annotations

import contextlib
import sys
from types import ModuleType


def tensorflow_module(import_it: bool) -> ModuleType | None:
    """TensorFlow if already imported (or, with `import_it`, if installed), else None.

    Code that only inspects TF state uses ``import_it=False``: if TF was
    never imported, nothing in this process has used it.
    """
    if import_it and "tensorflow" not in sys.modules:
        with contextlib.suppress(ImportError):
            import tensorflow  # noqa: F401
    return sys.modules.get("tensorflow")
