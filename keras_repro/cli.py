"""The ``keras-repro`` command: check, demo, env, diff, sweep.

Exit status: 0 success (``check``: reproducible), 1 ``check``: not
reproducible (``diff``: the files differ in what can change results),
2 usage errors, unreadable files, or a checked script that failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from keras_repro import _validate

__all__ = ["main"]

EXIT_OK, EXIT_DIFFERENT, EXIT_USAGE = 0, 1, 2


class _UsageError(Exception):
    """Bad command line or unreadable input: one line on stderr, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one clear line instead of argparse's usage block
        raise _UsageError(f"{message} (see `{self.prog} --help`)")


def _every(value: str):
    try:
        return _validate.check_every(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"invalid value {value!r}: {e}") from None


def _runs(value: str) -> int:
    try:
        return _validate.check_int("runs", int(value) if value.isdigit() else value, minimum=2)
    except (TypeError, ValueError) as e:
        raise argparse.ArgumentTypeError(f"invalid value {value!r}: {e}") from None


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="keras-repro", description="Make Keras training runs repeat bit for bit, and prove it.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    check = sub.add_parser(
        "check",
        help="run a training script several times and say whether it is reproducible",
        description="Runs SCRIPT (unmodified) --runs times in fresh processes with PYTHONHASHSEED=0, "
        "records every model.fit with a DeterminismCallback, and compares the runs. "
        "Exit 0: reproducible; 1: not reproducible (the first divergence is shown); "
        "2: usage error or the script failed.",
    )
    check.add_argument("script", help="the training script")
    check.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the script")
    check.add_argument("--runs", type=_runs, default=2, help="number of runs to compare (default 2)")
    check.add_argument(
        "--every", type=_every, default="epoch", help="record every epoch (default), batch, or N batches"
    )
    check.add_argument("--keep", metavar="DIR", help="keep the traces and the script's output in DIR")
    check.add_argument(
        "--locate",
        action="store_true",
        help="when the runs differ, run the script again to find where the difference enters "
        "(the data, a layer's forward or backward pass, the optimizer)",
    )
    check.add_argument(
        "--deterministic",
        action="store_true",
        help="start every run with deterministic kernels on (TF_DETERMINISTIC_OPS, XLA_FLAGS, "
        "CUBLAS_WORKSPACE_CONFIG in its environment; the backend's switch at each fit)",
    )

    demo = sub.add_parser(
        "demo",
        help="show plain Keras vs keras_repro on a small model, in fresh processes",
        description="Trains a small MLP several times in fresh processes: plain Keras gives a different "
        "error each time; as a keras_repro.SeededModel, identical errors and fingerprints.",
    )
    demo.add_argument("--runs", type=_runs, default=3, help="runs of each kind (default 3)")

    env = sub.add_parser(
        "env",
        help="print this machine's manifest and the audit findings",
        description="Prints the environment manifest (versions, devices, CPU, env vars, "
        "determinism status) and the audit findings for this process.",
    )
    env.add_argument("--json", action="store_true", help="print JSON instead of text")

    diff = sub.add_parser(
        "diff",
        help="compare two manifests or two traces",
        description="Compares two manifests (keras-repro env --json, or write_manifest) "
        "or two traces (DeterminismCallback). Exit 0: nothing that can change results "
        "differs; 1: something does.",
    )
    diff.add_argument("a")
    diff.add_argument("b")
    diff.add_argument(
        "--plot",
        metavar="IMAGE",
        help="for traces that differ, draw how far apart the runs are at each record "
        "(relative difference of the variables' norms; needs matplotlib) to IMAGE (.png, .svg, .pdf)",
    )
    sweep = sub.add_parser(
        "sweep",
        help="run a seed sweep as array-job shards, merge them, report the result",
        description="A seed sweep split into shards, one per task of an array job (SLURM, Kubernetes "
        "Indexed Job, PBS, LSF); see docs/sweeps.md.",
    )
    steps = sweep.add_subparsers(dest="step", metavar="STEP", parser_class=_Parser)
    steps.required = True
    run = steps.add_parser(
        "run",
        help="run the seeds of one shard into a result folder",
        description="Runs the seeds of shard INDEX of SHARDS of the sweep over SEEDS seeds derived from "
        "ROOT_SEED, calling MODULE:FUNCTION(seed) for each; one result file per finished seed in OUT/seeds/. "
        "Seeds already finished are skipped; a seed's backup folder (OUT/backups/SEED) is in "
        "KERAS_REPRO_SWEEP_BACKUP_DIR while it runs. Exit 0 when the shard finished (failed seeds included).",
    )
    run.add_argument(
        "function", metavar="MODULE:FUNCTION", help="the function fn(seed) -> metric, e.g. experiments:train"
    )
    run.add_argument("--seeds", type=int, required=True, help="number of seeds of the whole sweep")
    run.add_argument("--root-seed", type=int, default=0, help="root of the derived seeds (default 0)")
    run.add_argument("--shards", type=int, required=True, help="number of shards (array tasks)")
    run.add_argument(
        "--index",
        type=int,
        help="this shard, 0-based (default: the scheduler's array index: SLURM_ARRAY_TASK_ID, "
        "JOB_COMPLETION_INDEX, PBS_ARRAY_INDEX, PBS_ARRAYID, LSB_JOBINDEX - 1)",
    )
    run.add_argument("--out", required=True, help="the result folder, shared by all shards")
    run.add_argument(
        "--threads",
        type=int,
        help="framework threads of this task (default: its usable cores: CPU affinity, capped by a cgroup "
        "CPU quota and SLURM_CPUS_PER_TASK); set before the function's module is imported",
    )
    merge = steps.add_parser(
        "merge",
        help="merge a result folder into one result file",
        description="Reads OUT/seeds/*.json into a sweep result (SweepResult.save format). Exit 0 when "
        "every seed has a result, 1 when some are missing.",
    )
    merge.add_argument("out", help="the result folder")
    merge.add_argument("-o", "--output", required=True, help="the result file to write (.json)")
    report = steps.add_parser(
        "report", help="print a sweep result's summary", description="Prints the summary of every metric."
    )
    report.add_argument("result", help="a result file (keras-repro sweep merge, or SweepResult.save)")
    report.add_argument("--plot", metavar="IMAGE", help="also draw each metric's per-seed values to IMAGE")
    return parser


def _progress(line: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {line}", file=sys.stderr, flush=True)


def _cmd_check(args) -> int:
    from keras_repro.check import ScriptError
    from keras_repro.check import check_script

    try:
        result = check_script(
            args.script,
            args.args,
            runs=args.runs,
            every=args.every,
            keep=args.keep,
            progress=_progress,
            locate=args.locate,
            deterministic=args.deterministic,
        )
    except (FileNotFoundError, PermissionError, ValueError) as e:
        raise _UsageError(str(e)) from None
    except ScriptError as e:
        print(f"keras-repro check: {e}; its error output:", file=sys.stderr)
        print(e.output.rstrip() or "(none)", file=sys.stderr)
        return EXIT_USAGE
    print(result.summary())
    return EXIT_OK if result.reproducible else EXIT_DIFFERENT


def _cmd_demo(args) -> int:
    from keras_repro.demo import run_demo

    print(f"Training a small MLP {args.runs} times each way, every run in a fresh process...", flush=True)
    runs = run_demo(args.runs, on_run=lambda r: _progress(f"{r.kind} run {r.run} done"))
    print(f"\n{'model':<14} {'run':>3}  {'final loss':>14}  fingerprint")
    for r in runs:
        print(f"{r.kind:<14} {r.run:>3}  {r.loss:>14.10f}  {r.fingerprint[:16]}")
    plain = {r.fingerprint for r in runs if r.kind == "plain Keras"}
    ours = {r.fingerprint for r in runs if r.kind == "keras_repro"}
    print(f"\nplain Keras: {len(plain)} different results in {args.runs} runs")
    print(
        f"keras_repro: {'identical' if len(ours) == 1 else 'DIFFERENT'} results in {args.runs} runs "
        "(SeededModel(seed=42), no global seeding)"
    )
    return EXIT_OK if len(ours) == 1 else EXIT_DIFFERENT


def _cmd_env(args) -> int:
    from keras_repro.audit import audit
    from keras_repro.manifest import manifest

    data, findings = manifest(), audit()
    if args.json:
        print(json.dumps({**data, "findings": [dataclasses.asdict(f) for f in findings]}, indent=1, sort_keys=True))
        return EXIT_OK

    def show(value, indent=""):
        for key, item in value.items():
            if isinstance(item, dict) and item:
                print(f"{indent}{key}:")
                show(item, indent + "  ")
            else:
                print(f"{indent}{key}: {item}")

    show(data)
    print("\naudit findings:" if findings else "\naudit findings: none")
    for finding in findings:
        print(f"  {finding}")
    return EXIT_OK


def _load_either(path: str):
    """A trace or a manifest, by content."""
    from keras_repro.manifest import read_manifest
    from keras_repro.trace import TRACE_FORMAT
    from keras_repro.trace import load_trace

    file = Path(path)
    if not file.is_file():
        raise _UsageError(f"file not found: {path}")
    try:
        with open(file, "rb") as f:
            head = f.readline(1 << 20)
        first = json.loads(head) if head.strip() else None
    except (OSError, ValueError):
        first = None
    try:
        if isinstance(first, dict) and first.get("format") == TRACE_FORMAT:
            return "trace", load_trace(file)
        return "manifest", _manifest_of(file, read_manifest)
    except (OSError, ValueError) as e:
        raise _UsageError(str(e)) from None


def _manifest_of(file: Path, read_manifest):
    try:
        return read_manifest(file)
    except ValueError:
        # `keras-repro env --json` output: a manifest plus its findings.
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except ValueError:
            raise ValueError(f"{file}: neither a trace nor a manifest (not JSON)") from None
        if isinstance(data, dict) and "findings" in data and "keras_repro" in data:
            return {k: v for k, v in data.items() if k != "findings"}
        raise


def _cmd_diff(args) -> int:
    from keras_repro.drift import plot_drift
    from keras_repro.manifest import diff_manifests
    from keras_repro.trace import diff_traces

    (kind_a, a), (kind_b, b) = _load_either(args.a), _load_either(args.b)
    if kind_a != kind_b:
        raise _UsageError(f"cannot compare a {kind_a} ({args.a}) with a {kind_b} ({args.b})")
    if args.plot is not None and kind_a != "trace":
        raise _UsageError(f"--plot draws two traces' drift; {args.a} and {args.b} are manifests")
    if kind_a == "trace":
        comparison = diff_traces(a, b)
        if comparison.divergence is None:
            print(f"identical: {len(a.records)} records match in training state and data")
            for note in comparison.notes:
                print(f"  note: {note}")
            return EXIT_OK
        print(f"traces differ: {comparison.divergence}")
        apart = comparison.drift
        if apart is None:
            print("how far apart: unknown (the traces carry no float summaries)")
        else:
            print("how far apart (relative difference of the norms, the largest first):")
            print("\n".join(f"  {line}" for line in apart.table().splitlines()))
        if args.plot is not None and apart is not None:
            try:
                plot_drift(apart, args.plot)
            except (ImportError, OSError, ValueError) as e:
                raise _UsageError(str(e)) from None
            print(f"drift drawn to {args.plot}")
        return EXIT_DIFFERENT
    differences = diff_manifests(a, b)
    if not differences:
        print("identical manifests")
        return EXIT_OK
    relevant = [d for d in differences if d.affects_results]
    for d in sorted(differences, key=lambda d: not d.affects_results):
        print(("CAN CHANGE RESULTS  " if d.affects_results else "harmless            ") + str(d))
    print(f"\n{len(relevant)} of {len(differences)} differences can change results")
    return EXIT_DIFFERENT if relevant else EXIT_OK


def _cmd_sweep(args) -> int:
    from keras_repro.sweep import SweepResult
    from keras_repro.sweep import shards

    try:
        if args.step == "run":
            from keras_repro.threads import set_threads
            from keras_repro.threads import usable_cores

            set_threads(usable_cores() if args.threads is None else args.threads)
            fn = shards.load_function(args.function)
            ran = shards.run_shard(
                fn, args.function, args.seeds, args.root_seed, args.shards, args.index, Path(args.out)
            )
            print(f"shard done: ran {len(ran)} seeds into {args.out}")
            return EXIT_OK
        if args.step == "merge":
            merged = shards.merge(args.out)
            merged.result.save(args.output)
            print(merged.report())
            print(f"written to {args.output}")
            return EXIT_DIFFERENT if merged.missing else EXIT_OK
        result = SweepResult.load(args.result)
        for metric in result.metric_names:
            print(result.summary(metric))
        if args.plot is not None:
            result.save_plot(args.plot)
            print(f"drawn to {args.plot}")
        return EXIT_OK
    except (FileNotFoundError, ValueError, TypeError, ImportError) as e:
        raise _UsageError(str(e)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``keras-repro`` with `argv` (default: the command line); returns the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        handler = {"check": _cmd_check, "demo": _cmd_demo, "env": _cmd_env, "diff": _cmd_diff, "sweep": _cmd_sweep}
        return handler[args.command](args)
    except _UsageError as e:
        print(f"keras-repro: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("keras-repro: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
