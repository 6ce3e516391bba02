"""Test-suite switches: the suite runs under any Keras backend (``KERAS_BACKEND``).

A test that holds only on TensorFlow, by design or because it tests a
TensorFlow-only feature, is marked ``@pytest.mark.tensorflow_only("why")``;
under another backend it is skipped with that reason, so the skip list says
what is TensorFlow-only. Child processes started by tests/procs.py use the
backend of the test run unless a test names one.
"""

import keras
import pytest


def pytest_collection_modifyitems(config, items):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return
    for item in items:
        marker = item.get_closest_marker("tensorflow_only")
        if marker is not None:
            why = marker.args[0] if marker.args else "a TensorFlow-only feature"
            item.add_marker(pytest.mark.skip(reason=f"TensorFlow only ({why}); this run is on {backend}"))
