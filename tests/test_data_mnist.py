"""The bundled MNIST files load, verify and scale."""

import numpy as np
import pytest

from mlpcli.data import load_dataset


@pytest.fixture(scope="module")
def mnist():
    return load_dataset({"dataset": "mnist"})


def test_shapes_and_dtypes(mnist):
    assert mnist.x_train.shape == (60000, 28, 28)
    assert mnist.x_test.shape == (10000, 28, 28)
    assert mnist.y_train.shape == (60000,) and mnist.y_test.shape == (10000,)
    assert mnist.x_train.dtype == np.float32 and mnist.x_test.dtype == np.float32
    assert mnist.y_train.dtype == np.int64 and mnist.y_test.dtype == np.int64
    assert mnist.x_val is None and mnist.y_val is None
    assert mnist.name == "mnist"


def test_known_labels(mnist):
    assert mnist.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(mnist.y_train).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]


def test_unit_scaling(mnist):
    assert mnist.x_train.min() == 0.0 and mnist.x_train.max() == 1.0
    assert mnist.x_test.min() == 0.0 and mnist.x_test.max() == 1.0
    assert mnist.preprocessing == {"scale": 1 / 255, "offset": 0.0}
    # Pixels are multiples of 1/255: scaling back gives whole numbers.
    back = mnist.x_train[:100] * 255
    np.testing.assert_allclose(back, np.round(back), atol=1e-4)


def test_class_names(mnist):
    assert mnist.class_names == [str(d) for d in range(10)]


def test_max_samples_take_the_first_rows(mnist):
    small = load_dataset({"dataset": "mnist", "max_train_samples": 100, "max_test_samples": 7})
    assert small.x_train.shape == (100, 28, 28) and small.y_train.shape == (100,)
    assert small.x_test.shape == (7, 28, 28)
    np.testing.assert_array_equal(small.x_train, mnist.x_train[:100])
    np.testing.assert_array_equal(small.y_test, mnist.y_test[:7])
