"""Seed sweeps: repeat an experiment over many seeds and report the spread.

A fixed seed makes a run repeatable, not good. The honest way to report a
model, and to compare two, is to repeat the experiment over many seeds (30 or
more) and summarise the distribution; the seed is not a hyperparameter to
tune. `sweep` runs ``fn(seed)`` once per seed, each call isolated (fresh
Keras session, every global random stream seeded from ``seed``), in-process,
on a process pool or on a Dask cluster, and returns a `SweepResult` with the
per-seed metrics, a summary with a bootstrap confidence interval, and a
comparison against another sweep.

The modules, each one concept, depend on each other one way:

- `_values`: the seeds of a sweep and the metrics of a run, checked.
- `stats`: bootstrap intervals, `SweepSummary`, `SweepComparison`.
- `result`: `SweepResult`, `SweepFailure`, and the JSON file of a result.
- `executors`: `process_pool`, Dask and ``concurrent.futures`` executors,
  and the checks that `fn` can reach their workers.
- `_run`: `sweep`, the isolated run of one seed, `SweepWarning`.
- `shards`: a sweep as array-job tasks (one shard each), a result file per
  seed, and the merge (``keras-repro sweep run / merge / report``).

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

from keras_repro.sweep._run import SweepWarning
from keras_repro.sweep._run import sweep
from keras_repro.sweep._values import DEFAULT_METRIC
from keras_repro.sweep._values import Metrics  # noqa: F401 - the type fn(seed) returns
from keras_repro.sweep.executors import process_pool
from keras_repro.sweep.result import SweepFailure
from keras_repro.sweep.result import SweepResult
from keras_repro.sweep.stats import SweepComparison
from keras_repro.sweep.stats import SweepSummary

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
