"""A Keras ``Sequential`` model_config (the JSON in a model file) read as mlpcli layer specs.

Only the layers mlpcli has and their Keras 2/3 spellings of activations, initializers
and regularizers are accepted, each read through its declaration (``mlpcli.nn.spec``:
Keras class name, config keys, constraints); anything else is a ``ModelFileError``
naming the file, the layer and what is wrong.
"""

from mlpcli.errors import ModelFileError
from mlpcli.nn import activations, initializers, layers, regularizers
from mlpcli.nn.spec import NESTED

SUPPORTED = ("InputLayer", *(component.keras for component in layers.LAYERS.specs()))


def layer_specs_from_keras(config, path):
    """(layer specs, input shape, model name) from a Keras ``Sequential`` model_config."""
    if not isinstance(config, dict) or config.get("class_name") != "Sequential":
        kind = config.get("class_name") if isinstance(config, dict) else type(config).__name__
        raise ModelFileError(f"{path}: model is a {kind!r}; mlpcli reads Sequential models only")
    body = config.get("config")
    entries = body.get("layers") if isinstance(body, dict) else body
    if not isinstance(entries, list) or not entries:
        raise ModelFileError(f"{path}: model_config has no layers")
    input_shape = None
    specs = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
            raise ModelFileError(f"{path}: layer {i} of model_config is malformed")
        kind, lc = entry.get("class_name"), entry["config"]
        if kind not in SUPPORTED:
            raise ModelFileError(f"{path}: layer {i} ({lc.get('name', '?')}) is a {kind!r} layer, which "
                                 f"mlpcli cannot run; supported: {', '.join(SUPPORTED)}")
        shape = lc.get("batch_input_shape") or lc.get("batch_shape")
        if shape is not None and input_shape is None:
            input_shape = _shape(shape, path)
        if kind != "InputLayer":
            specs.append(_spec(kind, lc, path, i))
    if input_shape is None:
        input_shape = _shape(body.get("build_input_shape"), path) if isinstance(body, dict) else None
    if input_shape is None:
        raise ModelFileError(f"{path}: model_config does not give the input shape")
    name = body.get("name", "sequential") if isinstance(body, dict) else "sequential"
    return specs, input_shape, str(name)


def _shape(shape, path):
    if (not isinstance(shape, list) or len(shape) < 2
            or not all(isinstance(d, int) and d > 0 for d in shape[1:])):
        raise ModelFileError(f"{path}: bad input shape {shape!r}")
    return tuple(shape[1:])


def _activation(value, path, i):
    given = value
    if isinstance(value, dict):
        inner = value.get("config")
        value = (inner.get("name") if isinstance(inner, dict) else None) or value.get("class_name")
        if value is None:  # a mapping that names no activation is damage, not "linear"
            raise ModelFileError(f"{path}: layer {i} has an activation that names none: {given!r}"[:300])
    found = activations.ACTIVATIONS.by_keras("linear" if value is None else str(value).lower())
    if found is None:
        raise ModelFileError(f"{path}: layer {i} uses activation {value!r}, which mlpcli does not "
                             f"have; supported: {', '.join(sorted(activations.ACTIVATIONS))}")
    return found.name


def _initializer(value):
    """Our spec for a Keras initializer config; unknown ones, and parameters their declaration
    does not allow, fall back to the defaults (they only matter for training from scratch,
    not for the loaded weights)."""
    if isinstance(value, dict):
        found = initializers.INITIALIZERS.by_keras(value.get("class_name"))
        params = value.get("config") or {}
        if found and isinstance(params, dict):
            read = found.spec.from_keras(params)
            return {"type": found.spec.name, **{k: v for k, v in read.items()
                                                if found.spec.param(k).constraint.problem(v) is None}}
    if isinstance(value, str) and value in initializers.INITIALIZERS:
        return {"type": value}
    return None


def _regularizer(value):
    found = regularizers.REGULARIZERS.by_keras(value.get("class_name")) if isinstance(value, dict) else None
    if found is None:
        return None
    c = value.get("config") or {}
    if not isinstance(c, dict):
        raise ValueError(f"malformed regularizer config {c!r}")
    return {k: float(v or 0.0) for k, v in {**found.spec.defaults(), **found.spec.from_keras(c)}.items()}


# how a Keras config's value of a nested kind is read: (value, path, layer index) -> our value
_FROM_KERAS = {"activation": _activation,
               "initializer": lambda value, path, i: _initializer(value),
               "regularizer": lambda value, path, i: _regularizer(value)}


def _spec(kind, lc, path, i):
    name = lc.get("name")
    component = layers.LAYERS.by_keras(kind).spec
    spec = {"type": component.name, "name": name if isinstance(name, str) else None}
    if "axis" in component.keras_fixed and lc.get("axis", -1) not in (-1, [-1]):
        raise ModelFileError(f"{path}: layer {i} ({name}) normalizes over axis {lc.get('axis')!r}; "
                             "mlpcli's normalization layers take the last axis (-1) only")
    if lc.get("rms_scaling"):  # Keras 3.1's LayerNormalization option: scale by the RMS, no centering
        raise ModelFileError(f"{path}: layer {i} ({name}) uses rms_scaling, which mlpcli's "
                             "layer_normalization does not have")
    for param in component.params:
        key = param.keras_key
        if param.constraint.type in NESTED:
            value = _FROM_KERAS[param.constraint.type](lc.get(key), path, i)
            if value is not None or param.constraint.nullable:
                spec[param.name] = value
        elif key in lc or param.required:
            problem = param.constraint.problem(lc.get(key), param.name)
            if problem:
                raise ModelFileError(f"{path}: layer {i} ({name}) has a bad {param.name}: {problem}")
            spec[param.name] = lc[key]
    return spec
