"""Tensors viewed as 64-bit integer words, on each Keras backend.

The data digest (`keras_repro.data_fingerprint`) and the step digests
(`keras_repro.step_digest`) are integer sums over the bit patterns of
tensors, computed inside the train step. Their formulas are written once,
against the small set of operations an `Ops` object gives: these are where
the backends differ (TensorFlow, PyTorch, and JAX, whose 64-bit integers
exist only inside ``jax.enable_x64``).

Two views, each a flat int64 tensor:

- `Ops.signed`: values as integers of their own width (floats bit-cast to
  the signed integer of their size, booleans and integers cast, complex
  values split into their real and imaginary parts; TF strings hashed with
  `tf.strings.to_hash_bucket_fast`);
- `Ops.unsigned`: unsigned words of 32 bits (4-byte values bit-cast;
  8-byte values split into two words, low word first; 2-byte values
  bit-cast to 16 bits; 1-byte values and booleans cast, ``int8`` values
  keeping their sign).

Arithmetic on int64 tensors wraps modulo 2**64 on every backend, which is
what the formulas rely on (checked against NumPy in the tests).
"""

from __future__ import annotations

import functools
from typing import Any

import keras
import numpy as np

__all__ = ["Ops", "ops"]

_CACHED_SIZES = 8


class Ops:
    """The operations the digests use, for one backend (see module docstring)."""

    backend = ""

    def flatten(self, structure: Any) -> list:
        return keras.tree.flatten(structure)

    def signed(self, value: Any) -> Any:
        raise NotImplementedError

    def unsigned(self, value: Any) -> Any:
        raise NotImplementedError

    def size(self, flat: Any) -> Any:
        """The element count of `flat`: a Python int, or (TF, whose batch sizes vary in one trace) a tensor."""
        return int(flat.shape[0])

    def odd_weights(self, flat: Any) -> Any:
        """``2 * i + 1`` for each position of `flat`, as int64."""
        raise NotImplementedError

    def weights(self, array: np.ndarray, like: Any) -> Any:
        """The int64 `array` as a tensor on the device of `like` (inside the step)."""
        raise NotImplementedError

    def zero(self) -> Any:
        raise NotImplementedError

    def dot(self, flat: Any, weights: Any) -> Any:
        """``sum(flat * weights)`` of two int64 vectors, modulo 2**64."""
        raise NotImplementedError

    def stack(self, scalars: list) -> Any:
        """Scalars of int64 as one vector."""
        raise NotImplementedError

    def largest(self, vectors: list) -> Any:
        """The largest element of int64 vectors, as a scalar."""
        raise NotImplementedError

    def compiled(self, function: Any) -> Any:
        """`function` of a list of tensors, as the step runs it best (here: as it is)."""
        return function


class _TensorFlow(Ops):
    backend = "tensorflow"

    def __init__(self) -> None:
        import tensorflow as tf

        self.tf = tf

    def flatten(self, structure):
        return self.tf.nest.flatten(structure, expand_composites=True)

    def _split_complex(self, value):
        tf = self.tf
        return tf.stack([tf.math.real(value), tf.math.imag(value)], axis=-1)

    def signed(self, value):
        tf = self.tf
        value = tf.convert_to_tensor(value)
        if value.dtype == tf.string:
            value = tf.strings.to_hash_bucket_fast(value, 2**62)
        elif value.dtype.is_complex:
            return self.signed(self._split_complex(value))
        elif value.dtype.is_floating:
            value = tf.bitcast(value, {2: tf.int16, 4: tf.int32, 8: tf.int64}[value.dtype.size])
        return tf.reshape(tf.cast(value, tf.int64), [-1])

    def unsigned(self, value):
        tf = self.tf
        value = tf.convert_to_tensor(value)
        if value.dtype.is_complex:
            value = self._split_complex(value)
        if value.dtype == tf.bool:
            value = tf.cast(value, tf.uint8)
        elif value.dtype.size in (4, 8):
            value = tf.bitcast(value, tf.uint32)  # 8-byte values: one more axis of 2
        elif value.dtype.size == 2:
            value = tf.bitcast(value, tf.uint16)
        return tf.reshape(tf.cast(value, tf.int64), [-1])

    def size(self, flat):
        return self.tf.size(flat, out_type=self.tf.int64)  # a tensor: batch sizes vary in one trace

    def odd_weights(self, flat):
        return self.tf.range(self.size(flat), dtype=self.tf.int64) * 2 + 1

    def weights(self, array, like):
        return self.tf.constant(array)  # from NumPy: a traced constant belongs to one graph

    def zero(self):
        return self.tf.constant(0, self.tf.int64)

    def dot(self, flat, weights):
        return self.tf.reduce_sum(flat * weights)

    def stack(self, scalars):
        return self.tf.stack(scalars)

    def largest(self, vectors):
        return self.tf.reduce_max(self.tf.concat(vectors, 0))

    def compiled(self, function):
        # On a CPU, XLA fuses the widening, the product and the sum of a digest
        # into one pass, 1.5 to 1.9 times as fast as TensorFlow's three kernels
        # (bench/bench_step_digest.py), also inside a step that is not compiled.
        # Left to TensorFlow's kernels where a GPU is visible (not measured there).
        tf = self.tf
        if tf.config.list_logical_devices("GPU"):
            return function
        xla = tf.function(function, jit_compile=True, reduce_retracing=True)
        return lambda values: xla([tf.convert_to_tensor(v) for v in values])


class _Torch(Ops):
    backend = "torch"

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self._devices: dict[tuple[int, str], Any] = {}
        self._odd: dict[tuple[int, str], Any] = {}  # eager: the odd weights of the last few sizes, kept

    def flatten(self, structure):
        # What keras.tree.flatten gives (dict keys sorted), without its cost
        # in every eager step for the tuples and dicts batches come in.
        if isinstance(structure, (tuple, list)) and not hasattr(structure, "_fields"):
            return [leaf for item in structure for leaf in self.flatten(item)]
        if type(structure) is dict:
            return [leaf for key in sorted(structure) for leaf in self.flatten(structure[key])]
        if structure is None or isinstance(structure, self.torch.Tensor):
            return [structure]
        return keras.tree.flatten(structure)

    def _tensor(self, value):
        torch = self.torch
        if isinstance(value, torch.Tensor):
            tensor = value
        else:
            tensor = keras.ops.convert_to_tensor(value)
        tensor = tensor.detach()
        if tensor.is_complex():
            tensor = torch.view_as_real(tensor)
        return tensor.contiguous().reshape(-1)  # 1-D first: a 0-d tensor takes no view as narrower words

    def signed(self, value):
        torch = self.torch
        tensor = self._tensor(value)
        if tensor.is_floating_point():
            tensor = tensor.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[tensor.element_size()])
        return tensor.to(torch.int64)

    def unsigned(self, value):
        torch = self.torch
        tensor = self._tensor(value)
        size = tensor.element_size()
        if size > 1:
            tensor = tensor.view(torch.uint16 if size == 2 else torch.uint32)
        return tensor.to(torch.int64)

    def odd_weights(self, flat):
        key = (int(flat.shape[0]), str(flat.device))
        weights = self._odd.pop(key, None)  # popped and put back: the dict keeps the most recent last
        if weights is None:
            weights = self.torch.arange(key[0], dtype=self.torch.int64, device=flat.device) * 2 + 1
            if len(self._odd) >= _CACHED_SIZES:
                del self._odd[next(iter(self._odd))]
        self._odd[key] = weights
        return weights

    def weights(self, array, like):
        key = (id(array), str(like.device))
        cached = self._devices.get(key)
        if cached is None or cached[0] is not array:  # kept with its array: an id is reused once freed
            cached = self._devices[key] = (array, self.torch.from_numpy(array).to(like.device))
        return cached[1]

    def zero(self):
        return self.torch.zeros((), dtype=self.torch.int64)

    def dot(self, flat, weights):
        return self.torch.dot(flat, weights)  # one kernel: about twice as fast as a product and a sum

    def stack(self, scalars):
        return self.torch.stack([s.to(scalars[0].device) for s in scalars])

    def largest(self, vectors):
        return self.torch.cat([v.to(vectors[0].device) for v in vectors]).max()


class _Jax(Ops):
    """JAX: call inside ``jax.enable_x64(True)``, or int64 becomes int32."""

    backend = "jax"

    def __init__(self) -> None:
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp

    def _array(self, value):
        jnp = self.jnp
        array = jnp.asarray(value)
        if jnp.iscomplexobj(array):
            array = jnp.stack([jnp.real(array), jnp.imag(array)], axis=-1)
        return array

    def signed(self, value):
        jnp = self.jnp
        array = self._array(value)
        if jnp.issubdtype(array.dtype, jnp.floating):
            width = {2: jnp.int16, 4: jnp.int32, 8: jnp.int64}[array.dtype.itemsize]
            array = self.jax.lax.bitcast_convert_type(array, width)
        return array.astype(jnp.int64).reshape(-1)

    def unsigned(self, value):
        jnp = self.jnp
        array = self._array(value)
        if array.dtype == jnp.bool_:
            array = array.astype(jnp.uint8)
        elif array.dtype.itemsize in (4, 8):
            array = self.jax.lax.bitcast_convert_type(array, jnp.uint32)  # 8 bytes: one more axis of 2
        elif array.dtype.itemsize == 2:
            array = self.jax.lax.bitcast_convert_type(array, jnp.uint16)
        return array.astype(jnp.int64).reshape(-1)

    def odd_weights(self, flat):
        return self.jnp.arange(flat.shape[0], dtype=self.jnp.int64) * 2 + 1

    def weights(self, array, like):
        return self.jnp.asarray(array)

    def zero(self):
        return self.jnp.zeros((), self.jnp.int64)

    def dot(self, flat, weights):
        return self.jnp.sum(flat * weights, dtype=self.jnp.int64)  # fused by XLA

    def stack(self, scalars):
        return self.jnp.stack(scalars)

    def largest(self, vectors):
        return self.jnp.max(self.jnp.concatenate(vectors))


_BACKENDS = {"tensorflow": _TensorFlow, "torch": _Torch, "jax": _Jax}


@functools.cache
def _ops(backend: str) -> Ops | None:
    factory = _BACKENDS.get(backend)
    return None if factory is None else factory()


def ops(backend: str | None = None) -> Ops | None:
    """The `Ops` of `backend` (default: Keras' backend), or None for a backend without them (numpy, openvino)."""
    return _ops(backend or keras.backend.backend())
