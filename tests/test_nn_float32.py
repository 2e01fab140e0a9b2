"""The training step does its arithmetic in float32: no silent float64 upcasts."""

import numpy as np
import pytest

from mlpcli.nn import losses, optimizers
from mlpcli.nn.model import Sequential


class Float32Only(np.ndarray):
    """An array that raises when a numpy operation touches or makes float64 data."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        plain = [i.view(np.ndarray) if isinstance(i, Float32Only) else i for i in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(o.view(np.ndarray) if isinstance(o, Float32Only) else o
                                  for o in kwargs["out"])
        if kwargs.get("dtype") in (np.float64, "float64", float):
            raise AssertionError(f"{ufunc.__name__}.{method} asked for float64")
        result = getattr(ufunc, method)(*plain, **kwargs)
        for value in [*plain, *(result if isinstance(result, tuple) else (result,))]:
            if isinstance(value, np.ndarray) and value.dtype == np.float64:
                raise AssertionError(f"{ufunc.__name__}.{method} computed in float64")
        if isinstance(result, np.ndarray) and result.ndim:
            return result.view(Float32Only)
        return result


def guard(arrays):
    return [a.view(Float32Only) for a in arrays]


LAYERS = [{"type": "dense", "units": 32, "kernel_regularizer": {"l1": 1e-5, "l2": 1e-4}},
          {"type": "activation", "activation": "relu"},
          {"type": "dropout", "rate": 0.3},
          {"type": "dense", "units": 32, "activation": "tanh", "bias_regularizer": {"l1": 0.0, "l2": 1e-3}},
          {"type": "dense", "units": 10, "activation": "softmax"}]


@pytest.mark.parametrize("optimizer", sorted(optimizers.OPTIMIZERS))
@pytest.mark.parametrize("loss_name", ["categorical_crossentropy", "sparse_categorical_crossentropy",
                                       "mean_squared_error"])
def test_train_step_never_touches_float64(optimizer, loss_name):
    rng = np.random.default_rng(0)
    model = Sequential(LAYERS, (20,)).build(rng, np.random.default_rng(1))
    for layer in model.layers:
        if layer.params:
            layer.params[:] = guard(layer.params)
            layer.kernel = layer.params[0]
            if layer.config["use_bias"]:
                layer.bias = layer.params[1]
            layer.grads[:] = guard(layer.grads)
    opt = optimizers.get(optimizer)(clipnorm=1.0) if optimizer != "adamw" else optimizers.get(optimizer)()
    opt.build(model.params)
    opt.slots = {k: guard(v) for k, v in opt.slots.items()}
    opt.scratch = opt.scratch.view(Float32Only)  # one piece's scratch, shared by every array
    loss = losses.get(loss_name)
    x = rng.random((16, 20), dtype=np.float32).view(Float32Only)
    y = losses.encode_targets(loss, rng.integers(0, 10, 16), 10)
    y = y.view(Float32Only) if y.dtype == np.float32 else y
    for _ in range(3):
        value, y_pred = model.train_step(x, y, loss, opt, np.float32(0.01))
    assert np.isfinite(value) and y_pred.dtype == np.float32
    assert all(p.dtype == np.float32 for p in model.params)


def test_the_guard_catches_an_upcast():
    a = np.ones(4, np.float32).view(Float32Only)
    with pytest.raises(AssertionError, match="float64"):
        a * np.ones(4)  # float64 operand
    with pytest.raises(AssertionError, match="float64"):
        a.sum(dtype=np.float64)
