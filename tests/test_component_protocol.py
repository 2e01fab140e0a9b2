"""The component protocol: declarations (mlpcli.nn.spec) drive the config check, the Keras
config written and read, and the README's reference tables."""

from pathlib import Path

import numpy as np
import pytest

from mlpcli.config import resolve
from mlpcli.errors import ConfigError
from mlpcli.keras_layers import layer_specs_from_keras
from mlpcli.modelfile import keras_model_config
from mlpcli import reference
from mlpcli.nn import layers, schedules
from mlpcli.nn.model import Sequential
from mlpcli.nn.spec import Component, Param, Registry, number

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_component_reference_is_what_the_declarations_generate():
    text = README.read_text(encoding="utf-8")
    assert reference.current(text) == text, "README.md is stale: run python -m mlpcli.reference README.md"


def _config(schedule):
    return {"data": {"dataset": "npz", "path": "/unused.npz"},
            "model": {"input_shape": [4], "layers": [{"type": "dense", "units": 2, "activation": "softmax"}]},
            "schedule": schedule}


def test_a_parameter_range_is_the_declaring_components_not_a_global_one_by_name(monkeypatch):
    class Wide(schedules.Schedule):  # its alpha goes to 10; cosine_decay's stays in [0, 1]
        spec = Component("wide", "a test schedule", (Param("alpha", 1.0, number(0, 10), "a factor"),))

    monkeypatch.setattr(schedules, "SCHEDULES", Registry("schedule", [*schedules.SCHEDULES.values(), Wide]))
    assert resolve(_config({"type": "wide", "alpha": 5}))["schedule"] == {"alpha": 5, "type": "wide"}
    with pytest.raises(ConfigError) as exc:
        resolve(_config({"type": "wide", "alpha": 11}))
    assert "schedule.alpha: must be in [0, 10], got 11" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        resolve(_config({"type": "cosine_decay", "alpha": 5}))
    assert "schedule.alpha: must be in [0, 1], got 5" in str(exc.value)


def test_every_layer_goes_to_keras_and_back_through_its_declaration():
    specs = [{"type": "flatten", "name": "f"},
             {"type": "dense", "name": "d", "units": 3, "activation": "tanh", "use_bias": False,
              "kernel_initializer": {"type": "random_uniform", "minval": -0.1, "maxval": 0.2, "seed": 7},
              "bias_initializer": {"type": "constant", "value": 0.5},  # Keras has no seed here
              "kernel_regularizer": {"l1": 0.01, "l2": 0.0}, "bias_regularizer": None,
              "activity_regularizer": {"l1": 0.0, "l2": 0.02}},
             {"type": "dropout", "name": "o", "rate": 0.25, "seed": 3},
             {"type": "activation", "name": "a", "activation": "softmax"},
             {"type": "batch_normalization", "name": "b", "momentum": 0.5, "epsilon": 0.01, "center": False},
             {"type": "layer_normalization", "name": "n", "epsilon": 0.1, "scale": False}]
    assert {s["type"] for s in specs} == set(layers.LAYERS)  # a new layer joins this test
    model = Sequential(specs, (2, 2), name="m").build(np.random.default_rng(0))
    config = keras_model_config(model)
    for entry, layer in zip(config["config"]["layers"][1:], model.layers):
        declared = {p.keras_key for p in layer.spec.params if p.keras_key} | set(layer.spec.keras_fixed)
        assert set(entry["config"]) == {"name", "trainable", "dtype"} | declared
        assert entry["class_name"] == layer.spec.keras
    read, shape, name = layer_specs_from_keras(config, "m.h5")
    assert (read, shape, name) == ([layer.get_config() for layer in model.layers], (2, 2), "m")


def test_a_keras_layer_value_outside_its_declared_constraint_names_layer_and_range():
    from mlpcli.errors import ModelFileError

    config = {"class_name": "Sequential", "config": {"name": "m", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4]}},
        {"class_name": "Dense", "config": {"name": "d", "units": 2}},
        {"class_name": "Dropout", "config": {"name": "drop", "rate": 1.5}}]}}
    with pytest.raises(ModelFileError) as exc:
        layer_specs_from_keras(config, "m.h5")
    assert str(exc.value) == "m.h5: layer 2 (drop) has a bad rate: must be in [0, 1), got 1.5"


@pytest.mark.parametrize("axis", [1, [0, 1], "x"])
def test_a_keras_normalization_over_another_axis_is_refused(axis):
    from mlpcli.errors import ModelFileError

    config = {"class_name": "Sequential", "config": {"name": "m", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4, 3]}},
        {"class_name": "BatchNormalization", "config": {"name": "bn", "axis": axis}}]}}
    with pytest.raises(ModelFileError) as exc:
        layer_specs_from_keras(config, "m.h5")
    assert "m.h5: layer 1 (bn) normalizes over axis" in str(exc.value) and "the last axis (-1)" in str(exc.value)


def test_a_keras_layer_normalization_with_rms_scaling_is_refused():
    from mlpcli.errors import ModelFileError

    config = {"class_name": "Sequential", "config": {"name": "m", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4]}},
        {"class_name": "LayerNormalization", "config": {"name": "ln", "rms_scaling": True}}]}}
    with pytest.raises(ModelFileError, match=r"m.h5: layer 1 \(ln\) uses rms_scaling"):
        layer_specs_from_keras(config, "m.h5")
