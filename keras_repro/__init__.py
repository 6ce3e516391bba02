"""keras_repro: Keras training runs that repeat bit for bit, and proof of it.

Public API. Everything a user needs is importable from here:

```python
import keras_repro as kr
kr.seed_everything(42)
```
"""

from keras_repro import callbacks
from keras_repro.callbacks import DeterminismCallback
from keras_repro.determinism import AuditError
from keras_repro.determinism import Finding
from keras_repro.determinism import audit
from keras_repro.determinism import determinism_enabled
from keras_repro.determinism import enable_determinism
from keras_repro.fingerprint import fingerprint
from keras_repro.fingerprint import fingerprint_rng
from keras_repro.fingerprint import fingerprint_variables
from keras_repro.manifest import diff_manifests
from keras_repro.manifest import manifest
from keras_repro.trace import Divergence
from keras_repro.trace import NondeterminismError
from keras_repro.trace import compare_traces
from keras_repro.trace import load_trace
from keras_repro import data
from keras_repro import initializers
from keras_repro import paths
from keras_repro.data import batch_stream
from keras_repro.data import epoch_permutation
from keras_repro.data import epoch_shuffle
from keras_repro.data import repeat_by_epoch
from keras_repro.data import shuffled_batches
from keras_repro.models import SeededFunctional
from keras_repro.models import SeededModel
from keras_repro.models import UnseededWeightWarning
from keras_repro.models import seed_model
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

__version__ = "0.1.0"

__all__ = [
    "AuditError",
    "DeterminismCallback",
    "Divergence",
    "Finding",
    "NondeterminismError",
    "audit",
    "batch_stream",
    "callbacks",
    "data",
    "compare_traces",
    "determinism_enabled",
    "epoch_permutation",
    "epoch_shuffle",
    "diff_manifests",
    "enable_determinism",
    "fingerprint",
    "fingerprint_rng",
    "fingerprint_variables",
    "load_trace",
    "manifest",
    "ReproducibilityWarning",
    "derive_seed",
    "get_root_seed",
    "initializers",
    "isolated_rng",
    "load_rng_state",
    "paths",
    "repeat_by_epoch",
    "seed_model",
    "SeededFunctional",
    "SeededModel",
    "shuffled_batches",
    "UnseededWeightWarning",
    "rng_state",
    "save_rng_state",
    "seed_everything",
    "set_rng_state",
    "SweepResult",
    "SweepWarning",
    "process_pool",
    "sweep",
    "validate_seed",
]
