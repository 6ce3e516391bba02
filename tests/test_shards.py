"""Sweeps as array-job shards: the split, the result folder, the merge, the command."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from keras_repro import _files
from keras_repro.sweep import SweepResult
from keras_repro.sweep import shards
from procs import child_env

TESTS = Path(__file__).resolve().parent


def test_shards_split_the_seeds_round_robin_and_cover_them_once():
    seeds = list(range(10, 20))
    parts = [shards.shard_seeds(seeds, 3, i) for i in range(3)]
    assert parts == [[10, 13, 16, 19], [11, 14, 17], [12, 15, 18]]
    assert sorted(s for part in parts for s in part) == seeds
    with pytest.raises(ValueError, match=r"shards=11 is more than the 10 seeds.*Allowed values: 1 to 10"):
        shards.shard_seeds(seeds, 11, 0)
    with pytest.raises(ValueError, match=r"index=3 is out of range for 3 shards\. Allowed values: 0 to 2"):
        shards.shard_seeds(seeds, 3, 3)
    with pytest.raises(ValueError, match="index"):
        shards.shard_seeds(seeds, 3, -1)


@pytest.mark.parametrize(
    "environ, index",
    [
        ({"SLURM_ARRAY_TASK_ID": "2"}, 2),
        ({"JOB_COMPLETION_INDEX": "0"}, 0),
        ({"PBS_ARRAY_INDEX": "5"}, 5),
        ({"PBS_ARRAYID": "1"}, 1),
        ({"LSB_JOBINDEX": "1"}, 0),  # LSF counts from 1
        ({"SLURM_ARRAY_TASK_ID": "3", "LSB_JOBINDEX": "9"}, 3),
        ({}, None),
    ],
)
def test_the_array_index_comes_from_the_scheduler(environ, index):
    assert shards.array_index(environ) == index


def test_bad_functions_and_indices_are_clear_errors():
    with pytest.raises(ValueError, match=r"SLURM_ARRAY_TASK_ID='x' is not an array index"):
        shards.array_index({"SLURM_ARRAY_TASK_ID": "x"})
    with pytest.raises(ValueError, match="not of the form 'module:function'"):
        shards.load_function("sweep_fns.train_tiny")
    with pytest.raises(ValueError, match="cannot import module 'no_such_module'"):
        shards.load_function("no_such_module:fn")
    with pytest.raises(ValueError, match="has no callable 'nope'"):
        shards.load_function("sweep_fns:nope")


def sweep_cli(*args, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "keras_repro", "sweep", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=TESTS,
        env=child_env({"PYTHONPATH": str(TESTS), **(env or {})}),
        timeout=timeout,
    )


@pytest.mark.slow
def test_two_array_tasks_merge_into_the_in_process_sweep(tmp_path):
    out = tmp_path / "sweep"
    tasks = [
        subprocess.Popen(
            [sys.executable, "-m", "keras_repro", "sweep", "run", "sweep_fns:train_tiny"]
            + ["--seeds", "5", "--root-seed", "3", "--shards", "2", "--out", str(out)]
            + ["--threads", str(index + 1)],  # other thread counts: still the same results, and the merge says so
            cwd=TESTS,
            env=child_env({"PYTHONPATH": str(TESTS), "SLURM_ARRAY_TASK_ID": str(index)}),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in (0, 1)
    ]
    for task in tasks:
        _, err = task.communicate(timeout=300)
        assert task.returncode == 0, err[-3000:]
    merged = sweep_cli("merge", out, "-o", tmp_path / "result.json")
    assert merged.returncode == 0, merged.stdout + merged.stderr
    assert merged.stdout.startswith("5 of 5 seeds finished, 0 failed")
    assert "warning: " in merged.stdout and "env.OMP_NUM_THREADS: '1' != '2'" in merged.stdout, merged.stdout
    result = SweepResult.load(tmp_path / "result.json")
    # The same sweep in one fresh process, in-process.
    code = (
        f"import json, sys, warnings; sys.path.insert(0, {str(TESTS)!r})\n"
        "import keras_repro as kr, sweep_fns\n"
        "warnings.simplefilter('ignore')\n"
        "r = kr.sweep(sweep_fns.train_tiny, seeds=5, root_seed=3, progress=False)\n"
        "print(json.dumps({'seeds': r.seeds, 'metrics': {str(s): m for s, m in r.metrics.items()}}))\n"
    )
    single = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    expected = json.loads(single.stdout.strip().splitlines()[-1])
    assert result.seeds == expected["seeds"] and result.root_seed == 3
    assert {str(s): m for s, m in result.metrics.items()} == expected["metrics"]  # bit for bit
    report = sweep_cli("report", tmp_path / "result.json", "--plot", tmp_path / "sweep.png")
    assert report.returncode == 0, report.stderr
    assert "loss over 5 seeds: mean" in report.stdout and (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_a_shard_killed_mid_seed_resumes_it_bit_identical_and_skips_finished_seeds(tmp_path):
    args = ["run", "sweep_fns:train_resumable", "--seeds", "3", "--shards", "1", "--index", "0"]
    marker = tmp_path / "killed"
    killed = sweep_cli(*args, "--out", tmp_path / "sweep", env={"KILL_SEED_MARKER": str(marker)})
    assert killed.returncode == -9 and marker.exists(), killed.stderr[-3000:]
    finished = sorted((tmp_path / "sweep" / "seeds").glob("*.json"))
    assert len(finished) == 1  # the first seed; the second was killed at step 13
    assert any((tmp_path / "sweep" / "backups").iterdir())  # ... after a backup
    first_written = finished[0].stat().st_mtime_ns
    again = sweep_cli(*args, "--out", tmp_path / "sweep", env={"KILL_SEED_MARKER": str(marker)})
    assert again.returncode == 0, again.stderr[-3000:]
    started = (tmp_path / "killed.started").read_text().split()
    assert len(started) == 4 and started[3] != started[0]  # seed 1 once, seed 2 twice, seed 3 once
    steps = (tmp_path / "killed.steps").read_text().split()
    assert steps[1] == f"{started[1]}:0"
    seed, step = steps[2].split(":")
    assert seed == started[1] and 0 < int(step) < 13  # resumed from its last backup, not from the start
    assert finished[0].stat().st_mtime_ns == first_written  # not run again
    assert not any((tmp_path / "sweep" / "backups").iterdir())  # removed once each seed finished
    straight = sweep_cli(*args, "--out", tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-3000:]
    resumed = shards.merge(tmp_path / "sweep").result
    assert resumed.metrics == shards.merge(tmp_path / "straight").result.metrics


def test_a_folder_of_another_sweep_is_refused_before_anything_runs(tmp_path):
    calls = []
    shards.run_shard(lambda s: calls.append(s) or 1.0, "m:f", seeds=4, root_seed=0, shards=2, index=0, out=tmp_path)
    before = sorted(p.name for p in (tmp_path / "seeds").iterdir())
    for kwargs, words in [
        ({"seeds": 5}, "count 4 there, 5 here"),
        ({"root_seed": 1}, "root_seed 0 there, 1 here"),
        ({"shards": 4}, "shards 2 there, 4 here"),
    ]:
        arguments = {"seeds": 4, "root_seed": 0, "shards": 2, "index": 1, **kwargs}
        with pytest.raises(ValueError, match=f"holds another sweep .*{words}.*Nothing was run"):
            shards.run_shard(lambda s: calls.append(s) or 1.0, "m:f", out=tmp_path, **arguments)
    with pytest.raises(ValueError, match="function 'm:f' there, 'm:g' here"):
        shards.run_shard(lambda s: 1.0, "m:g", seeds=4, root_seed=0, shards=2, index=1, out=tmp_path)
    assert len(calls) == 2 and sorted(p.name for p in (tmp_path / "seeds").iterdir()) == before


def test_merge_reports_missing_seeds_failures_and_machines_that_differ(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)

    def fn(seed):
        if seed % 3 == 0:
            raise RuntimeError("no good")
        return {"value": seed / 7}

    shards.run_shard(fn, "m:f", seeds=6, root_seed=0, shards=2, index=0, out=tmp_path)
    merged = shards.merge(tmp_path)
    sweep_seeds = _files.read_document(tmp_path / "sweep.json", "keras_repro.sweep_shards", (1,))["seeds"]
    assert merged.missing == tuple(sweep_seeds[1::2])
    assert merged.result.seeds == sweep_seeds[0::2]
    assert {f.seed for f in merged.result.failures} == {s for s in sweep_seeds[0::2] if s % 3 == 0}
    assert "missing: 3 seeds" in merged.report()
    # A result file from a machine with another NumPy: named, with its seeds.
    path = tmp_path / "seeds" / f"{sweep_seeds[2]}.json"
    document = json.loads(path.read_text())
    document["manifest"]["numpy"] = "0.0.1"
    _files.write_document(path, document.pop("format"), document.pop("version"), document)
    warned = shards.merge(tmp_path).manifest_differences
    assert len(warned) == 1 and f"seeds {sweep_seeds[2]} ran on a machine" in warned[0] and "numpy" in warned[0]
    empty = tmp_path / "empty"
    shards.run_shard(fn, "m:f", seeds=6, root_seed=0, shards=2, index=0, out=empty)
    for finished in (empty / "seeds").iterdir():
        os.unlink(finished)
    with pytest.raises(ValueError, match="No seed of the sweep .* has finished yet"):
        shards.merge(empty)


def test_the_command_refuses_bad_input_with_one_line_and_exit_2(tmp_path):
    out = sweep_cli("run", "no_such_module:fn", "--seeds", "4", "--shards", "2", "--index", "0", "--out", tmp_path)
    assert out.returncode == 2 and "cannot import module 'no_such_module'" in out.stderr
    out = sweep_cli("run", "sweep_fns:draws", "--seeds", "4", "--shards", "2", "--out", tmp_path)
    assert out.returncode == 2 and "No shard index" in out.stderr
    out = sweep_cli("run", "sweep_fns:draws", "--seeds", "2", "--shards", "3", "--index", "0", "--out", tmp_path)
    assert out.returncode == 2 and "shards=3 is more than the 2 seeds" in out.stderr
    assert not (tmp_path / "seeds").exists()
