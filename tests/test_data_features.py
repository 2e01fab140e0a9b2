"""Features: data kept as stored, scaled a batch at a time exactly as apply_preprocessing does."""

import numpy as np
import pytest

from mlpcli.config import resolve
from mlpcli.data import apply_preprocessing, fit_preprocessing
from mlpcli.data.features import Features
from mlpcli.trainer import Trainer, build_model, random_streams

RNG = np.random.default_rng(7)
IMAGES = RNG.integers(0, 256, (60, 6, 5)).astype(np.uint8)
TABLE = RNG.normal(3.0, 2.0, (60, 30))


@pytest.mark.parametrize("raw, scaling", [(IMAGES, "unit"), (IMAGES, "standardize"), (IMAGES, "none"),
                                          (TABLE, "standardize"), (TABLE.astype(np.float32), "none")])
def test_rows_and_take_equal_apply_preprocessing_bit_for_bit(raw, scaling):
    pre = fit_preprocessing(raw, scaling)
    whole = apply_preprocessing(raw, pre).reshape(len(raw), 30)
    features = Features(raw, pre, (30,))
    assert features.shape == (60, 30) and len(features) == 60
    np.testing.assert_array_equal(features[:], whole)
    np.testing.assert_array_equal(features[10:17], whole[10:17])
    idx = RNG.permutation(60)[:13]
    out = np.empty((13, 30), np.float32)
    assert features.take(idx, out) is out
    np.testing.assert_array_equal(out, whole[idx])


def test_raw_data_stays_as_stored():
    features = Features(IMAGES, fit_preprocessing(IMAGES, "unit"), (30,))
    assert features.raw.dtype == np.uint8 and features.raw.nbytes == IMAGES.nbytes
    assert np.shares_memory(features.raw, IMAGES)  # a view, not a copy


def test_wrap_uses_a_float32_array_as_it_is():
    x = RNG.random((9, 4), dtype=np.float32)
    wrapped = Features.wrap(x)
    assert wrapped.identity and np.shares_memory(wrapped.raw, x)
    assert Features.wrap(wrapped) is wrapped
    out = np.empty((2, 4), np.float32)
    np.testing.assert_array_equal(wrapped.take(np.array([8, 0]), out), x[[8, 0]])


def test_training_on_uint8_features_equals_training_on_scaled_floats():
    cfg = resolve({"name": "t", "seed": 3, "model": {"input_shape": [30], "layers": [
        {"type": "dense", "units": 16, "activation": "relu"}, {"type": "dropout", "rate": 0.2},
        {"type": "dense", "units": 3, "activation": "softmax"}]},
        "training": {"epochs": 2, "batch_size": 8}})
    y = RNG.integers(0, 3, 60)
    pre = fit_preprocessing(IMAGES, "unit")
    weights = []
    for x in (Features(IMAGES, pre, (30,)), apply_preprocessing(IMAGES, pre).reshape(60, 30)):
        streams = random_streams(3)
        trainer = Trainer(build_model(cfg, streams), cfg, streams)
        logs = [trainer.run_epoch(x, y) for _ in range(2)]
        weights.append((trainer.model.flat_params.copy(), logs, trainer.evaluate(x, y)))
    (w_a, logs_a, eval_a), (w_b, logs_b, eval_b) = weights
    np.testing.assert_array_equal(w_a, w_b)
    assert logs_a == logs_b and eval_a == eval_b
