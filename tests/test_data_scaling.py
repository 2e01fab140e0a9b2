"""Scaling, apply_preprocessing, and load_dataset's handling of the data config."""

import numpy as np
import pytest

from mlpcli.data import (
    DATASETS,
    SCALINGS,
    apply_preprocessing,
    fit_preprocessing,
    load_dataset,
)
from mlpcli.errors import ConfigError, DataError


@pytest.fixture
def npz(tmp_path):
    rng = np.random.default_rng(3)
    x_train = rng.normal(5.0, 3.0, (200, 4)).astype(np.float32)
    x_test = rng.normal(-1.0, 0.5, (50, 4)).astype(np.float32)
    path = tmp_path / "d.npz"
    np.savez(
        path,
        x_train=x_train,
        y_train=rng.integers(0, 3, 200),
        x_test=x_test,
        y_test=rng.integers(0, 3, 50),
    )
    return path, x_train, x_test


def test_exports():
    assert DATASETS == ("mnist", "fashion_mnist", "npz", "npy", "csv", "image_folder")
    assert set(SCALINGS) == {"unit", "none", "standardize"}


def test_standardize_uses_per_feature_training_statistics(npz):
    path, x_train, x_test = npz
    data = load_dataset({"dataset": "npz", "path": str(path), "scaling": "standardize"})
    assert data.x_train.dtype == np.float32 and data.x_test.dtype == np.float32
    np.testing.assert_allclose(data.x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(data.x_train.std(axis=0), 1.0, atol=1e-5)
    mean, std = x_train.astype(np.float64).mean(axis=0), x_train.astype(np.float64).std(axis=0)
    np.testing.assert_allclose(data.x_test, (x_test - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(data.preprocessing["scale"], 1 / std, rtol=1e-6)
    np.testing.assert_allclose(data.preprocessing["offset"], -mean / std, rtol=1e-6)
    # The test set is far from the training mean, so it is not centred itself.
    assert float(data.x_test.mean()) < -1.0


def test_standardize_statistics_come_from_the_truncated_training_set(npz):
    path, x_train, _ = npz
    data = load_dataset(
        {"dataset": "npz", "path": str(path), "scaling": "standardize", "max_train_samples": 20}
    )
    assert data.x_train.shape == (20, 4)
    np.testing.assert_allclose(
        data.preprocessing["offset"], -x_train[:20].mean(axis=0) / x_train[:20].std(axis=0), rtol=1e-5
    )


def test_standardize_statistics_over_many_chunks():
    x = np.random.default_rng(0).integers(0, 256, (10_000, 30)).astype(np.uint8)
    prep = fit_preprocessing(x, "standardize")
    ref = x.astype(np.float64)
    np.testing.assert_allclose(prep["scale"], 1 / ref.std(axis=0), rtol=1e-6)
    np.testing.assert_allclose(prep["offset"], -ref.mean(axis=0) / ref.std(axis=0), rtol=1e-6)


def test_standardize_keeps_feature_shape_and_only_centres_constant_features():
    x = np.random.default_rng(1).normal(5, 2, (50, 2, 3))
    x[:, 0, 1] = 7.0
    prep = fit_preprocessing(x, "standardize")
    assert np.asarray(prep["scale"]).shape == (2, 3)
    out = apply_preprocessing(x, prep)
    np.testing.assert_allclose(out[:, 0, 1], 0.0, atol=1e-6)
    np.testing.assert_allclose(out.reshape(50, -1)[:, [0, 2, 3, 4, 5]].std(axis=0), 1.0, atol=1e-5)


def test_standardize_refuses_non_finite_features():
    with pytest.raises(DataError, match="NaN or infinite"):
        fit_preprocessing(np.array([[1.0, np.inf], [2.0, 3.0]]), "standardize")


def test_unit_and_none():
    assert fit_preprocessing(np.zeros((1, 1)), "unit") == {"scale": 1 / 255, "offset": 0.0}
    assert fit_preprocessing(np.zeros((1, 1)), "none") == {"scale": 1.0, "offset": 0.0}


def test_apply_preprocessing():
    raw = np.array([[0, 128, 255]], dtype=np.uint8)
    out = apply_preprocessing(raw, {"scale": 0.5, "offset": -1.0})
    assert out.dtype == np.float32
    assert out.tolist() == [[-1.0, 63.0, 126.5]]
    x = np.array([1.0, 2.0], dtype=np.float32)
    apply_preprocessing(x, {"scale": 2.0, "offset": 1.0})
    assert x.tolist() == [1.0, 2.0]  # the input is not modified
    assert apply_preprocessing(raw, {"scale": 1 / 255, "offset": 0.0}).max() == 1.0


@pytest.mark.parametrize("prep", [{}, {"scale": 1.0}, {"scale": "x", "offset": 0}, None])
def test_apply_preprocessing_bad_dict(prep):
    with pytest.raises(DataError, match="preprocessing must be"):
        apply_preprocessing(np.zeros(2), prep)


def test_apply_preprocessing_non_numeric_input():
    with pytest.raises(DataError, match="not numeric"):
        apply_preprocessing(np.array(["a"]), {"scale": 1.0, "offset": 0.0})


@pytest.mark.parametrize(
    "cfg, task, message",
    [
        ({"dataset": "cifar"}, "classification", "data.dataset: must be one of"),
        ({}, "classification", "data.dataset: must be one of"),
        ({"dataset": "csv"}, "classification", "data.path: required for dataset 'csv'"),
        ({"dataset": "mnist"}, "regression", "task regression needs a csv, npz or npy dataset"),
        ({"dataset": "mnist"}, "ranking", "task: must be one of"),
        (
            {"dataset": "mnist", "scaling": "minmax"},
            "classification",
            "data.scaling: must be one of",
        ),
        (
            {"dataset": "mnist", "max_train_samples": 0},
            "classification",
            "data.max_train_samples: must be a positive integer",
        ),
        (
            {"dataset": "mnist", "max_test_samples": 2.5},
            "classification",
            "data.max_test_samples: must be a positive integer",
        ),
        (
            {"dataset": "image_folder", "path": ".", "color_mode": "cmyk"},
            "classification",
            "data.color_mode",
        ),
    ],
)
def test_config_errors(cfg, task, message):
    with pytest.raises(ConfigError, match=message):
        load_dataset(cfg, task=task)
