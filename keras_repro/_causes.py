"""Which evidence can explain which kind of divergence, and how it is told.

A divergence (`keras_repro.divergence`) names only causes its records
support: the audit findings the reference run recorded, and the manifest
differences between the runs, each filtered by the kind of divergence (op
determinism cannot explain different initial weights; a data divergence is
not explained by kernels) and listed most specific first.
"""

from __future__ import annotations

from typing import Any

from keras_repro.manifest import ManifestDifference

__all__ = ["explains", "explanation", "relevant_findings", "relevant_manifest", "scheduling_dependent"]

_SHOWN = 5  # findings and differences shown in a message

# Manifest keys that only steer kernels run during training: they cannot
# explain different initial weights (initializers are stateless RNG kernels).
_KERNEL_ONLY_KEYS = (
    "tensorflow.threads",
    "tensorflow.op_determinism",
    "tensorflow.tf32",
    "determinism",
    "cpu.count",
    "cpu.affinity",
    "env.TF_DETERMINISTIC_OPS",
    "env.TF_CUDNN_DETERMINISTIC",
    "env.TF_CUDNN_USE_AUTOTUNE",
    "env.OMP_NUM_THREADS",
    "env.MKL_NUM_THREADS",
    "env.OPENBLAS_NUM_THREADS",
    "env.TF_NUM_INTRAOP_THREADS",
    "env.TF_NUM_INTEROP_THREADS",
    "env.CUBLAS_WORKSPACE_CONFIG",
    "env.NVIDIA_TF32_OVERRIDE",
)

# Which audit findings can explain which kind of divergence, the most specific
# first: a divergence lists the findings in this order.
_FINDINGS_EXPLAIN: dict[str, tuple[str, ...]] = {
    "start": ("unseeded-initializer", "shared-initializer", "root-seed-unset", "hashseed-unset"),
    "data": (
        "array-shuffle-unseeded",
        "data-unseeded-shuffle",
        "data-unseeded-random",
        "data-random-generator",
        "data-parallel-random",
        "data-random-layers",
        "data-nondeterministic-order",
        "root-seed-unset",
        "hashseed-unset",
    ),
    "step": (
        "gpu-no-deterministic-kernel",
        "op-determinism-off",
        "jit-compile",
        "unseeded-seed-generator",
        "env-changed-after-start",
        "env-missing-at-start",
        "root-seed-unset",
        "hashseed-unset",
    ),
    "rng": ("unseeded-seed-generator", "root-seed-unset", "hashseed-unset"),
    "length": (),
}


# Findings whose effect depends on thread scheduling: runs that agree can have
# agreed by chance, so a reproducible verdict says so.
_SCHEDULING_DEPENDENT = ("data-parallel-random", "gpu-no-deterministic-kernel")


def scheduling_dependent(findings: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
    """The warning and error findings whose effect changes with thread scheduling.

    Two runs can agree in spite of them (the threads happened to run in the
    same order), so their agreement does not show the next run will agree.
    """
    return tuple(f for f in findings if f.get("severity") != "info" and f.get("code") in _SCHEDULING_DEPENDENT)


def explains(code: str, kind: str) -> bool:
    """Whether an audit finding with `code` can explain a divergence of `kind`.

    Codes this module does not know (a newer audit's) are not offered.
    """
    return code in _FINDINGS_EXPLAIN.get(kind, ())


def relevant_findings(findings: tuple[dict[str, Any], ...], kind: str) -> tuple[dict[str, Any], ...]:
    """The warning and error findings that can explain `kind`, the most specific first."""
    order = _FINDINGS_EXPLAIN.get(kind, ())
    relevant = [f for f in findings if f.get("severity") != "info" and f.get("code") in order]
    return tuple(sorted(relevant, key=lambda f: order.index(f["code"])))


def relevant_manifest(differences: tuple[ManifestDifference, ...], kind: str) -> tuple[ManifestDifference, ...]:
    if kind != "start":
        return differences
    return tuple(d for d in differences if not d.key.startswith(_KERNEL_ONLY_KEYS))


def explanation(differences: tuple[ManifestDifference, ...], findings: tuple[dict[str, Any], ...]) -> str:
    parts = []
    if findings:
        listed = "; ".join(
            f"{f['code']}{' [' + f['subject'] + ']' if f.get('subject') else ''}: {f['what']} Fix: {f['fix']}"
            for f in findings[:_SHOWN]
        )
        parts.append(f" Found in the run that can explain it: {listed}")
    if differences:
        shown = "; ".join(str(d) for d in differences[:_SHOWN])
        more = f" (and {len(differences) - _SHOWN} more)" if len(differences) > _SHOWN else ""
        parts.append(f" Environment differences that can explain it: {shown}{more}.")
    if not parts:
        return (
            " The two runs' manifests agree on everything that can change results, and the audit "
            "found no cause of this kind, so it is inside the run: nondeterministic kernels or "
            "data pipeline, unseeded randomness, or a difference in code or data neither sees."
        )
    return "".join(parts)
