"""The private Keras APIs keras_repro relies on (see `keras_repro._compat`)."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

from keras_repro._compat import _private_attribute
from keras_repro._compat import _private_module
from keras_repro._compat import _unsupported

# ---------------------------------------------------------------- Keras: naming and variables


def to_snake_case(name: str) -> str:
    """Keras' own conversion of a class name to a layer auto-name (``"Conv2D"`` -> ``"conv2d"``).

    Wraps ``keras.src.utils.naming.to_snake_case``, the function Keras uses
    to auto-name layers, so that auto-names are recognized exactly.
    Checked on Keras 3.6.0-3.15.1.

    Raises:
        UnsupportedVersionError: the function is missing.
    """
    naming = _private_module("keras.src.utils.naming")
    return _private_attribute(naming, "to_snake_case", "Keras' layer auto-naming")(name)


def _keras_variable_base() -> type:
    variables = _private_module("keras.src.backend.common.variables")
    # Keras 3.7+: `Variable`, also exported as `keras.Variable`. Keras 3.6:
    # `KerasVariable` (`keras.Variable` is then a backend subclass that the
    # variables layers create are not instances of).
    base = getattr(variables, "Variable", None) or getattr(variables, "KerasVariable", None)
    if not isinstance(base, type):
        raise _unsupported("The base class of Keras variables (keras.src.backend.common.variables.Variable)")
    return base


def is_keras_variable(value: Any) -> bool:
    """Whether `value` is a Keras variable, on every supported Keras version.

    On Keras 3.7+ this is ``isinstance(value, keras.Variable)``. On Keras
    3.6, `keras.Variable` is a backend subclass the variables that layers
    create are not instances of, and the common base class is the private
    ``keras.src.backend.common.variables.KerasVariable``. Checked on Keras
    3.6.0-3.15.1.

    Raises:
        UnsupportedVersionError: no Keras variable base class is found.
    """
    return isinstance(value, _keras_variable_base())


def replace_deferred_initializer(variable: Any, initializer: Callable) -> bool:
    """Replaces the initializer of a variable whose initialization Keras deferred; False if not deferred.

    Inside Keras' stateless (symbolic) build, a new variable has no value
    yet (``variable._value is None``) and keeps its initializer in
    ``variable._initializer`` until the scope exits; replacing it is the
    only way to choose the value it will get. Checked on Keras 3.6.0-3.15.1.

    Args:
        variable: a Keras variable.
        initializer: the initializer to use instead, called as
            ``initializer(shape, dtype=dtype)``.

    Returns:
        True if the initializer was replaced; False if the variable is not
        awaiting a deferred initialization (it has a value: assign it).

    Raises:
        UnsupportedVersionError: the variable has no ``_value`` or
            ``_initializer`` attribute.
    """
    value = _private_attribute(variable, "_value", "A Keras variable's value slot")
    pending = _private_attribute(variable, "_initializer", "A Keras variable's deferred initializer")
    if value is not None or pending is None:
        return False
    variable._initializer = initializer
    return True


def in_stateless_scope() -> bool:
    """Whether Keras is inside a `StatelessScope` (a symbolic build, where variables are not assigned).

    Wraps ``keras.src.backend.common.stateless_scope.in_stateless_scope``.
    Checked on Keras 3.6.0-3.15.1.

    Raises:
        UnsupportedVersionError: the function is missing.
    """
    stateless_scope = _private_module("keras.src.backend.common.stateless_scope")
    return bool(_private_attribute(stateless_scope, "in_stateless_scope", "Keras' stateless scope query")())


# ---------------------------------------------------------------- Keras: layers


#: Private attributes of `keras.layers.Layer` (and models) that hold
#: bookkeeping (other views of the layer's parts, graph nodes, compile
#: state), not parts of their own. A walk over a layer's attributes skips
#: them, and TF's ``_self_*`` attributes (see
#: `is_layer_bookkeeping_attribute`). ``optimizer`` is there because an
#: optimizer is not a layer part (see ``paths.optimizer_paths``); ``_modules``,
#: ``_parameters`` and ``_buffers`` are torch.nn.Module's registries on the
#: torch backend.
LAYER_BOOKKEEPING_ATTRIBUTES = frozenset(
    {
        "_layers",
        "_tracker",
        "_inbound_nodes",
        "_outbound_nodes",
        "_operations",
        "_operations_by_depth",
        "_metrics",
        "_seed_generators",
        "_trainable_variables",
        "_non_trainable_variables",
        "_input_layers",
        "_output_layers",
        "_parent_path",
        "_functional",
        "_compile_metrics",
        "_compile_loss",
        "_loss_tracker",
        "optimizer",
        "_optimizer",
        # On the torch backend every layer is a torch.nn.Module too: these
        # are the module's registries of its children, parameters and buffers.
        "_modules",
        "_parameters",
        "_buffers",
    }
)


def layer_bookkeeping_attributes() -> frozenset[str]:
    """The attributes of a Keras layer that hold bookkeeping, not the layer's own parts.

    `_layers` lists every sublayer again, `_seed_generators` every seed
    generator, `_functional` is the graph a `Sequential` builds of its own
    layers, `_operations` and `_operations_by_depth` are a functional
    model's layers again, and so on. A walk that names a layer's parts by
    the attribute holding them must skip these, or a part would be found
    twice under two names. ``tests/test_compat.py`` builds Keras' layers and
    models and checks that every other private attribute holding a layer or
    seed generator is one keras_repro names deliberately, so that an
    upgrade adding one fails a test instead of changing stable paths.
    Checked on Keras 3.6.0 and 3.15.1.

    Returns:
        `LAYER_BOOKKEEPING_ATTRIBUTES`.
    """
    return LAYER_BOOKKEEPING_ATTRIBUTES


def layer_attributes(layer: Any) -> dict[str, Any]:
    """A layer's own attributes by name: ``vars(layer)``, with its sub-modules on the torch backend.

    On the torch backend a Keras layer is also a ``torch.nn.Module``, whose
    ``__setattr__`` keeps a sub-layer assigned to an attribute in the
    module's ``_modules`` registry instead of the instance dict; its entries
    are listed here under their attribute names (the registry itself is
    bookkeeping, `is_layer_bookkeeping_attribute`). Checked on Keras
    3.15.1 with torch 2.13 (the other backends keep sub-layers in the
    instance dict).
    """
    attributes = dict(vars(layer))
    modules = attributes.get("_modules")
    if isinstance(modules, dict):
        for name, value in modules.items():
            attributes.setdefault(name, value)
    return attributes


def is_layer_bookkeeping_attribute(name: str) -> bool:
    """Whether the layer attribute `name` is bookkeeping (see `layer_bookkeeping_attributes`).

    Also true for TensorFlow's ``_self_*`` attributes (AutoTrackable keeps
    its own dependency maps in them on the TF backend). Checked on Keras
    3.6.0-3.15.1 with TF 2.16.2 and 2.21.0.
    """
    return name in LAYER_BOOKKEEPING_ATTRIBUTES or name.startswith("_self_")


def _layer_store(layer: Any, name: str, what: str) -> list:
    try:
        store = getattr(layer, name)
    except AttributeError as e:
        raise _unsupported(
            f"{what} (`{type(layer).__name__}.{name}`; if this is a layer of your own, check "
            "that its __init__ calls super().__init__())",
            e,
        ) from None
    return list(store)


def layer_tracked_layers(layer: Any) -> list:
    """The sublayers Keras tracks for `layer`, in the order they were set (``layer._layers``).

    For `Sequential` and functional models these are the model's layers
    (the `InputLayer`s included); for other layers, every layer held in an
    attribute, list or dict. Checked on Keras 3.6.0-3.15.1.

    Raises:
        UnsupportedVersionError: the layer has no ``_layers``.
    """
    return _layer_store(layer, "_layers", "A Keras layer's tracked sublayers")


def layer_own_variables(layer: Any) -> list:
    """The variables `layer` itself owns, not its sublayers': trainable first, then non-trainable.

    ``layer._trainable_variables + layer._non_trainable_variables``, the
    stores `Layer.weights` starts from (seed generator states are not in
    them). Checked on Keras 3.6.0-3.15.1.

    Raises:
        UnsupportedVersionError: either store is missing.
    """
    return _layer_store(layer, "_trainable_variables", "A Keras layer's own trainable variables") + _layer_store(
        layer, "_non_trainable_variables", "A Keras layer's own non-trainable variables"
    )


def layer_seed_generators(layer: Any) -> list:
    """The `SeedGenerator`s `layer` itself tracks (``layer._seed_generators``).

    Checked on Keras 3.6.0-3.15.1.

    Raises:
        UnsupportedVersionError: the store is missing.
    """
    return _layer_store(layer, "_seed_generators", "A Keras layer's seed generators")


def set_seed_generator_initial_seed(generator: Any, seed: int) -> None:
    """Sets the seed a `SeedGenerator`'s `get_config` reports (``generator._initial_seed``).

    The state of a generator can be assigned publicly; its config cannot, so
    a re-seeded generator would otherwise save the seed it was built with.
    Checked on Keras 3.6.0-3.15.1.

    Raises:
        UnsupportedVersionError: the generator has no ``_initial_seed``.
    """
    _private_attribute(generator, "_initial_seed", "SeedGenerator's recorded seed")
    generator._initial_seed = seed


def random_initializer_class() -> type:
    """The base class of Keras' random initializers (``keras.src.initializers.random_initializers.RandomInitializer``).

    Every Keras initializer that draws random values (`GlorotUniform`,
    `RandomNormal`, `Orthogonal`, ...) subclasses it; there is no public
    name for it. Checked on Keras 3.6.0-3.15.1.

    Raises:
        UnsupportedVersionError: the class is missing.
    """
    random_initializers = _private_module("keras.src.initializers.random_initializers")
    return _private_attribute(random_initializers, "RandomInitializer", "Keras' random initializer base class")


def functional_class() -> type:
    """Keras' functional model class (``keras.src.models.functional.Functional``).

    ``keras.Model(inputs, outputs)`` returns an instance of it; a subclass
    of `keras.Model` that is also functional must subclass it. Checked on
    Keras 3.6.0-3.15.1.

    Raises:
        UnsupportedVersionError: the class is missing.
    """
    functional = _private_module("keras.src.models.functional")
    return _private_attribute(functional, "Functional", "Keras' functional model class")


def functional_init_arguments(args: tuple, kwargs: dict) -> bool:
    """Whether `keras.Model` called with ``(*args, **kwargs)`` builds a functional model.

    Wraps ``keras.src.models.model.functional_init_arguments``, the test
    `keras.Model.__new__` applies (inputs and outputs given). Checked on
    Keras 3.6.0-3.15.1.

    Raises:
        UnsupportedVersionError: the function is missing.
    """
    model = _private_module("keras.src.models.model")
    test = _private_attribute(model, "functional_init_arguments", "Keras' functional-construction test")
    return bool(test(args, kwargs))


def train_validation_split(arrays: Any, validation_split: float) -> tuple[Any, Any]:
    """Keras' own split of in-memory arrays for ``fit(validation_split=...)``.

    Wraps ``keras.src.trainers.data_adapters.array_slicing.train_validation_split``,
    so the validation samples are exactly those plain `fit` would hold out.
    Checked on Keras 3.6.0-3.15.1.

    Returns:
        ``(train_arrays, validation_arrays)``.

    Raises:
        UnsupportedVersionError: the function is missing.
    """
    array_slicing = _private_module("keras.src.trainers.data_adapters.array_slicing")
    split = _private_attribute(array_slicing, "train_validation_split", "Keras' validation split")
    return split(arrays, validation_split=validation_split)


def set_initial_epoch(model: Any, epoch: int) -> None:
    """Makes the next `model.fit` start at `epoch`, as `keras.callbacks.BackupAndRestore` does.

    Sets ``model._initial_epoch``, which `fit` reads once its callbacks'
    ``on_train_begin`` has run. Checked on Keras 3.6.0-3.15.1 (TF trainer).

    Raises:
        UnsupportedVersionError: the model has no ``_initial_epoch``.
    """
    _private_attribute(model, "_initial_epoch", "Keras' resume epoch")
    model._initial_epoch = epoch


def optimizer_step_variable(optimizer: Any) -> Any:
    """The variable counting an optimizer's steps (``optimizer._iterations``).

    `optimizer.iterations` is that variable, except with
    ``gradient_accumulation_steps``, where it is a tensor computed from it
    (the variable then counts the accumulated micro-steps). Checked on Keras
    3.6.0-3.15.1.

    Raises:
        UnsupportedVersionError: the optimizer has no ``_iterations``.
    """
    return _private_attribute(optimizer, "_iterations", "An optimizer's step counter")


def optimizer_built_for(optimizer: Any) -> list:
    """The variables a built optimizer was built for, in its order (``optimizer._trainable_variables``).

    Keras stores an optimizer's slot variables by that position. Checked on
    Keras 3.6.0-3.15.1.

    Raises:
        UnsupportedVersionError: the optimizer has no ``_trainable_variables``.
    """
    return list(_private_attribute(optimizer, "_trainable_variables", "The variables an optimizer was built for"))


# ---------------------------------------------------------------- Keras: global random state

_KERAS_GLOBAL_SEED_GENERATOR = "global_seed_generator"


def _keras_global_state() -> ModuleType:
    global_state = _private_module("keras.src.backend.common.global_state")
    for name in ("get_global_attribute", "set_global_attribute"):
        _private_attribute(global_state, name, "Keras' global state")
    return global_state


def keras_global_seed_generator() -> Any:
    """The calling thread's Keras global `SeedGenerator`, or None if it was not created yet.

    `keras.random.*` calls without a seed draw from it. Unlike
    ``keras.src.random.seed_generator.global_seed_generator()``, this does
    not create one. Reads the thread-local Keras global attribute
    ``"global_seed_generator"``. Checked on Keras 3.6.0-3.15.1.

    Raises:
        UnsupportedVersionError: Keras' global state module is missing.
    """
    return _keras_global_state().get_global_attribute(_KERAS_GLOBAL_SEED_GENERATOR)


def set_keras_global_seed_generator(generator: Any) -> None:
    """Makes `generator` the calling thread's Keras global `SeedGenerator` (None: re-create lazily).

    Checked on Keras 3.6.0-3.15.1.

    Raises:
        UnsupportedVersionError: Keras' global state module is missing.
    """
    _keras_global_state().set_global_attribute(_KERAS_GLOBAL_SEED_GENERATOR, generator)


def keras_random_seed() -> int | None:
    """The seed last given to `keras.utils.set_random_seed` in this thread, or None.

    Wraps ``keras.src.utils.rng_utils.get_random_seed``, which Keras 3.10
    added: before it, `set_random_seed` records nothing, and there is no
    way to tell whether it was called. Checked on Keras 3.6.0-3.15.1.

    Raises:
        UnsupportedVersionError: on Keras before 3.10, where the seed is not
            recorded; callers that can do without say so (e.g. an audit
            reports that it cannot tell).
    """
    rng_utils = _private_module("keras.src.utils.rng_utils")
    get_random_seed = getattr(rng_utils, "get_random_seed", None)
    if get_random_seed is None:
        raise _unsupported(
            "The seed recorded by keras.utils.set_random_seed (keras.src.utils.rng_utils."
            "get_random_seed, added in Keras 3.10)"
        )
    return get_random_seed()
