"""keras_repro: Keras training runs that repeat bit for bit, and proof of it.

The public API, grouped by module (one concept each):

```python
import keras_repro as kr
kr.seed_everything(42)
```

docs/ (docs/README.md) has a runnable example of every name below.

- seeds: `validate_seed`, `derive_seed`, `seed_everything`, `get_root_seed`,
  `rng_state`, `set_rng_state`, `isolated_rng`, `ReproducibilityWarning`
- initializers: `kr.initializers.glorot_uniform(seed=..., key=...)` ...,
  `kr.initializers.SeededInitializers`
- paths: `kr.paths` (stable paths of layers, weights, seed generators)
- seeding: `seed_model`, `UnseededWeightWarning`
- models: `SeededModel`, `SeededFunctional`
- data: `epoch_permutation`, `shuffled_batches`, `batch_stream`,
  `epoch_shuffle`, `repeat_by_epoch`
- state: `save_rng_state`, `load_rng_state`
- fingerprint: `fingerprint`, `fingerprint_variables`, `fingerprint_rng`
- determinism: `enable_determinism`, `determinism_enabled`
- audit: `audit`, `Finding`, `AuditError`
- manifest: `manifest`, `diff_manifests`
- trace: `compare_traces`, `load_trace`, `Divergence`, `NondeterminismError`,
  `NondeterminismWarning`
- drift: `kr.drift` (how far apart two runs are: `Drift`, `plot_drift`)
- distribute: `kr.distribute` (a random stream per replica, replicas checked to agree)
- callbacks: `DeterminismCallback`, `kr.callbacks.ExactBackupAndRestore`
- sweep: `sweep`, `SweepResult`, `SweepWarning`, `process_pool`

The `keras-repro` command (`keras_repro.cli`) checks training scripts.
"""

from keras_repro import callbacks
from keras_repro import data
from keras_repro import distribute
from keras_repro import drift
from keras_repro import initializers
from keras_repro import paths
from keras_repro.audit import AuditError
from keras_repro.audit import Finding
from keras_repro.audit import audit
from keras_repro.callbacks import DeterminismCallback
from keras_repro.data import batch_stream
from keras_repro.data import epoch_permutation
from keras_repro.data import epoch_shuffle
from keras_repro.data import repeat_by_epoch
from keras_repro.data import shuffled_batches
from keras_repro.determinism import determinism_enabled
from keras_repro.determinism import enable_determinism
from keras_repro.fingerprint import fingerprint
from keras_repro.fingerprint import fingerprint_rng
from keras_repro.fingerprint import fingerprint_variables
from keras_repro.manifest import diff_manifests
from keras_repro.manifest import manifest
from keras_repro.models import SeededFunctional
from keras_repro.models import SeededModel
from keras_repro.seeding import UnseededWeightWarning
from keras_repro.seeding import seed_model
from keras_repro.seeds import ReproducibilityWarning
from keras_repro.seeds import derive_seed
from keras_repro.seeds import get_root_seed
from keras_repro.seeds import isolated_rng
from keras_repro.seeds import rng_state
from keras_repro.seeds import seed_everything
from keras_repro.seeds import set_rng_state
from keras_repro.seeds import validate_seed
from keras_repro.state import load_rng_state
from keras_repro.state import save_rng_state
from keras_repro.sweep import SweepResult
from keras_repro.sweep import SweepWarning
from keras_repro.sweep import process_pool
from keras_repro.sweep import sweep
from keras_repro.threads import set_threads
from keras_repro.threads import usable_cores
from keras_repro.trace import Divergence
from keras_repro.trace import NondeterminismError
from keras_repro.trace import NondeterminismWarning
from keras_repro.trace import compare_traces
from keras_repro.trace import load_trace

__version__ = "0.1.0"

__all__ = [
    # seeds
    "ReproducibilityWarning",
    "derive_seed",
    "get_root_seed",
    "isolated_rng",
    "rng_state",
    "seed_everything",
    "set_rng_state",
    "validate_seed",
    # initializers, paths
    "initializers",
    "paths",
    # seeding
    "UnseededWeightWarning",
    "seed_model",
    # models
    "SeededFunctional",
    "SeededModel",
    # data
    "data",
    "batch_stream",
    "epoch_permutation",
    "epoch_shuffle",
    "repeat_by_epoch",
    "shuffled_batches",
    # state
    "load_rng_state",
    "save_rng_state",
    # fingerprint
    "fingerprint",
    "fingerprint_rng",
    "fingerprint_variables",
    # determinism
    "determinism_enabled",
    "enable_determinism",
    # threads
    "set_threads",
    "usable_cores",
    # audit
    "AuditError",
    "Finding",
    "audit",
    # manifest
    "diff_manifests",
    "manifest",
    # trace
    "Divergence",
    "NondeterminismError",
    "NondeterminismWarning",
    "compare_traces",
    "load_trace",
    # drift, distribute
    "distribute",
    "drift",
    # callbacks
    "callbacks",
    "DeterminismCallback",
    # sweep
    "SweepResult",
    "SweepWarning",
    "process_pool",
    "sweep",
]
