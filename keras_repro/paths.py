"""Stable paths for the layers, weights and seed generators of a model.

Keras names variables and seed generators from process-wide counters
(``dense_2``, ``seed_generator_7``), so its own paths change with whatever
was built before in the process. The paths here depend only on the model's
structure and the names the user chose:

- a sublayer held in an attribute of its parent is named by the attribute
  (``encoder``, ``blocks/0``), as in a subclassed model;
- a sublayer known only from its parent's layer list (Sequential and
  functional models) is named by its layer name when the user gave one, and
  otherwise by its class and its index among unnamed siblings of that class
  (``dense#0``, ``dense#1``), never by the auto-name counter;
- a weight is ``<layer path>/<weight name>`` (``encoder/dense#0/kernel``);
- a seed generator is ``<layer path>/<attribute>`` (``dropout#0/seed_generator``);
- an optimizer is ``optimizer`` for the one `compile()` sets, and otherwise
  the attribute that holds it (``d_optimizer``, ``optimizers/0``), under the
  path of the layer or sub-model holding it (``generator/optimizer``).

A layer reachable twice (a shared layer) gets the first path found in a
depth-first walk. With explicit names, adding, removing or reordering other
layers leaves a layer's path unchanged.

Example:

```python
import keras
from keras_repro import paths

model = keras.Sequential([
    keras.Input((4,)),
    keras.layers.Dense(8, name="hidden"),
    keras.layers.Dense(1),
])
sorted(paths.weight_paths(model))
# ['dense#0/bias', 'dense#0/kernel', 'hidden/bias', 'hidden/kernel']
```
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import keras

from keras_repro import _compat
from keras_repro import _validate

__all__ = [
    "is_auto_name",
    "layer_paths",
    "optimizer_paths",
    "own_weights",
    "seed_generator_paths",
    "weight_paths",
]


def _snake(name: str) -> str:
    return _compat.to_snake_case(name)


def is_auto_name(layer: keras.layers.Layer) -> bool:
    """Whether `layer.name` looks like a Keras auto-name (``dense``, ``dense_3``).

    Keras does not record whether a name was given; a name matching the
    auto-name pattern of the layer's class is treated as automatic.
    """
    base = re.escape(_snake(type(layer).__name__))
    return re.fullmatch(rf"{base}(_\d+)?", layer.name) is not None


def _is_layer(value: Any) -> bool:
    return isinstance(value, keras.layers.Layer) and not isinstance(value, keras.metrics.Metric)


def _attribute_children(layer: keras.layers.Layer) -> Iterator[tuple[str, Any]]:
    """(segment, value) for layers and seed generators held in attributes."""
    for attribute, value in _compat.layer_attributes(layer).items():
        if _compat.is_layer_bookkeeping_attribute(attribute):
            continue
        if _is_layer(value) or isinstance(value, keras.random.SeedGenerator):
            yield attribute, value
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if _is_layer(item) or isinstance(item, keras.random.SeedGenerator):
                    yield f"{attribute}/{i}", item
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and (_is_layer(item) or isinstance(item, keras.random.SeedGenerator)):
                    yield f"{attribute}/{key}", item


def _child_layers(layer: keras.layers.Layer) -> list[tuple[str, keras.layers.Layer]]:
    children: list[tuple[str, keras.layers.Layer]] = []
    seen: set[int] = set()
    for segment, value in _attribute_children(layer):
        if _is_layer(value) and id(value) not in seen:
            seen.add(id(value))
            children.append((segment.lstrip("_") or segment, value))
    counts: Counter[str] = Counter()
    for child in _compat.layer_tracked_layers(layer):
        if id(child) in seen or isinstance(child, keras.layers.InputLayer):
            continue
        seen.add(id(child))
        if is_auto_name(child):
            base = _snake(type(child).__name__)
            segment = f"{base}#{counts[base]}"
            counts[base] += 1
        else:
            segment = child.name
        children.append((segment, child))
    return _disambiguate(children)


def _disambiguate(items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    counts = Counter(segment for segment, _ in items)
    index: Counter[str] = Counter()
    result = []
    for segment, value in items:
        if counts[segment] > 1:
            result.append((f"{segment}#{index[segment]}", value))
            index[segment] += 1
        else:
            result.append((segment, value))
    return result


def _join(prefix: str, segment: str) -> str:
    return f"{prefix}/{segment}" if prefix else segment


def layer_paths(model: keras.layers.Layer) -> dict[str, keras.layers.Layer]:
    """Every layer of `model` (itself included, as ``""``) by stable path.

    Args:
        model: a Keras model or layer.

    Returns:
        An ordered dict, depth-first, parents before children.
    """
    _validate.check_instance("model", model, keras.layers.Layer, "Expected a Keras model or layer")
    result: dict[str, keras.layers.Layer] = {}
    seen: set[int] = set()

    def visit(layer: keras.layers.Layer, path: str) -> None:
        if id(layer) in seen:
            return
        seen.add(id(layer))
        result[path] = layer
        for segment, child in _child_layers(layer):
            visit(child, _join(path, segment))

    visit(model, "")
    return result


def _own_variables(layer: keras.layers.Layer) -> list:
    return [v for v in _compat.layer_own_variables(layer) if _compat.is_keras_variable(v)]


def own_weights(layer: keras.layers.Layer) -> dict[str, keras.Variable]:
    """The weights `layer` itself owns (not its sublayers'), by path segment.

    The segment is the variable's name (``kernel``), with ``#i`` appended
    when several own weights share a name. ``<layer path>/<segment>`` is the
    weight's path in `weight_paths`.
    """
    named = [(variable.name, variable) for variable in _own_variables(layer)]
    return dict(_disambiguate(named))


def weight_paths(model: keras.layers.Layer) -> dict[str, keras.Variable]:
    """Every weight of `model` (trainable or not) by stable path.

    Seed generator states are not weights (as in Keras' ``model.weights``);
    see `seed_generator_paths`.
    """
    result: dict[str, keras.Variable] = {}
    for path, layer in layer_paths(model).items():
        for segment, variable in own_weights(layer).items():
            result[_join(path, segment)] = variable
    return result


def seed_generator_paths(model: keras.layers.Layer) -> dict[str, keras.random.SeedGenerator]:
    """Every seed generator owned by a layer of `model`, by stable path."""
    result: dict[str, keras.random.SeedGenerator] = {}
    seen: set[int] = set()
    for path, layer in layer_paths(model).items():
        found = [
            (segment.lstrip("_") or segment, value)
            for segment, value in _attribute_children(layer)
            if isinstance(value, keras.random.SeedGenerator)
        ]
        found_ids = {id(g) for _, g in found}
        # Generators Keras tracks but that sit in no attribute we can see.
        found += [
            (f"seed_generator#{i}", g)
            for i, g in enumerate(_compat.layer_seed_generators(layer))
            if id(g) not in found_ids
        ]
        for segment, generator in _disambiguate(found):
            if id(generator) not in seen:
                seen.add(id(generator))
                result[_join(path, segment)] = generator
    return result


def _is_optimizer(value: Any) -> bool:
    return isinstance(value, keras.optimizers.Optimizer)


def optimizer_paths(model: keras.layers.Layer) -> dict[str, keras.optimizers.Optimizer]:
    """Every optimizer reachable from `model`, by stable path.

    Custom `compile()` methods keep their optimizers as attributes (a GAN's
    ``d_optimizer`` and ``g_optimizer``; `model.optimizer` is then an unused
    default), and sub-models may be compiled with optimizers of their own.
    All of them are found:

    - ``optimizer``: the optimizer `compile()` set on a model;
    - ``<attribute>``: an optimizer held in an attribute (``d_optimizer``),
      or in a list, tuple or dict held in one (``optimizers/0``,
      ``optimizers/critic``);
    - the same under the path of the layer or sub-model holding it
      (``discriminator/optimizer``).

    An optimizer reachable twice gets the first path found (the model's own
    before its sublayers'). A `keras.optimizers.LossScaleOptimizer` is one
    optimizer: its variables include its inner optimizer's.

    Args:
        model: a Keras model or layer.

    Returns:
        An ordered ``{path: optimizer}`` dict.

    Example:

    ```python
    import keras
    from keras_repro import paths

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.d_optimizer = keras.optimizers.SGD()
    list(paths.optimizer_paths(model))   # ['optimizer', 'd_optimizer']
    ```
    """
    result: dict[str, keras.optimizers.Optimizer] = {}
    seen: set[int] = set()

    def add(path: str, value: Any) -> None:
        if _is_optimizer(value) and id(value) not in seen:
            seen.add(id(value))
            result[path] = value

    for layer_path, layer in layer_paths(model).items():
        add(_join(layer_path, "optimizer"), getattr(layer, "optimizer", None))
        for attribute, value in vars(layer).items():
            if attribute.startswith("_self_") or attribute in ("optimizer", "_optimizer"):
                continue
            segment = attribute.lstrip("_") or attribute
            if isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    add(_join(layer_path, f"{segment}/{i}"), item)
            elif isinstance(value, dict):
                for key, item in value.items():
                    if isinstance(key, str):
                        add(_join(layer_path, f"{segment}/{key}"), item)
            else:
                add(_join(layer_path, segment), value)
    return result
