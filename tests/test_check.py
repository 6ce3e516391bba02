"""`CheckResult.summary`: what a verdict says about the evidence behind it."""

from keras_repro.check import CheckResult


def _finding(code, severity="warning"):
    return {"severity": severity, "code": code, "what": f"{code} found.", "fix": "Fix it.", "subject": None}


def _reproducible(findings):
    return CheckResult(
        script="train.py",
        runs=2,
        reproducible=True,
        records_compared=4,
        fits=1,
        final_fingerprint="0" * 32,
        diverging_run=None,
        divergence=None,
        findings=tuple(findings),
        folder=None,
    )


def test_agreement_over_scheduling_dependent_randomness_carries_a_caution():
    summary = _reproducible([_finding("op-determinism-off"), _finding("data-parallel-random")]).summary()
    lines = summary.splitlines()
    assert lines[0].startswith("reproducible: 2 runs of train.py")
    assert lines[1].startswith("  caution: ") and "(data-parallel-random)" in lines[1]
    assert "WARNING data-parallel-random: data-parallel-random found. Fix: Fix it." in summary


def test_no_caution_without_a_scheduling_dependent_finding():
    for findings in ([], [_finding("op-determinism-off")], [_finding("data-parallel-random", severity="info")]):
        assert "caution" not in _reproducible(findings).summary()
