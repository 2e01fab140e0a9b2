"""Label smoothing (a parameter of categorical and binary cross-entropy) and sample weights,
against Keras 3's own losses (torch backend) and by numeric gradients."""

import json
import os

os.environ["KERAS_BACKEND"] = "torch"

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mlpcli.config import ConfigError, resolve  # noqa: E402
from mlpcli.nn import losses  # noqa: E402
from conftest import numeric_grad  # noqa: E402

# keras's torch backend converts tensors with np.array(x) (numpy 2 copy-keyword notice)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

CASES = [("categorical_crossentropy", "CategoricalCrossentropy", np.eye(3)[[0, 2, 1, 2]]),
         ("binary_crossentropy", "BinaryCrossentropy", np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 1.0]]))]


def smoothed(name, s):
    return losses.from_spec({"type": name, "label_smoothing": s})


@pytest.mark.parametrize("name,keras_name,y", CASES)
@pytest.mark.parametrize("s", [0.1, 0.3])
def test_smoothed_targets_are_keras_formula(name, keras_name, y, s):
    loss = smoothed(name, s)
    k = 2 if name == "binary_crossentropy" else y.shape[1]
    np.testing.assert_allclose(losses.encode_targets(loss, y, y.shape[1]), y * (1 - s) + s / k, rtol=1e-6)


@pytest.mark.parametrize("name,keras_name,y", CASES)
def test_smoothed_and_weighted_loss_matches_keras(name, keras_name, y):
    keras = pytest.importorskip("keras")
    pytest.importorskip("torch")
    if keras.backend.backend() != "torch":
        pytest.skip("driven through Keras's torch backend")
    rng = np.random.default_rng(0)
    y_pred = rng.uniform(0.05, 0.95, y.shape).astype(np.float32)
    if name == "categorical_crossentropy":
        y_pred /= y_pred.sum(axis=1, keepdims=True)
    w = np.array([0.5, 2.0, 0.0, 1.5], np.float32)
    loss = smoothed(name, 0.2)
    ours = loss.weighted(w).value(losses.encode_targets(loss, y, y.shape[1]), y_pred)
    theirs = getattr(keras.losses, keras_name)(label_smoothing=0.2)(y.astype(np.float32), y_pred, sample_weight=w)
    assert ours == pytest.approx(float(keras.ops.convert_to_numpy(theirs)), rel=1e-5)


@pytest.mark.parametrize("name,keras_name,y", CASES)
def test_smoothed_gradient_is_numeric(name, keras_name, y):
    rng = np.random.default_rng(2)
    y_pred = rng.uniform(0.1, 0.9, y.shape)
    loss = smoothed(name, 0.25)
    targets = losses.encode_targets(loss, y, y.shape[1]).astype(np.float64)
    np.testing.assert_allclose(loss.grad(targets, y_pred),
                               numeric_grad(lambda: loss.value(targets, y_pred), y_pred), rtol=1e-4, atol=1e-6)


CONFIG = {"data": {"dataset": "mnist"}, "model": {"input_shape": [4], "layers": [
    {"type": "dense", "units": 3, "activation": "softmax"}]}}


def test_label_smoothing_is_a_checked_loss_parameter():
    cfg = resolve({**CONFIG, "loss": {"type": "categorical_crossentropy", "label_smoothing": 0.1}})
    assert cfg["loss"] == {"type": "categorical_crossentropy", "label_smoothing": 0.1}
    with pytest.raises(ConfigError, match=r"loss.label_smoothing: must be in \[0, 1\], got 1.5"):
        resolve({**CONFIG, "loss": {"type": "categorical_crossentropy", "label_smoothing": 1.5}})
    with pytest.raises(ConfigError, match="loss.label_smoothing: unknown key; allowed: type"):
        resolve({**CONFIG, "loss": {"type": "mse", "label_smoothing": 0.1}})


def test_training_config_holds_the_keras_loss(tmp_path):
    from mlpcli import modelfile
    from mlpcli.trainer import build_model, random_streams
    cfg = resolve({**CONFIG, "loss": {"type": "categorical_crossentropy", "label_smoothing": 0.1}})
    model = build_model(cfg, random_streams(0))
    from mlpcli.nn import optimizers
    modelfile.save(tmp_path / "m.h5", model, loss=cfg["loss"], optimizer=optimizers.from_config(cfg["optimizer"]))
    with h5py.File(tmp_path / "m.h5") as f:
        loss = json.loads(f.attrs["training_config"])["loss"]
    assert loss["class_name"] == "CategoricalCrossentropy" and loss["config"]["label_smoothing"] == 0.1
