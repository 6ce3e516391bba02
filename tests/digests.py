"""The step digest's documented formula, computed independently of keras_repro (plain Python integers)."""

import numpy as np

MASK = 2**64 - 1


def reference_digest(arrays) -> str:
    """The module docstring's formula, in plain Python integers."""

    def weight(i: int) -> int:
        h = (i * 0x9E3779B97F4A7C15) & MASK
        h ^= h >> 29
        h = (h * 0xBF58476D1CE4E5B9) & MASK
        h ^= h >> 32
        return (2 * i + 1 + (h << 33)) & MASK

    digest = 0
    for k, array in enumerate(arrays):
        array = np.asarray(array)
        if array.dtype == bool or array.dtype.itemsize == 1:
            words = array.astype(np.int64)  # cast: int8 keeps its sign
        else:
            words = array.view({2: np.uint16, 4: np.uint32, 8: np.uint32}[array.dtype.itemsize])
        words = words.reshape(-1)
        value = sum(int(w) * weight(i) for i, w in enumerate(words)) & MASK
        digest = (digest * 0x100000001B3 + value + (k + 1) * words.size) & MASK
    return f"{digest:016x}"


def reference_data_digest(leaves) -> int:
    """The data digest's documented formula (`keras_repro.data_fingerprint`), as an unsigned int."""
    digest = 0
    for k, leaf in enumerate(leaves):
        if leaf is None:
            continue
        array = np.asarray(leaf)
        if np.iscomplexobj(array):
            array = np.stack([array.real, array.imag], axis=-1)
        if array.dtype.kind == "f":
            array = array.view({2: np.int16, 4: np.int32, 8: np.int64}[array.dtype.itemsize])
        values = [int(v) for v in array.reshape(-1)]
        leaf_digest = sum((v + 0x9E3779B97F4A7C15) * (2 * i + 1) for i, v in enumerate(values)) & MASK
        digest = (digest * 0x100000001B3 + leaf_digest + (k + 1) * len(values)) & MASK
    return digest
