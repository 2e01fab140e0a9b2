"""Batch normalization in training: its moving statistics are saved and restored with the
weights (resume is bit-exact, with real processes and signals), the optimizer leaves them
alone, the summary counts them as Keras does, and two processes train as one does."""

import time

import numpy as np

from conftest import interrupt_and_resume, start_training

from mlpcli import modelfile
from mlpcli.nn import losses, optimizers
from mlpcli.nn.model import Sequential

# no bias before batch normalization: its gradient is rounding noise (the normalization takes
# the mean away), which Adam magnifies, so it would differ between one and two processes
LAYERS = ("model.layers=[{type: dense, units: 32, use_bias: false}, {type: batch_normalization, momentum: 0.9}, "
          "{type: activation, activation: relu}, {type: layer_normalization}, "
          "{type: dense, units: 10, activation: softmax}]")
SETTINGS = ["--set", LAYERS, "--set", "training.processes=1", "--set", "data.max_train_samples=6000",
            "--set", "data.max_test_samples=200", "--set", "training.epochs=4", "--no-plots", "-q"]


def train(run_dir, *extra):
    return start_training(run_dir, SETTINGS, *extra)


def final_weights(run_dir):
    model = modelfile.load(run_dir / "model.h5").model
    assert model.layers[1].type == "batch_normalization"
    return model.weights


def test_interrupted_and_resumed_run_with_batch_normalization_is_bit_identical(tmp_path):
    whole = train(tmp_path / "whole")
    out, err = whole.communicate(timeout=300)
    assert whole.returncode == 0, err
    run_dir = tmp_path / "cut"
    interrupt_and_resume(run_dir, SETTINGS)
    ours, theirs = final_weights(run_dir), final_weights(tmp_path / "whole")
    assert len(ours) == len(theirs) == 1 + 4 + 2 + 2  # the moving statistics are among them
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(ours[3], np.zeros_like(ours[3]))  # the moving mean moved


def test_optimizer_leaves_the_moving_statistics_alone():
    """AdamW's weight decay would shrink every array it is given: the moving statistics
    must end where the batches alone put them."""
    model = Sequential([{"type": "batch_normalization", "momentum": 0.5},
                        {"type": "dense", "units": 2}], (3,)).build(np.random.default_rng(0))
    opt = optimizers.get("adamw")(weight_decay=0.5)
    opt.build([model.flat_params])
    x = np.random.default_rng(1).standard_normal((8, 3)).astype(np.float32) + 4
    y = np.random.default_rng(2).standard_normal((8, 2)).astype(np.float32)
    model.train_step(x, y, losses.get("mse"), opt, 0.1, flat=True)
    bn = model.layers[0]
    np.testing.assert_array_equal(bn.moving_mean, np.float32(0.5) * x.mean(axis=0))
    assert np.abs(bn.grads[0]).max() > 0 and not np.array_equal(bn.gamma, np.ones(3))  # gamma does train
    assert [len(layer.params) for layer in model.layers] == [2, 2]
    assert model.flat_params.size == 3 + 3 + 3 * 2 + 2


def test_summary_counts_moving_statistics_as_non_trainable():
    model = Sequential([{"type": "dense", "units": 4}, {"type": "batch_normalization"},
                        {"type": "dense", "units": 1}], (3,)).build(np.random.default_rng(0))
    text = model.summary()
    assert "Total params: 37" in text and "Trainable params: 29" in text and "Non-trainable params: 8" in text
    assert model.count_params() == 37


def test_two_processes_train_a_batch_normalization_model_as_one_does(tmp_path):
    """``mlp train`` end to end: the whole batch's statistics through shared memory."""
    for processes in (1, 2):
        proc = train(tmp_path / str(processes), "--set", f"training.processes={processes}",
                     "--set", "training.epochs=1")
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    for a, b in zip(final_weights(tmp_path / "1"), final_weights(tmp_path / "2"), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_a_small_file_claiming_a_huge_normalization_is_refused_before_allocating(tmp_path):
    """The weights a config describes are counted through every layer's own ``weight_count``:
    batch normalization over a billion features (four billion weights) in a tiny file."""
    import json

    import h5py
    import pytest

    from mlpcli.errors import ModelFileError

    config = {"class_name": "Sequential", "config": {"name": "m", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 10**9]}},
        {"class_name": "BatchNormalization", "config": {"name": "bn"}}]}}
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.create_group("model_weights").attrs["layer_names"] = [b"bn"]
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match="describes more weights than the"):
        modelfile.load(path)
    assert time.perf_counter() - start < 5
