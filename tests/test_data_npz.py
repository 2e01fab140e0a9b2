"""The .npz loader, directly and through load_dataset."""

import numpy as np
import pytest

from mlpcli.data import load_dataset
from mlpcli.data.npz import load_npz
from mlpcli.errors import DataError


def test_good_file_with_all_splits(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {
        "x_train": rng.integers(0, 9, (5, 2, 3)).astype(np.int16),
        "y_train": np.array([0, 1, 2, 1, 0], dtype=np.uint8),
        "x_val": rng.random((2, 2, 3)),
        "y_val": np.array([2.0, 1.0]),
        "x_test": rng.random((3, 2, 3)).astype(np.float32),
        "y_test": np.array([1, 1, 0]),
    }
    np.savez(tmp_path / "d.npz", **arrays)
    data = load_dataset({"dataset": "npz", "path": str(tmp_path / "d.npz")})
    assert data.name == "d.npz"
    assert data.x_train.shape == (5, 2, 3) and data.x_train.dtype == np.float32
    np.testing.assert_array_equal(data.x_train, arrays["x_train"])  # default scaling "none"
    assert data.y_train.dtype == np.int64 and data.y_train.tolist() == [0, 1, 2, 1, 0]
    assert data.y_val.tolist() == [2, 1] and data.y_val.dtype == np.int64
    np.testing.assert_allclose(data.x_val, arrays["x_val"].astype(np.float32))
    assert data.x_test.shape == (3, 2, 3) and data.y_test.tolist() == [1, 1, 0]
    assert data.class_names is None
    assert data.preprocessing == {"scale": 1.0, "offset": 0.0}


def test_train_only(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=np.ones((3, 4)), y_train=np.array([0, 1, 0]))
    raw = load_npz(tmp_path / "d.npz")
    assert raw.x_val is None and raw.x_test is None and raw.y_test is None


def test_string_labels_become_class_names(tmp_path):
    np.savez(
        tmp_path / "d.npz",
        x_train=np.zeros((4, 1)),
        y_train=np.array(["dog", "cat", "dog", "emu"]),
        x_test=np.zeros((2, 1)),
        y_test=np.array(["emu", "cat"]),
    )
    raw = load_npz(tmp_path / "d.npz")
    assert raw.class_names == ["cat", "dog", "emu"]
    assert raw.y_train.tolist() == [1, 0, 1, 2] and raw.y_test.tolist() == [2, 0]


def test_unknown_string_label_in_test_is_an_error(tmp_path):
    np.savez(
        tmp_path / "d.npz",
        x_train=np.zeros((2, 1)),
        y_train=np.array(["a", "b"]),
        x_test=np.zeros((2, 1)),
        y_test=np.array(["b", "zebra"]),
    )
    with pytest.raises(
        DataError, match=r"d\.npz: y_test: label 'zebra' at index 1 does not occur in y_train"
    ):
        load_npz(tmp_path / "d.npz")


def test_regression_targets(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=np.zeros((3, 2)), y_train=np.array([0.5, 1, -2]))
    data = load_dataset({"dataset": "npz", "path": str(tmp_path / "d.npz")}, task="regression")
    assert data.y_train.dtype == np.float32 and data.y_train.shape == (3, 1)
    assert data.y_train[:, 0].tolist() == [0.5, 1.0, -2.0]


def test_fractional_class_labels_are_an_error(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=np.zeros((2, 2)), y_train=np.array([0.0, 1.5]))
    with pytest.raises(
        DataError, match=r"y_train: class labels must be whole numbers.*1\.5.*regression"
    ):
        load_npz(tmp_path / "d.npz")


def test_negative_class_labels_are_an_error(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=np.zeros((2, 2)), y_train=np.array([0, -1]))
    with pytest.raises(DataError, match=">= 0, found -1"):
        load_npz(tmp_path / "d.npz")


def test_missing_y_train(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=np.zeros((2, 2)), labels=np.array([0, 1]))
    with pytest.raises(
        DataError, match=r"d\.npz: missing array\(s\) y_train; the archive holds labels, x_train"
    ):
        load_npz(tmp_path / "d.npz")


def test_half_a_pair_is_an_error(tmp_path):
    np.savez(
        tmp_path / "d.npz",
        x_train=np.zeros((2, 2)),
        y_train=np.array([0, 1]),
        x_test=np.zeros((1, 2)),
    )
    with pytest.raises(DataError, match="has x_test but not y_test"):
        load_npz(tmp_path / "d.npz")


def test_mismatched_lengths(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=np.zeros((5, 2)), y_train=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match=r"d\.npz: x_train has 5 rows but y_train has 4"):
        load_dataset({"dataset": "npz", "path": str(tmp_path / "d.npz")})


def test_mismatched_feature_shapes(tmp_path):
    np.savez(
        tmp_path / "d.npz",
        x_train=np.zeros((2, 3)),
        y_train=np.array([0, 1]),
        x_test=np.zeros((2, 4)),
        y_test=np.array([0, 1]),
    )
    with pytest.raises(
        DataError, match=r"x_test samples have shape \(4,\), but x_train samples have shape \(3,\)"
    ):
        load_dataset({"dataset": "npz", "path": str(tmp_path / "d.npz")})


def test_not_a_zip(tmp_path):
    (tmp_path / "d.npz").write_text("x_train,y_train\n1,2\n")
    with pytest.raises(DataError, match=r"d\.npz: not a readable \.npz archive"):
        load_npz(tmp_path / "d.npz")


def test_single_npy_is_refused(tmp_path):
    np.save(tmp_path / "d.npy", np.zeros(3))
    with pytest.raises(DataError, match="single .npy array"):
        load_npz(tmp_path / "d.npy")


def test_object_dtype_is_refused(tmp_path):
    np.savez(
        tmp_path / "d.npz", x_train=np.array([[1], "a"], dtype=object), y_train=np.array([0, 1])
    )
    with pytest.raises(DataError, match="'x_train' has object dtype"):
        load_npz(tmp_path / "d.npz")


def test_non_numeric_features_are_refused(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=np.array([["a"], ["b"]]), y_train=np.array([0, 1]))
    with pytest.raises(DataError, match="x_train: features must be numbers"):
        load_npz(tmp_path / "d.npz")


def test_one_dimensional_features_are_refused(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=np.zeros(2), y_train=np.array([0, 1]))
    with pytest.raises(DataError, match=r"reshape\(-1, 1\)"):
        load_npz(tmp_path / "d.npz")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.npz: file not found"):
        load_npz(tmp_path / "nope.npz")
