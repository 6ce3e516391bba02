"""Thread counts: the usable cores, set_threads, and whether the count changes results.

The claim that matters is checked between processes: a process that trains
with 1 thread and another with 2 end with the same weights (measured here on
each backend, for an MLP big enough that its matmuls are split across
threads), and each process reports the counts it set.
"""

from __future__ import annotations

import pytest

from keras_repro import threads
from tests.procs import run_pythons

TRAIN = """
import os
import keras_repro as kr
applied = kr.set_threads({threads})
import keras, numpy as np
x = np.random.default_rng(0).normal(size=(512, 64)).astype("float32")
y = np.random.default_rng(1).normal(size=(512, 1)).astype("float32")
model = keras.Sequential([
    keras.Input((64,)),
    keras.layers.Dense(256, activation="relu"),
    keras.layers.Dropout(0.2),
    keras.layers.Dense(256, activation="relu"),
    keras.layers.Dense(1),
])
kr.seed_model(model, 3)
model.compile("adam", "mse")
model.fit(x, y, batch_size=64, epochs=2, verbose=0, shuffle=False)
counts = {{}}
if keras.backend.backend() == "tensorflow":
    import tensorflow as tf
    counts = {{"intra": tf.config.threading.get_intra_op_parallelism_threads(),
              "inter": tf.config.threading.get_inter_op_parallelism_threads()}}
elif keras.backend.backend() == "torch":
    import torch
    counts = {{"intra": torch.get_num_threads(), "inter": torch.get_num_interop_threads()}}
emit({{"applied": applied, "counts": counts, "omp": os.environ["OMP_NUM_THREADS"],
      "fingerprint": kr.fingerprint(model)}})
"""


def test_set_threads_rejects_a_count_that_is_not_positive():
    with pytest.raises(ValueError, match=r"threads.*0.*positive integer"):
        threads.set_threads(0)
    with pytest.raises(TypeError, match="threads"):
        threads.set_threads(1.5)


def test_usable_cores_is_capped_by_slurm_cpus_per_task(monkeypatch):
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert threads.usable_cores() == 1
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "")
    assert threads.usable_cores() >= 1


@pytest.mark.parametrize(
    ("text", "cores"),
    [("150000 100000\n", 2), ("50000 100000\n", 1), ("max 100000\n", None), ("garbage\n", None)],
)
def test_cgroup_quota_is_read_in_whole_cores(tmp_path, text, cores):
    path = tmp_path / "cpu.max"
    path.write_text(text)
    assert threads._cgroup_quota(path) == cores
    assert threads._cgroup_quota(tmp_path / "missing") is None


def _runs(backend: str, **env: str) -> list[dict]:
    env = {"KERAS_BACKEND": backend, **env}
    return run_pythons([TRAIN.format(threads=1), TRAIN.format(threads=2)], envs=[env, env])


def test_thread_counts_are_set_and_do_not_change_results_on_tensorflow():
    one, two = _runs("tensorflow")
    assert one["applied"] == {"OMP_NUM_THREADS": 1, "tensorflow": 1}
    assert one["counts"] == {"intra": 1, "inter": 1} and two["counts"] == {"intra": 2, "inter": 2}
    assert (one["omp"], two["omp"]) == ("1", "2")
    assert one["fingerprint"] == two["fingerprint"]
    # Eigen's kernels instead of oneDNN's: also the same for this model (docs/sweeps.md).
    eigen_one, eigen_two = _runs("tensorflow", TF_ENABLE_ONEDNN_OPTS="0")
    assert eigen_one["fingerprint"] == eigen_two["fingerprint"]


@pytest.mark.torch
def test_thread_counts_are_set_and_do_not_change_results_on_torch():
    one, two = _runs("torch")
    assert one["applied"] == {"OMP_NUM_THREADS": 1, "torch": 1}
    assert one["counts"] == {"intra": 1, "inter": 1} and two["counts"] == {"intra": 2, "inter": 2}
    assert one["fingerprint"] == two["fingerprint"]


@pytest.mark.jax
def test_thread_counts_do_not_change_results_on_jax():
    one, two = _runs("jax")
    assert one["applied"] == {"OMP_NUM_THREADS": 1}  # JAX has no thread setting; only the environment is set
    assert one["fingerprint"] == two["fingerprint"]


def test_set_threads_after_tensorflow_started_is_a_clear_error():
    (result,) = run_pythons(
        [
            """
            import tensorflow as tf
            import keras_repro as kr
            tf.constant(1.0) + 1.0   # starts TF's runtime with its default counts
            try:
                kr.set_threads(3)
            except ValueError as e:
                emit(str(e))
            """
        ]
    )
    assert "Cannot set TensorFlow's thread counts to 3: its runtime already started" in result
    assert "before the first TensorFlow op" in result
