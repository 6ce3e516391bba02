"""Exact resume: a killed run, started again, ends bit-identical to an uninterrupted one."""

import json
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_repro as kr
from keras_repro.callbacks import ExactBackupAndRestore
from keras_repro.callbacks import exact_backup_and_restore as ebr
from procs import child_env
from procs import keras_older_than

SCRIPT = Path(__file__).with_name("resume_script.py")


def _start(out: Path, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(out), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env({"PYTHONHASHSEED": "0"}),
    )


def _wait(proc: subprocess.Popen, expect_killed: bool) -> None:
    out, err = proc.communicate(timeout=300)
    if expect_killed:
        assert proc.returncode == -9, f"expected SIGKILL, got exit {proc.returncode}\n{err[-3000:]}"
    else:
        assert proc.returncode == 0, err[-3000:]


def _final(out: Path) -> str:
    return json.loads((out / "final.json").read_text())["fingerprint"]


SCENARIOS = {
    # name: script arguments; each kill lands after at least one backup
    "epoch_backups_kill_mid_epoch": ["--save-freq", "epoch", "--kill-at", 30],
    "batch_backups_kill_mid_epoch": ["--save-freq", 5, "--kill-at", 33],
    "kill_during_backup_write": ["--save-freq", 5, "--kill-in-save", 4],
}


def _kill_then_resume(tmp_path: Path, scenarios: dict, *flags: str) -> Path:
    """Runs each scenario until its kill, and the uninterrupted run, then resumes each; returns the latter's folder."""
    straight = tmp_path / "straight"
    first = {name: _start(tmp_path / name, *args) for name, args in scenarios.items()}
    baseline = _start(straight, "--save-freq", "epoch", *flags)
    for proc in first.values():
        _wait(proc, expect_killed=True)
    resumed = {name: _start(tmp_path / name, *args) for name, args in scenarios.items()}
    _wait(baseline, expect_killed=False)
    for proc in resumed.values():
        _wait(proc, expect_killed=False)
    return straight


@pytest.mark.slow
def test_killed_runs_resume_bit_identical_to_the_uninterrupted_run(tmp_path):
    straight = _kill_then_resume(tmp_path, SCENARIOS)

    reference = kr.trace.load_trace(straight / "trace.jsonl")
    assert len(reference.records) == 1 + 4 * 12 + 1  # fit_begin, every batch, fit_end
    for name in SCENARIOS:
        out = tmp_path / name
        assert (out / "killed").exists(), name  # the kill did happen
        assert _final(out) == _final(straight), name
        assert kr.compare_traces(straight / "trace.jsonl", out / "trace.jsonl") is None, name
        assert kr.trace.load_trace(out / "trace.jsonl").records == reference.records, name
        assert not (out / "backup").exists(), name  # removed once training completed


@pytest.mark.slow
def test_killed_runs_with_step_digests_resume_to_the_same_trace(tmp_path):
    # Recorded per epoch with step digests: the backup carries the steps not yet
    # read, so the resumed run's epoch record lists every step of the epoch.
    scenarios = {
        name: [*SCENARIOS[name], "--steps"] for name in ("epoch_backups_kill_mid_epoch", "batch_backups_kill_mid_epoch")
    }
    straight = _kill_then_resume(tmp_path, scenarios, "--steps")
    reference = kr.trace.load_trace(straight / "trace.jsonl")
    listed = [len(r["steps"]["state"]) for r in reference.records if "steps" in r]
    assert listed == [12, 12, 12, 12]
    for name in scenarios:
        out = tmp_path / name
        assert (out / "killed").exists(), name
        assert _final(out) == _final(straight), name
        assert kr.trace.load_trace(out / "trace.jsonl").records == reference.records, name


@pytest.mark.slow
@pytest.mark.skipif(
    keras_older_than(3, 8), reason="Keras < 3.8 cannot create a SeedGenerator under a tf.distribute strategy"
)
def test_killed_mirrored_runs_resume_bit_identical_to_the_uninterrupted_mirrored_run(tmp_path):
    scenarios = {
        "epoch_backups": ["--save-freq", "epoch", "--kill-at", 30],
        "batch_backups": ["--save-freq", 5, "--kill-at", 33],
    }
    straight = tmp_path / "straight"
    first = {name: _start(tmp_path / name, *args, "--mirrored") for name, args in scenarios.items()}
    baseline = _start(straight, "--save-freq", "epoch", "--mirrored")
    for proc in first.values():
        _wait(proc, expect_killed=True)
    resumed = {name: _start(tmp_path / name, *args, "--mirrored") for name, args in scenarios.items()}
    _wait(baseline, expect_killed=False)
    for proc in resumed.values():
        _wait(proc, expect_killed=False)
    reference = kr.trace.load_trace(straight / "trace.jsonl").records
    assert len(reference) == 1 + 4 * 12 + 1
    for name in scenarios:
        out = tmp_path / name
        assert (out / "killed").exists(), name
        assert _final(out) == _final(straight), name
        assert kr.trace.load_trace(out / "trace.jsonl").records == reference, name


# ------------------------------------------------------------------ in-process checks of files and errors


def _model(seed=1, units=4, name="out"):
    inputs = keras.Input((3,))
    hidden = keras.layers.Dropout(0.2)(keras.layers.Dense(units)(inputs))
    model = kr.SeededModel(inputs, keras.layers.Dense(1, name=name)(hidden), seed=seed)
    model.compile(optimizer="adam", loss="mse")
    return model


X, Y = np.ones((16, 3), "float32"), np.zeros((16, 1), "float32")


def _backup(folder, model=None, **kwargs):
    model = model or _model()
    model.fit(
        X,
        Y,
        epochs=2,
        batch_size=4,
        verbose=0,
        callbacks=[ExactBackupAndRestore(folder, delete_checkpoint=False, **kwargs)],
    )
    return model


def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _state(path: Path) -> dict:
    import h5py

    with h5py.File(path, "r") as f:
        return json.loads(f.attrs["keras_repro_backup"])


def test_a_backup_is_one_weights_file_carrying_the_state(tmp_path):
    _backup(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.weights.h5"]
    state = _state(tmp_path / "backup.weights.h5")
    assert state["format"] == "keras_repro.backup" and state["version"] == 2
    assert (state["epoch"], state["step"], state["iterations"]) == (2, 0, 8)
    assert "dropout#0/seed_generator" in state["rng"]["seed_generators"]
    # Still a plain Keras weights file.
    model = _model()
    model.optimizer.build(model.trainable_variables)
    model.load_weights(tmp_path / "backup.weights.h5")


def test_backup_from_another_model_is_refused_and_nothing_changes(tmp_path):
    _backup(tmp_path)
    before = _snapshot(tmp_path)
    other = _model(units=5)
    weights = [w.copy() for w in other.get_weights()]
    with pytest.raises(ValueError) as e:
        other.fit(X, Y, epochs=1, verbose=0, callbacks=[ExactBackupAndRestore(tmp_path)])
    assert "different model" in str(e.value) and "dense#0/kernel" in str(e.value)
    assert _snapshot(tmp_path) == before
    assert all(np.array_equal(a, b) for a, b in zip(weights, other.get_weights()))


def _flip_one_weight(folder: Path) -> None:
    import h5py

    with h5py.File(folder / "backup.weights.h5", "r+") as f:
        names = []
        f.visititems(lambda name, node: names.append(name) if isinstance(node, h5py.Dataset) else None)
        data = f[names[0]]
        value = data[()]
        value.flat[0] = np.nextafter(value.flat[0], value.dtype.type(np.inf))  # one ULP: silent corruption
        data[...] = value


def _set_state(folder: Path, text: str) -> None:
    import h5py

    with h5py.File(folder / "backup.weights.h5", "r+") as f:
        f.attrs["keras_repro_backup"] = text


@pytest.mark.parametrize(
    "damage, message",
    [
        (_flip_one_weight, "fail their checksum"),
        (lambda d: _set_state(d, '{"format": "keras_repro.backup", "vers'), "corrupt or truncated"),
        (
            lambda d: (d / "backup.weights.h5").write_bytes((d / "backup.weights.h5").read_bytes()[:2000]),
            "cannot be read",
        ),
        (lambda d: (d / "backup.weights.h5").write_bytes(b"\0" * 64), "cannot be read"),
    ],
)
def test_corrupted_backup_gives_a_clear_error_and_changes_nothing(tmp_path, damage, message):
    _backup(tmp_path)
    damage(tmp_path)
    before = _snapshot(tmp_path)
    model = _model()
    weights = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=message):
        model.fit(X, Y, epochs=1, verbose=0, callbacks=[ExactBackupAndRestore(tmp_path)])
    assert _snapshot(tmp_path) == before
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))


def test_double_checkpoint_falls_back_to_the_previous_backup_with_a_warning(tmp_path):
    _backup(tmp_path, double_checkpoint=True)
    (tmp_path / "backup.weights.h5").write_text("garbage")
    model = _model()
    with pytest.warns(kr.ReproducibilityWarning, match="resuming from the previous one"):
        point = ExactBackupAndRestore(tmp_path, double_checkpoint=True).restore_before_fit(model)
    assert (point.epoch, point.step) == (1, 0)


def test_batch_backups_need_a_model_that_can_resume_mid_epoch(tmp_path):
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    plain.compile("sgd", "mse")
    with pytest.raises(ValueError, match="save_freq=2.*SeededModel"):
        plain.fit(X, Y, epochs=1, verbose=0, callbacks=[ExactBackupAndRestore(tmp_path, save_freq=2)])


@pytest.mark.parametrize("slow_publication", [False, True])
def test_plain_models_resume_at_epoch_boundaries(tmp_path, monkeypatch, slow_publication):
    if slow_publication:
        # The crashed fit's last backup is still being published (in the
        # background) when the next fit reads the folder: without waiting for
        # it, the restore read the old document and then the new weights.
        seal, read = ebr.seal_backup_file, ebr.read_backup_file

        def slow_seal(path, document):
            if document["epoch"] == 2:
                time.sleep(0.3)
            seal(path, document)

        def slow_read(path):
            document = read(path)
            time.sleep(0.6)
            return document

        monkeypatch.setattr(ebr, "seal_backup_file", slow_seal)
        monkeypatch.setattr(ebr, "read_backup_file", slow_read)

    def make():
        model = keras.Sequential(
            [
                keras.Input((3,)),
                keras.layers.Dropout(0.5, seed=3),
                keras.layers.Dense(1, kernel_initializer=kr.initializers.he_normal(seed=0, key="k")),
            ]
        )
        model.compile("sgd", "mse")
        return model

    straight = make()
    straight.fit(X, Y, epochs=3, batch_size=4, shuffle=False, verbose=0)

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt  # a crash after the epoch-1 backup

    first = make()
    with pytest.raises(KeyboardInterrupt):
        first.fit(
            X, Y, epochs=3, batch_size=4, shuffle=False, verbose=0, callbacks=[ExactBackupAndRestore(tmp_path), Stop()]
        )
    again = make()
    again.fit(X, Y, epochs=3, batch_size=4, shuffle=False, verbose=0, callbacks=[ExactBackupAndRestore(tmp_path)])
    assert all(np.array_equal(a, b) for a, b in zip(straight.get_weights(), again.get_weights()))
    assert not tmp_path.exists()  # delete_checkpoint=True removes the folder when it holds only backups


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"backup_dir": ""}, ValueError, "Invalid backup_dir: ''"),
        ({"save_freq": 0}, ValueError, "Invalid save_freq: 0"),
        ({"save_freq": "batch"}, ValueError, "Invalid save_freq: 'batch'"),
        ({"save_freq": True}, ValueError, "Invalid save_freq: True"),
        ({"double_checkpoint": "yes"}, TypeError, "Invalid double_checkpoint: 'yes'"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        ExactBackupAndRestore(**{"backup_dir": tmp_path, **kwargs})


def test_get_config_round_trip(tmp_path):
    callback = ExactBackupAndRestore(tmp_path, save_freq=3, double_checkpoint=True)
    clone = ExactBackupAndRestore.from_config(callback.get_config())
    assert clone.get_config() == callback.get_config()


def test_seeded_model_save_carries_seed_generator_states_to_another_process(tmp_path):
    from procs import run_python

    build = """
import numpy as np, keras, keras_repro as kr
x = np.linspace(0, 1, 48, dtype="float32").reshape(16, 3); y = x.sum(1, keepdims=True)
def make():
    i = keras.Input((3,))
    m = kr.SeededModel(i, keras.layers.Dense(1)(keras.layers.Dropout(0.5)(keras.layers.Dense(8)(i))), seed=3)
    m.compile("sgd", "mse")
    return m
def states(m):
    return [g.state.numpy().tolist() for g in kr.paths.seed_generator_paths(m).values()]
"""
    path = tmp_path / "m.keras"
    saved = run_python(
        build
        + f"""
m = make(); m.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0)
m.save({str(path)!r}); s = states(m)
m.fit(x, y, epochs=1, batch_size=4, shuffle=False, verbose=0)
emit({{"states": s, "continued": [w.tolist() for w in m.get_weights()]}})
"""
    )
    loaded = run_python(
        build
        + f"""
m = keras.models.load_model({str(path)!r}, safe_mode=True); s = states(m)
m.fit(x, y, epochs=1, batch_size=4, shuffle=False, verbose=0)
emit({{"states": s, "continued": [w.tolist() for w in m.get_weights()], "seed": m.seed}})
"""
    )
    assert saved["states"][0][1] == 8  # 8 training steps drew 8 masks
    assert loaded == {**saved, "seed": 3}


def test_mid_epoch_backup_is_refused_before_anything_changes_where_it_cannot_resume_exactly(tmp_path):
    # 2 epochs of 4 batches, a backup every 3 batches: after 3 batches, then after 2 of epoch 1.
    _backup(tmp_path, save_freq=3)
    state = _state(tmp_path / "backup.weights.h5")
    assert (state["epoch"], state["step"]) == (1, 2)
    before = _snapshot(tmp_path)
    seeded = _model()
    inputs = keras.Input((3,))
    hidden = keras.layers.Dropout(0.2)(keras.layers.Dense(4)(inputs))
    plain = keras.Model(inputs, keras.layers.Dense(1, name="out")(hidden))  # same paths, not a SeededModel
    plain.compile(optimizer="adam", loss="mse")
    for model, shuffle in ((seeded, False), (plain, True)):
        weights = [w.copy() for w in model.get_weights()]
        with pytest.raises(ValueError, match="after 2 batches of epoch 1.*Nothing was restored"):
            model.fit(
                X, Y, epochs=3, batch_size=4, shuffle=shuffle, verbose=0, callbacks=[ExactBackupAndRestore(tmp_path)]
            )
        assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
    assert _snapshot(tmp_path) == before
