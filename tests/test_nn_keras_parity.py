"""Parity with Keras 3 (torch backend): optimizers, losses (values and
gradients), activations (values and gradients), regularizers, a small model's
loss and weight gradients, and ReduceLROnPlateau."""

import os

os.environ["KERAS_BACKEND"] = "torch"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

from mlpcli.nn import activations, losses, optimizers, regularizers, schedules  # noqa: E402
from mlpcli.nn.model import Sequential  # noqa: E402

if keras.backend.backend() != "torch":  # pragma: no cover - keras imported earlier elsewhere
    pytest.skip("these tests drive Keras through its torch backend", allow_module_level=True)

# keras's torch backend converts tensors with np.array(x) (numpy 2 copy-keyword notice)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def to_numpy(t):
    return keras.ops.convert_to_numpy(t)


def tensor(a, grad=False):
    t = torch.tensor(np.asarray(a))
    if grad:
        t.requires_grad_(True)
    return t


# ----------------------------------------------------------------- optimizers

KERAS_OPTIMIZERS = {"sgd": "SGD", "rmsprop": "RMSprop", "adagrad": "Adagrad", "adadelta": "Adadelta",
                    "adam": "Adam", "adamw": "AdamW", "adamax": "Adamax", "nadam": "Nadam"}

CONFIGS = [
    ("sgd", {}), ("sgd", {"momentum": 0.9}), ("sgd", {"momentum": 0.9, "nesterov": True}),
    ("rmsprop", {}), ("rmsprop", {"centered": True}), ("rmsprop", {"momentum": 0.9}),
    ("rmsprop", {"momentum": 0.5, "centered": True, "rho": 0.8}),
    ("adagrad", {}), ("adagrad", {"initial_accumulator_value": 0.5}),
    ("adadelta", {}), ("adam", {}), ("adam", {"amsgrad": True}), ("adam", {"beta_1": 0.5, "epsilon": 1e-3}),
    ("adamw", {}), ("adamax", {}), ("nadam", {}),
    # clipping and weight decay
    ("sgd", {"momentum": 0.9, "clipnorm": 0.5}), ("adam", {"global_clipnorm": 0.7}),
    ("rmsprop", {"clipvalue": 0.2}), ("sgd", {"weight_decay": 0.1}),
    ("adam", {"weight_decay": 0.05}), ("adamw", {"weight_decay": 0.2, "clipnorm": 1.0}),
    ("nadam", {"weight_decay": 0.01, "global_clipnorm": 0.5}),
]


def test_every_optimizer_covered():
    assert {n for n, _ in CONFIGS} == set(optimizers.OPTIMIZERS) == set(KERAS_OPTIMIZERS)


@pytest.mark.parametrize("name,hyper", CONFIGS,
                         ids=[n + "".join(f"-{k}" for k in h) for n, h in CONFIGS])
def test_optimizer_matches_keras(name, hyper):
    lr = 1.0 if name == "adadelta" else 0.05
    rng = np.random.default_rng(0)
    init = [rng.standard_normal((3, 2)).astype(np.float32), rng.standard_normal(4).astype(np.float32)]
    steps = [[rng.standard_normal(p.shape).astype(np.float32) for p in init] for _ in range(5)]

    ours = [p.copy() for p in init]
    opt = optimizers.get(name)(learning_rate=lr, **hyper)
    opt.build(ours)

    kvars = [keras.Variable(p.copy()) for p in init]
    kopt = getattr(keras.optimizers, KERAS_OPTIMIZERS[name])(learning_rate=lr, **hyper)

    for grads in steps:
        opt.apply(ours, grads, lr)
        kopt.apply_gradients([(tensor(g), v) for g, v in zip(grads, kvars)])
        for p, v in zip(ours, kvars):
            np.testing.assert_allclose(p, to_numpy(v), rtol=1e-5, atol=1e-6)
    assert opt.iterations == int(to_numpy(kopt.iterations)) == 5
    # the parameters really moved
    assert not np.allclose(ours[0], init[0], atol=1e-3)


@pytest.mark.parametrize("name", sorted(optimizers.OPTIMIZERS))
def test_optimizer_defaults_match_keras(name):
    config = getattr(keras.optimizers, KERAS_OPTIMIZERS[name])().get_config()
    ours = optimizers.OPTIMIZERS.spec(name).defaults()
    for key, value in ours.items():
        assert key in config, key
        if isinstance(value, float):
            assert config[key] == pytest.approx(value, rel=1e-6), key
        else:
            assert config[key] == value, key


# --------------------------------------------------------------------- losses

KERAS_LOSSES = {
    "mean_squared_error": "MeanSquaredError", "mean_absolute_error": "MeanAbsoluteError",
    "binary_crossentropy": "BinaryCrossentropy", "categorical_crossentropy": "CategoricalCrossentropy",
    "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy", "hinge": "Hinge",
    "huber": "Huber",
}


def _loss_inputs(name, rng, n=8, k=4):
    if name == "binary_crossentropy":
        y_true = rng.integers(0, 2, (n, k)).astype(np.float32)
        y_true[0] = rng.uniform(0, 1, k)  # soft labels too
        return y_true, rng.uniform(0.02, 0.98, (n, k)).astype(np.float32)
    if name == "categorical_crossentropy":
        y_true = np.eye(k, dtype=np.float32)[rng.integers(0, k, n)]
        return y_true, rng.uniform(0.05, 1.0, (n, k)).astype(np.float32)  # Keras renormalises
    if name == "sparse_categorical_crossentropy":
        return rng.integers(0, k, n), rng.uniform(0.05, 1.0, (n, k)).astype(np.float32)
    if name == "hinge":
        return rng.integers(0, 2, (n, k)).astype(np.float32), rng.standard_normal((n, k)).astype(np.float32)
    return (rng.standard_normal((n, k)).astype(np.float32),
            (rng.standard_normal((n, k)) * 2).astype(np.float32))


def test_every_loss_covered():
    assert set(KERAS_LOSSES) == set(losses.LOSSES)


@pytest.mark.parametrize("name", sorted(KERAS_LOSSES))
def test_loss_value_and_grad_match_keras(name):
    rng = np.random.default_rng(42)
    y_true, y_pred = _loss_inputs(name, rng)
    keras_loss = getattr(keras.losses, KERAS_LOSSES[name])()
    pred_t = tensor(y_pred, grad=True)
    value = keras_loss(tensor(y_true), pred_t)
    value.backward()
    loss = losses.get(name)
    assert loss.value(y_true, y_pred) == pytest.approx(float(to_numpy(value.detach())), rel=1e-5, abs=1e-7)
    np.testing.assert_allclose(loss.grad(y_true, y_pred), pred_t.grad.numpy(), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", ["binary_crossentropy", "categorical_crossentropy",
                                  "sparse_categorical_crossentropy"])
def test_crossentropy_with_saturated_predictions_matches_keras(name):
    rng = np.random.default_rng(1)
    y_true, y_pred = _loss_inputs(name, rng)
    y_pred[0, 0], y_pred[1, 1] = 0.0, 1.0  # hit the epsilon clipping
    if name != "binary_crossentropy":
        y_pred[2] = [1.0, 0.0, 0.0, 0.0]
    value = getattr(keras.losses, KERAS_LOSSES[name])()(tensor(y_true), tensor(y_pred))
    assert losses.get(name).value(y_true, y_pred) == pytest.approx(float(to_numpy(value)), rel=1e-5)


def test_hinge_with_signed_labels_matches_keras():
    rng = np.random.default_rng(3)
    y_true = rng.choice([-1.0, 1.0], (6, 3)).astype(np.float32)
    y_pred = rng.standard_normal((6, 3)).astype(np.float32)
    value = keras.losses.Hinge()(tensor(y_true), tensor(y_pred))
    assert losses.get("hinge").value(y_true, y_pred) == pytest.approx(float(to_numpy(value)), rel=1e-6)


# ---------------------------------------------------------------- activations

@pytest.mark.parametrize("name", sorted(activations.ACTIVATIONS))
def test_activation_matches_keras(name):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((6, 5)) * 3).astype(np.float32)
    x[0, :4] = [-3.0, 3.0, 0.5, -0.5]
    r = rng.standard_normal((6, 5)).astype(np.float32)
    keras_fn = keras.activations.get(name)
    x_t = tensor(x, grad=True)
    y_t = keras_fn(x_t)
    (y_t * tensor(r)).sum().backward()
    ours = activations.get(name)
    y = ours.forward(x)
    np.testing.assert_allclose(y, y_t.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.backward(x, y, r), x_t.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_keras_default_leaky_relu_slope_is_ours():
    x = np.array([[-2.0, 3.0]], np.float32)
    np.testing.assert_allclose(to_numpy(keras.activations.leaky_relu(tensor(x))), [[-2.0 * 0.2, 3.0]])
    np.testing.assert_allclose(activations.leaky_relu(x), [[-0.4, 3.0]])


def test_gelu_is_exact_not_tanh_approximation():
    x = np.linspace(-4, 4, 41, dtype=np.float32)[None, :]
    exact = to_numpy(keras.activations.gelu(tensor(x), approximate=False))
    approx = to_numpy(keras.activations.gelu(tensor(x), approximate=True))
    ours = activations.gelu(x)
    np.testing.assert_allclose(ours, exact, atol=1e-6)
    assert np.abs(ours - approx).max() > 1e-4


# --------------------------------------------------------------- regularizers

@pytest.mark.parametrize("l1,l2", [(0.01, 0.0), (0.0, 0.01), (0.03, 0.2)])
def test_regularizer_matches_keras(l1, l2):
    w = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    w_t = tensor(w, grad=True)
    value = keras.regularizers.L1L2(l1=l1, l2=l2)(w_t)
    value.backward()
    spec = {"l1": l1, "l2": l2}
    assert regularizers.penalty(spec, w) == pytest.approx(float(value.detach()), rel=1e-5)
    np.testing.assert_allclose(regularizers.penalty_grad(spec, w), w_t.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_regularizer_defaults_match_keras():
    assert regularizers.get("l1")["l1"] == pytest.approx(keras.regularizers.L1().l1)
    assert regularizers.get("l2")["l2"] == pytest.approx(keras.regularizers.L2().l2)
    k = keras.regularizers.L1L2()
    assert (regularizers.get("l1_l2")["l1"], regularizers.get("l1_l2")["l2"]) == (k.l1, k.l2)


# ---------------------------------------------------------------------- model

def _keras_reg(spec):
    return keras.regularizers.L1L2(l1=spec.get("l1", 0.0), l2=spec.get("l2", 0.0)) if spec else None


@pytest.mark.parametrize("loss_name,out_act,activity", [
    ("categorical_crossentropy", "softmax", None),
    ("sparse_categorical_crossentropy", "softmax", {"l1": 0.0, "l2": 0.1}),
    ("binary_crossentropy", "sigmoid", None),
    ("mean_squared_error", "tanh", {"l1": 0.05, "l2": 0.0}),
])
def test_model_loss_and_gradients_match_keras(loss_name, out_act, activity):
    specs = [
        {"type": "dense", "units": 6, "activation": "relu",
         "kernel_regularizer": {"l1": 0.0, "l2": 0.01}, "bias_regularizer": {"l1": 0.02, "l2": 0.0}},
        {"type": "dense", "units": 5, "activation": "tanh", "activity_regularizer": {"l1": 0.01, "l2": 0.01}},
        {"type": "dense", "units": 3, "activation": out_act, "activity_regularizer": activity,
         "kernel_regularizer": {"l1": 0.01, "l2": 0.0}},
    ]
    model = Sequential(specs, input_shape=(4,)).build(np.random.default_rng(0))
    for p in model.params:  # non-zero biases
        if p.ndim == 1:
            p += np.float32(0.1)
    kmodel = keras.Sequential([keras.Input((4,))] + [
        keras.layers.Dense(s["units"], activation=s["activation"],
                           kernel_regularizer=_keras_reg(s.get("kernel_regularizer")),
                           bias_regularizer=_keras_reg(s.get("bias_regularizer")),
                           activity_regularizer=_keras_reg(s.get("activity_regularizer")))
        for s in specs])
    kmodel.set_weights(model.get_weights())

    rng = np.random.default_rng(1)
    x = rng.standard_normal((9, 4)).astype(np.float32)
    loss = losses.get(loss_name)
    if loss.target == "labels":
        y = rng.integers(0, 3, 9)
    elif loss_name == "mean_squared_error":
        y = rng.standard_normal((9, 3)).astype(np.float32)
    else:
        y = losses.encode_targets(loss, rng.integers(0, 3, 9), 3)
        if loss_name == "binary_crossentropy":
            y = rng.integers(0, 2, (9, 3)).astype(np.float32)

    y_pred = model.forward(x, training=True)
    ours = loss.value(y, y_pred) + model.penalty()
    model.backward(loss, y, y_pred)

    k_pred = kmodel(tensor(x), training=True)
    k_total = getattr(keras.losses, KERAS_LOSSES[loss_name])()(tensor(y), k_pred) + sum(kmodel.losses)
    k_total.backward()
    np.testing.assert_allclose(y_pred, k_pred.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert ours == pytest.approx(float(k_total.detach()), rel=1e-5)
    for g, v in zip(model.grads, kmodel.weights, strict=True):
        np.testing.assert_allclose(g, v.value.grad.numpy(), rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------- reduce on plateau

@pytest.mark.parametrize("hyper,series", [
    ({"patience": 2, "factor": 0.5}, "loss"),
    ({"patience": 1, "factor": 0.3, "cooldown": 2, "min_lr": 0.004}, "loss"),
    ({"patience": 2, "factor": 0.5, "min_delta": 0.05, "cooldown": 1}, "loss"),
    ({"patience": 1, "factor": 0.5, "monitor": "val_accuracy", "mode": "max", "min_lr": 0.01}, "acc"),
])
def test_reduce_on_plateau_matches_keras(hyper, series):
    from types import SimpleNamespace

    rng = np.random.default_rng(7)
    values = np.round(rng.uniform(0, 1, 40), 2)
    values[10:25] = values[10]  # a long plateau
    monitor = hyper.get("monitor", "val_loss")
    ours = schedules.get("reduce_on_plateau")(0.1, **hyper)
    cb = keras.callbacks.ReduceLROnPlateau(**hyper)
    cb.set_model(SimpleNamespace(optimizer=SimpleNamespace(learning_rate=0.1)))
    cb.on_train_begin()
    reductions = 0
    for epoch, v in enumerate(values):
        before = ours(0, epoch)
        ours.on_epoch_end(epoch, {monitor: float(v)})
        cb.on_epoch_end(epoch, {monitor: float(v)})
        assert ours(0, epoch + 1) == pytest.approx(float(cb.model.optimizer.learning_rate), rel=1e-6), epoch
        reductions += ours(0, epoch + 1) < before
    assert reductions >= 2
