import concurrent.futures as cf
import importlib.util
import inspect
import json
import math
import multiprocessing
import os
import pickle
import random
import sys
import threading
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

import keras_repro as kr
from keras_repro.sweep import SweepFailure
from keras_repro.sweep import SweepResult
from keras_repro.sweep import SweepWarning
from keras_repro.sweep import process_pool
from procs import run_pythons

TESTS_DIR = str(Path(__file__).resolve().parent)
if TESTS_DIR not in sys.path:  # worker processes import sweep_fns by name
    sys.path.insert(0, TESTS_DIR)

import sweep_fns  # noqa: E402

sweep_module = sys.modules["keras_repro.sweep"]  # `keras_repro.sweep` is the function


@pytest.fixture
def workers_can_import_tests(monkeypatch):
    """Spawned workers find sweep_fns whatever pytest's import mode."""
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", TESTS_DIR + (os.pathsep + path if path else ""))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")


def quiet_sweep(fn, seeds, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", kr.ReproducibilityWarning)  # PYTHONHASHSEED unset
        warnings.simplefilter("always", SweepWarning)  # a ReproducibilityWarning; tests assert it
        return kr.sweep(fn, seeds=seeds, progress=False, **kwargs)


def result_from(values, metric="acc", seeds=None):
    seeds = list(range(len(values))) if seeds is None else seeds
    return SweepResult(seeds=seeds, metrics={s: {metric: float(v)} for s, v in zip(seeds, values)})


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "seeds, error, words",
    [
        (0, ValueError, ["seeds: 0", "positive"]),
        (-3, ValueError, ["seeds: -3", "positive"]),
        (True, TypeError, ["True"]),
        (2.5, TypeError, ["2.5", "number of seeds"]),
        ("abc", TypeError, ["'abc'", "iterable of integer seeds"]),
        (None, TypeError, ["None"]),
        ([], ValueError, ["empty"]),
        ([1, 2, 1, 3, 3], ValueError, ["duplicates [1, 3]"]),
        ([1, -2], ValueError, ["seeds[1]", "-2", "[0, 4294967295]"]),
        ([1, 2.0], TypeError, ["seeds[1]", "2.0"]),
    ],
)
def test_bad_seeds_are_clear_errors(seeds, error, words):
    with pytest.raises(error) as e:
        kr.sweep(sweep_fns.draws, seeds=seeds, progress=False)
    for word in words:
        assert word in str(e.value)


def test_other_bad_arguments_are_clear_errors():
    with pytest.raises(TypeError, match="Invalid fn: 3 .*not callable"):
        kr.sweep(3, seeds=2)
    with pytest.raises(ValueError, match="Invalid seed: -1"):
        kr.sweep(sweep_fns.draws, seeds=2, root_seed=-1)
    with pytest.raises(TypeError, match="Invalid progress: 'yes'"):
        kr.sweep(sweep_fns.draws, seeds=2, progress="yes")
    with pytest.raises(TypeError, match="Invalid executor: 'processes'.*concurrent.futures.Executor"):
        kr.sweep(sweep_fns.draws, seeds=2, executor="processes")
    with pytest.raises(ValueError, match="max_workers: 0"):
        process_pool(0)
    with pytest.raises(ValueError, match="threads_per_worker: 0"):
        process_pool(1, threads_per_worker=0)


def test_unpicklable_fn_with_a_process_pool_is_a_type_error():
    # The pool starts no worker: the check comes before anything is submitted.
    pool = cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))

    def nested(seed):
        return 1.0

    try:
        for fn in (lambda seed: 1.0, nested):
            with pytest.raises(TypeError, match="cannot be pickled.*module level"):
                kr.sweep(fn, seeds=2, executor=pool, progress=False)
    finally:
        pool.shutdown()


def test_fn_from_an_interactive_main_with_a_process_pool_is_a_type_error(monkeypatch):
    interactive_main = types.ModuleType("__main__")  # no __file__, as in a notebook
    monkeypatch.setitem(sys.modules, "__main__", interactive_main)

    def experiment(seed):
        return 1.0

    experiment.__module__ = "__main__"
    pool = cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    try:
        with pytest.raises(TypeError, match="interactive session or notebook"):
            kr.sweep(experiment, seeds=2, executor=pool, progress=False)
    finally:
        pool.shutdown()


def test_fork_process_pool_is_rejected():
    # Forking a process that has loaded TensorFlow deadlocks the child.
    pool = cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"))
    try:
        with pytest.raises(ValueError, match="'fork' start method.*process_pool"):
            kr.sweep(sweep_fns.draws, seeds=2, executor=pool, progress=False)
    finally:
        pool.shutdown()


def test_process_pool_uses_spawn():
    with process_pool(1) as pool:
        assert isinstance(pool, cf.ProcessPoolExecutor)
        assert pool._mp_context.get_start_method() == "spawn"


# ---------------------------------------------------------------- seeds


def test_seed_count_derives_seeds_from_root_seed():
    result = quiet_sweep(sweep_fns.draws, 4)
    assert result.seeds == [kr.derive_seed(0, "sweep", i) for i in range(4)]
    assert result.root_seed == 0
    other = quiet_sweep(sweep_fns.draws, 3, root_seed=5)
    assert other.seeds == [kr.derive_seed(5, "sweep", i) for i in range(3)]
    explicit = quiet_sweep(sweep_fns.draws, [9, np.int64(4)])
    assert explicit.seeds == [9, 4] and explicit.root_seed is None
    assert all(type(s) is int for s in explicit.seeds)


def test_each_call_is_seeded_from_its_seed_and_restores_the_callers_streams():
    random.seed(123)
    np.random.seed(123)
    expected_py, expected_np = random.random(), np.random.rand()
    random.seed(123)
    np.random.seed(123)
    result = quiet_sweep(sweep_fns.draws, [7, 8])
    assert random.random() == expected_py and np.random.rand() == expected_np
    with kr.isolated_rng(7):
        assert result.metrics[7]["value"] == sweep_fns.draws(7)
    assert result.metrics[7] != result.metrics[8]


def test_another_thread_drawing_from_random_does_not_change_a_run():
    # A Dask worker's event-loop thread draws from Python's global `random`
    # while a task runs; the run's thread must not see those draws.
    fn = _wait_short
    reference = quiet_sweep(fn, [1, 2])
    stop = threading.Event()

    def noise():
        while not stop.is_set():
            random.random()

    thread = threading.Thread(target=noise)
    thread.start()
    try:
        noisy = quiet_sweep(fn, [1, 2])
    finally:
        stop.set()
        thread.join()
    assert noisy.metrics == reference.metrics


def _wait_short(seed):
    return sweep_fns.draws_after_wait(seed, wait=0.2)


def test_shuffled_seed_order_gives_the_same_per_seed_results_in_process():
    seeds = [11, 22, 33]
    forward = quiet_sweep(sweep_fns.train_tiny, seeds)
    backward = quiet_sweep(sweep_fns.train_tiny, seeds[::-1])
    alone = quiet_sweep(sweep_fns.train_tiny, [33])
    assert backward.metrics == forward.metrics
    assert alone.metrics[33] == forward.metrics[33]
    assert forward.metrics[11] != forward.metrics[22]  # the seed matters
    assert forward.metric_names == ["loss", "accuracy", "kernel_sum", "draw"]
    assert all(type(v) is float for m in forward.metrics.values() for v in m.values())


def test_one_sweep_in_two_processes_in_opposite_orders_is_bit_identical():
    code = """
    import sys, warnings
    sys.path.insert(0, {tests!r})
    import keras_repro as kr, sweep_fns
    warnings.simplefilter("ignore")
    result = kr.sweep(sweep_fns.train_tiny, seeds={seeds!r}, progress=False)
    emit({{str(s): m for s, m in result.metrics.items()}})
    """
    seeds = [5, 6, 7]
    first, second = run_pythons(
        [code.format(tests=TESTS_DIR, seeds=seeds), code.format(tests=TESTS_DIR, seeds=seeds[::-1])]
    )
    assert first == second
    here = quiet_sweep(sweep_fns.train_tiny, seeds)
    assert {str(s): m for s, m in here.metrics.items()} == first


def test_a_thread_pool_runs_one_seed_at_a_time_with_the_same_results():
    # The global streams are process-wide: runs in threads of one process
    # are serialized, and Keras' thread-local state is set up in each thread.
    seeds = [11, 22]
    here = quiet_sweep(sweep_fns.train_tiny, seeds)
    with cf.ThreadPoolExecutor(2) as pool:
        threaded = quiet_sweep(sweep_fns.train_tiny, seeds, executor=pool)
    assert threaded.metrics == here.metrics


# ---------------------------------------------------------------- metrics and failures


def test_metric_values_are_converted_to_python_floats():
    import keras

    returned = {
        0: 1,
        1: np.float32(0.25),
        2: keras.ops.convert_to_tensor(2.5),
        3: np.array(3.5, dtype=np.float64),
        4: {"a": np.int64(4), "b": 0.5},
    }
    result = quiet_sweep(lambda seed: returned[seed], list(returned))
    assert result.metrics == {
        0: {"value": 1.0},
        1: {"value": 0.25},
        2: {"value": 2.5},
        3: {"value": 3.5},
        4: {"a": 4.0, "b": 0.5},
    }
    assert all(type(v) is float for m in result.metrics.values() for v in m.values())


@pytest.mark.parametrize(
    "value, words",
    [
        ("0.5", ["str", "real numbers"]),
        ([0.5], ["list", "real numbers"]),
        (np.zeros(2), ["ndarray"]),
        (True, ["bool"]),
        (float("nan"), ["nan", "finite"]),
        ({"loss": float("inf")}, ["'loss'", "inf"]),
        ({}, ["empty dict"]),
        ({1: 0.5}, ["key 1", "strings"]),
        (None, ["NoneType"]),
    ],
)
def test_a_bad_metric_is_a_failure_of_that_seed(value, words):
    with pytest.warns(SweepWarning):
        result = quiet_sweep(lambda seed: value if seed == 2 else 1.0, [1, 2])
    assert result.metrics == {1: {"value": 1.0}}
    (failure,) = result.failures
    assert failure.seed == 2
    for word in words:
        assert word in failure.message


def _fails_on_odd(seed):
    if seed % 2:
        raise RuntimeError(f"{sweep_fns.FAILING_SEED_MARKER}: {seed}")
    return float(seed)


def test_a_failing_seed_is_reported_with_its_traceback_and_the_others_are_kept():
    with pytest.warns(SweepWarning, match=r"2 of 5 seeds failed \(seeds 1, 3\).*seed 1: RuntimeError"):
        result = quiet_sweep(_fails_on_odd, [1, 2, 3, 4, 6])
    assert result.metrics == {2: {"value": 2.0}, 4: {"value": 4.0}, 6: {"value": 6.0}}
    assert [f.seed for f in result.failures] == [1, 3]
    failure = result.failures[0]
    assert failure.error_type == "RuntimeError"
    assert failure.message == f"{sweep_fns.FAILING_SEED_MARKER}: 1"
    assert "Traceback" in failure.traceback and "_fails_on_odd" in failure.traceback
    assert str(failure) == f"seed 1: RuntimeError: {sweep_fns.FAILING_SEED_MARKER}: 1"
    summary = result.summary()
    assert (summary.n, summary.n_failed) == (3, 2)
    assert "2 failed" in str(summary)


def test_sweep_warning_is_a_reproducibility_warning_at_the_callers_line():
    assert issubclass(SweepWarning, kr.ReproducibilityWarning)
    assert issubclass(SweepWarning, UserWarning)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = inspect.currentframe().f_lineno + 1
        kr.sweep(_fails_on_odd, seeds=[1, 2], progress=False)
    (warning,) = [w for w in caught if w.category is SweepWarning]
    assert (warning.filename, warning.lineno) == (__file__, line)


def test_all_seeds_failing_makes_summary_say_so():
    with pytest.warns(SweepWarning):
        result = quiet_sweep(_fails_on_odd, [1, 3])
    with pytest.raises(ValueError, match=r"(?s)No seed of this sweep succeeded \(2 of 2 failed\).*Traceback"):
        result.summary()


# ---------------------------------------------------------------- progress


def test_progress_shows_seed_count_elapsed_and_eta(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kr.sweep(sweep_fns.draws, seeds=3, progress=True)
    err = capsys.readouterr().err
    assert "seed 0/3" in err and "seed 3/3" in err
    assert "elapsed" in err and "ETA" in err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kr.sweep(sweep_fns.draws, seeds=3, progress=False)
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------- statistics

KNOWN = [0.71, 0.74, 0.69, 0.80, 0.77, 0.73, 0.75, 0.68, 0.72, 0.79]


def test_summary_statistics_match_numpy():
    summary = result_from(KNOWN).summary()
    values = np.array(KNOWN)
    assert summary.metric == "acc" and summary.n == 10 and summary.n_failed == 0
    assert summary.mean == np.mean(values)
    assert summary.std == np.std(values, ddof=1)
    assert summary.median == np.median(values)
    assert (summary.min, summary.max) == (0.68, 0.80)
    assert summary.ci_low < summary.mean < summary.ci_high
    assert summary.confidence == 0.95


def test_bootstrap_interval_is_reproducible_and_independent_of_seed_order():
    a = result_from(KNOWN).summary()
    b = result_from(KNOWN[::-1]).summary()
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    other = result_from(KNOWN).summary(bootstrap_seed=1)
    assert (other.ci_low, other.ci_high) != (a.ci_low, a.ci_high)
    assert abs(other.ci_low - a.ci_low) < 0.005
    wider = result_from(KNOWN).summary(confidence=0.99)
    assert wider.ci_low < a.ci_low and wider.ci_high > a.ci_high


def test_bootstrap_interval_has_the_width_and_coverage_of_a_95_percent_interval():
    rng = np.random.default_rng(2024)
    # Width: about 2 * 1.96 standard errors for a large normal sample.
    big = rng.normal(size=400)
    s = result_from(big).summary()
    expected = 2 * 1.96 * np.std(big, ddof=1) / math.sqrt(len(big))
    assert s.ci_high - s.ci_low == pytest.approx(expected, rel=0.1)
    # Coverage: over 200 samples of 30 seeds, the interval holds the true mean ~95% of the time.
    hits = 0
    for _ in range(200):
        s = result_from(rng.normal(loc=5.0, size=30)).summary(resamples=2000)
        hits += s.ci_low <= 5.0 <= s.ci_high
    assert 0.88 <= hits / 200 <= 0.99


def test_constant_values_and_a_single_seed():
    s = result_from([0.5] * 5).summary()
    assert (s.mean, s.std, s.ci_low, s.ci_high) == (0.5, 0.0, 0.5, 0.5)
    one = result_from([0.5]).summary()
    assert one.mean == 0.5 and math.isnan(one.std) and math.isnan(one.ci_low)


def test_summary_argument_errors():
    result = SweepResult(seeds=[1, 2], metrics={1: {"a": 1.0, "b": 2.0}, 2: {"a": 1.5, "b": 2.5}})
    with pytest.raises(ValueError, match=r"several metrics \['a', 'b'\]"):
        result.summary()
    with pytest.raises(ValueError, match=r"Unknown metric 'c'"):
        result.summary("c")
    with pytest.raises(ValueError, match="confidence: 1.5"):
        result.summary("a", confidence=1.5)
    with pytest.raises(ValueError, match="resamples: 0"):
        result.summary("a", resamples=0)
    assert result.summary("b").mean == 2.25
    np.testing.assert_array_equal(result.values("a"), [1.0, 1.5])


def test_compare_says_whether_a_difference_is_larger_than_seed_noise():
    rng = np.random.default_rng(7)
    base = result_from(rng.normal(0.80, 0.02, size=30))
    better = result_from(rng.normal(0.85, 0.02, size=30))
    same = result_from(rng.normal(0.80, 0.02, size=30))

    up = base.compare(better)
    assert up.difference == pytest.approx(np.mean(better.values()) - np.mean(base.values()))
    assert up.difference > 0 and up.ci_low > 0 and up.larger_than_noise
    assert "larger than seed noise" in up.verdict and "higher" in up.verdict
    assert str(up) == up.verdict

    down = better.compare(base)
    assert down.difference == -up.difference and down.ci_high < 0 and "lower" in down.verdict

    noise = base.compare(same)
    assert noise.ci_low < 0 < noise.ci_high and not noise.larger_than_noise
    assert "within seed noise" in noise.verdict
    assert base.compare(same) == noise  # reproducible


def test_t_test_p_values_match_the_closed_forms():
    from keras_repro.sweep.stats import t_test_p_value

    for t in (0.0, 0.3, 1.0, 2.5, 12.0):
        # df = 1 is the Cauchy distribution, df = 2 has a closed form too.
        assert t_test_p_value(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(t), abs=1e-12)
        assert t_test_p_value(-t, 2) == pytest.approx(1 - t / math.sqrt(2 + t * t), abs=1e-12)
        # Many degrees of freedom: the normal distribution.
        assert t_test_p_value(t, 1e7) == pytest.approx(math.erfc(t / math.sqrt(2)), abs=1e-6)
    assert t_test_p_value(math.inf, 5) == 0.0 and math.isnan(t_test_p_value(1.0, 0))


def test_the_interquartile_mean_cuts_a_quarter_from_each_end():
    from keras_repro.sweep.stats import interquartile_mean

    assert interquartile_mean(np.arange(1.0, 9.0)) == 4.5  # 3, 4, 5, 6
    assert interquartile_mean(np.array([7, 1, 2, 1000, 3, 4, 5, 6.0])) == 4.5  # the outlier is cut
    assert interquartile_mean(np.array([2.0, 4.0, 9.0])) == 5.0  # int(0.75) = 0 cut
    summary = result_from([1, 2, 3, 4, 5, 6, 7, 1000]).summary()
    assert summary.iqm == 4.5 and "IQM 4.5" in str(summary)


def test_pairing_by_seed_sees_a_small_effect_that_seed_noise_hides_unpaired():
    # Each seed moves both configurations alike (the same weights, data order
    # and masks); the candidate is better by 0.01 on every seed, give or take.
    rng = np.random.default_rng(3)
    seed_effect = rng.normal(0.80, 0.05, size=30)
    base = result_from(seed_effect)
    candidate = result_from(seed_effect + 0.01 + rng.normal(0, 0.002, size=30))
    unpaired, paired = base.compare(candidate), base.compare(candidate, paired=True)
    assert not unpaired.larger_than_noise and unpaired.p_value > 0.05 and not unpaired.paired
    assert paired.larger_than_noise and paired.p_value < 1e-6 and paired.paired
    assert paired.difference == pytest.approx(unpaired.difference)
    assert (paired.ci_high - paired.ci_low) < (unpaired.ci_high - unpaired.ci_low) / 10
    assert "paired t-test p = " in paired.verdict and "30 paired seeds" in paired.verdict
    assert "Welch's t-test p = " in unpaired.verdict
    assert base.compare(candidate, paired=True) == paired  # reproducible


def test_pairing_needs_the_same_seeds_and_uses_those_that_succeeded_in_both():
    base = result_from([0.1, 0.2, 0.3, 0.4], seeds=[1, 2, 3, 4])
    with pytest.raises(ValueError, match=r"same seeds in the same order.*e\.g\. \[4, 5\] in only one"):
        base.compare(result_from([0.1, 0.2, 0.3, 0.4], seeds=[1, 2, 3, 5]), paired=True)
    with pytest.raises(ValueError, match="in another order"):
        base.compare(result_from([0.1, 0.2, 0.3, 0.4], seeds=[4, 3, 2, 1]), paired=True)
    with pytest.raises(TypeError, match="paired"):
        base.compare(base, paired="yes")
    failed = SweepResult(
        seeds=[1, 2, 3, 4],
        metrics={1: {"acc": 0.2}, 2: {"acc": 0.3}, 4: {"acc": 0.5}},
        failures=[SweepFailure(3, "E", "m", "t")],
    )
    comparison = base.compare(failed, paired=True)
    assert (comparison.n_self, comparison.n_other) == (3, 3)  # seed 3 failed in one: left out
    assert comparison.difference == pytest.approx(0.1)


def test_compare_argument_errors():
    base = result_from([0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="at least 2 successful seeds.*have 3 and 1"):
        base.compare(result_from([0.2]))
    with pytest.raises(ValueError, match="Unknown metric 'acc'"):
        base.compare(result_from([0.1, 0.2], metric="loss"))
    with pytest.raises(TypeError, match="another SweepResult"):
        base.compare([0.1, 0.2])


def test_sweep_result_constructor_validates_its_input():
    with pytest.raises(ValueError, match=r"Seeds \[3\] have results but are not in seeds"):
        SweepResult(seeds=[1], metrics={1: {"a": 1.0}, 3: {"a": 1.0}})
    with pytest.raises(ValueError, match=r"Seeds \[2\] have neither"):
        SweepResult(seeds=[1, 2], metrics={1: {"a": 1.0}})
    with pytest.raises(ValueError, match="both metrics and a failure"):
        SweepResult(seeds=[1], metrics={1: {"a": 1.0}}, failures=[SweepFailure(1, "E", "m", "t")])
    with pytest.raises(ValueError, match=r"metrics\[1\]: .*'a' is nan"):
        SweepResult(seeds=[1], metrics={1: {"a": float("nan")}})


# ---------------------------------------------------------------- views and files


def test_save_and_load_round_trip_exactly(tmp_path):
    values = [0.1 + 0.2, 1 / 3, 2.0**-40, 0.7]
    metrics = {s: {"acc": v, "loss": -v} for s, v in zip([4, 9, 2, 7], values)}
    failures = [SweepFailure(5, "ValueError", "bad", "Traceback ...\nValueError: bad\n")]
    result = SweepResult([4, 9, 5, 2, 7], metrics, failures, root_seed=None, seconds={4: 1.5})
    path = tmp_path / "sweep.json"
    result.save(path)
    document = json.loads(path.read_text())
    assert (document["format"], document["version"]) == ("keras_repro.sweep", 1)
    loaded = SweepResult.load(path)
    assert loaded.seeds == result.seeds and loaded.root_seed is None
    assert loaded.metrics == metrics and loaded.failures == failures
    assert loaded.seconds == {4: 1.5}
    assert loaded.summary("acc") == result.summary("acc")


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        SweepResult.load(tmp_path / "missing.json")
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"format": "keras_repro.sweep", "vers')
    with pytest.raises(ValueError, match=r"corrupt\.json: not a valid keras_repro\.sweep document"):
        SweepResult.load(corrupt)
    other = tmp_path / "other.json"
    other.write_text('{"format": "keras_repro.trace", "version": 1}')
    with pytest.raises(ValueError, match=r"other\.json: expected a keras_repro\.sweep document"):
        SweepResult.load(other)
    malformed = tmp_path / "malformed.json"
    malformed.write_text('{"format": "keras_repro.sweep", "version": 1, "seeds": [1]}')
    with pytest.raises(ValueError, match=r"malformed\.json: malformed keras_repro\.sweep document"):
        SweepResult.load(malformed)


def test_to_frame():
    pd = pytest.importorskip("pandas")
    result = SweepResult(
        [3, 1, 2],
        {3: {"a": 1.0, "b": 2.0}, 2: {"a": 3.0, "b": 4.0}},
        [SweepFailure(1, "E", "m", "t")],
    )
    frame = result.to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.index) == [3, 2] and frame.index.name == "seed"
    assert list(frame.columns) == ["a", "b"]
    assert frame.loc[2, "b"] == 4.0


def test_plot_draws_each_seed_and_the_interval():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    result = result_from(KNOWN)
    ax = result.plot()
    try:
        (points,) = ax.collections
        assert len(points.get_offsets()) == len(KNOWN)
        np.testing.assert_array_equal(np.asarray(points.get_offsets())[:, 1], KNOWN)
        assert "95% CI of the mean" in [t.get_text() for t in ax.get_legend().get_texts()]
        assert ax.get_ylabel() == "acc"
    finally:
        plt.close(ax.figure)


def test_save_plot_refuses_a_suffix_matplotlib_cannot_write_and_writes_nothing(tmp_path):
    pytest.importorskip("matplotlib")
    result = result_from(KNOWN)
    with pytest.raises(ValueError, match=r"cannot write 'xyz' images\. Allowed suffixes: .*\.png"):
        result.save_plot(tmp_path / "sweep.xyz")
    assert list(tmp_path.iterdir()) == []
    result.save_plot(tmp_path / "sweep.svg")
    assert (tmp_path / "sweep.svg").read_text().lstrip().startswith("<?xml")


def test_missing_optional_dependencies_name_the_extra(monkeypatch):
    result = result_from(KNOWN)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="pip install pandas"):
        result.to_frame()
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"keras_repro\[plot\]"):
        result.plot()


# ---------------------------------------------------------------- executors


class _PicklingExecutor(cf.Executor):
    """Pickles every task as a process pool or Dask would, keeps it, and runs it here."""

    def __init__(self, dumps):
        self.dumps = dumps
        self.tasks = []

    def submit(self, fn, /, *args, **kwargs):
        blob = self.dumps((fn, args, kwargs))
        self.tasks.append(blob.hex())
        task, args, kwargs = pickle.loads(blob)
        future = cf.Future()
        future.set_result(task(*args, **kwargs))
        return future


def test_the_tasks_a_sweep_submits_run_when_unpickled_in_a_fresh_interpreter():
    # Workers import what a task names by its module path before anything
    # else: the run function must live at an importable path.
    cloudpickle = pytest.importorskip("cloudpickle")  # what Dask sends tasks with
    executors = [_PicklingExecutor(pickle.dumps), _PicklingExecutor(cloudpickle.dumps)]
    here = [quiet_sweep(sweep_fns.draws, [7, 8], executor=executor) for executor in executors]
    code = """
    import pickle, sys
    sys.path.insert(0, {tests!r})
    records = []
    for blob in {tasks!r}:
        task, args, kwargs = pickle.loads(bytes.fromhex(blob))
        records.append(task(*args, **kwargs))
    emit([{{"seed": r["seed"], "metrics": r["metrics"]}} for r in records])
    """
    tasks = [task for executor in executors for task in executor.tasks]
    (fresh,) = run_pythons([code.format(tests=TESTS_DIR, tasks=tasks)])
    expected = [{"seed": s, "metrics": result.metrics[s]} for result in here for s in (7, 8)]
    assert fresh == expected
    assert here[0].metrics == quiet_sweep(sweep_fns.draws, [7, 8]).metrics


@pytest.mark.slow
def test_process_pool_results_are_bit_identical_to_in_process(workers_can_import_tests):
    seeds = [11, 22, 33, 44]
    here = quiet_sweep(sweep_fns.train_tiny, seeds)
    with process_pool(2) as pool:
        pooled = quiet_sweep(sweep_fns.train_tiny, seeds, executor=pool)
        with pytest.warns(SweepWarning, match="2 of 4 seeds failed"):
            failing = quiet_sweep(sweep_fns.train_tiny_fails_on_odd, seeds, executor=pool)
    assert pooled.metrics == here.metrics
    assert failing.metrics == {22: here.metrics[22], 44: here.metrics[44]}
    assert [f.seed for f in failing.failures] == [11, 33]
    assert f"{sweep_fns.FAILING_SEED_MARKER}: 33" in failing.failures[1].traceback
    assert "train_tiny_fails_on_odd" in failing.failures[1].traceback

    # A plain spawn ProcessPoolExecutor is just as good.
    with cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        plain = quiet_sweep(sweep_fns.train_tiny, seeds[::-1], executor=pool)
    assert plain.metrics == here.metrics


@pytest.mark.tensorflow_only("TensorFlow's thread counts are read back in the workers")
def test_process_pool_workers_get_their_share_of_the_cores(workers_can_import_tests):
    with process_pool(1, threads_per_worker=1) as pool:
        chosen = quiet_sweep(sweep_fns.thread_counts, [1], executor=pool)
    with process_pool(2) as pool:  # the default: the usable cores divided among the workers
        shared = quiet_sweep(sweep_fns.thread_counts, [1, 2], executor=pool)
    assert chosen.metrics[1] == {"omp": 1.0, "intra": 1.0, "inter": 1.0}
    share = float(max(1, kr.usable_cores() // 2))
    assert shared.metrics[1] == shared.metrics[2] == {"omp": share, "intra": share, "inter": share}


def test_a_worker_that_dies_becomes_a_failure_record(workers_can_import_tests):
    with process_pool(1) as pool:
        with pytest.warns(SweepWarning):
            result = quiet_sweep(sweep_fns.exits_on_seed_3, [1, 2, 3, 4], executor=pool)
    assert 3 in {f.seed for f in result.failures}
    assert {f.error_type for f in result.failures} == {"BrokenProcessPool"}
    assert set(result.metrics) | {f.seed for f in result.failures} == {1, 2, 3, 4}
    assert result.metrics == {s: {"value": float(s)} for s in result.metrics}


@pytest.mark.slow
def test_dask_local_cluster_results_are_bit_identical_to_in_process(workers_can_import_tests):
    distributed = pytest.importorskip("distributed")
    seeds = [11, 22, 33, 44]
    here = quiet_sweep(sweep_fns.train_tiny, seeds)
    waits = quiet_sweep(sweep_fns.draws_after_wait, [1, 2, 3, 4])
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        on_dask = quiet_sweep(sweep_fns.train_tiny, seeds, executor=client)
        # Draws after a wait race with the workers' heartbeats (which draw
        # from Python's global `random`) unless each run has its own stream.
        waits_on_dask = quiet_sweep(sweep_fns.draws_after_wait, [1, 2, 3, 4], executor=client)
        # Dask pickles with cloudpickle: lambdas work there.
        lambdas = quiet_sweep(lambda seed: seed / 2, [2, 3], executor=client.get_executor())
    assert on_dask.metrics == here.metrics
    assert waits_on_dask.metrics == waits.metrics
    assert lambdas.metrics == {2: {"value": 1.0}, 3: {"value": 1.5}}


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed (the ray extra)")
def test_ray_local_cluster_results_are_bit_identical_to_in_process(workers_can_import_tests):
    import ray

    seeds = [11, 22, 33, 44]
    here = quiet_sweep(sweep_fns.train_tiny, seeds)
    with pytest.raises(ValueError, match=r"Ray is not initialized\. Call ray\.init\(\)"):
        quiet_sweep(sweep_fns.draws, seeds, executor=ray)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        on_ray = quiet_sweep(sweep_fns.train_tiny, seeds, executor=ray)
        lambdas = quiet_sweep(lambda seed: seed / 2, [2, 3], executor=ray)  # cloudpickle takes lambdas
    finally:
        ray.shutdown()
    assert on_ray.metrics == here.metrics
    assert lambdas.metrics == {2: {"value": 1.0}, 3: {"value": 1.5}}
