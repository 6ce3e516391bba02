"""Seed sweeps: repeat an experiment over many seeds and report the spread.

A fixed seed makes a run repeatable, not good. The honest way to report a
model, and to compare two, is to repeat the experiment over many seeds (30 or
more) and summarise the distribution; the seed is not a hyperparameter to
tune. `sweep` runs ``fn(seed)`` once per seed, each call isolated (fresh
Keras session, every global random stream seeded from ``seed``), in-process,
on a process pool or on a Dask cluster, and returns a `SweepResult` with the
per-seed metrics, a summary with a bootstrap confidence interval, and a
comparison against another sweep.

Example:

```python
import keras
import numpy as np
import keras_repro as kr

def experiment(seed):
    x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    y = (x.sum(axis=1) > 0).astype("float32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=2, verbose=0)
    return {"accuracy": history.history["accuracy"][-1]}

result = kr.sweep(experiment, seeds=30)
print(result.summary())
```
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import math
import numbers
import pickle
import random
import sys
import threading
import time
import traceback
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, Union

import numpy as np

from keras_repro import _files
from keras_repro.seeds import derive_seed, isolated_rng, seed_everything, validate_seed

__all__ = [
    "DEFAULT_METRIC",
    "SweepComparison",
    "SweepFailure",
    "SweepResult",
    "SweepSummary",
    "SweepWarning",
    "process_pool",
    "sweep",
]

#: Name under which a plain number returned by ``fn(seed)`` is stored.
DEFAULT_METRIC = "value"

_FORMAT = "keras_repro.sweep"
_VERSION = 1
# Bootstrap resamples are drawn in chunks of about this many indices, so
# memory stays bounded however many seeds a sweep has.
_CHUNK_ELEMENTS = 1 << 20
# One run at a time per process: the global random streams a run is seeded
# through are process-wide, so two threads of one worker must not interleave.
_RUN_LOCK = threading.Lock()

Metrics = Union[float, Mapping[str, float]]


class SweepWarning(UserWarning):
    """Warning category for seeds of a sweep that failed.

    Example:

    ```python
    import warnings
    import keras_repro as kr
    warnings.simplefilter("error", kr.SweepWarning)
    ```
    """


@dataclass(frozen=True)
class SweepFailure:
    """One seed whose ``fn(seed)`` raised (or whose worker died).

    Attributes:
        seed: the seed.
        error_type: the exception's class name, e.g. ``"ValueError"``.
        message: ``str(exception)``.
        traceback: the formatted traceback, as text (from the worker where
            the seed ran).
    """

    seed: int
    error_type: str
    message: str
    traceback: str

    def __str__(self) -> str:
        return f"seed {self.seed}: {self.error_type}: {self.message}"


@dataclass(frozen=True)
class SweepSummary:
    """Summary statistics of one metric over the successful seeds of a sweep.

    ``std`` is the sample standard deviation (``ddof=1``); ``ci_low`` and
    ``ci_high`` bound the percentile bootstrap confidence interval of the
    mean. With fewer than two successful seeds ``std`` and the interval are
    NaN.
    """

    metric: str
    n: int
    n_failed: int
    mean: float
    std: float
    median: float
    min: float
    max: float
    ci_low: float
    ci_high: float
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict."""
        return asdict(self)

    def __str__(self) -> str:
        failed = f", {self.n_failed} failed" if self.n_failed else ""
        return (
            f"{self.metric} over {self.n} seeds{failed}: mean {_fmt(self.mean)} "
            f"({self.confidence:.0%} CI {_fmt(self.ci_low)} .. {_fmt(self.ci_high)}), "
            f"std {_fmt(self.std)}, median {_fmt(self.median)}, "
            f"min {_fmt(self.min)}, max {_fmt(self.max)}"
        )


@dataclass(frozen=True)
class SweepComparison:
    """Difference of one metric's mean between two sweeps, with its interval.

    ``difference`` is ``mean(other) - mean(self)`` for ``self.compare(other)``;
    ``ci_low`` and ``ci_high`` bound its percentile bootstrap confidence
    interval, the two sweeps resampled independently. ``larger_than_noise``
    is True when the interval excludes zero; ``verdict`` says it in words.
    """

    metric: str
    mean_self: float
    mean_other: float
    difference: float
    ci_low: float
    ci_high: float
    confidence: float
    n_self: int
    n_other: int
    larger_than_noise: bool
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict."""
        return asdict(self)

    def __str__(self) -> str:
        return self.verdict


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4g}"


# ---------------------------------------------------------------------------
# One run: the same function in-process and in every worker.


def _to_metric(value: Any, name: str) -> float:
    """Converts one metric value to a finite Python float, or raises."""
    where = "fn(seed) returned" if name == DEFAULT_METRIC else f"metric {name!r} is"
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"{where} a bool ({value!r}); metrics must be real numbers: "
            "return float(x) if you mean 1.0/0.0."
        )
    if isinstance(value, numbers.Real):
        result = float(value)
    else:
        try:
            array = np.asarray(value)
        except Exception:  # noqa: BLE001 - any failure means "not a number"
            array = None
        if array is None or array.ndim != 0 or array.dtype.kind not in "iuf":
            raise TypeError(
                f"{where} {type(value).__name__} {_short_repr(value)}; metrics "
                "must be real numbers (Python, NumPy or 0-d tensor scalars), "
                "e.g. history.history['val_loss'][-1]."
            )
        result = float(array)
    if not math.isfinite(result):
        raise ValueError(f"{where} {result}: metrics must be finite (did training diverge?).")
    return result


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _to_metrics(value: Any) -> dict[str, float]:
    """Converts what ``fn(seed)`` returned to ``{name: float}``, or raises."""
    if isinstance(value, Mapping):
        if not value:
            raise ValueError("fn(seed) returned an empty dict; return at least one metric.")
        metrics = {}
        for name, item in value.items():
            if not isinstance(name, str):
                raise TypeError(
                    f"fn(seed) returned a dict with key {name!r} of type "
                    f"{type(name).__name__}; metric names must be strings."
                )
            metrics[name] = _to_metric(item, name)
        return metrics
    return {DEFAULT_METRIC: _to_metric(value, DEFAULT_METRIC)}


def _failure_record(seed: int, error: BaseException) -> dict[str, Any]:
    return {
        "seed": seed,
        "ok": False,
        "error_type": type(error).__name__,
        "message": str(error),
        "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__)),
    }


# The module-level functions of `random` that draw from, or set, its hidden
# global generator.
_RANDOM_FUNCTIONS = (
    "betavariate", "binomialvariate", "choice", "choices", "expovariate",
    "gammavariate", "gauss", "getrandbits", "getstate", "lognormvariate",
    "normalvariate", "paretovariate", "randbytes", "randint", "random",
    "randrange", "sample", "seed", "setstate", "shuffle", "triangular",
    "uniform", "vonmisesvariate", "weibullvariate",
)  # fmt: skip


@contextlib.contextmanager
def _thread_private_python_random() -> Iterator[random.Random | None]:
    """Gives the calling thread a private copy of Python's global generator.

    Inside the block, ``random.<function>(...)`` called from this thread
    (``random.seed`` included) uses a private `random.Random` that starts in
    the global generator's current state; other threads keep using the
    global one. Without this, a run in a Dask worker is not reproducible:
    the worker's event-loop thread draws from the global generator on every
    heartbeat and task message (`dask.sizeof` samples collections with
    `random.sample`), and Keras draws the seeds of unseeded initializers and
    Dropout layers from it. Code that bound a function early (``from random
    import randint``) still uses the global generator.

    Yields:
        The global generator, or None when `random` has been patched by
        someone else and no routing was installed.
    """
    shared = getattr(random.random, "__self__", None)
    if not isinstance(shared, random.Random):
        yield None
        return
    own = random.Random()
    own.setstate(shared.getstate())
    owner = threading.get_ident()
    saved = {}
    for name in _RANDOM_FUNCTIONS:
        function = getattr(random, name, None)
        if getattr(function, "__self__", None) is shared:
            saved[name] = function
            setattr(random, name, _routed(function, getattr(own, name), owner))
    try:
        yield shared
    finally:
        for name, function in saved.items():
            setattr(random, name, function)


def _routed(shared: Callable, own: Callable, owner: int) -> Callable:
    @functools.wraps(shared)
    def call(*args: Any, **kwargs: Any) -> Any:
        return (own if threading.get_ident() == owner else shared)(*args, **kwargs)

    return call


def _run_one(fn: Callable[[int], Metrics], seed: int) -> dict[str, Any]:
    """Runs ``fn(seed)`` isolated and returns a JSON-safe record.

    This is the only code path for a run, in-process and in worker processes
    alike: a fresh Keras session, every global random stream seeded from
    `seed` (Python's `random` private to the calling thread), the caller's
    streams restored afterwards. An exception from `fn`, or a return value
    that is not a metric, becomes a failure record.
    """
    import keras

    with _RUN_LOCK, isolated_rng():
        keras.backend.clear_session()
        with _thread_private_python_random() as shared:
            seed_everything(seed)  # this thread's `random.seed` seeds its private copy
            if shared is not None:  # early-bound `random` functions: same stream
                shared.setstate(random.getstate())
            start = time.perf_counter()
            try:
                metrics = _to_metrics(fn(seed))
            except Exception as error:  # noqa: BLE001 - reported per seed
                return _failure_record(seed, error)
            seconds = time.perf_counter() - start
    return {"seed": seed, "ok": True, "metrics": metrics, "seconds": seconds}


# ---------------------------------------------------------------------------
# Arguments.


def _resolve_seeds(seeds: int | Iterable[int], root_seed: int) -> tuple[list[int], int | None]:
    root_seed = validate_seed(root_seed)
    if isinstance(seeds, bool):
        raise TypeError(f"Invalid seeds: {seeds!r}. Pass a number of seeds (e.g. 30) or an iterable of seeds.")
    if isinstance(seeds, numbers.Integral):
        count = int(seeds)
        if count < 1:
            raise ValueError(
                f"Invalid seeds: {count}. The number of seeds must be a positive "
                "integer (30 or more gives a useful estimate of the spread)."
            )
        return [derive_seed(root_seed, "sweep", i) for i in range(count)], root_seed
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise TypeError(
            f"Invalid seeds: {_short_repr(seeds)} (of type {type(seeds).__name__}). "
            "Pass a number of seeds (e.g. 30) or an iterable of integer seeds."
        )
    result: list[int] = []
    for index, seed in enumerate(seeds):
        try:
            result.append(validate_seed(seed))
        except (TypeError, ValueError) as e:
            raise type(e)(f"seeds[{index}]: {e}") from None
    if not result:
        raise ValueError("Invalid seeds: the iterable is empty. Give at least one seed.")
    seen: set[int] = set()
    duplicates = sorted({s for s in result if s in seen or seen.add(s)})
    if duplicates:
        raise ValueError(
            f"Invalid seeds: duplicates {duplicates}. Each seed must appear once; "
            "a repeated seed repeats the same run and would weigh it twice."
        )
    return result, None


def _is_dask(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "distributed"


def _resolve_executor(executor: Any) -> tuple[cf.Executor | None, str]:
    """Returns (concurrent.futures executor or None, description)."""
    if executor is None:
        return None, "in-process"
    if _is_dask(executor) and hasattr(executor, "get_executor"):
        # A distributed.Client. pure=False: never reuse a cached result.
        return executor.get_executor(pure=False), "dask"
    if isinstance(executor, cf.Executor):
        return executor, "dask" if _is_dask(executor) else type(executor).__name__
    raise TypeError(
        f"Invalid executor: {_short_repr(executor)} (of type {type(executor).__name__}). "
        "Pass None (in-process), a concurrent.futures.Executor (e.g. "
        "keras_repro.process_pool(2)) or a dask distributed.Client."
    )


def _check_fn_for_workers(fn: Callable, executor: cf.Executor) -> None:
    """Raises a clear error when `fn` cannot reach `executor`'s workers."""
    if isinstance(executor, cf.ThreadPoolExecutor):
        return
    if isinstance(executor, cf.ProcessPoolExecutor):
        context = getattr(executor, "_mp_context", None)
        method = context.get_start_method() if context is not None else None
        if method == "fork":
            raise ValueError(
                "Invalid executor: a ProcessPoolExecutor using the 'fork' start "
                "method. Forking a process that has loaded TensorFlow deadlocks. "
                "Use keras_repro.process_pool(n), or ProcessPoolExecutor(n, "
                "mp_context=multiprocessing.get_context('spawn'))."
            )
        main = sys.modules.get("__main__")
        if getattr(fn, "__module__", None) == "__main__" and not getattr(main, "__file__", None):
            raise TypeError(
                f"fn {getattr(fn, '__qualname__', fn)!r} is defined in an interactive "
                "session or notebook, which worker processes cannot import. Put it "
                "in a module (a .py file) and import it from there."
            )
    if _is_dask(executor):
        import cloudpickle

        dumps = cloudpickle.dumps
    else:
        dumps = pickle.dumps
    try:
        dumps(fn)
    except Exception as e:  # noqa: BLE001 - any pickling failure
        raise TypeError(
            f"fn {getattr(fn, '__qualname__', fn)!r} cannot be pickled, and a "
            f"{type(executor).__name__} sends it to worker processes. Define it "
            "with `def` at module level in an importable module (not a lambda, "
            f"a nested function or a bound method of an unpicklable object). "
            f"Pickling said: {type(e).__name__}: {e}"
        ) from None


def process_pool(max_workers: int | None = None) -> cf.ProcessPoolExecutor:
    """A process pool that is safe to use with TensorFlow: spawned workers.

    A ``concurrent.futures.ProcessPoolExecutor`` using the ``spawn`` start
    method. The default start method on Linux, ``fork``, deadlocks a child
    of a process that has loaded TensorFlow. Workers live as long as the
    pool, so each imports TensorFlow once, not once per seed.

    Args:
        max_workers: number of worker processes; defaults to the number of
            CPUs.

    Returns:
        A ``ProcessPoolExecutor``; use it as a context manager, or call its
        ``shutdown()`` when done.

    Example:

    ```python
    import keras_repro as kr
    from my_experiments import experiment   # a module-level function

    if __name__ == "__main__":
        with kr.process_pool(2) as pool:
            result = kr.sweep(experiment, seeds=30, executor=pool)
    ```
    """
    import multiprocessing

    if max_workers is not None and (
        isinstance(max_workers, bool) or not isinstance(max_workers, numbers.Integral) or max_workers < 1
    ):
        raise ValueError(f"Invalid max_workers: {max_workers!r}. It must be a positive integer or None.")
    return cf.ProcessPoolExecutor(max_workers=max_workers, mp_context=multiprocessing.get_context("spawn"))


# ---------------------------------------------------------------------------
# Progress.


class _Progress:
    """One status line on stderr: seeds done, failures, elapsed time, ETA."""

    def __init__(self, total: int, where: str, enabled: bool):
        self.total = total
        self.where = where
        self.enabled = enabled
        self.start = time.perf_counter()
        self.stream = sys.stderr
        self.tty = enabled and bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = 0

    def update(self, done: int, failed: int) -> None:
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        eta = f"{elapsed / done * (self.total - done):.1f}s" if done else "?"
        failures = f" ({failed} failed)" if failed else ""
        line = (
            f"sweep ({self.where}): seed {done}/{self.total}{failures}  "
            f"elapsed {elapsed:.1f}s  ETA {eta}"
        )
        if self.tty:
            self.stream.write("\r" + line.ljust(self.width))
            self.width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# ---------------------------------------------------------------------------
# The sweep.


def sweep(
    fn: Callable[[int], Metrics],
    seeds: int | Iterable[int] = 30,
    root_seed: int = 0,
    executor: Any = None,
    progress: bool = True,
) -> "SweepResult":
    """Runs ``fn(seed)`` once per seed and collects the metrics it returns.

    Each call runs isolated: `keras.backend.clear_session()` (auto-names
    restart at ``dense``), then every global random stream is seeded from the
    seed (`seed_everything`), and the caller's streams are restored after the
    call. A seed's result is therefore the same whether it ran first or last,
    alone, in-process or in a worker process, provided the process-wide
    settings it depends on are the same there (call
    `keras_repro.enable_determinism()` or set environment variables inside
    `fn`, or before the workers start, not only in the calling process).

    A call that raises, or returns something that is not a metric, is kept
    as a `SweepFailure` (seed, exception type, message, traceback); the other
    seeds' results are kept, and a `SweepWarning` names the failed seeds.

    Args:
        fn: ``fn(seed) -> metric``: builds, trains and evaluates a model and
            returns a real number or a dict of ``{name: real number}``
            (Python, NumPy or 0-d tensor scalars; non-finite values count as
            a failure of that seed). With a process or Dask executor `fn`
            must be picklable: a module-level function of an importable
            module.
        seeds: the number of seeds (derived from `root_seed` as
            ``derive_seed(root_seed, "sweep", i)``), or an iterable of
            distinct seeds. Use 30 or more to estimate the spread.
        root_seed: root of the derived seeds; ignored when `seeds` is an
            iterable.
        executor: None to run in this process; a
            ``concurrent.futures.Executor`` (e.g. `process_pool`); or a Dask
            ``distributed.Client``. The executor is not shut down.
        progress: whether to show "seed k/N, elapsed, ETA" on stderr.

    Returns:
        A `SweepResult`.

    Raises:
        TypeError / ValueError: bad `fn`, `seeds`, `root_seed`, `executor`.

    Example:

    ```python
    import keras_repro as kr

    def experiment(seed):
        ...  # build, train, evaluate
        return {"val_accuracy": 0.9}

    result = kr.sweep(experiment, seeds=30)
    print(result.summary("val_accuracy"))
    ```
    """
    if not callable(fn):
        raise TypeError(
            f"Invalid fn: {_short_repr(fn)} (of type {type(fn).__name__}) is not "
            "callable. Pass a function fn(seed) returning a metric."
        )
    if not isinstance(progress, bool):
        raise TypeError(f"Invalid progress: {progress!r}. It must be True or False.")
    seed_list, root = _resolve_seeds(seeds, root_seed)
    pool, where = _resolve_executor(executor)
    if pool is not None:
        _check_fn_for_workers(fn, pool)

    records: dict[int, dict[str, Any]] = {}
    display = _Progress(len(seed_list), where, progress)
    display.update(0, 0)

    def collected(record: dict[str, Any]) -> None:
        records[record["seed"]] = record
        display.update(len(records), sum(not r["ok"] for r in records.values()))

    try:
        if pool is None:
            for seed in seed_list:
                collected(_run_one(fn, seed))
        else:
            _run_on(pool, fn, seed_list, collected)
    finally:
        display.close()

    result = SweepResult._from_records(seed_list, [records[s] for s in seed_list], root)
    if result.failures:
        shown = ", ".join(str(f.seed) for f in result.failures[:10])
        more = ", ..." if len(result.failures) > 10 else ""
        warnings.warn(
            f"{len(result.failures)} of {len(seed_list)} seeds failed (seeds {shown}{more}); "
            f"first: {result.failures[0]}. The tracebacks are in result.failures.",
            SweepWarning,
            stacklevel=2,
        )
    return result


def _run_on(
    pool: cf.Executor,
    fn: Callable,
    seeds: Sequence[int],
    collected: Callable[[dict[str, Any]], None],
) -> None:
    futures: dict[cf.Future, int] = {}
    try:
        for seed in seeds:
            futures[pool.submit(_run_one, fn, seed)] = seed
        for future in cf.as_completed(futures):
            seed = futures[future]
            try:
                record = future.result()
            except Exception as error:  # noqa: BLE001 - a worker died, or transport failed
                record = _failure_record(seed, error)
            collected(record)
    except BaseException:
        for future in futures:
            future.cancel()
        raise


# ---------------------------------------------------------------------------
# Statistics.


def _check_stats_args(confidence: float, resamples: int, bootstrap_seed: int) -> int:
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real) or not 0 < confidence < 1:
        raise ValueError(f"Invalid confidence: {confidence!r}. It must be a number strictly between 0 and 1, e.g. 0.95.")
    if isinstance(resamples, bool) or not isinstance(resamples, numbers.Integral) or resamples < 1:
        raise ValueError(f"Invalid resamples: {resamples!r}. It must be a positive integer, e.g. 10_000.")
    return validate_seed(bootstrap_seed)


def _bootstrap_means(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `resamples` resamples (with replacement) of `values`."""
    values = np.sort(values)  # the interval depends on the values, not their order
    n = len(values)
    means = np.empty(resamples)
    chunk = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    return means


def _percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [tail, 1.0 - tail])
    return float(low), float(high)


def _bootstrap_rng(bootstrap_seed: int, *path: str) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(derive_seed(bootstrap_seed, "bootstrap", *path)))


# ---------------------------------------------------------------------------
# The result.


class SweepResult:
    """Per-seed metrics of a sweep, their summary, comparison and storage.

    Built by `sweep` or `SweepResult.load`; can also be built from metrics
    collected elsewhere.

    Args:
        seeds: every seed of the sweep, in order (successful and failed).
        metrics: ``{seed: {name: value}}`` for the successful seeds.
        failures: `SweepFailure` records of the failed seeds.
        root_seed: the root the seeds were derived from, or None.
        seconds: optional ``{seed: run time in seconds}``.

    Attributes:
        seeds: list of every seed, in order.
        metrics: dict ``{seed: {name: float}}`` of the successful seeds.
        failures: list of `SweepFailure`, in seed order.
        root_seed: int or None.
        seconds: dict ``{seed: float}`` of run times of successful seeds.

    Example:

    ```python
    import keras_repro as kr

    result = kr.SweepResult(seeds=[1, 2, 3], metrics={1: {"acc": 0.8}, 2: {"acc": 0.82}, 3: {"acc": 0.79}})
    result.summary().mean
    result.save("sweep.json")
    same = kr.SweepResult.load("sweep.json")
    ```
    """

    def __init__(
        self,
        seeds: Sequence[int],
        metrics: Mapping[int, Mapping[str, float]],
        failures: Sequence[SweepFailure] = (),
        root_seed: int | None = None,
        seconds: Mapping[int, float] | None = None,
    ):
        seed_list, _ = _resolve_seeds(list(seeds), 0)
        known = set(seed_list)
        self.seeds: list[int] = seed_list
        self.root_seed: int | None = None if root_seed is None else validate_seed(root_seed)
        self.metrics: dict[int, dict[str, float]] = {}
        failures = list(failures)
        failed = {f.seed for f in failures}
        for seed in seed_list:
            if seed in metrics:
                if seed in failed:
                    raise ValueError(f"Seed {seed} has both metrics and a failure record.")
                entry = metrics[seed]
                if not isinstance(entry, Mapping):
                    raise TypeError(f"metrics[{seed}] must be a dict {{name: value}}, got {type(entry).__name__}.")
                try:
                    self.metrics[seed] = _to_metrics(entry)
                except (TypeError, ValueError) as e:
                    raise type(e)(f"metrics[{seed}]: {e}") from None
        unknown = sorted(set(metrics) - known) + sorted(failed - known)
        if unknown:
            raise ValueError(f"Seeds {unknown} have results but are not in seeds.")
        missing = sorted(known - set(self.metrics) - failed)
        if missing:
            raise ValueError(f"Seeds {missing} have neither metrics nor a failure record.")
        order = {s: i for i, s in enumerate(seed_list)}
        self.failures: list[SweepFailure] = sorted(failures, key=lambda f: order[f.seed])
        self.seconds: dict[int, float] = {
            int(s): float(t) for s, t in (seconds or {}).items() if s in self.metrics
        }

    @classmethod
    def _from_records(cls, seeds: Sequence[int], records: Sequence[dict[str, Any]], root_seed: int | None) -> "SweepResult":
        metrics, failures, seconds = {}, [], {}
        for record in records:
            if record["ok"]:
                metrics[record["seed"]] = record["metrics"]
                seconds[record["seed"]] = record["seconds"]
            else:
                failures.append(
                    SweepFailure(record["seed"], record["error_type"], record["message"], record["traceback"])
                )
        return cls(seeds, metrics, failures, root_seed, seconds)

    # -- access ------------------------------------------------------------

    @property
    def metric_names(self) -> list[str]:
        """Names of the metrics, in first-seen order."""
        names: dict[str, None] = {}
        for entry in self.metrics.values():
            names.update(dict.fromkeys(entry))
        return list(names)

    def _metric(self, metric: str | None) -> str:
        names = self.metric_names
        if metric is None:
            if len(names) == 1:
                return names[0]
            if not names:
                raise ValueError(self._no_results_message())
            raise ValueError(f"This sweep has several metrics {names}; name one, e.g. metric={names[0]!r}.")
        if metric not in names:
            raise ValueError(f"Unknown metric {metric!r}; this sweep has {names}.")
        return metric

    def _no_results_message(self) -> str:
        first = f" First failure:\n{self.failures[0].traceback}" if self.failures else ""
        return f"No seed of this sweep succeeded ({len(self.failures)} of {len(self.seeds)} failed).{first}"

    def values(self, metric: str | None = None) -> np.ndarray:
        """The metric's values over the successful seeds, in seed order.

        Args:
            metric: the metric name; may be left out when there is only one.

        Returns:
            A float64 NumPy array.
        """
        name = self._metric(metric)
        return np.array([self.metrics[s][name] for s in self.seeds if name in self.metrics.get(s, {})])

    def __len__(self) -> int:
        return len(self.seeds)

    def __repr__(self) -> str:
        return (
            f"SweepResult({len(self.seeds)} seeds, {len(self.metrics)} ok, "
            f"{len(self.failures)} failed, metrics {self.metric_names})"
        )

    # -- statistics ----------------------------------------------------------

    def summary(
        self,
        metric: str | None = None,
        *,
        confidence: float = 0.95,
        resamples: int = 10_000,
        bootstrap_seed: int = 0,
    ) -> SweepSummary:
        """Mean, spread and a bootstrap confidence interval of the mean.

        The interval is the percentile bootstrap: `resamples` resamples of
        the successful seeds' values, drawn by a NumPy generator seeded from
        ``derive_seed(bootstrap_seed, "bootstrap")``, so the same values give
        the same interval every time (and in any order).

        Args:
            metric: the metric name; may be left out when there is only one.
            confidence: coverage of the interval, in (0, 1).
            resamples: number of bootstrap resamples.
            bootstrap_seed: seed of the resampling.

        Returns:
            A `SweepSummary`; ``str()`` of it is a one-line report.
        """
        bootstrap_seed = _check_stats_args(confidence, resamples, bootstrap_seed)
        name = self._metric(metric)
        values = self.values(name)
        nan = float("nan")
        low = high = std = nan
        if len(values) >= 2:
            std = float(np.std(values, ddof=1))
            means = _bootstrap_means(values, resamples, _bootstrap_rng(bootstrap_seed))
            low, high = _percentile_interval(means, confidence)
        return SweepSummary(
            metric=name,
            n=len(values),
            n_failed=len(self.seeds) - len(values),
            mean=float(np.mean(values)),
            std=std,
            median=float(np.median(values)),
            min=float(np.min(values)),
            max=float(np.max(values)),
            ci_low=low,
            ci_high=high,
            confidence=float(confidence),
        )

    def compare(
        self,
        other: "SweepResult",
        metric: str | None = None,
        *,
        confidence: float = 0.95,
        resamples: int = 10_000,
        bootstrap_seed: int = 0,
    ) -> SweepComparison:
        """Whether `other` differs from this sweep by more than seed noise.

        The difference is ``mean(other) - mean(self)``: positive when `other`
        scores higher. Its confidence interval is the percentile bootstrap
        of the difference of means, each sweep resampled independently. The
        difference is "larger than seed noise" when the interval excludes
        zero.

        Args:
            other: another `SweepResult` with the same metric.
            metric: the metric name; may be left out when there is only one.
            confidence: coverage of the interval, in (0, 1).
            resamples: number of bootstrap resamples.
            bootstrap_seed: seed of the resampling.

        Returns:
            A `SweepComparison`; ``str()`` of it is the verdict.

        Example:

        ```python
        baseline = kr.sweep(train_baseline, seeds=30)
        candidate = kr.sweep(train_candidate, seeds=30)
        print(baseline.compare(candidate, "val_accuracy"))
        ```
        """
        if not isinstance(other, SweepResult):
            raise TypeError(f"compare() needs another SweepResult, got {type(other).__name__}.")
        bootstrap_seed = _check_stats_args(confidence, resamples, bootstrap_seed)
        name = self._metric(metric)
        mine, theirs = self.values(name), other.values(other._metric(name))
        if len(mine) < 2 or len(theirs) < 2:
            raise ValueError(
                f"compare() needs at least 2 successful seeds on each side for {name!r} "
                f"(have {len(mine)} and {len(theirs)}); 30 or more is advisable."
            )
        rng = _bootstrap_rng(bootstrap_seed, "compare")
        mine_means = _bootstrap_means(mine, resamples, rng)
        theirs_means = _bootstrap_means(theirs, resamples, rng)
        low, high = _percentile_interval(theirs_means - mine_means, confidence)
        difference = float(np.mean(theirs) - np.mean(mine))
        larger = low > 0 or high < 0
        head = (
            f"{name}: mean {_fmt(float(np.mean(mine)))} -> {_fmt(float(np.mean(theirs)))}, "
            f"difference {_fmt(difference)} ({confidence:.0%} CI {_fmt(low)} .. {_fmt(high)})"
        )
        if larger:
            direction = "higher" if difference > 0 else "lower"
            verdict = (
                f"{head} is larger than seed noise: the other configuration is "
                f"{direction}, over {len(mine)} and {len(theirs)} seeds."
            )
        else:
            verdict = (
                f"{head} is within seed noise: {len(mine)} and {len(theirs)} seeds "
                "cannot tell the two configurations apart."
            )
        return SweepComparison(
            metric=name,
            mean_self=float(np.mean(mine)),
            mean_other=float(np.mean(theirs)),
            difference=difference,
            ci_low=low,
            ci_high=high,
            confidence=float(confidence),
            n_self=len(mine),
            n_other=len(theirs),
            larger_than_noise=bool(larger),
            verdict=verdict,
        )

    # -- views -------------------------------------------------------------

    def to_frame(self):
        """The per-seed metrics as a pandas DataFrame (one row per successful seed).

        The index is the seed (in sweep order), one column per metric.
        Failed seeds are in `failures`, not in the frame.

        Returns:
            A ``pandas.DataFrame``.

        Raises:
            ImportError: pandas is not installed.
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "SweepResult.to_frame() needs pandas: pip install pandas "
                "(or pip install 'keras_repro[test]')."
            ) from None
        seeds = [s for s in self.seeds if s in self.metrics]
        frame = pd.DataFrame(
            [self.metrics[s] for s in seeds],
            index=pd.Index(seeds, name="seed"),
            columns=self.metric_names,
        )
        return frame

    def plot(self, metric: str | None = None, ax: Any = None, *, confidence: float = 0.95):
        """Plots each seed's value, the mean and its bootstrap confidence interval.

        Args:
            metric: the metric name; may be left out when there is only one.
            ax: a matplotlib ``Axes`` to draw on; a new figure when None.
            confidence: coverage of the interval.

        Returns:
            The matplotlib ``Axes``.

        Raises:
            ImportError: matplotlib is not installed.
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError:
            raise ImportError(
                "SweepResult.plot() needs matplotlib: pip install 'keras_repro[plot]'."
            ) from None
        stats = self.summary(metric, confidence=confidence)
        values = self.values(stats.metric)
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3.5))
        runs = np.arange(1, len(values) + 1)
        ax.scatter(runs, values, s=18, color="tab:blue", label=f"per seed (n={stats.n})", zorder=3)
        ax.axhline(stats.mean, color="tab:red", label=f"mean {_fmt(stats.mean)}")
        if not math.isnan(stats.ci_low):
            ax.axhspan(
                stats.ci_low,
                stats.ci_high,
                color="tab:red",
                alpha=0.15,
                label=f"{confidence:.0%} CI of the mean",
            )
        ax.set_xlabel("run (in seed order)")
        ax.set_ylabel(stats.metric)
        failed = f", {stats.n_failed} failed" if stats.n_failed else ""
        ax.set_title(f"{stats.metric} over {stats.n} seeds{failed}")
        ax.legend(loc="best", fontsize="small")
        return ax

    # -- storage -------------------------------------------------------------

    def save(self, path: _files.PathLike) -> None:
        """Writes the result as a versioned JSON document, atomically.

        Args:
            path: the file to write (``.json``).
        """
        body = {
            "seeds": self.seeds,
            "root_seed": self.root_seed,
            "results": [
                {"seed": s, "metrics": self.metrics[s], "seconds": self.seconds.get(s)}
                for s in self.seeds
                if s in self.metrics
            ],
            "failures": [asdict(f) for f in self.failures],
        }
        _files.write_document(path, _FORMAT, _VERSION, body)

    @classmethod
    def load(cls, path: _files.PathLike) -> "SweepResult":
        """Reads a result written by `save`.

        Args:
            path: the file.

        Returns:
            The `SweepResult`, with the same seeds and bit-identical metrics.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a sweep result document, or a malformed one; the
                message names the file.
        """
        document = _files.read_document(path, _FORMAT, (_VERSION,))
        try:
            results = document["results"]
            return cls(
                seeds=document["seeds"],
                metrics={r["seed"]: r["metrics"] for r in results},
                failures=[SweepFailure(**f) for f in document["failures"]],
                root_seed=document["root_seed"],
                seconds={r["seed"]: r["seconds"] for r in results if r.get("seconds") is not None},
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: malformed {_FORMAT} document ({type(e).__name__}: {e}).") from None
