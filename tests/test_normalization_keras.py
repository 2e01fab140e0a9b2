"""Batch and layer normalization against real Keras 3: a Keras-written model with both
loads in mlpcli and predicts the same (moving statistics included), and ours loads in
Keras with the weights in Keras's order and predicts the same."""

import os

os.environ["KERAS_BACKEND"] = "torch"  # before Keras is imported

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")

from mlpcli import modelfile  # noqa: E402
from mlpcli.nn import losses, optimizers  # noqa: E402
from mlpcli.nn.model import Sequential  # noqa: E402


def inputs(n=16, width=6, seed=2):
    return (np.random.default_rng(seed).standard_normal((n, width)) * 3 + 1).astype(np.float32)


def test_mlpcli_loads_keras3_normalization_model(tmp_path):
    layers = keras.layers
    keras.utils.set_random_seed(0)
    km = keras.Sequential([keras.Input((6,)), layers.Dense(8, activation="relu"),
                           layers.BatchNormalization(momentum=0.8, epsilon=0.01),
                           layers.LayerNormalization(center=False),
                           layers.Dense(3, activation="softmax")])
    km.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = inputs(64)
    km.fit(x, np.arange(64) % 3, epochs=2, batch_size=16, verbose=0)  # moving statistics move
    km.save(tmp_path / "k.h5")

    model = modelfile.load(tmp_path / "k.h5").model
    assert [layer.type for layer in model.layers] == ["dense", "batch_normalization", "layer_normalization",
                                                      "dense"]
    bn, ln = model.layers[1], model.layers[2]
    assert (bn.config["momentum"], bn.config["epsilon"]) == (0.8, 0.01)
    assert ln.config["center"] is False and ln.weight_names == ("gamma",)
    assert not np.allclose(bn.moving_mean, 0)
    for got, want in zip(model.weights, km.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(model.predict(x), km.predict(x, verbose=0), atol=1e-5, rtol=0)


def test_keras_loads_mlpcli_normalization_model(tmp_path):
    specs = [{"type": "dense", "units": 8, "activation": "tanh"},
             {"type": "batch_normalization", "momentum": 0.5},
             {"type": "layer_normalization", "scale": False},
             {"type": "dense", "units": 3, "activation": "softmax"}]
    model = Sequential(specs, (6,)).build(np.random.default_rng(0))
    opt = optimizers.get("adam")()
    opt.build(model.params)
    loss = losses.get("categorical_crossentropy")
    x, y = inputs(32), np.eye(3, dtype=np.float32)[np.arange(32) % 3]
    for _ in range(3):
        model.train_step(x, y, loss, opt, 0.01)
    assert not np.allclose(model.layers[1].moving_variance, 1)
    modelfile.save(tmp_path / "ours.h5", model, loss="categorical_crossentropy", optimizer=opt)

    km = keras.models.load_model(tmp_path / "ours.h5")
    assert [type(layer).__name__ for layer in km.layers] == ["Dense", "BatchNormalization",
                                                             "LayerNormalization", "Dense"]
    assert [w.path.split("/")[-1] for w in km.layers[1].weights] == ["gamma", "beta", "moving_mean",
                                                                    "moving_variance"]
    for got, want in zip(km.get_weights(), model.weights, strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(km.predict(x, verbose=0), model.predict(x), atol=1e-5, rtol=0)
