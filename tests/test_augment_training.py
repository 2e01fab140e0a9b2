"""Training with augmentation, with real processes: two processes train as one does (each
augments its own rows of a batch, and gets the same images), and a run interrupted by a
signal mid-run and resumed ends bit for bit where an uninterrupted one does, with batch
normalization and class weights on as well."""

import numpy as np
import pytest
from conftest import interrupt_and_resume, start_training

from mlpcli import modelfile

AUGMENT = ("augment={transforms: [{type: random_rotation, factor: 0.05}, {type: random_zoom, height_factor: 0.1}, "
           "{type: random_translation, height_factor: 0.1, width_factor: 0.1}, {type: elastic, alpha: 20, sigma: 3}], "
           "fill_mode: constant}")
LAYERS = ("model.layers=[{type: dense, units: 32, use_bias: false}, {type: batch_normalization, momentum: 0.9}, "
          "{type: activation, activation: relu}, {type: dense, units: 10, activation: softmax}]")
SETTINGS = ["--set", AUGMENT, "--set", "data.max_train_samples=3000", "--set", "data.max_test_samples=200",
            "--set", "training.epochs=4", "--set", "training.batch_size=64", "--no-plots", "-q"]


def finished(run_dir, *extra):
    proc = start_training(run_dir, SETTINGS, *extra)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return modelfile.load(run_dir / "model.h5").model.weights


@pytest.mark.slow
def test_interrupted_and_resumed_augmented_run_is_bit_identical(tmp_path):
    extra = ["--set", LAYERS, "--set", "training.class_weight=balanced", "--set", "training.processes=1"]
    whole = finished(tmp_path / "whole", *extra)
    run_dir = tmp_path / "cut"
    interrupt_and_resume(run_dir, SETTINGS, *extra)  # the stop lands in epoch 3
    resumed = modelfile.load(run_dir / "model.h5").model.weights
    for a, b in zip(resumed, whole, strict=True):
        np.testing.assert_array_equal(a, b)


def test_two_processes_train_an_augmented_model_as_one_does(tmp_path):
    one = finished(tmp_path / "one", "--set", "training.processes=1", "--set", "training.epochs=2")
    two = finished(tmp_path / "two", "--set", "training.processes=2", "--set", "training.epochs=2")
    for a, b in zip(one, two, strict=True):
        np.testing.assert_allclose(a, b, atol=2e-6, rtol=0)  # the gradients are summed in another order


def test_the_model_is_trained_on_the_augmented_images_and_validated_on_the_originals():
    from mlpcli.config import resolve
    from mlpcli.data import augment
    from mlpcli.data.features import Features
    from mlpcli.trainer import Trainer, build_model, random_streams

    cfg = resolve({"model": {"input_shape": [64], "layers": [{"type": "dense", "units": 10, "activation": "softmax"}]},
                   "training": {"batch_size": 16, "shuffle": False},
                   "augment": {"transforms": [{"type": "random_rotation", "factor": 0.2}]}})
    rng = np.random.default_rng(0)
    raw, y = rng.integers(0, 256, (40, 8, 8)).astype(np.uint8), rng.integers(0, 10, 40)
    x = Features(raw, {"scale": 1 / 255, "offset": 0.0}, [64])
    streams = random_streams(0)
    aug = augment.from_config(cfg, raw.shape[1:])
    trainer = Trainer(build_model(cfg, streams), cfg, streams, augmenter=aug)
    seen, train_step = [], trainer.model.train_step
    trainer.model.train_step = lambda xb, *rest, **kw: (seen.append(xb.copy()), train_step(xb, *rest, **kw))[1]
    trainer.run_epoch(x, y)
    want = np.empty((40, 64), np.float32)
    aug.apply(raw, np.arange(40), aug.epoch_bank(40, 0), want)
    np.testing.assert_allclose(np.concatenate(seen), want / 255, rtol=1e-6)
    assert not np.allclose(want, raw.reshape(40, 64))
    predicted, predict = [], trainer.model.predict
    trainer.model.predict = lambda xs: (predicted.append(np.array(xs)), predict(xs))[1]
    trainer.evaluate(x[:], y)
    np.testing.assert_allclose(predicted[0], raw.reshape(40, 64) / 255, rtol=1e-6)
