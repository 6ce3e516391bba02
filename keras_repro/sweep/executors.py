"""Executors of a sweep: process pools, Dask clients, Ray, and what they need of `fn`.

`sweep` runs in-process, on any ``concurrent.futures.Executor``, on a Dask
``distributed.Client`` or on Ray (the ``ray`` module itself, once
``ray.init()`` was called: each seed is one Ray task of one CPU). This
module turns the `executor` argument into a ``concurrent.futures`` executor
and checks, before anything is submitted, that `fn` can reach the workers:
a worker process unpickles `fn` by its module path, so `fn` must be a
module-level function of an importable module (Dask and Ray pickle with
cloudpickle, which also takes lambdas). A pool
that forks a process that has loaded TensorFlow deadlocks, so it is refused;
`process_pool` makes one that spawns its workers.

Example:

```python
from distributed import Client, LocalCluster
import keras_repro as kr
from my_experiments import experiment   # a module-level function

if __name__ == "__main__":
    with LocalCluster(n_workers=2, threads_per_worker=1) as cluster, Client(cluster) as client:
        result = kr.sweep(experiment, seeds=30, executor=client)
```
"""

from __future__ import annotations

import concurrent.futures as cf
import pickle
import sys
from collections.abc import Callable
from typing import Any

from keras_repro import _validate
from keras_repro.sweep._values import short_repr

__all__ = ["RayExecutor", "check_fn_for_workers", "process_pool", "resolve_executor"]


def _is_dask(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "distributed"


def _is_ray(obj: Any) -> bool:
    return getattr(obj, "__name__", None) == "ray" and callable(getattr(obj, "remote", None))


class RayExecutor(cf.Executor):
    """A ``concurrent.futures`` executor that runs each call as a Ray task.

    `sweep` makes one when given the ``ray`` module; each submitted call is
    ``ray.remote(num_cpus=1)(fn).remote(*args)``, and its future is the
    object ref's. Shutting it down does not shut Ray down.

    Args:
        ray: the ``ray`` module, initialized (``ray.init()``).
    """

    def __init__(self, ray: Any) -> None:
        if not ray.is_initialized():
            raise ValueError(
                "Invalid executor: Ray is not initialized. Call ray.init() (or ray.init(address=...)) first."
            )
        self._ray = ray
        self._remotes: dict[Callable, Any] = {}

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> cf.Future:
        remote = self._remotes.get(fn)
        if remote is None:
            remote = self._remotes[fn] = self._ray.remote(num_cpus=1)(fn)
        return remote.remote(*args, **kwargs).future()


def resolve_executor(executor: Any) -> tuple[cf.Executor | None, str]:
    """The ``concurrent.futures`` executor that runs a sweep, and its name.

    Args:
        executor: None, a ``concurrent.futures.Executor``, a Dask
            ``distributed.Client`` (whose executor never reuses a cached
            result: a seed is run each time it is submitted), or the
            ``ray`` module once ``ray.init()`` was called.

    Returns:
        ``(executor or None for in-process, description for the progress
        line)``.

    Raises:
        TypeError: `executor` is none of those.
        ValueError: Ray is not initialized.
    """
    if executor is None:
        return None, "in-process"
    if _is_ray(executor):
        return RayExecutor(executor), "ray"
    if _is_dask(executor) and hasattr(executor, "get_executor"):
        # A distributed.Client. pure=False: never reuse a cached result.
        return executor.get_executor(pure=False), "dask"
    if isinstance(executor, cf.Executor):
        return executor, "dask" if _is_dask(executor) else type(executor).__name__
    raise TypeError(
        f"Invalid executor: {short_repr(executor)} (of type {type(executor).__name__}). "
        "Pass None (in-process), a concurrent.futures.Executor (e.g. "
        "keras_repro.process_pool(2)), a dask distributed.Client, or the ray module after ray.init()."
    )


def check_fn_for_workers(fn: Callable, executor: cf.Executor) -> None:
    """Raises a clear error when `fn` cannot reach `executor`'s workers.

    Nothing is submitted: the checks run before the first seed, so a sweep
    that cannot run fails at once rather than once per seed.

    Args:
        fn: the function of the sweep.
        executor: the executor from `resolve_executor`.

    Raises:
        ValueError: a process pool that forks its workers.
        TypeError: `fn` is defined in an interactive ``__main__`` (a
            notebook) or cannot be pickled for the workers.
    """
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
    if _is_dask(executor) or isinstance(executor, RayExecutor):
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


def process_pool(max_workers: int | None = None, threads_per_worker: int | None = None) -> cf.ProcessPoolExecutor:
    """A process pool that is safe to use with TensorFlow: spawned workers, each given its share of the cores.

    A ``concurrent.futures.ProcessPoolExecutor`` using the ``spawn`` start
    method. The default start method on Linux, ``fork``, deadlocks a child
    of a process that has loaded TensorFlow. Workers live as long as the
    pool, so each imports TensorFlow once, not once per seed.

    Each worker starts with `keras_repro.set_threads(threads_per_worker)`:
    without it every worker's TensorFlow (or PyTorch) takes all cores, and
    two workers on two cores each run slower than one alone.

    Args:
        max_workers: number of worker processes; defaults to the number of
            usable cores (`keras_repro.usable_cores`).
        threads_per_worker: framework threads of each worker; defaults to
            the usable cores divided among the workers (at least 1).
            Thread counts can change results on TensorFlow's Eigen kernels
            (see docs/sweeps.md): a sweep compared with another should run
            with the same counts, and the manifest records them.

    Returns:
        A ``ProcessPoolExecutor``; use it as a context manager, or call its
        ``shutdown()`` when done.

    Example:

    ```python
    import keras_repro as kr
    from my_experiments import experiment   # a module-level function

    if __name__ == "__main__":
        with kr.process_pool(2) as pool:   # 2 workers, each with half the cores
            result = kr.sweep(experiment, seeds=30, executor=pool)
    ```
    """
    import multiprocessing

    from keras_repro.threads import set_threads
    from keras_repro.threads import usable_cores

    cores = usable_cores()
    if max_workers is None:
        max_workers = cores
    max_workers = _validate.check_int(
        "max_workers", max_workers, minimum=1, allowed="max_workers must be a positive integer or None"
    )
    if threads_per_worker is None:
        threads_per_worker = max(1, cores // max_workers)
    threads_per_worker = _validate.check_int(
        "threads_per_worker",
        threads_per_worker,
        minimum=1,
        allowed="threads_per_worker must be a positive integer or None",
    )
    return cf.ProcessPoolExecutor(
        max_workers=max_workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=set_threads,
        initargs=(threads_per_worker,),
    )
