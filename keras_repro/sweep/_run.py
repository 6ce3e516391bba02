"""Running a sweep: `sweep`, and the isolated run of one seed.

Every seed runs through `run_one`, in this process and in every worker
alike: a fresh Keras session, every global random stream seeded from the
seed, Python's `random` private to the running thread, and the caller's
streams restored afterwards. A run returns a JSON-safe record (metrics, or
the failure with its traceback), so workers send back plain data.

Example:

```python
import keras_repro as kr

def experiment(seed):
    return {"val_accuracy": 0.9}  # build, train, evaluate

result = kr.sweep(experiment, seeds=[3, 14, 15], progress=False)
result.metrics[14]
```
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import random
import sys
import threading
import time
import traceback
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any

from keras_repro import _validate
from keras_repro import _warnings
from keras_repro.seeds import ReproducibilityWarning
from keras_repro.seeds import isolated_rng
from keras_repro.seeds import seed_everything
from keras_repro.sweep._values import Metrics
from keras_repro.sweep._values import resolve_seeds
from keras_repro.sweep._values import short_repr
from keras_repro.sweep._values import to_metrics
from keras_repro.sweep.executors import check_fn_for_workers
from keras_repro.sweep.executors import resolve_executor
from keras_repro.sweep.result import SweepFailure
from keras_repro.sweep.result import SweepResult

__all__ = ["SweepWarning", "run_one", "sweep"]

# One run at a time per process: the global random streams a run is seeded
# through are process-wide, so two threads of one worker must not interleave.
_RUN_LOCK = threading.Lock()


class SweepWarning(ReproducibilityWarning):
    """Warning category for seeds of a sweep that failed.

    A `ReproducibilityWarning` (and so a ``UserWarning``): filtering that
    category filters this one too. It points at the line that called
    `sweep`.

    Example:

    ```python
    import warnings
    import keras_repro as kr
    warnings.simplefilter("error", kr.SweepWarning)
    ```
    """


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


def run_one(fn: Callable[[int], Metrics], seed: int) -> dict[str, Any]:
    """Runs ``fn(seed)`` isolated and returns a JSON-safe record.

    This is the only code path for a run, in-process and in worker processes
    alike: a fresh Keras session, every global random stream seeded from
    `seed` (Python's `random` private to the calling thread), the caller's
    streams restored afterwards. An exception from `fn`, or a return value
    that is not a metric, becomes a failure record.

    Executors pickle it by reference and workers import it by its module
    path, ``keras_repro.sweep._run.run_one``; it stays a module-level
    function of this module.
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
                metrics = to_metrics(fn(seed))
            except Exception as error:  # noqa: BLE001 - reported per seed
                return _failure_record(seed, error)
            seconds = time.perf_counter() - start
    return {"seed": seed, "ok": True, "metrics": metrics, "seconds": seconds}


def _result_from_records(seeds: Sequence[int], records: Sequence[dict[str, Any]], root_seed: int | None) -> SweepResult:
    """The `SweepResult` of the records `run_one` returned, one per seed."""
    metrics, failures, seconds = {}, [], {}
    for record in records:
        if record["ok"]:
            metrics[record["seed"]] = record["metrics"]
            seconds[record["seed"]] = record["seconds"]
        else:
            failures.append(SweepFailure(record["seed"], record["error_type"], record["message"], record["traceback"]))
    return SweepResult(seeds, metrics, failures, root_seed, seconds)


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
        line = f"sweep ({self.where}): seed {done}/{self.total}{failures}  elapsed {elapsed:.1f}s  ETA {eta}"
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


def sweep(
    fn: Callable[[int], Metrics],
    seeds: int | Iterable[int] = 30,
    root_seed: int = 0,
    executor: Any = None,
    progress: bool = True,
) -> SweepResult:
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
            ``concurrent.futures.Executor`` (e.g. `process_pool`); a Dask
            ``distributed.Client``; or the ``ray`` module, after
            ``ray.init()`` (one Ray task of one CPU per seed). The executor
            is not shut down.
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
            f"Invalid fn: {short_repr(fn)} (of type {type(fn).__name__}) is not "
            "callable. Pass a function fn(seed) returning a metric."
        )
    progress = _validate.check_bool("progress", progress)
    seed_list, root = resolve_seeds(seeds, root_seed)
    pool, where = resolve_executor(executor)
    if pool is not None:
        check_fn_for_workers(fn, pool)

    records: dict[int, dict[str, Any]] = {}
    display = _Progress(len(seed_list), where, progress)
    display.update(0, 0)

    def collected(record: dict[str, Any]) -> None:
        records[record["seed"]] = record
        display.update(len(records), sum(not r["ok"] for r in records.values()))

    try:
        if pool is None:
            for seed in seed_list:
                collected(run_one(fn, seed))
        else:
            _run_on(pool, fn, seed_list, collected)
    finally:
        display.close()

    result = _result_from_records(seed_list, [records[s] for s in seed_list], root)
    if result.failures:
        shown = ", ".join(str(f.seed) for f in result.failures[:10])
        more = ", ..." if len(result.failures) > 10 else ""
        _warnings.warn(
            f"{len(result.failures)} of {len(seed_list)} seeds failed (seeds {shown}{more}); "
            f"first: {result.failures[0]}. The tracebacks are in result.failures.",
            SweepWarning,
        )
    return result


def _run_on(
    pool: cf.Executor,
    fn: Callable,
    seeds: Sequence[int],
    collected: Callable[[dict[str, Any]], None],
) -> None:
    """Submits every seed to `pool` and passes each record to `collected`.

    A seed whose future raises (its worker died, or the transport failed)
    becomes a failure record. On an interrupt, the seeds not started yet are
    cancelled.
    """
    futures: dict[cf.Future, int] = {}
    try:
        for seed in seeds:
            futures[pool.submit(run_one, fn, seed)] = seed
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
