"""A Keras ``Sequential`` model_config (the JSON in a model file) read as mlpcli layer specs.

Only the layers mlpcli has (``SUPPORTED``) and their Keras 2/3 spellings of
activations, initializers and regularizers are accepted; anything else is a
``ModelFileError`` naming the file, the layer and what is wrong.
"""

from mlpcli.errors import ModelFileError
from mlpcli.nn import activations, initializers

SUPPORTED = ("InputLayer", "Dense", "Activation", "Dropout", "Flatten")
_INITIALIZER_NAMES = {v: k for k, v in initializers.KERAS_CLASS_NAMES.items()}


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
    if isinstance(value, dict):
        inner = value.get("config")
        value = (inner.get("name") if isinstance(inner, dict) else None) or value.get("class_name")
    name = "linear" if value is None else str(value).lower()
    if name not in activations.ACTIVATIONS:
        raise ModelFileError(f"{path}: layer {i} uses activation {value!r}, which mlpcli does not "
                             f"have; supported: {', '.join(sorted(activations.ACTIVATIONS))}")
    return name


def _initializer(value):
    """Our spec for a Keras initializer config; unknown ones fall back to the defaults
    (they only matter for training from scratch, not for the loaded weights)."""
    if isinstance(value, dict):
        name = _INITIALIZER_NAMES.get(value.get("class_name"))
        params = value.get("config") or {}
        if name and isinstance(params, dict):
            allowed = initializers.parameters(name)
            return {"type": name, **{k: v for k, v in params.items() if k in allowed}}
    if isinstance(value, str) and value in initializers.INITIALIZERS:
        return {"type": value}
    return None


def _regularizer(value):
    if isinstance(value, dict) and value.get("class_name") in ("L1L2", "L1", "L2"):
        c = value.get("config") or {}
        if not isinstance(c, dict):
            raise ValueError(f"malformed regularizer config {c!r}")
        return {"l1": float(c.get("l1", 0.0) or 0.0), "l2": float(c.get("l2", 0.0) or 0.0)}
    return None


def _spec(kind, lc, path, i):
    name = lc.get("name")
    spec = {"type": kind.lower(), "name": name if isinstance(name, str) else None}
    if kind == "Dense":
        units = lc.get("units")
        if not isinstance(units, int) or units < 1:
            raise ModelFileError(f"{path}: layer {i} has bad units {units!r}")
        spec.update(units=units, activation=_activation(lc.get("activation"), path, i),
                    use_bias=bool(lc.get("use_bias", True)))
        for key in ("kernel_initializer", "bias_initializer"):
            init = _initializer(lc.get(key))
            if init:
                spec[key] = init
        for key in ("kernel_regularizer", "bias_regularizer", "activity_regularizer"):
            spec[key] = _regularizer(lc.get(key))
    elif kind == "Activation":
        spec["activation"] = _activation(lc.get("activation"), path, i)
    elif kind == "Dropout":
        rate = lc.get("rate", 0.5)
        if not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ModelFileError(f"{path}: layer {i} has bad dropout rate {rate!r}")
        spec["rate"] = float(rate)
    return spec
