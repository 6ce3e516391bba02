"""What the processes keras-repro starts share: their environment and their log noise.

TensorFlow's C++ runtime writes start-up lines to stderr in every process
(absl's "All log messages before absl::InitializeLog() ...", oneDNN and CUDA
notices). Since TensorFlow 2.20 `TF_CPP_MIN_LOG_LEVEL` no longer silences the
ones written before logging is initialized, so they are filtered from what
keras-repro shows of a child's error output, unless the user set
`TF_CPP_MIN_LOG_LEVEL` themselves (then they see what they asked for).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from collections.abc import Mapping

__all__ = ["child_environment", "without_framework_logs"]

#: TensorFlow's C++ log level in the children, unless the caller sets one.
TF_LOG_LEVEL = "2"

_FRAMEWORK_LOG = re.compile(
    r"^(?:[IWE]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w.-]+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.)"
)


def child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment for a child, with `extra` on top and TF's log level defaulted."""
    return {"TF_CPP_MIN_LOG_LEVEL": TF_LOG_LEVEL, **os.environ, **extra}


def without_framework_logs(lines: Iterable[str]) -> list[str]:
    """`lines` less TensorFlow's C++ info, warning and error log lines (fatal ones are kept).

    Nothing is removed when the user set `TF_CPP_MIN_LOG_LEVEL` in this
    process's environment.
    """
    lines = list(lines)
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return lines
    return [line for line in lines if not _FRAMEWORK_LOG.match(line)]
