"""Class and sample weights in the loss (training.class_weight), weighted as Keras 3 does."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import history, interrupt_and_resume, numeric_grad, same_weights, start_training

from mlpcli import parallel
from mlpcli.config import ConfigError, resolve
from mlpcli.nn import losses
from mlpcli.trainer import Trainer, build_model, random_streams
from mlpcli.training_data import sample_weights


@pytest.mark.parametrize("name", ["categorical_crossentropy", "binary_crossentropy", "mean_squared_error",
                                  "huber", "hinge"])
def test_weighted_loss_is_keras_sum_over_batch_size_and_its_gradient(name):
    rng = np.random.default_rng(0)
    y_pred = rng.uniform(0.1, 0.9, (5, 3))
    y_true = np.eye(3)[[0, 1, 2, 1, 0]]
    w = np.array([0.5, 2.0, 0.0, 1.0, 3.0], np.float32)
    loss = losses.get(name).weighted(w)
    # Keras 3: reduce_weighted_values(loss * w, "sum_over_batch_size") = sum(loss * w) / batch
    per_sample = losses.get(name).per_sample(y_true, y_pred)
    assert loss.value(y_true, y_pred) == pytest.approx(float((per_sample * w).sum() / 5), rel=1e-6)
    np.testing.assert_allclose(loss.grad(y_true, y_pred),
                               numeric_grad(lambda: loss.value(y_true, y_pred), y_pred), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name,activation", [("categorical_crossentropy", "softmax"),
                                             ("binary_crossentropy", "sigmoid")])
def test_weighted_fused_gradient_is_the_weighted_rows(name, activation):
    rng = np.random.default_rng(1)
    y_pred = rng.uniform(0.1, 0.9, (4, 2))
    w = np.array([1.0, 0.0, 2.5, 1.0], np.float32)
    loss = losses.get(name)
    np.testing.assert_allclose(loss.weighted(w).fused_grad(np.eye(2)[[0, 1, 1, 0]], y_pred),
                               loss.fused_grad(np.eye(2)[[0, 1, 1, 0]], y_pred) * w[:, None])


class _Model:
    def __init__(self, n_outputs):
        self.n_outputs = n_outputs


def test_balanced_and_named_class_weights():
    labels = np.array([0] * 95 + [1] * 5)
    w = sample_weights("balanced", labels, None, _Model(2))
    assert w[0] == pytest.approx(100 / (2 * 95)) and w[-1] == pytest.approx(100 / (2 * 5))
    w = sample_weights({"cat": 3, 0: 0.5}, np.array([0, 1, 2]), ["dog", "cat", "eel"], _Model(3))
    assert list(w) == [0.5, 3.0, 1.0]
    with pytest.raises(ConfigError, match=r"training.class_weight.cow: no such class; the classes are dog, cat"):
        sample_weights({"cow": 2}, np.array([0, 1, 2]), ["dog", "cat", "eel"], _Model(3))


@pytest.mark.parametrize("value,message", [("balance", "must be balanced, null or a mapping"),
                                           ({"a": -1}, "training.class_weight.a: must be in")])
def test_bad_class_weight_names_the_key(value, message):
    with pytest.raises(ConfigError, match=message):
        resolve({"data": {"dataset": "mnist"}, "model": {"input_shape": [4], "layers": [
            {"type": "dense", "units": 2, "activation": "softmax"}]}, "training": {"class_weight": value}})


def imbalanced(n=400):
    """95/5 classes whose features overlap: unweighted training mostly says 'majority'."""
    rng = np.random.default_rng(3)
    y = (rng.random(n) < 0.05).astype(np.int64)
    x = (rng.standard_normal((n, 4)) + y[:, None] * 1.2).astype(np.float32)
    return x, y


def trainer(class_weight, processes=1, n=400):
    cfg = resolve({"name": "t", "seed": 0, "model": {"input_shape": [4], "layers": [
        {"type": "dense", "units": 8, "activation": "relu"}, {"type": "dense", "units": 2, "activation": "softmax"}]},
        "optimizer": {"type": "adam", "learning_rate": 0.01}, "data": {"dataset": "mnist"},
        "training": {"batch_size": 32, "processes": processes, "class_weight": class_weight}})
    streams = random_streams(0)
    model = build_model(cfg, streams)
    x, y = imbalanced(n)
    return Trainer(model, cfg, streams, sample_weights=sample_weights(class_weight, y, None, model)), x, y


def minority_recall(class_weight):
    t, x, y = trainer(class_weight)
    for _ in range(15):
        t.run_epoch(x, y)
    predicted = t.model.predict(x).argmax(axis=1)
    return float((predicted[y == 1] == 1).mean())


def test_balanced_class_weight_raises_minority_recall():
    plain, balanced = minority_recall(None), minority_recall("balanced")
    assert balanced >= plain + 0.3, (plain, balanced)


@pytest.mark.skipif(parallel.usable_processes(2) < 2, reason="data-parallel training needs 2 usable cores")
def test_weights_with_two_processes_train_as_with_one():
    (one, x, y), (two, _, _) = trainer("balanced", 1, 203), trainer("balanced", 2, 203)
    for _ in range(2):
        logs_one, logs_two = one.run_epoch(x, y), two.run_epoch(x, y)
        assert logs_one["loss"] == pytest.approx(logs_two["loss"], rel=1e-5)
    for a, b in zip(one.model.params, two.model.params):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_resume_with_class_weights_is_bit_identical(tmp_path):
    settings = ["--set", "data.max_train_samples=12000", "--set", "data.max_test_samples=200",
                "--set", "training.epochs=3", "--set", "training.class_weight={0: 4.0, 7: 0.25}",
                "--no-plots", "-q"]
    whole = start_training(tmp_path / "whole", settings)
    assert whole.wait(timeout=300) == 0, whole.communicate()
    run_dir = tmp_path / "run"
    interrupt_and_resume(run_dir, settings, after_epoch=1)  # 12000 samples: epoch 2 outlasts the signal's delivery
    assert same_weights(tmp_path / "whole" / "model.h5", run_dir / "model.h5")
    assert [r["loss"] for r in history(run_dir)] == [r["loss"] for r in history(tmp_path / "whole")]


def npz_config(path, **training):
    return resolve({"name": "t", "seed": 0, "data": {"dataset": "npz", "path": str(path), "validation_split": 0.25,
                                                                         "scaling": "none"},
                    "model": {"input_shape": [3], "layers": [{"type": "dense", "units": 2, "activation": "softmax"}]},
                    "training": training})


def test_npz_sample_weights_follow_their_samples_and_times_class_weights(tmp_path):
    from mlpcli.training_data import prepare_data
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3)).astype(np.float32)
    y = np.arange(40) % 2
    w = np.arange(40, dtype=np.float32) / 10  # weight i/10 for row i, whose x[:, 0] is known
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, w_train=w)
    for class_weight, factor in ((None, [1, 1]), ({1: 3.0}, [1, 3])):
        cfg = npz_config(tmp_path / "d.npz", class_weight=class_weight)
        streams = random_streams(0)
        data = prepare_data(cfg, build_model(cfg, streams), streams["split"])
        x_train, y_train = data.train
        seen = np.empty((len(y_train), 3), np.float32)
        x_train.take(np.arange(len(y_train)), seen)
        rows = [int(np.flatnonzero(x[:, 0] == v)[0]) for v in seen[:, 0]]  # scaling: none keeps x as given
        np.testing.assert_allclose(data.train_weights, w[rows] * np.array(factor)[y_train], rtol=1e-6)


@pytest.mark.parametrize("w,words", [(np.array([1.0, -1.0, 1.0, 1.0]), "w_train: weight -1.0 at index 1"),
                                     (np.array([1.0, 1.0, np.nan, 1.0]), "w_train: weight nan at index 2"),
                                     (np.ones(3), "x_train has 4 rows but w_train has 3"),
                                     (np.ones((4, 2)), "w_train: sample weights must be numbers of shape (n,)")])
def test_bad_npz_sample_weights_are_refused_naming_the_file(tmp_path, w, words):
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros((4, 3), np.float32), y_train=np.array([0, 1, 0, 1]), w_train=w)
    config = tmp_path / "c.yaml"
    config.write_text(f"data: {{dataset: npz, path: '{path}', validation_split: 0}}\nmodel: {{input_shape: [3], "
                      "layers: [{type: dense, units: 2, activation: softmax}]}\ntraining: {epochs: 1}\n")
    out = subprocess.run([sys.executable, "-m", "mlpcli", "train", str(config), "--run-dir", str(tmp_path / "run"),
                          "--no-plots", "-q"], capture_output=True, text=True)
    assert out.returncode in (1, 2), out.stderr
    assert not (tmp_path / "run").exists()
    assert path.name in out.stderr and words in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_csv_weight_column_is_no_feature_and_weighs_its_rows(tmp_path):
    from mlpcli.training_data import prepare_data
    path = tmp_path / "d.csv"
    path.write_text("a,w,label,b\n" + "".join(f"{i},{i / 4},{i % 2},{-i}\n" for i in range(12)))
    from mlpcli.config import resolve_with_data
    cfg = resolve_with_data({"name": "t", "data": {"dataset": "csv", "path": str(path), "validation_split": 0,
                                                   "weight_column": "w"},
                             "model": {"layers": [{"type": "dense", "units": 2, "activation": "softmax"}]},
                             "checkpoint": {"monitor": "loss"}, "training": {"class_weight": {"1": 2.0}}})
    assert cfg["model"]["input_shape"] == [2]  # a and b; w is no feature
    streams = random_streams(0)
    data = prepare_data(cfg, build_model(cfg, streams), streams["split"])
    np.testing.assert_allclose(data.train_weights, [i / 4 * (2.0 if i % 2 else 1.0) for i in range(12)])


@pytest.mark.parametrize("data,message", [
    ({"dataset": "npz", "path": "x.npz", "weight_column": "w"}, "data.weight_column: is for dataset 'csv'"),
    ({"dataset": "csv", "path": "x.csv", "weight_column": "label"}, "data.weight_column: names 'label'")])
def test_weight_column_config_errors(data, message):
    with pytest.raises(ConfigError, match=message):
        resolve({"data": data, "model": {"input_shape": [2], "layers": [{"type": "dense", "units": 2}]}})


def test_missing_weight_column_names_the_file(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,weight,label\n1,1,0\n2,1,1\n")
    config = tmp_path / "c.yaml"
    config.write_text(f"data: {{dataset: csv, path: '{path}', weight_column: wieght, validation_split: 0}}\n"
                      "model: {layers: [{type: dense, units: 2, activation: softmax}]}\ntraining: {epochs: 1}\n"
                      "checkpoint: {monitor: loss}\n")
    out = subprocess.run([sys.executable, "-m", "mlpcli", "train", str(config), "--run-dir", str(tmp_path / "run"),
                          "--no-plots", "-q"], capture_output=True, text=True)
    assert out.returncode in (1, 2) and "Traceback" not in out.stderr, out.stderr
    assert f"{path}: no weight column named 'wieght' (data.weight_column) (did you mean 'weight'?)" in out.stderr
