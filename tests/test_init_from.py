"""mlp train --init-from (weights of matching layers copied) and trainable: false (frozen layers)."""

import json
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from mlpcli import modelfile, parallel, runs
from mlpcli.nn.model import Sequential

SMALL = ["--set", "data.max_train_samples=600", "--set", "data.max_test_samples=100",
         "--set", "training.epochs=1", "--set", "training.batch_size=64", "--no-plots"]
FROZEN_FIRST = ["--set", "model.layers[0].trainable=false"]


def mlp(*args):
    return subprocess.run([sys.executable, "-m", "mlpcli", *map(str, args)], capture_output=True,
                          text=True, check=False)


def train(run_dir, *extra):
    result = mlp("train", "configs/quick.yaml", "--run-dir", run_dir, *SMALL, *extra)
    assert result.returncode == 0, result.stderr
    return result


def weights(path):
    return [layer.params for layer in modelfile.load(path).model.layers]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A trained run to start from."""
    run = tmp_path_factory.mktemp("source") / "run"
    train(run, "-q")
    return run


def test_frozen_layer_keeps_the_init_from_weights_and_the_others_train(source, tmp_path):
    result = train(tmp_path / "run", "--init-from", source, *FROZEN_FIRST)
    (k0, b0), (k1, b1) = weights(source / runs.MODEL_FILE)
    (f0, c0), (t1, d1) = weights(tmp_path / "run" / runs.MODEL_FILE)
    assert np.array_equal(f0, k0) and np.array_equal(c0, b0)  # frozen: bit for bit
    assert not np.array_equal(t1, k1) and not np.array_equal(d1, b1)  # copied, then trained
    for text in (result.stdout, (tmp_path / "run" / runs.LOG_FILE).read_text()):
        assert f"Weights from {source / runs.MODEL_FILE}:" in text
        assert "  dense: copied kernel [784, 64], bias [64]" in text
        assert "  dense_1: copied kernel [64, 10], bias [10]" in text
        assert "Trainable params: 650\n" in text and "Non-trainable params: 50,240\n" in text
    assert json.loads((tmp_path / "run" / runs.PARAMS_FILE).read_text())["params"] == 50_890
    assert f"init_from: {source / runs.MODEL_FILE}\n" in (tmp_path / "run" / runs.CONFIG_FILE).read_text()


def test_layers_that_do_not_match_are_named_with_why_and_keep_their_initial_weights(source, tmp_path):
    result = train(tmp_path / "run", "--init-from", source / runs.MODEL_FILE,
                   "--set", "model.layers[1].name=head", "--set", "model.layers[0].trainable=false")
    assert "  dense: copied kernel [784, 64], bias [64]" in result.stdout
    assert f"  head: not copied (no layer of that name with weights in {source / runs.MODEL_FILE})" in result.stdout
    assert np.array_equal(weights(tmp_path / "run" / runs.MODEL_FILE)[0][0], weights(source / runs.MODEL_FILE)[0][0])

    result = train(tmp_path / "other", "--init-from", source, "--set", "model.layers[1].use_bias=false")
    assert "  dense_1: not copied (other shape: kernel [64, 10], bias [10] there, kernel [64, 10] here)" \
        in result.stdout


def test_nothing_matching_is_refused_and_leaves_no_run_folder(source, tmp_path):
    result = mlp("train", "configs/quick.yaml", "--run-dir", tmp_path / "run", *SMALL, "--init-from", source,
                 "--set", "model.layers[0].units=5")
    assert result.returncode == 2, result.stderr
    assert "no layer matches the model's by name and shape" in result.stderr
    assert "dense: not copied (other shape: kernel [784, 64], bias [64] there, kernel [784, 5], bias [5] here)" \
        in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("given", ["missing-run", "not-a-model.h5"])
def test_a_source_that_is_not_a_model_is_an_error_naming_it(source, tmp_path, given):
    path = tmp_path / given
    if given.endswith(".h5"):
        path.write_bytes(b"not hdf5")
    result = mlp("train", "configs/quick.yaml", "--run-dir", tmp_path / "run", *SMALL, "--init-from", path)
    assert result.returncode == 2 and str(path) in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_init_from_with_resume_is_refused(source):
    result = mlp("train", "--resume", source, "--init-from", source)
    assert result.returncode == 2
    assert "--init-from starts a new run" in result.stderr and "give one of them" in result.stderr
    result = mlp("train", "--resume", source, "--set", f"init_from={source}")
    assert result.returncode == 2 and "init_from: cannot change when resuming" in result.stderr


def test_every_layer_frozen_is_a_config_error(tmp_path):
    result = mlp("train", "configs/quick.yaml", "--run-dir", tmp_path / "run", *SMALL, *FROZEN_FIRST,
                 "--set", "model.layers[1].trainable=false")
    assert result.returncode == 2
    assert "model.layers: every layer with weights has trainable: false" in result.stderr
    result = mlp("train", "configs/quick.yaml", "--dry-run", "--set", "model.layers[0].trainable=maybe")
    assert result.returncode == 2 and "model.layers[0].trainable: must be true or false" in result.stderr


def test_resume_with_a_frozen_layer_is_bit_exact_and_needs_no_source(source, tmp_path):
    """The run stopped after its first epoch and resumed (its init_from source gone by then)
    ends with the weights of the run trained without a stop."""
    copy = tmp_path / "source"
    shutil.copytree(source, copy)
    two = ["--init-from", copy, *FROZEN_FIRST, "--set", "optimizer=nadam", "-q"]
    train(tmp_path / "whole", *two, "--set", "training.epochs=2")
    train(tmp_path / "stopped", *two)
    shutil.rmtree(copy)
    result = mlp("train", "--resume", tmp_path / "stopped", "--set", "training.epochs=2", "--no-plots", "-q")
    assert result.returncode == 0, result.stderr
    whole, resumed = weights(tmp_path / "whole" / runs.MODEL_FILE), weights(tmp_path / "stopped" / runs.MODEL_FILE)
    assert all(np.array_equal(a, b) for x, y in zip(whole, resumed) for a, b in zip(x, y, strict=True))
    assert np.array_equal(resumed[0][0], weights(source / runs.MODEL_FILE)[0][0])


def test_trainable_is_written_and_read_as_keras_does(tmp_path):
    specs = [{"type": "dense", "units": 3, "trainable": False}, {"type": "dense", "units": 2}]
    model = Sequential(specs, [4]).build(np.random.default_rng(0))
    modelfile.save(tmp_path / "m.h5", model)
    with h5py.File(tmp_path / "m.h5") as f:
        layers = json.loads(f.attrs["model_config"])["config"]["layers"]
    assert [layer["config"]["trainable"] for layer in layers if layer["class_name"] == "Dense"] == [False, True]
    loaded = modelfile.load(tmp_path / "m.h5").model
    assert [layer.trainable for layer in loaded.layers] == [False, True]
    assert "Trainable params: 8\nNon-trainable params: 15\n" in loaded.summary()


def test_the_optimizer_never_updates_a_frozen_layer():
    """Decoupled weight decay and momentum move weights whose gradient is zero: a frozen layer's
    weights are not handed to the optimizer at all."""
    from mlpcli.nn import losses, optimizers

    specs = [{"type": "dense", "units": 3, "activation": "relu", "trainable": False}, {"type": "dense", "units": 2}]
    model = Sequential(specs, [4]).build(np.random.default_rng(0))
    before = model.get_weights()
    x, y = np.random.default_rng(1).random((8, 4), np.float32), np.eye(2, dtype=np.float32)[[0, 1] * 4]
    for flat in (True, False):
        optimizer = optimizers.from_config({"type": "adam", "weight_decay": 0.1})
        optimizer.build([model.trainable_flat_params] if flat else model.trainable_params)
        model.train_step(x, y, losses.get("categorical_crossentropy"), optimizer, 0.1, flat=flat)
    after = model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before[:2], after[:2]))
    assert not np.array_equal(before[2], after[2])


@pytest.mark.skipif(parallel.usable_processes(2) < 2, reason="one process here (cores, platform)")
def test_two_processes_leave_a_frozen_layer_after_a_trained_one_unchanged(source, tmp_path):
    train(tmp_path / "run", "-q", "--init-from", source, "--set", "model.layers[1].trainable=false",
          "--set", "training.processes=2", "--set", "optimizer={type: adam, weight_decay: 0.01}")
    (k0, _), (k1, b1) = weights(source / runs.MODEL_FILE)
    (t0, _), (f1, c1) = weights(tmp_path / "run" / runs.MODEL_FILE)
    assert np.array_equal(f1, k1) and np.array_equal(c1, b1)
    assert not np.array_equal(t0, k0)
