"""mlpcli.modelfile against real Keras: files mlpcli writes load in Keras 3 and
predict the same, files Keras writes (and Keras 2's layout) load in mlpcli, and
a Lambda layer is refused without running anything."""

import json
import logging
import os
import warnings

os.environ["KERAS_BACKEND"] = "torch"  # before Keras is imported

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")

from mlpcli import modelfile  # noqa: E402
from mlpcli.errors import ModelFileError  # noqa: E402
from mlpcli.nn import optimizers  # noqa: E402
from mlpcli.nn.model import Sequential  # noqa: E402
from mlpcli.pipeline import InputPipeline  # noqa: E402

OPTIMIZER_ERROR = "Error in loading the saved optimizer state"


def inputs(n=9, shape=(784,), seed=2):
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


def ours_saved(path):
    """mlpcli's 784-32-relu-dropout-10-softmax MLP (plus an Activation), trained a
    few Adam steps and saved with loss, optimizer and metrics."""
    specs = [{"type": "dense", "units": 32, "activation": "relu"},
             {"type": "dropout", "rate": 0.3},
             {"type": "dense", "units": 10, "activation": "linear"},
             {"type": "activation", "activation": "softmax"}]
    model = Sequential(specs, (784,)).build(np.random.default_rng(0))
    opt = optimizers.get("adam")()
    opt.build(model.params)
    rng = np.random.default_rng(1)
    for _ in range(3):
        opt.apply(model.params, [rng.standard_normal(p.shape).astype(np.float32)
                                 for p in model.params], 0.01)
    modelfile.save(path, model, loss="categorical_crossentropy", optimizer=opt,
                   metrics=["accuracy"], config={"seed": 0},
                   pipeline=InputPipeline(kind="digits", feature_shape=(28, 28), scaling="unit",
                                          scale=np.float32(1 / 255), offset=np.float32(0),
                                          class_names=[str(i) for i in range(10)]),
                   state={"epoch": 3})
    return model


def keras_load(path, caplog):
    """``keras.models.load_model`` with its log records and warnings collected."""
    caplog.clear()
    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        km = keras.models.load_model(path)
    messages = [r.getMessage() for r in caplog.records] + [str(w.message) for w in caught]
    return km, messages


def test_keras_loads_mlpcli_file_and_predicts_the_same(tmp_path, caplog):
    path = tmp_path / "ours.h5"
    ours = ours_saved(path)
    km, messages = keras_load(path, caplog)

    assert [type(layer).__name__ for layer in km.layers] == ["Dense", "Dropout", "Dense",
                                                             "Activation"]
    assert [layer.name for layer in km.layers] == ["dense", "dropout", "dense_1", "activation"]
    for got, want in zip(km.get_weights(), ours.params):
        np.testing.assert_array_equal(got, want)
    x = inputs()
    np.testing.assert_allclose(km.predict(x, verbose=0), ours.predict(x), atol=1e-5, rtol=0)
    # compiled from training_config, without complaints about the optimizer
    assert type(km.optimizer).__name__ == "Adam"
    assert not [m for m in messages if OPTIMIZER_ERROR in m or "optimizer state" in m], messages


def test_optimizer_error_would_be_caught(tmp_path, caplog):
    """Control: a bad ``optimizer_weights`` group does make Keras log the error the
    test above checks for, so its absence there means something."""
    path = tmp_path / "ours.h5"
    ours_saved(path)
    with h5py.File(path, "r+") as f:
        group = f.create_group("optimizer_weights")
        group.attrs["weight_names"] = [b"bogus:0"]
        group.create_dataset("bogus:0", data=np.zeros(3, np.float32))
    _, messages = keras_load(path, caplog)
    assert any(OPTIMIZER_ERROR in m for m in messages), messages


def _keras_saved(path, model):
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.save(path)
    return model


def test_mlpcli_loads_keras3_mlp(tmp_path):
    layers = keras.layers
    keras.utils.set_random_seed(0)
    km = _keras_saved(tmp_path / "k.h5", keras.Sequential([
        keras.Input((784,)), layers.Dense(32, activation="relu"), layers.Dropout(0.2),
        layers.Dense(10, activation="softmax")]))
    mf = modelfile.load(tmp_path / "k.h5")
    model = mf.model

    assert model.input_shape == (784,)
    assert [layer.type for layer in model.layers] == ["dense", "dropout", "dense"]
    assert [layer.name for layer in model.layers] == [layer.name for layer in km.layers]
    assert model.layers[1].config["rate"] == 0.2
    assert [layer.config.get("activation") for layer in model.layers] == ["relu", None, "softmax"]
    assert mf.loss == "sparse_categorical_crossentropy"
    for got, want in zip(model.params, km.get_weights()):
        np.testing.assert_array_equal(got, want)
    x = inputs()
    np.testing.assert_allclose(model.predict(x), km.predict(x, verbose=0), atol=1e-5, rtol=0)


def test_mlpcli_loads_keras3_flatten_and_activation(tmp_path):
    layers = keras.layers
    keras.utils.set_random_seed(1)
    km = _keras_saved(tmp_path / "k.h5", keras.Sequential([
        keras.Input((28, 28)), layers.Flatten(), layers.Dense(16, activation="tanh"),
        layers.Dense(10), layers.Activation("softmax")]))
    model = modelfile.load(tmp_path / "k.h5").model

    assert model.input_shape == (28, 28)
    assert [layer.type for layer in model.layers] == ["flatten", "dense", "dense", "activation"]
    x = inputs(shape=(28, 28))
    out = model.predict(x)
    assert out.shape == (9, 10)
    np.testing.assert_allclose(out, km.predict(x, verbose=0), atol=1e-5, rtol=0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


# ---------------------------------------------------------------- Keras 2's layout


def _keras2_dense(name, units, activation, **extra):
    return {"class_name": "Dense",
            "config": {"name": name, "trainable": True, **extra, "dtype": "float32",
                       "units": units, "activation": activation, "use_bias": True,
                       "kernel_initializer": {"class_name": "GlorotUniform",
                                              "config": {"seed": None}},
                       "bias_initializer": {"class_name": "Zeros", "config": {}},
                       "kernel_regularizer": None, "bias_regularizer": None,
                       "activity_regularizer": None, "kernel_constraint": None,
                       "bias_constraint": None}}


def test_mlpcli_loads_keras2_layout(tmp_path):
    """A file as Keras 2 wrote it: no InputLayer, ``batch_input_shape`` on the first
    Dense, ``<layer>/kernel:0`` weight names. (Needs only h5py; Keras 3 itself
    misreads this old form, so mlpcli's output is checked against numpy.)"""
    rng = np.random.default_rng(0)
    w1, b1 = rng.standard_normal((784, 8)).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    w2, b2 = rng.standard_normal((8, 5)).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    w3, b3 = rng.standard_normal((5, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    config = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
        _keras2_dense("dense", 8, "relu", batch_input_shape=[None, 784]),
        {"class_name": "Dropout", "config": {"name": "dropout", "trainable": True,
                                             "dtype": "float32", "rate": 0.5,
                                             "noise_shape": None, "seed": None}},
        _keras2_dense("dense_1", 5, "tanh"),
        _keras2_dense("dense_2", 3, "linear"),
        {"class_name": "Activation", "config": {"name": "activation", "trainable": True,
                                                "dtype": "float32", "activation": "softmax"}},
    ]}}
    training = {"loss": "categorical_crossentropy", "metrics": ["accuracy"],
                "optimizer_config": {"class_name": "Adam", "config": {"learning_rate": 0.001}}}
    path = tmp_path / "keras2.h5"
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.4.0"
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps(config).encode("utf-8")
        f.attrs["training_config"] = json.dumps(training).encode("utf-8")
        weights = f.create_group("model_weights")
        weights.attrs["layer_names"] = [b"dense", b"dropout", b"dense_1", b"dense_2", b"activation"]
        for name, arrays in [("dense", (w1, b1)), ("dropout", ()), ("dense_1", (w2, b2)),
                             ("dense_2", (w3, b3)), ("activation", ())]:
            g = weights.create_group(name)
            names = [f"{name}/kernel:0", f"{name}/bias:0"][:len(arrays)]
            g.attrs["weight_names"] = [n.encode() for n in names]
            for n, a in zip(names, arrays):
                g.create_dataset(n, data=a)

    mf = modelfile.load(path)
    model = mf.model
    assert model.input_shape == (784,)
    assert [layer.type for layer in model.layers] == ["dense", "dropout", "dense", "dense",
                                                      "activation"]
    assert mf.loss == "categorical_crossentropy"
    assert mf.config is None and mf.optimizer_state == {}

    x = inputs()
    h = np.maximum(x @ w1 + b1, 0)
    h = np.tanh(h @ w2 + b2)
    z = h @ w3 + b3
    expected = np.exp(z - z.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.predict(x), expected, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- Lambda


def test_lambda_layer_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "lambda-ran"
    # a function whose code (marshalled into the file) leaves a marker when run
    touch = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1]")
    layers = keras.layers
    km = keras.Sequential([keras.Input((4,)), layers.Dense(3), layers.Lambda(touch),
                           layers.Dense(2)])
    assert marker.exists()  # control: Keras ran it while building
    marker.unlink()
    path = tmp_path / "lambda.h5"
    km.save(path)
    with h5py.File(path, "r") as f:
        kinds = [e["class_name"] for e in json.loads(f.attrs["model_config"])["config"]["layers"]]
    assert "Lambda" in kinds

    with pytest.raises(ModelFileError) as info:
        modelfile.load(path)
    assert str(path) in str(info.value)
    assert "Lambda" in str(info.value)
    assert not marker.exists()


def test_keras_written_model_through_mlp_predict_and_evaluate(tmp_path):
    """A Keras-saved .h5 used by the CLI: predictions equal Keras's, evaluation runs on MNIST."""
    from click.testing import CliRunner

    from mlpcli.cli import main
    from mlpcli.data.builtin import load_builtin

    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dropout(0.2), keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    path = tmp_path / "keras_mlp.h5"
    model.save(path)
    raw = load_builtin("mnist").x_test[:20]
    np.save(tmp_path / "rows.npy", raw)
    result = CliRunner().invoke(main, ["predict", str(tmp_path / "rows.npy"), "--model", str(path),
                                       "--json", "--top-k", "10", "--scaling", "unit"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    expected = model.predict(raw.reshape(20, 784).astype(np.float32) / 255.0, verbose=0)
    for row, probs in zip(rows, expected):
        got = {int(t["class"]): t["probability"] for t in row["top_k"]}
        np.testing.assert_allclose([got[k] for k in range(10)], probs, atol=1e-5)
    result = CliRunner().invoke(main, ["evaluate", "--model", str(path), "--data", "mnist", "--scaling", "unit"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "evaluation-keras_mlp-on-mnist.json").exists()


def test_keras3_model_fed_pre_scaled_rows_predicts_what_keras_predicts(tmp_path):
    """The Keras tutorial scales its rows itself (X_test /= 255); with --scaling none mlp predict
    and mlp evaluate take them as they are and agree with Keras."""
    from click.testing import CliRunner

    from mlpcli.cli import main
    from mlpcli.data.builtin import load_builtin

    keras.utils.set_random_seed(3)
    model = _keras_saved(tmp_path / "k.h5", keras.Sequential([
        keras.Input((784,)), keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10, activation="softmax")]))
    mnist = load_builtin("mnist")
    x = mnist.x_test[:200].reshape(200, 784).astype("float32")
    x /= 255
    y = mnist.y_test[:200]
    np.save(tmp_path / "rows.npy", x)
    np.savez(tmp_path / "scaled.npz", x_test=x, y_test=y)
    result = CliRunner().invoke(main, ["predict", str(tmp_path / "rows.npy"), "--model", str(tmp_path / "k.h5"),
                                       "--scaling", "none", "--out", str(tmp_path / "p.npy")])
    assert result.exit_code == 0, result.output
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected, atol=1e-6)
    result = CliRunner().invoke(main, ["evaluate", "--model", str(tmp_path / "k.h5"), "--data",
                                       str(tmp_path / "scaled.npz"), "--scaling", "none", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["metrics"]["accuracy"] == pytest.approx(float((expected.argmax(axis=1) == y).mean()))
    _, keras_accuracy = model.evaluate(x, y, verbose=0)
    assert report["metrics"]["accuracy"] == pytest.approx(keras_accuracy, abs=1e-6)
