"""Run code in fresh Python processes and collect a JSON result from each.

Reproducibility claims are checked between processes: the failures users hit
(construction order, auto-name counters, hash randomization, lazily created
generators) do not show up when both runs share one interpreter. Every test
that claims "the same in two runs" uses `run_python` / `run_pythons` here.

The child code calls `emit(obj)` once; `run_python` returns `obj` after a
JSON round trip. Children run in parallel where several are given (the
machine has 2 cores and most of a child's time is importing TensorFlow).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

MARKER = "@@KERAS_REPRO_RESULT@@"

_PRELUDE = f"""
import json as _json, sys as _sys
def emit(obj):
    _sys.stdout.write({MARKER!r} + _json.dumps(obj) + "\\n")
    _sys.stdout.flush()
"""

# Variables that would leak state from the test process into the children.
_SCRUBBED = ("KERAS_REPRO_SEED", "PYTHONHASHSEED", "TF_DETERMINISTIC_OPS")


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child: quiet TF, the test run's backend (TensorFlow by default), no inherited seeds."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED and not k.startswith("KERAS_REPRO_")}
    env.update(
        {
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "tensorflow"),
            "PYTHONWARNINGS": "ignore::DeprecationWarning",
        }
    )
    if extra:
        env.update(extra)
    return env


def _start(code: str, env: Mapping[str, str] | None, cwd: str | None) -> subprocess.Popen:
    source = _PRELUDE + textwrap.dedent(code)
    return subprocess.Popen(
        [sys.executable, "-c", source],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(env),
        cwd=cwd,
    )


def _collect(proc: subprocess.Popen, timeout: float) -> Any:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"child timed out after {timeout}s\nstdout:\n{out}\nstderr:\n{err[-4000:]}") from None
    results = [line[len(MARKER) :] for line in out.splitlines() if line.startswith(MARKER)]
    if proc.returncode != 0 or len(results) != 1:
        raise AssertionError(
            f"child failed (exit {proc.returncode}, {len(results)} results)\n"
            f"stdout:\n{out[-4000:]}\nstderr:\n{err[-4000:]}"
        )
    return json.loads(results[0])


def run_python(
    code: str,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    timeout: float = 300,
) -> Any:
    """Runs `code` in a fresh interpreter and returns what it `emit`ted."""
    return _collect(_start(code, env, cwd), timeout)


def run_pythons(
    codes: Sequence[str],
    envs: Sequence[Mapping[str, str] | None] | None = None,
    cwd: str | None = None,
    timeout: float = 300,
) -> list[Any]:
    """Runs several children at once; returns their results in order."""
    envs = list(envs) if envs is not None else [None] * len(codes)
    procs = [_start(code, env, cwd) for code, env in zip(codes, envs)]
    return [_collect(p, timeout) for p in procs]


def run_twice(code: str, envs: Sequence[Mapping[str, str] | None] | None = None, **kwargs) -> list[Any]:
    """Runs the same code in two separate processes (optionally with two envs)."""
    return run_pythons([code, code], envs=envs or [None, None], **kwargs)


def keras_older_than(major: int, minor: int) -> bool:
    """Whether the installed Keras is older than `major.minor` (read without importing Keras)."""
    from importlib.metadata import version

    return tuple(int(part) for part in version("keras").split(".")[:2]) < (major, minor)
