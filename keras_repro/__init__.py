"""keras_repro: Keras training runs that repeat bit for bit, and proof of it.

Public API. Everything a user needs is importable from here:

```python
import keras_repro as kr
kr.seed_everything(42)
```
"""

from keras_repro import initializers
from keras_repro import paths
from keras_repro.seeds import ReproducibilityWarning
from keras_repro.seeds import derive_seed
from keras_repro.seeds import get_root_seed
from keras_repro.seeds import isolated_rng
from keras_repro.seeds import rng_state
from keras_repro.seeds import seed_everything
from keras_repro.seeds import set_rng_state
from keras_repro.seeds import validate_seed

__version__ = "0.1.0"

__all__ = [
    "ReproducibilityWarning",
    "derive_seed",
    "get_root_seed",
    "initializers",
    "isolated_rng",
    "paths",
    "rng_state",
    "seed_everything",
    "set_rng_state",
    "validate_seed",
]
