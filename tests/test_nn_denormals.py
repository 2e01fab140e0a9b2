"""Subnormal floats are flushed to zero while training, and only then."""

import platform
import sys

import numpy as np

from mlpcli.config import resolve
from mlpcli.nn import optimizers
from mlpcli.nn.denormals import flush_denormals
from mlpcli.trainer import Trainer, build_model, random_streams

SUBNORMAL = np.float32(1e-39)  # below float32's smallest normal, 1.18e-38
SUPPORTED = sys.platform.startswith("linux") and platform.machine().lower() in ("x86_64", "amd64", "aarch64")


def times_one(value):
    return (np.array([value], np.float32) * np.float32(1.0))[0]


def test_flush_inside_the_context_and_restored_after():
    assert times_one(SUBNORMAL) == SUBNORMAL
    with flush_denormals() as active:
        assert active == SUPPORTED
        assert times_one(SUBNORMAL) == (0.0 if SUPPORTED else SUBNORMAL)
        assert times_one(np.float32(2e-38)) == np.float32(2e-38)  # normal numbers are untouched
    assert times_one(SUBNORMAL) == SUBNORMAL


def test_adam_moment_of_an_idle_weight_never_becomes_subnormal():
    p, g = np.ones(4, np.float32), np.zeros(4, np.float32)
    opt = optimizers.get("adam")()
    opt.build([p])
    opt.slots["m"][0][:] = 1e-30  # decays by beta_1 = 0.9 per step: subnormal after ~190 steps
    with flush_denormals():
        for _ in range(400):
            opt.apply([p], [g], 1e-3)
    m = opt.slots["m"][0]
    # with flushing, (g - m) * 0.1 drops to 0 once it would be subnormal, so m stops at a
    # small normal number; without, m decays through the slow subnormal range
    subnormal = (m != 0) & (np.abs(m) < np.finfo(np.float32).tiny)
    assert subnormal.all() != SUPPORTED
    assert (np.abs(m) < 1e-36).all()


def test_run_epoch_flushes_only_while_it_trains():
    cfg = resolve({"name": "t", "seed": 0, "model": {"input_shape": [4], "layers": [
        {"type": "dense", "units": 3, "activation": "softmax"}]}, "training": {"batch_size": 4}})
    streams = random_streams(0)
    trainer = Trainer(build_model(cfg, streams), cfg, streams)
    seen = []
    trainer.run_epoch(np.ones((8, 4), np.float32), np.zeros(8, np.int64),
                      on_batch=lambda *_: seen.append(times_one(SUBNORMAL)))
    assert seen == [0.0 if SUPPORTED else SUBNORMAL] * 2
    assert times_one(SUBNORMAL) == SUBNORMAL
