"""The keras-repro command, run as a user runs it: in a subprocess."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from keras_repro import trace as kr_trace
from procs import child_env

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def keras_repro(*args, cwd=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "keras_repro", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=child_env(),
        timeout=timeout,
    )


def our_lines(stderr: str) -> list[str]:
    """stderr without TensorFlow's own start-up log lines."""
    return [line for line in stderr.splitlines() if line.startswith("keras-repro")]


def test_console_script_is_installed():
    exe = shutil.which("keras-repro", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    assert exe is not None
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, env=child_env())
    assert out.returncode == 0 and "check" in out.stdout and "demo" in out.stdout


@pytest.mark.parametrize("command", ["check", "demo", "env", "diff"])
def test_every_subcommand_has_help(command):
    out = keras_repro(command, "--help")
    assert out.returncode == 0 and "usage: keras-repro " + command in out.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["check", "no_such_script.py"], "script not found: no_such_script.py"),
        (["check", "--runs", "1", "examples/reproducible_mlp.py"], "invalid value '1'"),
        (["check", "--every", "sometimes", "examples/reproducible_mlp.py"], "invalid value 'sometimes'"),
        (["bogus"], "invalid choice: 'bogus'"),
        ([], "required: COMMAND"),
        (["diff", "missing_a.json", "missing_b.json"], "file not found: missing_a.json"),
    ],
)
def test_usage_errors_give_one_clear_line_and_exit_2(args, message):
    out = keras_repro(*args)
    assert out.returncode == 2
    lines = our_lines(out.stderr)
    assert len(lines) == 1 and lines[0].startswith("keras-repro: error: ") and message in lines[0], out.stderr


def test_diff_rejects_unreadable_and_mismatched_files(tmp_path):
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    out = keras_repro("diff", garbage, garbage)
    assert out.returncode == 2 and len(our_lines(out.stderr)) == 1 and "garbage.json" in out.stderr


def test_diff_of_traces_that_differ_only_in_unused_state_exits_0_with_a_note(tmp_path):
    from keras_repro.trace import TraceWriter

    def write(path, python_stream, kernel):
        writer = TraceWriter(path)
        writer.start({"manifest": {}, "every": "epoch"})
        rng = {"python": python_stream, "numpy": "n", "tensorflow": "t", "keras": "k", "root_seed": "r"}
        for kind, epoch in (("fit_begin", None), ("epoch", 0), ("fit_end", 0)):
            writer.write(
                {
                    "type": kind,
                    "fit": 0,
                    "epoch": epoch,
                    "batch": None,
                    "step": 0 if epoch is None else 1,
                    "fingerprint": kernel,
                    "variables": [["dense/kernel", kernel]],
                    "kinds": "w",
                    "data": None,
                    "rng": rng,
                }
            )
        writer.finish()

    write(tmp_path / "a.jsonl", "p1", "k")
    write(tmp_path / "b.jsonl", "p2", "k")
    write(tmp_path / "c.jsonl", "p2", "other")
    same = keras_repro("diff", tmp_path / "a.jsonl", tmp_path / "b.jsonl")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "note: the global random state (python) differs from the start of fit 0" in same.stdout
    different = keras_repro("diff", tmp_path / "a.jsonl", tmp_path / "c.jsonl")
    assert different.returncode == 1 and "different weights" in different.stdout


def test_check_reproducible_script_exits_0_and_traces_compare_equal(tmp_path):
    # Options before the script; what follows the script goes to the script.
    out = keras_repro("check", "--keep", tmp_path, "examples/reproducible_mlp.py", "--epochs", "2")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("reproducible: 2 runs of examples/reproducible_mlp.py are bit-identical")
    assert "final fingerprint" in out.stdout
    assert "run 2: fit 0, epoch 1 of 2" in out.stderr  # progress is shown
    # The kept traces are real files that `diff` compares the same way.
    same = keras_repro("diff", tmp_path / "run1" / "trace.jsonl", tmp_path / "run2" / "trace.jsonl")
    assert same.returncode == 0 and same.stdout.startswith("identical:")


def test_check_deterministic_starts_every_run_with_deterministic_kernels(tmp_path):
    script = tmp_path / "plain.py"
    script.write_text(
        "import keras, numpy as np\n"
        "keras.utils.set_random_seed(0)\n"
        "model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])\n"
        "model.compile('sgd', 'mse')\n"
        "x = np.linspace(0, 1, 64, dtype='float32').reshape(16, 4)\n"
        "model.fit(x, x.sum(axis=1), epochs=1, verbose=0)\n"
    )
    out = keras_repro("check", "--deterministic", "--keep", tmp_path / "runs", script)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "op-determinism-off" not in out.stdout  # the script itself never turns it on
    for run in ("run1", "run2"):
        trace = kr_trace.load_trace(tmp_path / "runs" / run / "trace.jsonl")
        assert trace.manifest["determinism"]["enabled"] is True  # the backend's own switch
        if keras.backend.backend() == "tensorflow":
            assert trace.manifest["tensorflow"]["op_determinism"] is True
        assert "--xla_gpu_deterministic_ops=true" in trace.manifest["env"]["XLA_FLAGS"]


def test_check_script_seeded_from_time_exits_1_and_names_the_divergence():
    out = keras_repro("check", "examples/seeded_from_time.py")
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stdout.startswith("NOT reproducible: run 2 of examples/seeded_from_time.py differs from run 1")
    assert "dense#0/kernel" in out.stdout and "different weights" in out.stdout
    assert "root-seed-unset" in out.stdout  # the audit finding that explains it
    assert "\n  how far apart: relative difference of the norms at the start of fit 0, step 0: " in out.stdout


@pytest.mark.slow
def test_check_locate_names_the_layer_where_the_runs_part():
    out = keras_repro("check", "--locate", "tests/locate_scripts/forward_noise.py")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "where it enters:" in out.stdout and "layer noisy (AddOffset)" in out.stdout
    assert "locate: probing training step 1 of fit 0" in out.stderr  # progress of the extra runs


def test_check_failing_script_exits_2_and_shows_its_error(tmp_path):
    script = tmp_path / "broken.py"
    script.write_text("import sys\nprint('about to fail')\nraise RuntimeError('the data file is missing')\n")
    out = keras_repro("check", script)
    assert out.returncode == 2
    assert "the script failed in run 1" in out.stderr and "RuntimeError: the data file is missing" in out.stderr


def test_check_script_without_fit_exits_2(tmp_path):
    script = tmp_path / "nofit.py"
    script.write_text("print('hello')\n")
    out = keras_repro("check", script)
    assert out.returncode == 2 and "never completed a model.fit call" in out.stderr


@pytest.mark.slow
def test_check_catches_parallel_tf_data_map_with_random_op(tmp_path):
    script = tmp_path / "augment.py"
    script.write_text(
        "import keras, numpy as np, tensorflow as tf\n"
        "import keras_repro as kr\n"
        "x = np.linspace(0, 1, 256, dtype='float32').reshape(-1, 4); y = x.sum(1, keepdims=True)\n"
        "ds = tf.data.Dataset.from_tensor_slices((x, y)).map(\n"
        "    lambda a, b: (a + tf.random.normal(tf.shape(a), stddev=0.1), b), num_parallel_calls=4\n"
        ").batch(16)\n"
        "inputs = keras.Input((4,))\n"
        "model = kr.SeededModel(inputs, keras.layers.Dense(1)(inputs), seed=1)\n"
        "model.compile('sgd', 'mse')\n"
        "model.fit(ds, epochs=2, verbose=0)\n"
    )
    out = keras_repro("check", script, "--every", "batch")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "NOT reproducible" in out.stdout and "dense" in out.stdout


def test_check_records_every_fit_call(tmp_path):
    script = tmp_path / "twofits.py"
    script.write_text(
        "import keras, numpy as np, keras_repro as kr\n"
        "x = np.ones((32, 3), 'float32'); y = np.zeros((32, 1), 'float32')\n"
        "inputs = keras.Input((3,))\n"
        "model = kr.SeededModel(inputs, keras.layers.Dense(1)(inputs), seed=5)\n"
        "model.compile('sgd', 'mse')\n"
        "model.fit(x, y, epochs=1, verbose=0)\n"
        "model.fit(x, y, epochs=2, verbose=0)\n"
    )
    out = keras_repro("check", script)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "over 2 fit call(s)" in out.stdout


def test_env_prints_manifest_and_findings_and_json_diffs_clean(tmp_path):
    text = keras_repro("env")
    assert text.returncode == 0 and "audit findings" in text.stdout
    as_json = keras_repro("env", "--json")
    assert as_json.returncode == 0
    data = json.loads(as_json.stdout)
    assert "findings" in data and isinstance(data["findings"], list)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(as_json.stdout)
    changed = dict(data)
    changed["numpy"] = "0.0.1"
    b.write_text(json.dumps(changed))
    same = keras_repro("diff", a, a)
    assert same.returncode == 0 and same.stdout.strip() == "identical manifests"
    different = keras_repro("diff", a, b)
    assert different.returncode == 1 and "CAN CHANGE RESULTS" in different.stdout and "0.0.1" in different.stdout


@pytest.mark.slow
def test_demo_shows_plain_keras_differs_and_keras_repro_is_identical():
    out = keras_repro("demo", "--runs", "2", timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "keras_repro: identical results in 2 runs" in out.stdout
    assert "plain Keras: 2 different results in 2 runs" in out.stdout


def test_framework_start_up_logs_are_filtered_unless_asked_for(monkeypatch):
    from keras_repro._procs import child_environment
    from keras_repro._procs import without_framework_logs

    lines = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
        "I0000 00:00:1796115879.103961    7676 port.cc:153] oneDNN custom operations are on.\n",
        "E0000 00:00:1796115881.641824    7676 cuda_platform.cc:52] failed call to cuInit\n",
        "F0000 00:00:1796115881.641824    7676 check.cc:1] a fatal error\n",
        "Traceback (most recent call last):\n",
        "ValueError: the script's own error\n",
    ]
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    assert without_framework_logs(lines) == lines[3:]
    assert child_environment({"X": "1"})["TF_CPP_MIN_LOG_LEVEL"] == "2"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # the user asked for them
    assert without_framework_logs(lines) == lines
    assert child_environment({})["TF_CPP_MIN_LOG_LEVEL"] == "0"
