"""Framework thread counts: how many cores a process lets its kernels use.

Two processes on one machine that each let TensorFlow (or PyTorch) take
every core run slower together than one after the other: a sweep's workers
oversubscribe the machine. `set_threads` gives a process its share before
any training starts, and `usable_cores` says what that share is drawn from:
the cores this process may run on (CPU affinity), capped by a cgroup CPU
quota (a Kubernetes CPU limit) and by ``SLURM_CPUS_PER_TASK``.

Thread counts can change results: TF's Eigen CPU kernels split a
contraction by the intra-op thread count, which changes its rounding. The
manifest records the counts (``tensorflow.threads``, ``OMP_NUM_THREADS``),
so a merged sweep whose shards ran with other counts says so.

Example:

```python
import keras_repro as kr

applied = kr.set_threads(1)   # before the first TF op of this process
print(applied)                # e.g. {'OMP_NUM_THREADS': 1, 'tensorflow': 1}
```
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

from keras_repro import _validate

__all__ = ["set_threads", "usable_cores"]

# Read by OpenMP (oneDNN, MKL, OpenBLAS) and by TensorFlow when its runtime starts.
_THREAD_ENV = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def _cgroup_quota(path: Path = Path("/sys/fs/cgroup/cpu.max")) -> int | None:
    """The cgroup v2 CPU quota in whole cores (rounded up), or None when there is none."""
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def usable_cores() -> int:
    """The number of cores this process may use.

    The cores of its CPU affinity (``os.sched_getaffinity``; all CPUs where
    the platform has none), capped by the cgroup v2 CPU quota
    (``/sys/fs/cgroup/cpu.max``, e.g. a Kubernetes CPU limit) and by
    ``SLURM_CPUS_PER_TASK`` when set.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    limits = [cores, _cgroup_quota()]
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        limits.append(int(slurm))
    return max(1, min(limit for limit in limits if limit is not None))


def set_threads(threads: int) -> dict[str, int]:
    """Limits this process's framework kernels to `threads` threads each.

    Sets ``OMP_NUM_THREADS``, ``TF_NUM_INTRAOP_THREADS`` and
    ``TF_NUM_INTEROP_THREADS`` (read by libraries and by TensorFlow when
    they start), TensorFlow's intra- and inter-op thread counts when
    TensorFlow is loaded, and PyTorch's intra- and inter-op thread counts on
    the torch backend. JAX has no setting for its CPU thread count; on the
    JAX backend only the environment is set (XLA reads none of it), and the
    returned dict says so by leaving JAX out.

    Call it first thing in a process, before any training: TensorFlow's
    counts can be set only before its runtime starts.

    Args:
        threads: the number of threads, a positive integer.

    Returns:
        What was set: ``{"OMP_NUM_THREADS": n, "tensorflow": n, "torch": n}``,
        with only the frameworks that were set.

    Raises:
        ValueError: `threads` is not a positive integer, or TensorFlow's
            runtime already started with other counts (a TF op ran in this
            process before the call).
    """
    threads = _validate.check_int("threads", threads, minimum=1, allowed="threads must be a positive integer")
    for name in _THREAD_ENV:
        os.environ[name] = str(threads)
    applied = {"OMP_NUM_THREADS": threads}
    import keras

    backend = keras.backend.backend()
    if "tensorflow" in sys.modules or backend == "tensorflow":
        import tensorflow as tf

        current = (
            tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads(),
        )
        if current != (threads, threads):
            try:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(threads)
            except RuntimeError:
                raise ValueError(
                    f"Cannot set TensorFlow's thread counts to {threads}: its runtime already started "
                    f"(intra-op {current[0]}, inter-op {current[1]}; 0 is TF's default). Call "
                    "keras_repro.set_threads before the first TensorFlow op of the process."
                ) from None
        applied["tensorflow"] = threads
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # inter-op work already started; kernels use the intra-op count
            pass
        applied["torch"] = threads
    return applied
