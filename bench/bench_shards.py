"""Costs of sweeps as array-job shards, each against a baseline measured in the same run.

1. Merge of 10,000 result files (``keras_repro.sweep.shards.merge``) against
   reading and parsing the same files with ``json.loads`` (target: merge
   under 5 s).
2. A re-run of a finished shard (every seed skipped) against its first run
   (target: under 5%).
3. The per-seed overhead of `run_shard` (the result file with its manifest,
   the backup folder) against calling the function directly through the
   sweep's isolated run (`run_one`), in milliseconds, and as a share of a
   seed that trains 30 s (target: <= 2%).

The function does fixed NumPy work (no Keras), so what is timed is the
shard machinery.

Run: python bench/bench_shards.py [--files 10000]
"""

import argparse
import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from keras_repro import _files
from keras_repro.manifest import manifest
from keras_repro.sweep import shards
from keras_repro.sweep._run import run_one


def work(seed: int) -> dict[str, float]:
    a = np.random.default_rng(seed).normal(size=(200, 200))
    for _ in range(20):
        a = np.tanh(a @ a.T / 200)
    return {"value": float(a.sum())}


def write_files(folder: Path, count: int) -> None:
    seeds = list(range(count))
    _files.write_document(
        folder / "sweep.json",
        "keras_repro.sweep_shards",
        1,
        {"function": "bench:work", "count": count, "root_seed": None, "shards": 1, "seeds": seeds},
    )
    machine = manifest()
    for seed in seeds:
        record = {"seed": seed, "ok": True, "metrics": {"value": seed / 7}, "seconds": 1.0, "manifest": machine}
        _files.write_document(folder / "seeds" / f"{seed}.json", "keras_repro.sweep_seed", 1, record)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=10_000)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "merge"
        write_files(folder, args.files)
        start = time.perf_counter()
        parsed = [json.loads(p.read_text()) for p in (folder / "seeds").glob("*.json")]
        baseline = time.perf_counter() - start
        start = time.perf_counter()
        merged = shards.merge(folder)
        merge_s = time.perf_counter() - start
        assert len(merged.result.metrics) == len(parsed) == args.files
        print(
            f"merge of {args.files} result files: {merge_s:.2f} s (target < 5 s); reading and parsing them "
            f"with json.loads: {baseline:.2f} s; ratio {merge_s / baseline:.2f}"
        )

        out = Path(tmp) / "shard"
        seeds = 8
        start = time.perf_counter()
        shards.run_shard(work, "bench:work", seeds=seeds, root_seed=0, shards=1, index=0, out=out)
        first = time.perf_counter() - start
        start = time.perf_counter()
        shards.run_shard(work, "bench:work", seeds=seeds, root_seed=0, shards=1, index=0, out=out)
        again = time.perf_counter() - start
        print(
            f"re-run of a finished shard of {seeds} seeds: {again * 1e3:.1f} ms = {again / first * 100:.2f}% of "
            f"its first run ({first:.2f} s; target < 5%)"
        )

        # What run_shard adds per seed besides the run: the result file with
        # the manifest, the backup folder's removal; and once per shard, the manifest.
        machine = manifest()
        record = {"seed": 0, "ok": True, "metrics": {"value": 1.0}, "seconds": 1.0, "manifest": machine}
        per_seed = []
        for seed in range(50):
            start = time.perf_counter()
            _files.write_document(out / "extra" / f"{seed}.json", "keras_repro.sweep_seed", 1, record)
            (out / "backups" / str(seed)).mkdir(parents=True, exist_ok=True)
            shutil.rmtree(out / "backups" / str(seed), ignore_errors=True)
            per_seed.append(time.perf_counter() - start)
        start = time.perf_counter()
        manifest()
        per_shard = time.perf_counter() - start
        direct = []
        for seed in range(3):
            start = time.perf_counter()
            run_one(work, seed)
            direct.append(time.perf_counter() - start)
        seed_s = float(np.median(per_seed))
        print(
            f"per-seed overhead of run_shard: {seed_s * 1e3:.2f} ms (result file and backup folder; "
            f"{seed_s / 30 * 100:.4f}% of a 30 s seed, target <= 2%; {seed_s / np.median(direct) * 100:.2f}% of "
            f"this benchmark's {np.median(direct) * 1e3:.0f} ms seed), plus {per_shard * 1e3:.0f} ms per shard "
            "for the manifest"
        )


if __name__ == "__main__":
    main()
