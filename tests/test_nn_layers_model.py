"""Initializers, dropout, the Sequential model (summary, names, determinism,
learning, float32), metrics and learning-rate schedules."""

import math

import numpy as np
import pytest

from mlpcli.nn import initializers, layers, losses, metrics, optimizers, schedules
from mlpcli.nn.model import Sequential

# --------------------------------------------------------------- initializers

EXTRA = {"constant": {"value": 0.5}}


@pytest.mark.parametrize("name", sorted(initializers.INITIALIZERS))
@pytest.mark.parametrize("shape", [(7, 5), (6,)])
def test_initializer_shape_dtype(name, shape):
    w = initializers.initialize({"type": name, **EXTRA.get(name, {})}, shape, np.random.default_rng(0))
    assert w.shape == shape
    assert w.dtype == np.float32
    assert np.isfinite(w).all()


def _draw(name, shape=(400, 300), seed=0, **params):
    return initializers.initialize({"type": name, **params}, shape, np.random.default_rng(seed)).astype(np.float64)


def test_glorot_uniform_bounds_and_variance():
    fan_in, fan_out = 400, 300
    w = _draw("glorot_uniform")
    limit = math.sqrt(6 / (fan_in + fan_out))
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.99 * limit  # it fills the whole interval
    assert abs(w.mean()) < 0.01 * limit
    assert w.var() == pytest.approx(2 / (fan_in + fan_out), rel=0.03)


def test_he_uniform_and_lecun_uniform_bounds():
    w = _draw("he_uniform")
    assert np.abs(w).max() <= math.sqrt(6 / 400) and np.abs(w).max() > 0.99 * math.sqrt(6 / 400)
    w = _draw("lecun_uniform")
    assert np.abs(w).max() <= math.sqrt(3 / 400) and np.abs(w).max() > 0.99 * math.sqrt(3 / 400)


@pytest.mark.parametrize("name,expected_std", [
    ("he_normal", math.sqrt(2 / 400)),
    ("lecun_normal", math.sqrt(1 / 400)),
    ("glorot_normal", math.sqrt(2 / 700)),
])
def test_truncated_variance_scaling_std(name, expected_std):
    """Keras rescales the truncated normal so the final std is sqrt(scale / n)."""
    w = _draw(name)
    assert w.std() == pytest.approx(expected_std, rel=0.03)
    assert abs(w.mean()) < 0.05 * expected_std
    # truncated at two standard deviations of the underlying normal
    assert np.abs(w).max() <= 2 * expected_std / 0.87962566103423978 * (1 + 1e-6)


def test_truncated_normal_within_two_stddev():
    w = _draw("truncated_normal", mean=1.0, stddev=0.2)
    assert np.abs(w - 1.0).max() <= 2 * 0.2 + 1e-6
    assert np.abs(w - 1.0).max() > 0.39  # close to the bound, not narrower
    assert w.mean() == pytest.approx(1.0, abs=0.002)
    assert w.std() == pytest.approx(0.2 * 0.8796, rel=0.02)  # std of N(0,1) truncated to [-2, 2]


def test_random_normal_and_uniform_statistics():
    w = _draw("random_normal", mean=0.3, stddev=0.1)
    assert w.mean() == pytest.approx(0.3, abs=0.001)
    assert w.std() == pytest.approx(0.1, rel=0.02)
    assert np.abs(w - 0.3).max() > 0.3  # not truncated at 2 stddev
    w = _draw("random_uniform", minval=-0.2, maxval=0.6)
    assert w.min() >= -0.2 and w.max() <= 0.6
    assert w.min() < -0.199 and w.max() > 0.599
    w = _draw("random_normal")
    assert w.std() == pytest.approx(0.05, rel=0.02)  # Keras's default stddev


def test_constant_zeros_ones():
    rng = np.random.default_rng(0)
    assert (initializers.initialize({"type": "constant", "value": -1.5}, (3, 2), rng) == -1.5).all()
    assert (initializers.initialize({"type": "zeros"}, (4,), rng) == 0).all()
    assert (initializers.initialize({"type": "ones"}, (2, 2), rng) == 1).all()


def test_bias_shape_fans():
    """A 1-D shape counts as both fans: he_uniform((n,)) is bounded by sqrt(6/n)."""
    w = _draw("he_uniform", shape=(50000,))
    assert np.abs(w).max() <= math.sqrt(6 / 50000) and np.abs(w).max() > 0.99 * math.sqrt(6 / 50000)


def test_initializer_seed_reproducibility():
    spec = {"type": "he_normal", "seed": 7}
    a = initializers.initialize(spec, (5, 4), np.random.default_rng(0))
    b = initializers.initialize(spec, (5, 4), np.random.default_rng(123))
    np.testing.assert_array_equal(a, b)
    c = initializers.initialize({"type": "he_normal", "seed": 8}, (5, 4), np.random.default_rng(0))
    assert not np.array_equal(a, c)
    # without a seed the generator decides
    d1 = initializers.initialize({"type": "glorot_uniform"}, (5, 4), np.random.default_rng(1))
    d2 = initializers.initialize({"type": "glorot_uniform"}, (5, 4), np.random.default_rng(1))
    d3 = initializers.initialize({"type": "glorot_uniform"}, (5, 4), np.random.default_rng(2))
    np.testing.assert_array_equal(d1, d2)
    assert not np.array_equal(d1, d3)


def test_unknown_initializer():
    with pytest.raises(ValueError, match="did you mean 'he_normal'"):
        initializers.get("he_norml")


# -------------------------------------------------------------------- dropout

@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_dropout_statistics(rate):
    layer = layers.Dropout(rate=rate, seed=0)
    layer.build((200,), None)
    x = np.ones((500, 200), np.float32)
    y = layer.forward(x, training=True)
    assert y.dtype == np.float32
    zeros = (y == 0).mean()
    assert zeros == pytest.approx(rate, abs=0.01)
    assert y.mean() == pytest.approx(1.0, abs=0.02)  # inverted scaling keeps the mean
    kept = y[y != 0]
    np.testing.assert_allclose(kept, 1 / (1 - rate), rtol=1e-6)
    # inference is the identity
    np.testing.assert_array_equal(layer.forward(x, training=False), x)


def test_dropout_masks_change_between_batches_and_rate_zero_is_identity():
    layer = layers.Dropout(rate=0.5, seed=1)
    layer.build((50,), None)
    x = np.ones((4, 50), np.float32)
    a = layer.forward(x, training=True)
    b = layer.forward(x, training=True)
    assert not np.array_equal(a, b)
    layer0 = layers.Dropout(rate=0.0)
    layer0.build((50,), np.random.default_rng(0))
    np.testing.assert_array_equal(layer0.forward(x, training=True), x)


def test_dropout_seed_overrides_model_rng():
    def masks(seed, rng_seed):
        layer = layers.Dropout(rate=0.5, seed=seed)
        layer.build((30,), np.random.default_rng(rng_seed))
        return layer.forward(np.ones((3, 30), np.float32), training=True)

    np.testing.assert_array_equal(masks(4, 0), masks(4, 99))
    assert not np.array_equal(masks(None, 0), masks(None, 99))


# ---------------------------------------------------------- model: structure

MNIST_SPECS = [
    {"type": "flatten"},
    {"type": "dense", "units": 128, "activation": "relu"},
    {"type": "dropout", "rate": 0.2},
    {"type": "dense", "units": 128, "activation": "relu"},
    {"type": "dropout", "rate": 0.2},
    {"type": "dense", "units": 10, "activation": "softmax"},
]


def test_summary_param_counts_784_128_128_10():
    model = Sequential(MNIST_SPECS, input_shape=(28, 28)).build(np.random.default_rng(0))
    sizes = [784, 128, 128, 10]
    per_layer = [a * b + b for a, b in zip(sizes, sizes[1:])]
    total = sum(per_layer)
    assert model.count_params() == total
    assert model.output_shape == (10,) and model.n_outputs == 10
    assert model.shapes == [(784,), (128,), (128,), (128,), (128,), (10,)]
    text = model.summary()
    assert f"Total params: {total:,}" in text
    assert f"Trainable params: {total:,}" in text
    assert "Non-trainable params: 0" in text
    lines = text.splitlines()
    for name, count in zip(["dense ", "dense_1 ", "dense_2 "], per_layer):
        (row,) = [l for l in lines if l.startswith(name)]
        assert row.rstrip().endswith(f"{count:,}")
        assert "(Dense)" in row
    (row,) = [l for l in lines if l.startswith("flatten ")]
    assert "(None, 784)" in row and row.rstrip().endswith(" 0")
    assert lines[0] == 'Model: "sequential"'


def test_keras_style_auto_names():
    specs = [{"type": "dense", "units": 3}, {"type": "dropout"}, {"type": "dense", "units": 3},
             {"type": "dropout"}, {"type": "dense", "units": 2, "name": "out"},
             {"type": "activation", "activation": "softmax"}]
    model = Sequential(specs, input_shape=(4,))
    assert [l.name for l in model.layers] == ["dense", "dropout", "dense_1", "dropout_1", "out", "activation"]


def test_auto_names_skip_explicit_ones():
    specs = [{"type": "dense", "units": 3, "name": "dense_1"}, {"type": "dense", "units": 3},
             {"type": "dense", "units": 3}]
    model = Sequential(specs, input_shape=(4,))
    names = [l.name for l in model.layers]
    assert names == ["dense_1", "dense", "dense_2"]
    assert len(set(names)) == 3


def test_set_get_weights():
    model = Sequential([{"type": "dense", "units": 3}, {"type": "dense", "units": 2}],
                       input_shape=(4,)).build(np.random.default_rng(0))
    weights = [np.full(p.shape, i, np.float32) for i, p in enumerate(model.params)]
    model.set_weights(weights)
    got = model.get_weights()
    for a, b in zip(got, weights):
        np.testing.assert_array_equal(a, b)
    got[0][...] = 99  # copies, not the live weights
    assert (model.params[0] == 0).all()
    with pytest.raises(ValueError):
        model.set_weights([np.zeros((5, 3), np.float32)] + weights[1:])


def test_predict_matches_forward_in_batches():
    model = Sequential(MNIST_SPECS, input_shape=(28, 28)).build(np.random.default_rng(0))
    x = np.random.default_rng(1).random((37, 28, 28), dtype=np.float32)
    out = model.predict(x, batch_size=10)
    assert out.shape == (37, 10) and out.dtype == np.float32
    np.testing.assert_allclose(out, model.forward(x, training=False), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    # inference ignores dropout: the same input twice gives the same output
    np.testing.assert_array_equal(model.predict(x[:5]), model.predict(x[:5]))


# ------------------------------------------------------- model: training

def _train(seed, steps=5, opt_name="adam"):
    rng = np.random.default_rng(100)
    x = rng.standard_normal((32, 6)).astype(np.float32)
    y = rng.integers(0, 3, 32)
    specs = [{"type": "dense", "units": 8, "activation": "relu"}, {"type": "dropout", "rate": 0.3},
             {"type": "dense", "units": 3, "activation": "softmax"}]
    model = Sequential(specs, input_shape=(6,)).build(np.random.default_rng(seed),
                                                      dropout_rng=np.random.default_rng(seed + 1))
    loss = losses.get("sparse_categorical_crossentropy")
    opt = optimizers.get(opt_name)()
    opt.build(model.params)
    values = []
    for i in range(steps):
        batch = slice(8 * (i % 4), 8 * (i % 4) + 8)
        values.append(model.train_step(x[batch], y[batch], loss, opt, 0.01)[0])
    return model, values


def test_training_is_deterministic_bit_for_bit():
    a, va = _train(3)
    b, vb = _train(3)
    for pa, pb in zip(a.params, b.params, strict=True):
        np.testing.assert_array_equal(pa, pb)
    assert va == vb
    c, _ = _train(4)
    assert not np.array_equal(a.params[0], c.params[0])


def test_weights_do_not_depend_on_dropout_stream():
    """Initial weights come from ``rng`` only; dropout masks from ``dropout_rng``."""
    specs = [{"type": "dense", "units": 5}, {"type": "dropout"}, {"type": "dense", "units": 2}]
    a = Sequential(specs, (3,)).build(np.random.default_rng(0), dropout_rng=np.random.default_rng(1))
    b = Sequential(specs, (3,)).build(np.random.default_rng(0), dropout_rng=np.random.default_rng(2))
    for pa, pb in zip(a.params, b.params):
        np.testing.assert_array_equal(pa, pb)


def test_tiny_model_learns_xor():
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    y = np.array([0, 1, 1, 0])
    model = Sequential([{"type": "dense", "units": 16, "activation": "tanh"},
                        {"type": "dense", "units": 1, "activation": "sigmoid"}],
                       input_shape=(2,)).build(np.random.default_rng(0))
    loss = losses.get("binary_crossentropy")
    targets = losses.encode_targets(loss, y, model.n_outputs)
    opt = optimizers.get("adam")()
    opt.build(model.params)
    first = loss.value(targets, model.forward(x))
    for _ in range(600):
        model.train_step(x, targets, loss, opt, 0.05)
    pred = model.predict(x)
    last = loss.value(targets, pred)
    assert first > 0.5
    assert last < 0.05 * first
    assert metrics.accuracy(y, pred) == 1.0


def test_separable_problem_with_sgd_momentum():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 5)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0, 1.0]) > 0).astype(np.int64)
    model = Sequential([{"type": "dense", "units": 2, "activation": "softmax"}],
                       input_shape=(5,)).build(np.random.default_rng(1))
    loss = losses.get("categorical_crossentropy")
    t = losses.encode_targets(loss, y, 2)
    opt = optimizers.get("sgd")(momentum=0.9)
    opt.build(model.params)
    first = loss.value(t, model.predict(x))
    for epoch in range(30):
        for s in range(0, 200, 20):
            model.train_step(x[s:s + 20], t[s:s + 20], loss, opt, 0.1)
    pred = model.predict(x)
    assert loss.value(t, pred) < 0.3 * first
    assert metrics.accuracy(y, pred) > 0.95


def test_train_step_value_includes_penalties():
    model = Sequential([{"type": "dense", "units": 3, "activation": "softmax",
                         "kernel_regularizer": {"l1": 0.0, "l2": 0.5}}],
                       input_shape=(4,)).build(np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((6, 4)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2])
    loss = losses.get("sparse_categorical_crossentropy")
    expected = loss.value(y, model.forward(x)) + 0.5 * float((model.params[0].astype(np.float64) ** 2).sum())
    opt = optimizers.get("sgd")()
    opt.build(model.params)
    value, y_pred = model.train_step(x, y, loss, opt, 0.0)  # lr 0: weights unchanged
    assert value == pytest.approx(expected, rel=1e-5)
    assert y_pred.shape == (6, 3)


@pytest.mark.parametrize("opt_name", sorted(optimizers.OPTIMIZERS))
@pytest.mark.parametrize("loss_name,out_act", [
    ("categorical_crossentropy", "softmax"), ("sparse_categorical_crossentropy", "softmax"),
    ("binary_crossentropy", "sigmoid"), ("mean_squared_error", "linear"),
    ("mean_absolute_error", "relu"), ("hinge", "tanh"), ("huber", "softplus"),
])
def test_everything_stays_float32(opt_name, loss_name, out_act):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 2, 3)).astype(np.float32)
    loss = losses.get(loss_name)
    n_out = 1 if loss_name == "binary_crossentropy" else 3
    y = losses.encode_targets(loss, rng.integers(0, max(n_out, 2), 8), n_out)
    specs = [{"type": "flatten"},
             {"type": "dense", "units": 4, "activation": "gelu", "kernel_regularizer": {"l1": 0.01, "l2": 0.01},
              "activity_regularizer": {"l1": 0.0, "l2": 0.01}},
             {"type": "dropout", "rate": 0.2},
             {"type": "activation", "activation": "selu"},
             {"type": "dense", "units": n_out, "activation": out_act, "bias_regularizer": {"l1": 0.01, "l2": 0.0}}]
    model = Sequential(specs, input_shape=(2, 3)).build(rng)
    opt = optimizers.get(opt_name)(weight_decay=0.01, clipnorm=1.0)
    opt.build(model.params)
    for _ in range(2):
        value, y_pred = model.train_step(x, y, loss, opt, 0.01)
    assert np.isfinite(value)
    assert y_pred.dtype == np.float32
    assert all(p.dtype == np.float32 for p in model.params)
    assert all(g.dtype == np.float32 for g in model.grads)
    assert all(a.dtype == np.float32 for arrays in opt.slots.values() for a in arrays)
    assert model.predict(x).dtype == np.float32


# -------------------------------------------------------------------- metrics

# Hand-made 3-class confusion matrix (rows = true class, columns = predicted):
#   true 0: [3, 1, 0]   true 1: [0, 2, 0]   true 2: [2, 1, 1]
CM_LABELS = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
CM_PRED = [0, 0, 0, 1, 1, 1, 0, 0, 1, 2]


def _scores(classes, n, rng):
    """Scores whose arg-max is ``classes``."""
    s = rng.uniform(0, 0.4, (len(classes), n)).astype(np.float32)
    s[np.arange(len(classes)), classes] = 0.9
    return s


def test_confusion_matrix_by_hand():
    cm = metrics.confusion_matrix(np.array(CM_LABELS), np.array(CM_PRED), 3)
    np.testing.assert_array_equal(cm, [[3, 1, 0], [0, 2, 0], [2, 1, 1]])


def test_multiclass_metrics_macro():
    y_pred = _scores(CM_PRED, 3, np.random.default_rng(0))
    y_true = np.array(CM_LABELS)
    # precision per class: 3/5, 2/4, 1/1; recall: 3/4, 2/2, 1/4
    p = [3 / 5, 2 / 4, 1 / 1]
    r = [3 / 4, 2 / 2, 1 / 4]
    f = [2 * a * b / (a + b) for a, b in zip(p, r)]
    assert metrics.accuracy(y_true, y_pred) == pytest.approx(6 / 10)
    assert metrics.precision(y_true, y_pred) == pytest.approx(sum(p) / 3)
    assert metrics.recall(y_true, y_pred) == pytest.approx(sum(r) / 3)
    assert metrics.f1(y_true, y_pred) == pytest.approx(sum(f) / 3)
    # one-hot targets give the same numbers
    onehot = np.eye(3, dtype=np.float32)[y_true]
    assert metrics.precision(onehot, y_pred) == pytest.approx(sum(p) / 3)
    assert metrics.accuracy(onehot, y_pred) == pytest.approx(0.6)


def test_binary_metrics_report_positive_class():
    # TP = 3, FN = 2, FP = 1, TN = 4
    y_true = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    prob = np.array([0.9, 0.7, 0.51, 0.5, 0.1, 0.8, 0.2, 0.3, 0.4, 0.0], np.float32)[:, None]
    assert metrics.accuracy(y_true, prob) == pytest.approx(7 / 10)
    assert metrics.precision(y_true, prob) == pytest.approx(3 / 4)
    assert metrics.recall(y_true, prob) == pytest.approx(3 / 5)
    assert metrics.f1(y_true, prob) == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    # float (n, 1) targets are thresholded too
    assert metrics.recall(y_true[:, None].astype(np.float32), prob) == pytest.approx(3 / 5)


def test_class_never_predicted_scores_zero_not_nan():
    y_true = np.array([0, 1, 2, 2])
    y_pred = _scores([0, 1, 1, 1], 3, np.random.default_rng(0))
    # precision: 1/1, 1/3, 0 (class 2 never predicted); recall: 1, 1, 0
    assert metrics.precision(y_true, y_pred) == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert metrics.recall(y_true, y_pred) == pytest.approx(2 / 3)
    assert np.isfinite(metrics.f1(y_true, y_pred))


def test_top_k_accuracy():
    y_pred = np.array([[0.1, 0.5, 0.3, 0.05],   # order 1, 2, 0, 3: true 2 is 2nd
                       [0.6, 0.15, 0.2, 0.05],  # order 0, 2, 1, 3: true 1 is 3rd
                       [0.2, 0.3, 0.4, 0.1],    # order 2, 1, 0, 3: true 3 is 4th
                       [0.05, 0.06, 0.1, 0.8]], np.float32)  # true 3 is 1st
    y_true = np.array([2, 1, 3, 3])
    assert metrics.top_k_accuracy(y_true, y_pred, k=1) == pytest.approx(1 / 4)
    assert metrics.top_k_accuracy(y_true, y_pred, k=2) == pytest.approx(2 / 4)
    assert metrics.top_k_accuracy(y_true, y_pred, k=3) == pytest.approx(3 / 4)
    assert metrics.top_k_accuracy(y_true, y_pred, k=4) == 1.0
    assert metrics.top_k_accuracy(y_true, y_pred, k=10) == 1.0  # k beyond the classes
    assert metrics.top_k_accuracy(y_true, y_pred, **metrics.METRICS.spec("top_k_accuracy").defaults()) == 1.0  # k = 5
    # one-hot targets
    assert metrics.top_k_accuracy(np.eye(4)[y_true], y_pred, k=2) == pytest.approx(2 / 4)


def test_mse_mae_metrics():
    y_pred = np.array([[0.5, 0.5], [1.0, 0.0]], np.float32)
    labels = np.array([0, 0])  # -> one-hot [1, 0], [1, 0]
    assert metrics.mse(labels, y_pred) == pytest.approx((0.25 + 0.25 + 0 + 0) / 4)
    assert metrics.mae(labels, y_pred) == pytest.approx((0.5 + 0.5 + 0 + 0) / 4)
    targets = np.array([[1.0, -1.0], [3.0, 0.5]])
    assert metrics.mse(targets, y_pred) == pytest.approx((0.25 + 2.25 + 4 + 0.25) / 4)
    assert metrics.mae(targets, y_pred) == pytest.approx((0.5 + 1.5 + 2 + 0.5) / 4)
    # a single output with (n,) targets
    assert metrics.mae(np.array([1.0, 2.0]), np.array([[0.0], [4.0]], np.float32)) == pytest.approx(1.5)


def test_metrics_compute_and_direction():
    y_pred = _scores(CM_PRED, 3, np.random.default_rng(0))
    out = metrics.compute([{"type": "accuracy"}, {"type": "top_k_accuracy", "k": 3}],
                          np.array(CM_LABELS), y_pred)
    assert out == {"accuracy": pytest.approx(0.6), "top_k_accuracy": 1.0}
    assert metrics.higher_is_better("val_accuracy") and metrics.higher_is_better("f1")
    assert not metrics.higher_is_better("val_loss") and not metrics.higher_is_better("mae")
    assert not metrics.higher_is_better("val_accuracy", mode="min")
    assert metrics.higher_is_better("val_loss", mode="max")
    with pytest.raises(ValueError, match="did you mean 'accuracy'"):
        metrics.get("acuracy")


# ------------------------------------------------------------------ schedules

def test_constant_schedule():
    s = schedules.get("constant")(0.3)
    assert s(0, 0) == s(10_000, 50) == 0.3


def test_exponential_decay():
    s = schedules.get("exponential_decay")(0.1, decay_steps=10, decay_rate=0.5)
    assert s.per_step
    assert s(0, 0) == pytest.approx(0.1)
    assert s(5, 0) == pytest.approx(0.1 * math.sqrt(0.5))
    assert s(10, 3) == pytest.approx(0.05)
    assert s(30, 0) == pytest.approx(0.0125)
    st = schedules.get("exponential_decay")(0.1, decay_steps=10, decay_rate=0.5, staircase=True)
    assert st(9, 0) == pytest.approx(0.1)
    assert st(10, 0) == pytest.approx(0.05)
    assert st(19, 0) == pytest.approx(0.05)
    assert st(25, 0) == pytest.approx(0.025)


def test_step_decay():
    s = schedules.get("step_decay")(0.2, step_size=3, factor=0.5)
    assert not s.per_step
    assert [s(1000 * e, e) for e in range(8)] == pytest.approx(
        [0.2, 0.2, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05])


def test_cosine_decay_endpoints():
    s = schedules.get("cosine_decay")(0.4, decay_steps=100, alpha=0.1)
    assert s(0, 0) == pytest.approx(0.4)
    assert s(50, 0) == pytest.approx(0.4 * (0.9 * 0.5 + 0.1))
    assert s(100, 0) == pytest.approx(0.04)
    assert s(1000, 0) == pytest.approx(0.04)  # stays at alpha * lr
    assert s(25, 0) == pytest.approx(0.4 * (0.9 * 0.5 * (1 + math.cos(math.pi / 4)) + 0.1))
    s0 = schedules.get("cosine_decay")(0.4, decay_steps=10)
    assert s0(10, 0) == pytest.approx(0.0, abs=1e-12)
    values = [s(i, 0) for i in range(0, 101, 5)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_cosine_decay_without_decay_steps_spans_the_run():
    whole = schedules.get("cosine_decay")(0.4, run_steps=100, alpha=0.1)
    fixed = schedules.get("cosine_decay")(0.4, decay_steps=100, alpha=0.1)
    assert [whole(i, 0) for i in range(0, 120, 7)] == [fixed(i, 0) for i in range(0, 120, 7)]
    # decay_steps given wins over the run's length
    assert schedules.get("cosine_decay")(0.4, run_steps=100, decay_steps=10)(10, 0) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="run_steps"):
        schedules.get("cosine_decay")(0.4)


def _plateau(values, monitor="val_loss", **params):
    s = schedules.get("reduce_on_plateau")(0.1, monitor=monitor, **params)
    lrs = []
    for epoch, v in enumerate(values):
        s.on_epoch_end(epoch, {monitor: v})
        lrs.append(s(0, epoch + 1))
    return lrs


def test_reduce_on_plateau_after_patience():
    lrs = _plateau([1.0, 0.9, 0.9, 0.9, 0.9, 0.8], patience=3, factor=0.5)
    # best 0.9 at epoch 1; epochs 2, 3, 4 without improvement -> halve after epoch 4
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05])


def test_reduce_on_plateau_min_delta():
    # improvements smaller than min_delta do not count
    lrs = _plateau([1.0, 0.99, 0.98, 0.5], patience=2, factor=0.5, min_delta=0.05)
    assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.05])


def test_reduce_on_plateau_respects_min_lr():
    lrs = _plateau([1.0] * 8, patience=1, factor=0.1, min_lr=0.002)
    assert lrs[1] == pytest.approx(0.01)
    assert lrs[2] == pytest.approx(0.002)
    assert min(lrs) == pytest.approx(0.002)
    assert lrs[-1] == pytest.approx(0.002)


def test_reduce_on_plateau_cooldown():
    flat = [1.0] * 9
    no_cooldown = _plateau(flat, patience=2, factor=0.5)
    # reductions after epochs 2, 4, 6, 8
    assert no_cooldown == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125, 0.0125, 0.00625])
    cooldown = _plateau(flat, patience=2, factor=0.5, cooldown=2)
    # after a reduction at epoch 2: epoch 3 is cooldown, waits counted again from epoch 4 -> epoch 5
    assert cooldown == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.0125])


def test_reduce_on_plateau_accuracy_goes_up():
    # auto mode: accuracy must increase to count as an improvement
    lrs = _plateau([0.5, 0.6, 0.55, 0.4, 0.7, 0.7], monitor="val_accuracy", patience=2, factor=0.5,
                   min_delta=0.0)
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05])


def test_reduce_on_plateau_ignores_missing_monitor():
    s = schedules.get("reduce_on_plateau")(0.1, patience=1)
    for e in range(5):
        s.on_epoch_end(e, {"loss": 1.0})
    assert s(0, 5) == 0.1


def test_reduce_on_plateau_state_round_trip():
    values = [1.0, 0.8, 0.8, 0.8, 0.7, 0.7, 0.7, 0.7, 0.6, 0.6]
    params = dict(patience=2, factor=0.5, cooldown=2, min_lr=0.01)
    straight = _plateau(values, **params)
    first = schedules.get("reduce_on_plateau")(0.1, **params)
    for e, v in enumerate(values[:5]):
        first.on_epoch_end(e, {"val_loss": v})
    state = first.get_state()
    resumed = schedules.get("reduce_on_plateau")(0.1, **params)
    resumed.set_state(state)
    lrs = []
    for e, v in enumerate(values[5:], start=5):
        resumed.on_epoch_end(e, {"val_loss": v})
        lrs.append(resumed(0, e + 1))
    assert lrs == pytest.approx(straight[5:])
    # a fresh schedule fed only the second half would not match
    assert _plateau(values[5:], **params) != pytest.approx(straight[5:])


def test_stateless_schedules_state_and_config():
    s = schedules.get("step_decay")(0.1, step_size=4)
    assert s.get_state() == {}
    s.set_state({})
    assert s.get_config() == {"type": "step_decay", "step_size": 4, "factor": 0.5}
    with pytest.raises(ValueError, match="did you mean 'cosine_decay'"):
        schedules.get("cosine_decy")


def test_dropout_trains_again_after_inference():
    layer = layers.Dropout(rate=0.5, seed=3)
    layer.build((40,), None)
    x = np.ones((8, 40), np.float32)
    layer.forward(x, training=True)
    assert layer.forward(x, training=False) is x
    again = layer.forward(x, training=True)
    assert (again == 0).any() and (again == 2).any()
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), again)


def test_top_k_accuracy_of_a_single_sigmoid_output():
    from mlpcli.nn.metrics import top_k_accuracy

    y = np.array([1, 1, 0, 0])
    perfect = np.array([[0.9], [0.8], [0.1], [0.3]], np.float32)
    assert top_k_accuracy(y, perfect, k=1) == 1.0
    assert top_k_accuracy(y, 1 - perfect, k=1) == 0.0
    assert top_k_accuracy(y, 1 - perfect, k=2) == 1.0
