"""The complete training state: every optimizer a model trains with, not only `model.optimizer`.

Models whose state Keras' own tools miss parts of (tests/complete_state_script.py):

- a GAN after keras-io's DCGAN overriding ``train_step``: its ``d_optimizer``
  and ``g_optimizer`` are attributes set in a custom ``compile()``, and
  `model.optimizer` is an unused default;
- a teacher/student distiller after keras-io's knowledge distillation: the
  teacher sub-model has its own optimizer, the distiller's trains the student;
- a mixed-precision model whose `LossScaleOptimizer` keeps the loss scale and
  its growth counter next to the inner optimizer's slots, and skips the steps
  whose gradients overflow;
- (in this file only) an optimizer accumulating gradients over two batches.

Fingerprint coverage and the refusal of an inexact resume are checked in
this process; every claim that two runs agree compares separate processes
(a killed run and its restart against an uninterrupted run).
"""

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import complete_state_script as script
import keras_repro as kr
from keras_repro.callbacks import ExactBackupAndRestore
from keras_repro.fingerprint import fingerprint_details
from keras_repro.fingerprint import tracked_state
from procs import child_env
from test_resume import _wait

SCRIPT = Path(script.__file__)
GAN_BATCHES = 6  # per epoch, see script.gan_data
MIXED_BATCHES = 6  # 48 samples in batches of 8


def _start(out: Path, model: str, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(out), model, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env({"PYTHONHASHSEED": "0"}),
    )


def _final(out: Path) -> dict:
    return json.loads((out / "final.json").read_text())


def _kill_and_resume(tmp_path: Path, model: str, every: str) -> tuple[dict, dict, Path, Path]:
    """Runs `model` killed in epoch 2 then restarted, next to an uninterrupted run."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    args = ["--backup", "--every", every]
    baseline = _start(straight, model, *args)
    first = _start(resumed, model, *args, "--kill-at-epoch", 2)
    _wait(first, expect_killed=True)
    assert (resumed / "killed").exists() and (resumed / "backup" / "backup.weights.h5").exists()
    again = _start(resumed, model, *args, "--kill-at-epoch", 2)
    _wait(baseline, expect_killed=False)
    _wait(again, expect_killed=False)
    assert not (resumed / "backup").exists()  # training completed and removed its backups
    return _final(straight), _final(resumed), straight / "trace.jsonl", resumed / "trace.jsonl"


def _positions(trace: Path) -> list[tuple]:
    return [(r["type"], r["fit"], r["epoch"], r["batch"]) for r in kr.load_trace(trace).records]


def _nudge(variable, index: int = 0) -> np.ndarray:
    """Moves one element of `variable` by one ULP (or one, for integers); returns the old value."""
    old = keras.ops.convert_to_numpy(variable)
    new = old.copy()
    flat = new.reshape(-1)
    if np.issubdtype(flat.dtype, np.integer):
        flat[index] += 1
    else:
        flat[index] = np.nextafter(flat[index], np.array(np.inf, dtype=flat.dtype))
    variable.assign(new)
    return old


# ----------------------------------------------------------------------------- GAN


@pytest.fixture(scope="module")
def trained_gan():
    """A GAN trained one epoch of 6 batches, with the trace recorded every batch."""
    keras.utils.set_random_seed(0)
    gan = script.make_gan()
    callback = kr.DeterminismCallback(every="batch", deterministic_ops=False, audit="off")
    gan.fit(script.gan_data(GAN_BATCHES), epochs=1, shuffle=False, verbose=0, callbacks=[callback])
    return gan, callback.records


@pytest.mark.tensorflow_only("the GAN's train_step uses tf.GradientTape, as the keras-io DCGAN does")
def test_gan_optimizers_are_found_by_their_attributes(trained_gan):
    gan, _ = trained_gan
    optimizers = kr.paths.optimizer_paths(gan)
    assert list(optimizers) == ["optimizer", "d_optimizer", "g_optimizer"]
    assert optimizers["d_optimizer"] is gan.d_optimizer and optimizers["g_optimizer"] is gan.g_optimizer
    state = tracked_state(gan)
    for name, net in (("d_optimizer", "discriminator"), ("g_optimizer", "generator")):
        for weight in (f"{net}/dense#0/kernel", f"{net}/dense#1/bias"):
            for slot in ("momentum", "velocity"):
                assert state.kinds[f"{name}/{weight}/{slot}"] == "optimizer"
        assert state.kinds[f"{name}/iterations"] == "optimizer"
    assert state.kinds["seed_generator"] == "seed_generator"  # the GAN's latent-vector generator
    assert not any(path.startswith("unlisted/") for path in state.variables)


@pytest.mark.tensorflow_only("the GAN's train_step uses tf.GradientTape, as the keras-io DCGAN does")
@pytest.mark.parametrize(
    "path",
    [
        "d_optimizer/discriminator/dense#0/kernel/momentum",
        "d_optimizer/discriminator/dense#1/bias/velocity",
        "g_optimizer/generator/dense#0/kernel/velocity",
        "g_optimizer/generator/dense#1/bias/momentum",
        "d_optimizer/iterations",
        "g_optimizer/iterations",
    ],
)
def test_gan_fingerprint_changes_with_one_ulp_of_either_optimizer(trained_gan, path):
    gan, _ = trained_gan
    before = fingerprint_details(gan)
    variable = tracked_state(gan).variables[path]
    old = _nudge(variable)
    try:
        after = fingerprint_details(gan)
    finally:
        variable.assign(old)
    assert after.digest != before.digest
    assert [p for p in before.variables if before.variables[p] != after.variables[p]] == [path]
    assert fingerprint_details(gan).digest == before.digest


@pytest.mark.tensorflow_only("the GAN's train_step uses tf.GradientTape, as the keras-io DCGAN does")
def test_gan_trace_step_is_the_training_step_of_both_optimizers(trained_gan):
    gan, records = trained_gan
    assert int(gan.optimizer.iterations.numpy()) == 0  # compile()'s default, never used
    steps = {int(gan.d_optimizer.iterations.numpy()), int(gan.g_optimizer.iterations.numpy())}
    assert steps == {GAN_BATCHES}
    batches = [r for r in records if r["type"] == "batch"]
    assert [r["step"] for r in batches] == list(range(1, GAN_BATCHES + 1))
    assert records[-1]["type"] == "fit_end" and records[-1]["step"] == GAN_BATCHES
    assert fingerprint_details(gan).iterations == GAN_BATCHES
    assert all(r["data"] is not None for r in batches)  # the custom train_step's batches are fingerprinted


@pytest.mark.tensorflow_only("the GAN's train_step uses tf.GradientTape, as the keras-io DCGAN does")
@pytest.mark.slow
def test_gan_killed_in_epoch_2_resumes_bit_identical(tmp_path):
    straight, resumed, straight_trace, resumed_trace = _kill_and_resume(tmp_path, "gan", "epoch")
    assert resumed["fingerprint"] == straight["fingerprint"]
    assert resumed["variables"] == straight["variables"]
    assert (
        resumed["optimizer_steps"]
        == straight["optimizer_steps"]
        == {
            "optimizer": 0,
            "d_optimizer": 4 * GAN_BATCHES,
            "g_optimizer": 4 * GAN_BATCHES,
        }
    )
    assert kr.compare_traces(straight_trace, resumed_trace) is None
    records = kr.load_trace(resumed_trace).records
    assert [(r["type"], r["epoch"], r["step"]) for r in records] == [
        ("fit_begin", None, 0),
        *[("epoch", e, (e + 1) * GAN_BATCHES) for e in range(4)],
        ("fit_end", 3, 24),
    ]


@pytest.fixture(scope="module")
def gan_backup(tmp_path_factory):
    """A backup of the GAN after one epoch."""
    folder = tmp_path_factory.mktemp("gan_backup")
    keras.utils.set_random_seed(0)
    gan = script.make_gan()
    gan.fit(
        script.gan_data(),
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[ExactBackupAndRestore(folder, delete_checkpoint=False)],
    )
    return folder


@pytest.mark.parametrize(
    "d_optimizer, named",
    [
        # One slot per weight where Adam has two: the velocities are missing.
        (
            lambda: keras.optimizers.SGD(momentum=0.9),
            ["d_optimizer/iterations", "in the backup but not in this model: ['d_optimizer/discriminator/"],
        ),
        # A third slot per weight, which the backup does not have.
        (
            lambda: keras.optimizers.Adam(amsgrad=True),
            ["in this model but not in the backup: ['d_optimizer/discriminator/", "dense#0/kernel/velocity_hat"],
        ),
    ],
    ids=["sgd", "adam_amsgrad"],
)
@pytest.mark.tensorflow_only("the GAN's train_step uses tf.GradientTape, as the keras-io DCGAN does")
def test_gan_backup_for_another_d_optimizer_is_refused_and_the_model_left_as_it_was(gan_backup, d_optimizer, named):
    backup = gan_backup / "backup.weights.h5"
    on_disk = backup.read_bytes()
    keras.utils.set_random_seed(1)
    gan = script.make_gan(d_optimizer=d_optimizer())
    weights = {p: keras.ops.convert_to_numpy(v) for p, v in kr.paths.weight_paths(gan).items()}
    generators = {p: keras.ops.convert_to_numpy(g.state) for p, g in kr.paths.seed_generator_paths(gan).items()}
    with pytest.raises(ValueError, match="the resume would not be exact") as e:
        gan.fit(script.gan_data(), epochs=2, shuffle=False, verbose=0, callbacks=[ExactBackupAndRestore(gan_backup)])
    message = str(e.value)
    assert "not restored to their backed-up values: ['d_optimizer/discriminator/" in message
    assert "d_optimizer/discriminator/dense#0/kernel/momentum" in message
    for text in named:
        assert text in message
    assert "g_optimizer/" not in message  # restored exactly, not blamed
    assert "Skipping variable loading for optimizer" in message  # what Keras said
    for path, value in kr.paths.weight_paths(gan).items():
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(value), weights[path], err_msg=path)
    for path, generator in kr.paths.seed_generator_paths(gan).items():
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(generator.state), generators[path], err_msg=path)
    assert int(gan.d_optimizer.iterations.numpy()) == int(gan.g_optimizer.iterations.numpy()) == 0
    assert backup.read_bytes() == on_disk


# ----------------------------------------------------------------------------- distiller


def test_distiller_fingerprint_covers_the_student_optimizer():
    keras.utils.set_random_seed(0)
    distiller = script.make_distiller()
    x, y = script.distiller_data()
    distiller.fit(x, y, epochs=1, batch_size=script.BATCH_SIZE, shuffle=False, verbose=0)
    state = tracked_state(distiller)
    assert list(kr.paths.optimizer_paths(distiller)) == ["optimizer", "teacher/optimizer"]
    for slot in ("momentum", "velocity"):
        assert state.kinds[f"optimizer/student/dense#0/kernel/{slot}"] == "optimizer"
        assert state.kinds[f"teacher/optimizer/teacher/dense#0/kernel/{slot}"] == "optimizer"
    before = fingerprint_details(distiller)
    path = "optimizer/student/dense#1/kernel/velocity"
    old = _nudge(state.variables[path], index=2)
    after = fingerprint_details(distiller)
    state.variables[path].assign(old)
    assert [p for p in before.variables if before.variables[p] != after.variables[p]] == [path]


def test_distiller_trains_identically_in_two_processes(tmp_path):
    runs = [_start(tmp_path / name, "distiller", "--every", "batch") for name in ("a", "b")]
    for proc in runs:
        _wait(proc, expect_killed=False)
    a, b = _final(tmp_path / "a"), _final(tmp_path / "b")
    assert kr.compare_traces(tmp_path / "a" / "trace.jsonl", tmp_path / "b" / "trace.jsonl") is None
    assert a["fingerprint"] == b["fingerprint"]
    assert a["optimizer_steps"] == {"optimizer": 16, "teacher/optimizer": 8}  # 4 and 2 epochs of 4 batches
    assert "optimizer/student/dense#0/kernel/momentum" in a["variables"]


# ----------------------------------------------------------------------------- mixed precision


@pytest.mark.slow
def test_mixed_precision_loss_scale_state_is_fingerprinted_and_resumed_bit_identical(tmp_path):
    # Recorded every batch: the first step after the backup (epoch 2, batch 0)
    # overflows and is skipped, so the killed run recorded a batch at the
    # backup's optimizer step before it died.
    straight, resumed, straight_trace, resumed_trace = _kill_and_resume(tmp_path, "mixed", "batch")
    assert straight["policy"] == resumed["policy"] == "mixed_float16"  # set in the children only
    assert keras.mixed_precision.global_policy().name == "float32"
    kinds = straight["kinds"]
    # The wrapper's own state, then its inner optimizer's under inner_optimizer/.
    for path in ("optimizer/step_counter", "optimizer/dynamic_scale", "optimizer/inner_optimizer/iterations"):
        assert kinds[path] == "optimizer", path
    for weight in ("dense#0/kernel", "dense#0/bias", "dense#1/kernel", "dense#1/bias"):
        for slot in ("momentum", "velocity"):
            assert kinds[f"optimizer/inner_optimizer/{weight}/{slot}"] == "optimizer"
    assert not [p for p in kinds if "#" in p.rsplit("/", 1)[-1]]  # no name needed a position to be unique
    # Overflowing steps are skipped (the loss scale halves) and the scale
    # grows every 5 good steps: the loss-scale state changes during training.
    records = kr.load_trace(straight_trace).records
    assert 0 < straight["optimizer_steps"]["optimizer"] < 4 * MIXED_BATCHES
    assert len({dict(r["variables"]).get("optimizer/dynamic_scale") for r in records} - {None}) > 1
    epoch_2 = [r["step"] for r in records if r["type"] == "batch" and r["epoch"] == 2]
    end_of_epoch_1 = next(r["step"] for r in records if r["type"] == "batch" and r["epoch"] == 1 and r["batch"] == 5)
    assert epoch_2[:2] == [end_of_epoch_1, end_of_epoch_1 + 1]  # the skipped step
    assert resumed["fingerprint"] == straight["fingerprint"]
    assert resumed["variables"] == straight["variables"]
    assert resumed["optimizer_steps"] == straight["optimizer_steps"]
    assert resumed["loss_scale"] == straight["loss_scale"]
    assert _positions(resumed_trace) == _positions(straight_trace)
    assert kr.compare_traces(straight_trace, resumed_trace) is None


# ----------------------------------------------------------------------------- gradient accumulation


class _Steps(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append(int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)))


def test_gradient_accumulation_state_is_covered_and_its_step_counted():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((script.FEATURES,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(gradient_accumulation_steps=2), "mse")
    x, y = script.mixed_data()
    trace, steps = kr.DeterminismCallback(every="batch", deterministic_ops=False, audit="off"), _Steps()
    model.fit(x, y, batch_size=script.BATCH_SIZE, shuffle=False, verbose=0, callbacks=[steps, trace])
    state = tracked_state(model)
    assert state.kinds["optimizer/dense#0/kernel/gradient_accumulator"] == "optimizer"
    assert "optimizer/iterations" in state.variables
    assert steps.steps == [0, 1, 1, 2, 2, 3]  # Keras' optimizer.iterations counts applied updates
    # The training step counts the batches trained on (the optimizer's own
    # counter), so that each record has its own step, as resume and locate need.
    assert [r["step"] for r in trace.records if r["type"] == "batch"] == [1, 2, 3, 4, 5, 6]
    assert fingerprint_details(model).iterations == 6
