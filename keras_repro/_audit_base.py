"""What every audit check shares: `Finding`, `AuditError`, and the process facts they read.

The checks of the model (`keras_repro._audit_model`) and of the input
pipeline (`keras_repro._audit_data`) are pure functions of what they inspect
and of an `AuditContext`, which `keras_repro.audit.audit` fills in from the
process once.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import keras

__all__ = ["SEVERITIES", "AuditContext", "AuditError", "Finding", "drawn_from_seeded_stream"]

SEVERITIES = ("error", "warning", "info")


@dataclasses.dataclass(frozen=True)
class Finding:
    """One thing that can make a run not repeat, with why and the fix.

    Attributes:
        severity: ``"error"`` (runs will differ), ``"warning"`` (runs can
            differ, depending on something outside this process' control) or
            ``"info"`` (worth knowing; not a difference by itself).
        code: a stable short id, e.g. ``"hashseed-unset"``; filter on it.
        what: what is wrong.
        why: why it breaks reproducibility.
        fix: how to fix it.
        subject: what it is about, e.g. a layer path, when it is about one thing.
    """

    severity: str
    code: str
    what: str
    why: str
    fix: str
    subject: str | None = None

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"Invalid severity: {self.severity!r}. Allowed: {', '.join(SEVERITIES)}.")

    def __str__(self) -> str:
        about = f" [{self.subject}]" if self.subject else ""
        return f"{self.severity.upper()} {self.code}{about}: {self.what} Why: {self.why} Fix: {self.fix}"


class AuditError(RuntimeError):
    """Raised (by `DeterminismCallback(audit="raise")`) when the audit finds errors.

    Attributes:
        findings: the error-severity `Finding`s.
    """

    def __init__(self, findings: list[Finding]) -> None:
        lines = "\n".join(f"- {f}" for f in findings)
        super().__init__(f"The reproducibility audit found {len(findings)} error(s):\n{lines}")
        self.findings = list(findings)


@dataclasses.dataclass(frozen=True)
class AuditContext:
    """The facts about this process that the model and data checks depend on.

    Attributes:
        backend: the Keras backend's name.
        gpus: the GPU devices found.
        op_determinism: whether TF op determinism is on.
        tf_seed_set: whether TensorFlow's global seed is set.
        seeded_streams: the seeds Python's `random` was given by a recorded
            seeding call (`keras_repro.seed_everything`,
            `keras.utils.set_random_seed`).
        seeds_in_fit: whether the audited model's `fit` seeds the global
            streams itself (a `keras_repro.SeededModel`).
    """

    backend: str
    gpus: tuple[str, ...]
    op_determinism: bool
    tf_seed_set: bool
    seeded_streams: tuple[int, ...]
    seeds_in_fit: bool


_SEEDED_DRAWS = 4096  # how far into a seeded stream a generator's seed is looked for


def drawn_from_seeded_stream(generator: Any, streams: list[int]) -> bool:
    """Whether an unseeded generator's seed is one of the first draws of a seeded stream.

    Keras draws an unseeded generator's seed as ``random.randint(1, 10**9)``
    (as it does an unseeded initializer's). A seed found among the first
    draws of ``random.Random(s)`` for a recorded seeding `s` came from the
    seeded stream (by chance: about 4e-6), so it repeats in every run.
    """
    if not streams:
        return False
    seed = int(keras.ops.convert_to_numpy(generator.state.value)[0])
    for stream in streams:
        replay = random.Random(stream)
        if any(replay.randint(1, int(1e9)) == seed for _ in range(_SEEDED_DRAWS)):
            return True
    return False
