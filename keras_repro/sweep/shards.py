"""Sweeps as array jobs: one shard of the seeds per task, a result file per seed, a merge.

A sweep of N seeds split into K shards runs as K tasks of a scheduler's
array job (SLURM, a Kubernetes Indexed Job, PBS, LSF), each on its own
machine, each retried on preemption. The seed list is
``derive_seed(root_seed, "sweep", i)`` for ``i < N``, as `keras_repro.sweep`
derives it, and shard I of K holds the seeds at positions I, I + K,
I + 2K ...: both are pure functions of N, R and K, so every task computes
the same split without talking to the others.

`run_shard` runs the seeds of one shard into a result folder:

- ``sweep.json``: what the sweep is (function, N, R, K, the seeds);
  written by the first task, checked by every other one, so that a folder
  of another sweep is refused before anything trains;
- ``seeds/<seed>.json``: one document per finished seed (its metrics or
  its failure, the run time, and the manifest of the machine that ran it),
  written atomically: a task killed while writing leaves no half file.
  A task started again skips the seeds that have one;
- ``backups/<seed>/``: a folder handed to the function while its seed runs
  (`seed_backup_dir`, or the ``KERAS_REPRO_SWEEP_BACKUP_DIR`` environment
  variable): give it to `keras_repro.callbacks.ExactBackupAndRestore` and a
  preempted seed resumes where it stopped, ending bit-identical.

`merge` reads the folder into a `SweepResult` (the same per-seed metrics,
bit for bit, as ``kr.sweep(fn, seeds=N, root_seed=R)`` in one process),
and says which seeds are missing and which result files came from machines
whose manifests differ in what can change results.

Example:

```python
import keras_repro as kr
from keras_repro.sweep import shards

def experiment(seed):
    return {"accuracy": 0.5 + (seed % 7) / 100}

for index in range(2):  # what two tasks of an array job do, one each
    shards.run_shard(experiment, "experiments:experiment", seeds=6, root_seed=0, shards=2, index=index, out="sweep")
merged = shards.merge("sweep")
print(merged.result.summary(), merged.missing)
```
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import json
import os
import shutil
from collections.abc import Callable
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from keras_repro import _files
from keras_repro import _validate
from keras_repro.sweep._values import resolve_seeds
from keras_repro.sweep.result import SweepFailure
from keras_repro.sweep.result import SweepResult

__all__ = ["MergedSweep", "array_index", "load_function", "merge", "run_shard", "seed_backup_dir", "shard_seeds"]

_SWEEP_FORMAT, _SWEEP_VERSION = "keras_repro.sweep_shards", 1
_SEED_FORMAT, _SEED_VERSION = "keras_repro.sweep_seed", 1
BACKUP_ENV = "KERAS_REPRO_SWEEP_BACKUP_DIR"

#: Array-index variables of the schedulers, in the order they are looked up,
#: and what to add to their value to get a 0-based index. SLURM and PBS give
#: the index as the job array declares it (``--array=0-3``, ``-J 0-3``):
#: declare the array from 0. LSF's ``LSB_JOBINDEX`` starts at 1.
SCHEDULER_INDEX_VARIABLES = (
    ("SLURM_ARRAY_TASK_ID", 0),
    ("JOB_COMPLETION_INDEX", 0),  # Kubernetes Indexed Job
    ("PBS_ARRAY_INDEX", 0),  # PBS Pro
    ("PBS_ARRAYID", 0),  # Torque
    ("LSB_JOBINDEX", -1),
)


def shard_seeds(seeds: list[int], shards: int, index: int) -> list[int]:
    """The seeds of shard `index` of `shards`: positions index, index + shards, ...

    Raises:
        ValueError: `shards` is not in 1..len(seeds), or `index` not in 0..shards-1.
    """
    shards = _validate.check_int(
        "shards", shards, minimum=1, allowed=f"Expected 1 to {len(seeds)} (the number of seeds)"
    )
    if shards > len(seeds):
        raise ValueError(
            f"shards={shards} is more than the {len(seeds)} seeds: some shards would be empty. "
            f"Allowed values: 1 to {len(seeds)}."
        )
    index = _validate.check_int("index", index, minimum=0, allowed=f"Expected 0 to {shards - 1}")
    if index >= shards:
        raise ValueError(f"index={index} is out of range for {shards} shards. Allowed values: 0 to {shards - 1}.")
    return seeds[index::shards]


def array_index(environ: Mapping[str, str] | None = None) -> int | None:
    """The 0-based array index of the scheduler task this process runs in, or None.

    Looks up `SCHEDULER_INDEX_VARIABLES` in order (LSF's 1-based index is
    made 0-based).

    Raises:
        ValueError: the variable is set but not an integer.
    """
    environ = os.environ if environ is None else environ
    for name, offset in SCHEDULER_INDEX_VARIABLES:
        value = environ.get(name)
        if value is None or value == "":
            continue
        try:
            return int(value) + offset
        except ValueError:
            raise ValueError(f"{name}={value!r} is not an array index (an integer).") from None
    return None


def load_function(spec: str) -> Callable:
    """The function named by ``"package.module:function"``.

    Raises:
        ValueError: `spec` is not of that form, the module cannot be
            imported, or it has no such callable.
    """
    spec = _validate.check_instance("function", spec, str, "Expected 'module:function', e.g. 'experiments:train'")
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise ValueError(f"function {spec!r} is not of the form 'module:function', e.g. 'experiments:train'.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"function {spec!r}: cannot import module {module_name!r} ({error}).") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ValueError(f"function {spec!r}: module {module_name!r} has no callable {name!r}.")
    return fn


def seed_backup_dir() -> Path | None:
    """The backup folder of the seed running now in `run_shard` (None outside one).

    Pass it to `keras_repro.callbacks.ExactBackupAndRestore` inside the
    sweep's function: a seed killed mid-way resumes from it when its shard
    runs again.
    """
    value = os.environ.get(BACKUP_ENV)
    return Path(value) if value else None


def _sweep_document(function: str, seeds: list[int], root_seed: int, shards: int) -> dict[str, Any]:
    return {"function": function, "count": len(seeds), "root_seed": root_seed, "shards": shards, "seeds": seeds}


def _check_folder(out: Path, expected: dict[str, Any]) -> None:
    """Writes ``sweep.json``, or checks that the one there describes the same sweep."""
    path = out / "sweep.json"
    try:
        found = _files.read_document(path, _SWEEP_FORMAT, (_SWEEP_VERSION,))
    except FileNotFoundError:
        _files.write_document(path, _SWEEP_FORMAT, _SWEEP_VERSION, expected)
        return
    differing = [key for key in expected if found.get(key) != expected[key]]
    if differing:
        named = [key for key in differing if key != "seeds"][:3]
        shown = ", ".join(f"{key} {found.get(key)!r} there, {expected[key]!r} here" for key in named) or "other seeds"
        raise ValueError(
            f"{out} holds another sweep ({shown}). Nothing was run: use another folder "
            "for this sweep, or the same function, --seeds, --root-seed and --shards as the first task."
        )


@contextlib.contextmanager
def _backup_env(folder: Path):
    previous = os.environ.get(BACKUP_ENV)
    os.environ[BACKUP_ENV] = str(folder)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(BACKUP_ENV, None)
        else:
            os.environ[BACKUP_ENV] = previous


def run_shard(
    fn: Callable,
    function: str,
    seeds: int,
    root_seed: int,
    shards: int,
    index: int | None,
    out: _files.PathLike,
) -> list[int]:
    """Runs the seeds of one shard into `out`; returns the seeds it ran (not those it skipped).

    Args:
        fn: ``fn(seed) -> metric``, as for `keras_repro.sweep`.
        function: its ``"module:function"`` name, recorded in ``sweep.json``
            so that a folder of another sweep is refused.
        seeds: the number of seeds N of the whole sweep.
        root_seed: their root R.
        shards: the number of shards K.
        index: this shard (0-based); None takes the scheduler's array index
            (`array_index`).
        out: the result folder, shared by all shards.

    Raises:
        ValueError: bad N, R, K or index (before anything runs), no index
            given and no scheduler's, or `out` holding another sweep.
    """
    from keras_repro.manifest import manifest
    from keras_repro.sweep._run import run_one

    seed_list, root = resolve_seeds(_validate.check_int("seeds", seeds, minimum=1), root_seed)
    if index is None:
        index = array_index()
        if index is None:
            names = ", ".join(name for name, _ in SCHEDULER_INDEX_VARIABLES)
            raise ValueError(f"No shard index: pass --index I, or run as an array job task (one of {names} set).")
    mine = shard_seeds(seed_list, shards, index)
    out = Path(_validate.check_path("out", out))
    out.mkdir(parents=True, exist_ok=True)
    _check_folder(out, _sweep_document(function, seed_list, root, shards))
    machine = manifest()
    ran = []
    for seed in mine:
        result_path = out / "seeds" / f"{seed}.json"
        if result_path.exists():
            continue  # finished before this task started
        backup = out / "backups" / str(seed)
        with _backup_env(backup):
            record = run_one(fn, seed)
        _files.write_document(result_path, _SEED_FORMAT, _SEED_VERSION, {**record, "manifest": machine})
        shutil.rmtree(backup, ignore_errors=True)
        ran.append(seed)
    return ran


@dataclasses.dataclass(frozen=True)
class MergedSweep:
    """The merge of a result folder.

    Attributes:
        result: the `SweepResult` of the finished seeds (failed ones in
            ``result.failures``), in sweep order.
        missing: seeds of the sweep with no result file yet.
        manifest_differences: for result files from machines whose manifest
            differs, in what can change results, from that of the machine
            most seeds ran on: one line per such machine, naming its seeds
            and the differences.
    """

    result: SweepResult
    missing: tuple[int, ...]
    manifest_differences: tuple[str, ...]

    def report(self) -> str:
        """What `keras-repro sweep merge` prints."""
        result = self.result
        lines = [f"{len(result.metrics)} of {len(result.seeds)} seeds finished, {len(result.failures)} failed"]
        if self.missing:
            shown = ", ".join(map(str, self.missing[:10])) + (", ..." if len(self.missing) > 10 else "")
            lines.append(f"missing: {len(self.missing)} seeds ({shown}); run their shards again")
        lines += [f"failed: seed {f.seed}: {f.error_type}: {f.message}" for f in result.failures[:10]]
        lines += [f"warning: {line}" for line in self.manifest_differences]
        return "\n".join(lines)


def merge(out: _files.PathLike) -> MergedSweep:
    """Reads a result folder written by `run_shard` into a `MergedSweep`.

    Raises:
        FileNotFoundError: `out` has no ``sweep.json``.
        ValueError: no seed has finished yet, or a file in `out` is not what
            it should be (the message names it).
    """
    from keras_repro.manifest import diff_manifests

    out = Path(_validate.check_path("out", out))
    sweep = _files.read_document(out / "sweep.json", _SWEEP_FORMAT, (_SWEEP_VERSION,))
    seeds = list(sweep["seeds"])
    known = set(seeds)
    records: dict[int, dict[str, Any]] = {}
    machines: dict[str, tuple[dict[str, Any], list[int]]] = {}
    for path in sorted((out / "seeds").glob("*.json")) if (out / "seeds").is_dir() else ():
        document = _files.read_document(path, _SEED_FORMAT, (_SEED_VERSION,))
        seed = document.get("seed")
        if seed not in known or path.stem != str(seed):
            raise ValueError(f"{path}: a result of seed {seed!r}, which is not a seed of the sweep in {out}.")
        records[seed] = document
        machine = document.get("manifest") or {}
        key = hashlib.sha256(json.dumps(machine, sort_keys=True).encode()).hexdigest()
        machines.setdefault(key, (machine, []))[1].append(seed)
    metrics, failures, seconds = {}, [], {}
    for seed in seeds:
        record = records.get(seed)
        if record is None:
            continue
        if record["ok"]:
            metrics[seed], seconds[seed] = record["metrics"], record["seconds"]
        else:
            failures.append(SweepFailure(seed, record["error_type"], record["message"], record["traceback"]))
    differences = []
    # The machine most seeds ran on is the reference (the earliest seed's on a tie).
    position = {seed: i for i, seed in enumerate(seeds)}
    groups = sorted(machines.values(), key=lambda g: (-len(g[1]), min(position[s] for s in g[1])))
    for machine, group in groups[1:]:
        relevant = [d for d in diff_manifests(groups[0][0], machine) if d.affects_results]
        if relevant:
            more = f" (and {len(relevant) - 3} more)" if len(relevant) > 3 else ""
            shown = "; ".join(str(d) for d in relevant[:3]) + more
            differences.append(
                f"seeds {', '.join(map(str, sorted(group)[:5]))}{', ...' if len(group) > 5 else ''} ran on a machine "
                f"whose environment differs from that of most seeds (seed {groups[0][1][0]}'s) in what can "
                f"change results: {shown}"
            )
    if not records:
        raise ValueError(f"No seed of the sweep in {out} has finished yet (0 of {len(seeds)}): run its shards first.")
    # A partial merge holds only the finished seeds, in sweep order.
    finished = [s for s in seeds if s in records]
    result = SweepResult(finished, metrics, failures, sweep.get("root_seed"), seconds)
    return MergedSweep(result, tuple(s for s in seeds if s not in records), tuple(differences))
