"""Numerical gradient checks (central finite differences in float64) for every
activation, loss, fused loss gradient, regularizer, layer and a whole model."""

import zlib

import numpy as np
import pytest
from conftest import numeric_grad

from mlpcli.nn import activations, layers, losses, regularizers
from mlpcli.nn.model import Sequential

RTOL = 1e-5
ATOL = 1e-7


def away_from(rng, shape, low, high, kinks, margin=0.05):
    """Uniform samples in [low, high) at least ``margin`` from every kink."""
    x = rng.uniform(low, high, shape)
    while True:
        bad = np.zeros(shape, bool)
        for k in kinks:
            bad |= np.abs(x - k) < margin
        if not bad.any():
            return x
        x[bad] = rng.uniform(low, high, int(bad.sum()))


# ---------------------------------------------------------------- activations

ACT_TOL = {"gelu": (1e-5, 1e-6)}  # the forward's erf is a 1.5e-7 polynomial approximation


@pytest.mark.parametrize("name", sorted(activations.ACTIVATIONS))
def test_activation_backward_matches_numeric(name):
    act = activations.ACTIVATIONS[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    # kinks: 0 for relu/leaky_relu/elu(2nd derivative), +-3 for hard_sigmoid
    x = away_from(rng, (4, 5), -4.0, 4.0, kinks=(-3.0, 0.0, 3.0))
    r = rng.standard_normal((4, 5))
    y = act.forward(x)
    assert y.dtype == np.float64 and y.shape == x.shape
    analytic = act.backward(x, y, r)
    numeric = numeric_grad(lambda: float((act.forward(x) * r).sum()), x)
    rtol, atol = ACT_TOL.get(name, (RTOL, ATOL))
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", sorted(activations.ACTIVATIONS))
def test_activation_keeps_float32(name):
    act = activations.ACTIVATIONS[name]
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    y = act.forward(x)
    dx = act.backward(x, y, np.ones_like(x))
    assert y.dtype == np.float32
    assert dx.dtype == np.float32


def test_sigmoid_softplus_do_not_overflow():
    x = np.array([[-1000.0, -50.0, 0.0, 50.0, 1000.0]], np.float32)
    with np.errstate(over="raise", invalid="raise"):
        s = activations.sigmoid(x)
        sp = activations.softplus(x)
        sm = activations.softmax(x)
    np.testing.assert_allclose(s, [[0.0, 0.0, 0.5, 1.0, 1.0]], atol=1e-7)
    np.testing.assert_allclose(sp, [[0.0, 0.0, np.log(2.0), 50.0, 1000.0]], rtol=1e-6, atol=1e-7)
    assert np.isfinite(sm).all() and abs(float(sm.sum()) - 1.0) < 1e-6


def test_activation_get_none_is_linear_and_unknown_name():
    assert activations.get(None).name == "linear"
    with pytest.raises(ValueError, match="did you mean 'relu'"):
        activations.get("relux")


# --------------------------------------------------------------------- losses

def _loss_inputs(name, rng):
    """(y_true, y_pred) in float64 suited to each loss, away from its kinks."""
    shape = (4, 3)
    if name in ("mean_squared_error", "huber"):
        y_true = rng.standard_normal(shape) * 2
        return y_true, y_true + away_from(rng, shape, -3, 3, kinks=(-1.0, 0.0, 1.0))
    if name == "mean_absolute_error":
        y_true = rng.standard_normal(shape)
        return y_true, y_true + away_from(rng, shape, -2, 2, kinks=(0.0,))
    if name == "hinge":
        y_true = rng.integers(0, 2, shape).astype(np.float64)
        t = 2 * y_true - 1
        # 1 - t * y_pred must stay away from 0
        margin = away_from(rng, shape, -2, 2, kinks=(0.0,))
        return y_true, (1.0 - margin) * t
    if name == "binary_crossentropy":
        return rng.uniform(0, 1, shape), rng.uniform(0.05, 0.95, shape)
    if name == "categorical_crossentropy":
        y_true = np.eye(3)[rng.integers(0, 3, 4)]
        y_true[0] = [0.2, 0.5, 0.3]  # soft label row too
        return y_true, rng.uniform(0.1, 1.0, shape)  # unnormalised: Keras renormalises
    if name == "sparse_categorical_crossentropy":
        return rng.integers(0, 3, 4), rng.uniform(0.1, 1.0, shape)
    raise AssertionError(f"no test inputs for new loss {name!r}")


def test_every_loss_has_inputs():
    rng = np.random.default_rng(0)
    for name in losses.LOSSES:
        _loss_inputs(name, rng)


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_loss_grad_matches_numeric(name):
    loss = losses.LOSSES[name]
    rng = np.random.default_rng(len(name))
    y_true, y_pred = _loss_inputs(name, rng)
    analytic = loss.grad(y_true, y_pred)
    numeric = numeric_grad(lambda: loss.value(y_true, y_pred), y_pred)
    assert analytic.shape == y_pred.shape
    np.testing.assert_allclose(analytic, numeric, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_loss_grad_scales_with_batch(name):
    """Averaged over the batch: duplicating the batch halves each gradient entry."""
    loss = losses.LOSSES[name]
    y_true, y_pred = _loss_inputs(name, np.random.default_rng(3))
    g1 = loss.grad(y_true, y_pred)
    g2 = loss.grad(np.concatenate([y_true, y_true]), np.concatenate([y_pred, y_pred]))
    np.testing.assert_allclose(g2[: len(g1)], g1 / 2, rtol=1e-12)
    v1 = loss.value(y_true, y_pred)
    v2 = loss.value(np.concatenate([y_true, y_true]), np.concatenate([y_pred, y_pred]))
    assert v2 == pytest.approx(v1, rel=1e-12)


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_loss_float32_in_float32_out(name):
    loss = losses.LOSSES[name]
    y_true, y_pred = _loss_inputs(name, np.random.default_rng(5))
    if y_true.dtype.kind == "f":
        y_true = y_true.astype(np.float32)
    g = loss.grad(y_true, y_pred.astype(np.float32))
    assert g.dtype == np.float32
    assert isinstance(loss.value(y_true, y_pred.astype(np.float32)), float)


def test_crossentropy_clipped_entries_pass_no_gradient():
    y_true = np.array([[1.0, 0.0, 1.0]])
    y_pred = np.array([[0.0, 1.0, 0.5]])  # first two clipped to eps / 1-eps
    g = losses.binary_crossentropy_grad(y_true, y_pred)
    assert g[0, 0] == 0 and g[0, 1] == 0 and g[0, 2] != 0
    v = losses.get("binary_crossentropy").value(y_true, y_pred)
    expected = -(np.log(1e-7) + np.log(1 - (1 - 1e-7)) + np.log(0.5)) / 3
    assert v == pytest.approx(expected, rel=1e-6)
    assert np.isfinite(losses.get("categorical_crossentropy").value(np.array([[0.0, 1.0]]), np.array([[1.0, 0.0]])))


def test_loss_values_by_hand():
    y_true = np.array([[0.0, 1.0], [2.0, -1.0]])
    y_pred = np.array([[0.5, 1.0], [0.0, 1.5]])
    assert losses.get("mean_squared_error").value(y_true, y_pred) == pytest.approx((0.25 + 0 + 4 + 6.25) / 4)
    assert losses.get("mean_absolute_error").value(y_true, y_pred) == pytest.approx((0.5 + 0 + 2 + 2.5) / 4)
    # huber, delta 1: 0.5 e^2 if |e| <= 1 else |e| - 0.5
    assert losses.get("huber").value(y_true, y_pred) == pytest.approx((0.125 + 0 + 1.5 + 2.0) / 4)
    # hinge with {0,1} labels mapped to {-1,1}: max(0, 1 - t y)
    yt = np.array([[0.0, 1.0, 1.0]])
    yp = np.array([[0.5, 0.3, 2.0]])
    assert losses.get("hinge").value(yt, yp) == pytest.approx((1.5 + 0.7 + 0.0) / 3)
    p = np.array([[0.2, 0.3, 0.5]])
    assert losses.get("categorical_crossentropy").value(np.array([[0.0, 0.0, 1.0]]), p) == pytest.approx(-np.log(0.5))
    assert losses.get("sparse_categorical_crossentropy").value(np.array([1]), p) == pytest.approx(-np.log(0.3))


def test_loss_aliases_and_unknown():
    assert losses.get("mse") is losses.LOSSES["mean_squared_error"]
    assert losses.get("MAE") is losses.LOSSES["mean_absolute_error"]
    with pytest.raises(ValueError, match="did you mean 'hinge'"):
        losses.get("hinje")


def test_encode_targets():
    labels = np.array([2, 0, 1])
    cce = losses.get("categorical_crossentropy")
    np.testing.assert_array_equal(losses.encode_targets(cce, labels, 3), np.eye(3, dtype=np.float32)[labels])
    assert losses.encode_targets(cce, labels, 3).dtype == np.float32
    sparse = losses.get("sparse_categorical_crossentropy")
    out = losses.encode_targets(sparse, labels.astype(np.int32), 3)
    assert out.dtype == np.int64 and out.tolist() == [2, 0, 1]
    bce = losses.get("binary_crossentropy")
    out = losses.encode_targets(bce, np.array([1, 0, 1]), 1)
    assert out.shape == (3, 1) and out.dtype == np.float32 and out[:, 0].tolist() == [1, 0, 1]
    mse = losses.get("mse")
    out = losses.encode_targets(mse, np.arange(6, dtype=np.float64).reshape(3, 2), 2)
    assert out.dtype == np.float32 and out.shape == (3, 2)


# -------------------------------------------------------------- fused gradients

FUSED = sorted(n for n, l in losses.LOSSES.items() if l.fused_activation)


def test_fused_losses_are_the_expected_ones():
    assert {n: losses.LOSSES[n].fused_activation for n in FUSED} == {
        "binary_crossentropy": "sigmoid",
        "categorical_crossentropy": "softmax",
        "sparse_categorical_crossentropy": "softmax",
    }


@pytest.mark.parametrize("name", FUSED)
def test_fused_grad_matches_chain_rule_and_numeric(name):
    loss = losses.LOSSES[name]
    act = activations.get(loss.fused_activation)
    rng = np.random.default_rng(11)
    logits = rng.standard_normal((5, 3)) * 2
    if name == "sparse_categorical_crossentropy":
        y_true = rng.integers(0, 3, 5)
    elif name == "categorical_crossentropy":
        y_true = np.eye(3)[rng.integers(0, 3, 5)]
    else:
        y_true = rng.integers(0, 2, (5, 3)).astype(np.float64)
    y = act.forward(logits)
    fused = loss.fused_grad(y_true, y)
    chain = act.backward(logits, y, loss.grad(y_true, y))
    np.testing.assert_allclose(fused, chain, rtol=1e-6, atol=1e-9)
    numeric = numeric_grad(lambda: loss.value(y_true, act.forward(logits)), logits)
    np.testing.assert_allclose(fused, numeric, rtol=RTOL, atol=ATOL)


# ---------------------------------------------------------------- regularizers

@pytest.mark.parametrize("spec", [
    regularizers.get("l1"), regularizers.get("l2"), {"l1": 0.03, "l2": 0.02},
    {"l1": 0.0, "l2": 0.0},
], ids=["l1", "l2", "l1_l2", "l1_l2_zero"])
def test_regularizer_grad_matches_numeric(spec):
    rng = np.random.default_rng(2)
    w = away_from(rng, (4, 3), -2, 2, kinks=(0.0,))
    analytic = regularizers.penalty_grad(spec, w)
    numeric = numeric_grad(lambda: regularizers.penalty(spec, w), w)
    np.testing.assert_allclose(analytic, numeric, rtol=RTOL, atol=ATOL)


def test_regularizer_values_and_defaults():
    w = np.array([[1.0, -2.0], [0.5, 0.0]], np.float32)
    assert regularizers.get("l1") == {"l1": 0.01, "l2": 0.0}
    assert regularizers.get("l2") == {"l1": 0.0, "l2": 0.01}
    assert regularizers.get("l1_l2") == {"l1": 0.0, "l2": 0.0}
    assert regularizers.penalty({"l1": 0.1, "l2": 0.0}, w) == pytest.approx(0.1 * 3.5)
    assert regularizers.penalty({"l1": 0.0, "l2": 0.1}, w) == pytest.approx(0.1 * 5.25)
    assert regularizers.penalty({"l1": 0.1, "l2": 0.1}, w) == pytest.approx(0.35 + 0.525)
    g = regularizers.penalty_grad({"l1": 0.1, "l2": 0.1}, w)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, [[0.1 + 0.2, -0.1 - 0.4], [0.1 + 0.1, 0.0]], rtol=1e-6)
    # the registry hands out copies: editing one does not change the defaults
    spec = regularizers.get("l2")
    spec["l2"] = 5.0
    assert regularizers.get("l2")["l2"] == 0.01


# ---------------------------------------------------------------------- layers

def to_float64(layer):
    """Switch a built Dense layer's weights (and gradient buffers) to float64."""
    if isinstance(layer, layers.Dense):
        layer.kernel = layer.kernel.astype(np.float64)
        layer.params = [layer.kernel]
        if layer.config["use_bias"]:
            layer.bias = layer.bias.astype(np.float64) + 0.1  # non-zero biases
            layer.params.append(layer.bias)
        layer.grads = [np.zeros_like(p) for p in layer.params]
    return layer


def layer_objective(layer, x, r):
    """sum(forward * r) + weight penalty + activity penalty, as the model adds them."""
    def f():
        y = layer.forward(x, training=True)
        return float((y * r).sum()) + layer.penalty() + layer.activity_penalty
    return f


DENSE_CASES = [
    dict(activation="linear"),
    dict(activation="relu"),
    dict(activation="tanh", use_bias=False),
    dict(activation="sigmoid", kernel_regularizer={"l1": 0.02, "l2": 0.03}),
    dict(activation="softmax", bias_regularizer={"l1": 0.05, "l2": 0.1}),
    dict(activation="elu", activity_regularizer={"l1": 0.0, "l2": 0.2}),
    dict(activation="swish", kernel_regularizer={"l1": 0.0, "l2": 0.01},
         bias_regularizer={"l1": 0.01, "l2": 0.0}, activity_regularizer={"l1": 0.1, "l2": 0.05}),
    dict(activation="relu", activity_regularizer={"l1": 0.1, "l2": 0.0}),
]


@pytest.mark.parametrize("config", DENSE_CASES, ids=lambda c: "-".join(
    [c["activation"]] + [k for k in c if k != "activation"]))
def test_dense_gradients(config):
    rng = np.random.default_rng(7)
    layer = layers.Dense(units=3, **config)
    assert layer.build((4,), rng) == (3,)
    to_float64(layer)
    x = rng.standard_normal((5, 4))
    r = rng.standard_normal((5, 3))
    f = layer_objective(layer, x, r)
    f()
    dx = layer.backward(r)
    analytic = [g.copy() for g in layer.grads]
    assert len(analytic) == (2 if config.get("use_bias", True) else 1)
    for p, g in zip(layer.params, analytic):
        np.testing.assert_allclose(g, numeric_grad(f, p), rtol=RTOL, atol=1e-6)
    np.testing.assert_allclose(dx, numeric_grad(f, x), rtol=RTOL, atol=1e-6)


def test_dense_penalties_are_counted():
    """The regularizers really change the objective (so the test above checks them)."""
    rng = np.random.default_rng(0)
    layer = layers.Dense(units=2, kernel_regularizer={"l1": 0.0, "l2": 0.5},
                         bias_regularizer={"l1": 0.5, "l2": 0.0},
                         activity_regularizer={"l1": 0.0, "l2": 1.0})
    layer.build((3,), rng)
    to_float64(layer)
    x = rng.standard_normal((4, 3))
    y = layer.forward(x, training=True)
    assert layer.penalty() == pytest.approx(0.5 * (layer.kernel ** 2).sum() + 0.5 * np.abs(layer.bias).sum())
    assert layer.activity_penalty == pytest.approx((y ** 2).sum() / 4)


def test_dense_pre_activation_backward():
    rng = np.random.default_rng(4)
    layer = layers.Dense(units=3, activation="softmax")
    layer.build((4,), rng)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    layer.forward(x, training=True)
    dz = rng.standard_normal((5, 3)).astype(np.float32)
    dx = layer.backward(dz, pre_activation=True)
    np.testing.assert_allclose(layer.grads[0], x.T @ dz, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.grads[1], dz.sum(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, dz @ layer.kernel.T, rtol=1e-5, atol=1e-6)
    layer.need_input_grad = False
    assert layer.backward(dz, pre_activation=True) is None


def test_dense_needs_flat_input():
    with pytest.raises(ValueError, match="flatten"):
        layers.Dense(units=2).build((3, 4), np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown parameter"):
        layers.Dense(units=2, activaton="relu")


@pytest.mark.parametrize("rate", [0.0, 0.25, 0.6])
def test_dropout_gradient_with_fixed_mask(rate):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((6, 5))
    r = rng.standard_normal((6, 5))

    def fresh():
        layer = layers.Dropout(rate=rate, seed=123)
        layer.build((5,), None)
        return layer

    layer = fresh()
    y = layer.forward(x, training=True)
    dx = layer.backward(r)
    numeric = numeric_grad(lambda: float((fresh().forward(x, training=True) * r).sum()), x)
    np.testing.assert_allclose(dx, numeric, rtol=RTOL, atol=ATOL)
    # the gradient is zero exactly where the output was dropped
    if rate:
        assert (dx[y == 0] == 0).all() and (y == 0).any()
    # inference: identity, and backward passes dy through unchanged
    assert layer.forward(x, training=False) is x
    assert layer.backward(r) is r


def test_flatten_forward_backward():
    rng = np.random.default_rng(1)
    layer = layers.Flatten()
    assert layer.build((2, 3), rng) == (6,)
    x = rng.standard_normal((4, 2, 3))
    r = rng.standard_normal((4, 6))
    y = layer.forward(x, training=True)
    np.testing.assert_array_equal(y, x.reshape(4, 6))
    dx = layer.backward(r)
    assert dx.shape == x.shape
    numeric = numeric_grad(lambda: float((layer.forward(x, True) * r).sum()), x)
    np.testing.assert_allclose(dx, numeric, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", ["relu", "tanh", "softmax", "selu", "gelu"])
def test_activation_layer_gradient(name):
    rng = np.random.default_rng(6)
    layer = layers.Activation(activation=name)
    layer.build((4,), rng)
    x = away_from(rng, (3, 4), -3, 3, kinks=(0.0,))
    r = rng.standard_normal((3, 4))
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y, activations.get(name).forward(x))
    dx = layer.backward(r)
    numeric = numeric_grad(lambda: float((layer.forward(x, True) * r).sum()), x)
    rtol, atol = ACT_TOL.get(name, (RTOL, ATOL))
    np.testing.assert_allclose(dx, numeric, rtol=rtol, atol=atol)
    assert layer.params == [] and layer.penalty() == 0.0


# ----------------------------------------------------------------------- model

MODEL_CASES = [
    # (output activation, loss, activity regularizer on the output layer)
    ("softmax", "categorical_crossentropy", None),          # fused
    ("softmax", "sparse_categorical_crossentropy", None),   # fused
    ("softmax", "categorical_crossentropy", {"l1": 0.0, "l2": 0.05}),  # fusion disabled
    ("sigmoid", "binary_crossentropy", None),               # fused
    ("linear", "mean_squared_error", None),
    ("tanh", "huber", {"l1": 0.01, "l2": 0.0}),
]


@pytest.mark.parametrize("out_act,loss_name,activity", MODEL_CASES)
def test_sequential_backward_matches_numeric(out_act, loss_name, activity):
    rng = np.random.default_rng(21)
    specs = [
        {"type": "flatten"},
        {"type": "dense", "units": 6, "activation": "relu",
         "kernel_regularizer": {"l1": 0.0, "l2": 0.01}, "bias_initializer": {"type": "constant", "value": 0.1}},
        {"type": "dropout", "rate": 0.3, "seed": 5},
        {"type": "dense", "units": 5, "activation": "tanh", "bias_regularizer": {"l1": 0.02, "l2": 0.0}},
        {"type": "dense", "units": 3, "activation": out_act, "activity_regularizer": activity,
         "kernel_regularizer": {"l1": 0.01, "l2": 0.01}},
    ]
    model = Sequential(specs, input_shape=(2, 2)).build(np.random.default_rng(0))
    for layer in model.layers:
        to_float64(layer)
    dropouts = [l for l in model.layers if isinstance(l, layers.Dropout)]
    loss = losses.get(loss_name)
    x = rng.standard_normal((7, 2, 2))
    if loss.target == "labels":
        y_true = rng.integers(0, 3, 7)
    elif loss_name in ("categorical_crossentropy",):
        y_true = np.eye(3)[rng.integers(0, 3, 7)]
    elif loss_name == "binary_crossentropy":
        y_true = rng.integers(0, 2, (7, 3)).astype(np.float64)
    else:
        y_true = rng.standard_normal((7, 3)) * 0.5

    def objective():
        for d in dropouts:  # the same mask on every pass
            d.rng = np.random.default_rng(5)
        y_pred = model.forward(x, training=True)
        return loss.value(y_true, y_pred) + model.penalty(), y_pred

    _, y_pred = objective()
    model.backward(loss, y_true, y_pred)
    grads = [g.copy() for g in model.grads]
    assert len(grads) == len(model.params) == 6
    sample = np.random.default_rng(3)
    for p, g in zip(model.params, grads):
        flat = [np.unravel_index(i, p.shape) for i in sample.choice(p.size, min(p.size, 6), replace=False)]
        numeric = numeric_grad(lambda: objective()[0], p, entries=flat)
        for idx in flat:
            assert g[idx] == pytest.approx(numeric[idx], rel=1e-5, abs=1e-7), (p.shape, idx)
    # the dropout mask really removed something in the first hidden layer
    assert (dropouts[0].mask == 0).any()


def test_model_backward_skips_first_layer_input_grad():
    model = Sequential([{"type": "dense", "units": 3, "activation": "relu"},
                        {"type": "dense", "units": 2, "activation": "softmax"}],
                       input_shape=(4,)).build(np.random.default_rng(0))
    assert model.layers[0].need_input_grad is False
    assert model.layers[1].need_input_grad is True
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    y = np.array([0, 1, 1, 0, 1])
    y_pred = model.forward(x, training=True)
    model.backward(losses.get("sparse_categorical_crossentropy"), y, y_pred)
    assert all(np.abs(g).sum() > 0 for g in model.grads)


# ------------------------------------------------------------- normalization layers

def normalization_in_float64(layer, rng):
    """A built normalization layer with float64 gamma and beta away from 1 and 0."""
    layer.params = [p.astype(np.float64) + rng.uniform(-0.5, 0.5, p.shape) for p in layer.params]
    layer.state = [s.astype(np.float64) for s in layer.state]
    layer.grads = [np.zeros_like(p) for p in layer.params]
    layer._bind()
    return layer


NORMALIZATION_CASES = [(kind, config) for kind in ("batch_normalization", "layer_normalization")
                       for config in ({}, {"center": False}, {"scale": False}, {"epsilon": 0.5})]


@pytest.mark.parametrize("kind,config", NORMALIZATION_CASES, ids=lambda c: str(c))
@pytest.mark.parametrize("shape", [(6, 4), (3, 2, 5)], ids=["flat", "3d"])
def test_normalization_gradients(kind, config, shape):
    rng = np.random.default_rng(11)
    layer = layers.get(kind)(**config)
    assert layer.build(shape[1:], rng) == shape[1:]
    normalization_in_float64(layer, rng)
    x = rng.standard_normal(shape) * 2 + 1
    r = rng.standard_normal(shape)
    f = layer_objective(layer, x, r)
    f()
    dx = layer.backward(r)
    analytic = [g.copy() for g in layer.grads]
    assert len(analytic) == (not config.get("center") is False) + (not config.get("scale") is False)
    for p, g in zip(layer.params, analytic):
        np.testing.assert_allclose(g, numeric_grad(f, p), rtol=RTOL, atol=1e-6)
    np.testing.assert_allclose(dx, numeric_grad(f, x), rtol=RTOL, atol=1e-6)


def test_batch_normalization_moving_statistics_and_inference():
    """Training normalizes by the batch's statistics and moves the moving ones as Keras does;
    inference uses the moving ones; float32 throughout."""
    rng = np.random.default_rng(3)
    layer = layers.get("batch_normalization")(momentum=0.9)
    layer.build((3,), rng)
    x = (rng.standard_normal((50, 3)) * [1, 2, 3] + [5, -1, 0]).astype(np.float32)
    y = layer.forward(x, training=True)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=0), x.var(axis=0) / (x.var(axis=0) + 1e-3), rtol=1e-4)
    np.testing.assert_allclose(layer.moving_mean, 0.1 * x.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance, 0.9 + 0.1 * x.var(axis=0), rtol=1e-5)
    assert layer.params and all(p.dtype == np.float32 for p in layer.weights)
    inferred = layer.forward(x, training=False)
    expected = (x - layer.moving_mean) / np.sqrt(layer.moving_variance + 1e-3)
    np.testing.assert_allclose(inferred, expected, rtol=1e-5, atol=1e-6)
    assert layer.weight_names == ("gamma", "beta", "moving_mean", "moving_variance")


def test_layer_normalization_normalizes_each_sample():
    layer = layers.get("layer_normalization")()
    layer.build((8,), np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32) * 3 + 2
    y = layer.forward(x, training=False)
    assert y.dtype == np.float32 and layer.state == []
    np.testing.assert_allclose(y.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=1), x.var(axis=1) / (x.var(axis=1) + 1e-3), rtol=1e-4)
