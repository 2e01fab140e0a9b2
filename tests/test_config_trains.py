"""Every config the check accepts trains, or the check refuses it.

A property test draws configs from what the check allows (every layer kind,
activation, initializer, regularizer, optimizer, schedule, loss and metric, with
parameters at and inside the edges of their ranges) and takes each through what
``mlp train`` does with it: resolve, build the model, train an epoch of a few
batches on tiny random data of the right shape, evaluate, save the model file and
read it back, write the config and read it again. The outcome is a ConfigError
from the check, or success; the one other clean outcome allowed is the loss or
the weights becoming non-finite on valid but extreme numbers (the TrainingError
of a diverging run). Regression tests below pin each fault the property found, and
the memory check goes through the real CLI.
"""

import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlpcli import modelfile
from mlpcli.callbacks import LearningRateSchedule, NanGuard
from mlpcli.config import dump_yaml, resolve, safe_load
from mlpcli.nn.spec import FLOAT32_MAX, FLOAT32_TINY
from mlpcli.errors import ConfigError, TrainingError
from mlpcli.fit_loop import FitLoop
from mlpcli.nn import activations, initializers, losses, metrics, optimizers, schedules
from mlpcli.nn import model as model_mod
from mlpcli.nn.model import Sequential
from mlpcli.parallel import usable_processes
from mlpcli.trainer import Trainer, build_model, random_streams

ROWS = 5  # samples of the tiny data set

# ------------------------------------------------------------------ strategies: what the check allows

SEEDS = st.one_of(st.integers(0, 2**32), st.sampled_from([0, 2**63, 2**64, 2**128]))
UNIT = st.one_of(st.floats(0, 1, exclude_max=True), st.sampled_from([0.0, 0.5, 0.9999999]))
POSITIVE = st.one_of(st.floats(FLOAT32_TINY, 10.0), st.sampled_from([FLOAT32_TINY, 1e-7, 1e-3, 1.0]))
SMALL = st.floats(-3, 3)


def initializer():
    def with_params(name):
        params = {"seed": st.one_of(st.none(), SEEDS)}
        if name == "constant":
            params["value"] = st.one_of(SMALL, st.sampled_from([0.0, 1e30, -1e30]))
        if name in ("random_normal", "truncated_normal"):
            params |= {"mean": SMALL, "stddev": POSITIVE}
        if name == "random_uniform":
            return st.tuples(SMALL, SMALL, params["seed"]).map(
                lambda t: {"type": name, "minval": min(t[:2]), "maxval": max(t[:2]), "seed": t[2]})
        return st.fixed_dictionaries({"type": st.just(name)}, optional=params)

    return st.sampled_from(sorted(initializers.INITIALIZERS)).flatmap(with_params)


REGULARIZER = st.one_of(st.none(), st.sampled_from(["l1", "l2", "l1_l2"]),
                        st.fixed_dictionaries({}, optional={"l1": st.floats(0, 1), "l2": st.floats(0, 1)}))
DENSE = st.fixed_dictionaries(
    {"type": st.just("dense"), "units": st.integers(1, 6)},
    optional={"activation": st.sampled_from(sorted(activations.ACTIVATIONS)), "use_bias": st.booleans(),
              "kernel_initializer": initializer(), "bias_initializer": initializer(),
              "kernel_regularizer": REGULARIZER, "bias_regularizer": REGULARIZER,
              "activity_regularizer": REGULARIZER})
OTHER_LAYERS = st.one_of(
    st.fixed_dictionaries({"type": st.just("dropout")}, optional={"rate": UNIT, "seed": st.one_of(st.none(), SEEDS)}),
    st.fixed_dictionaries({"type": st.just("activation")},
                          optional={"activation": st.sampled_from(sorted(activations.ACTIVATIONS))}),
    st.just({"type": "flatten"}))
LAYERS = st.lists(st.one_of(DENSE, OTHER_LAYERS), min_size=1, max_size=5).map(
    lambda stack: stack if any(layer["type"] == "dense" for layer in stack) else stack + [{"type": "dense", "units": 3}])

OPTIMIZER_PARAMS = {"learning_rate": POSITIVE, "beta_1": UNIT, "beta_2": UNIT, "rho": UNIT, "momentum": UNIT,
                    "epsilon": POSITIVE, "weight_decay": st.floats(0, 1), "clipnorm": POSITIVE,
                    "clipvalue": POSITIVE, "global_clipnorm": POSITIVE, "initial_accumulator_value": st.floats(0, 1),
                    "nesterov": st.booleans(), "amsgrad": st.booleans(), "centered": st.booleans()}
SCHEDULE_PARAMS = {"decay_steps": st.one_of(st.integers(1, 5), st.just(10**30)),
                   "decay_rate": st.one_of(st.floats(FLOAT32_TINY, 1), st.just(1.0), st.floats(1, FLOAT32_MAX)),
                   "staircase": st.booleans(),
                   "step_size": st.integers(1, 3), "factor": st.floats(0.01, 0.99), "alpha": st.floats(0, 1),
                   "monitor": st.sampled_from(["loss", "val_loss"]), "patience": st.integers(0, 3),
                   "min_delta": st.floats(0, 1), "cooldown": st.integers(0, 2), "min_lr": st.floats(0, 1),
                   "mode": st.sampled_from(["auto", "min", "max"])}


def component(registry, params_of, param_strategies):
    """``{type: name, **some of its parameters}`` for a name of ``registry``."""
    def with_params(name):
        return st.fixed_dictionaries({"type": st.just(name)}, optional={
            k: param_strategies[k] for k in params_of(name) if k in param_strategies})

    return st.sampled_from(sorted(registry)).flatmap(with_params)


OPTIMIZER = component(optimizers.OPTIMIZERS, lambda n: optimizers.OPTIMIZERS.spec(n).defaults(), OPTIMIZER_PARAMS)
SCHEDULE = component(schedules.SCHEDULES, lambda n: schedules.SCHEDULES.spec(n).defaults(), SCHEDULE_PARAMS)
TOP_K = st.fixed_dictionaries({"type": st.just("top_k_accuracy"), "k": st.one_of(st.integers(1, 6), st.just(10**30))})
# mostly the metrics of the task, now and then one the check refuses for it
METRICS = {"classification": st.lists(st.one_of(st.sampled_from(sorted(metrics.METRICS)), TOP_K), max_size=3),
           "regression": st.lists(st.sampled_from(["mse", "mae", "mse", "mae", "accuracy"]), max_size=2)}
# mostly flat inputs; other shapes with a flatten layer first, or without (refused)
MODEL = st.one_of(
    st.fixed_dictionaries({"input_shape": st.lists(st.integers(1, 4), min_size=1, max_size=1), "layers": LAYERS}),
    st.tuples(st.lists(st.integers(1, 3), min_size=2, max_size=3), LAYERS, st.integers(0, 3)).map(
        lambda t: {"input_shape": t[0], "layers": ([{"type": "flatten"}] if t[2] else []) + t[1]}))


def config(task):
    return st.fixed_dictionaries({
        "name": st.just("prop"),
        "seed": SEEDS,
        "task": st.just(task),
        "data": st.fixed_dictionaries({"dataset": st.just("npz"), "path": st.just("/unused.npz")}),
        "model": MODEL,
        "loss": st.sampled_from(sorted([*losses.LOSSES, *losses.ALIASES])),
        "optimizer": OPTIMIZER,
        "schedule": SCHEDULE,
        "metrics": METRICS[task],
        "training": st.fixed_dictionaries({
            "epochs": st.integers(1, 3),
            "batch_size": st.integers(1, 9).map(lambda b: 10**12 if b == 9 else b)},  # now and then too large
            optional={"shuffle": st.booleans()}),
        "checkpoint": st.fixed_dictionaries({"monitor": st.just("loss")}),
        "early_stopping": st.one_of(st.none(), st.fixed_dictionaries(
            {"monitor": st.just("loss")}, optional={"restore_best_weights": st.booleans()})),
    })


CONFIGS = st.sampled_from(["classification", "regression"]).flatmap(config)


# ------------------------------------------------------------------ what `mlp train` does with a config


def tiny_data(cfg, n_outputs):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((ROWS, *cfg["model"]["input_shape"])).astype(np.float32)
    if cfg["task"] == "classification":
        y = np.arange(ROWS) % (2 if n_outputs == 1 else n_outputs)
    else:
        y = rng.standard_normal((ROWS, n_outputs)).astype(np.float32)
    return x, y


def train_like_mlp(raw, folder):
    """Resolve, build, train an epoch, evaluate, save and reload, as ``mlp train`` would."""
    cfg = resolve(raw)
    assert resolve(safe_load(dump_yaml(cfg))) == cfg  # config.yaml, as --resume reads it
    streams = random_streams(cfg["seed"])
    model = build_model(cfg, streams)
    model.summary()
    x, y = tiny_data(cfg, model.n_outputs)
    trainer = Trainer(model, cfg, streams, steps_per_epoch=math.ceil(ROWS / cfg["training"]["batch_size"]))
    # two epochs validated on the training data, with the callbacks that stop a diverging run
    # and let reduce_on_plateau react
    FitLoop(trainer, 2, [NanGuard(trainer), LearningRateSchedule(trainer.schedule)]).fit((x, y), (x, y))
    trainer.learning_rate  # the schedule's next rate
    state, arrays = trainer.get_state()
    path = folder / "model.h5"
    modelfile.save(path, model, loss=cfg["loss"], optimizer=trainer.optimizer,
                   metrics=[m["type"] for m in cfg["metrics"]], config=cfg,
                   state={"trainer": state}, arrays=arrays)
    loaded = modelfile.load(path)
    assert loaded.model.count_params() == model.count_params()
    return "trained"


def outcome(raw, folder):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # overflow on extreme but valid numbers
            return train_like_mlp(raw, folder)
    except ConfigError:
        return "refused by the check"
    except TrainingError as exc:
        assert "loss became" in str(exc) or "weights became" in str(exc), exc
        return "diverged"


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(raw=CONFIGS)
def test_a_config_the_check_accepts_trains(tmp_path, raw):
    assert outcome(raw, tmp_path) in ("trained", "refused by the check", "diverged")


# ------------------------------------------------------------------ the faults it found, one by one

BASE = {"name": "t", "data": {"dataset": "npz", "path": "/unused.npz"},
        "model": {"input_shape": [4], "layers": [{"type": "dense", "units": 3, "activation": "softmax"}]}}


def with_(**changes):
    return {**BASE, **changes}


def refused(raw, *words):
    with pytest.raises(ConfigError) as caught:
        resolve(raw)
    for word in words:
        assert word in str(caught.value), (word, str(caught.value))
    return str(caught.value)


@pytest.mark.parametrize("where, raw", [
    ("seed", with_(seed=-1)),
    ("model.layers[0].seed", with_(model={"input_shape": [4], "layers": [{"type": "dropout", "seed": -5},
                                                                           {"type": "dense", "units": 3}]})),
    ("model.layers[0].kernel_initializer.seed", with_(model={"input_shape": [4], "layers": [
        {"type": "dense", "units": 3, "kernel_initializer": {"type": "he_normal", "seed": -1}}]})),
])
def test_negative_seeds_are_refused_by_the_check(where, raw):
    refused(raw, f"{where}: must be in [0, inf), got -")


@pytest.mark.parametrize("shape, layers, where", [
    ([28, 28], [{"type": "dense", "units": 10}], "model.layers[0]"),
    ([28, 28], [{"type": "dropout"}, {"type": "dense", "units": 10}], "model.layers[1]"),
    ([2, 3], [{"type": "activation"}, {"type": "dense", "units": 3}, {"type": "flatten"}], "model.layers[1]"),
])
def test_a_dense_layer_on_an_input_that_is_not_flat_is_refused(shape, layers, where):
    message = refused(with_(model={"input_shape": shape, "layers": layers}), f"{where}: a dense layer needs a flat "
                      f"input (one axis), got shape {shape}", "add a flatten layer before it")
    assert "model.input_shape is" in message


def test_flatten_anywhere_it_fits_trains(tmp_path):
    stack = [{"type": "flatten"}, {"type": "dense", "units": 3}, {"type": "flatten"}, {"type": "dropout"},
             {"type": "flatten"}, {"type": "dense", "units": 3, "activation": "softmax"}, {"type": "flatten"}]
    assert outcome(with_(model={"input_shape": [2, 1, 3], "layers": stack}), tmp_path) == "trained"


@pytest.mark.parametrize("stack", [[{"type": "dropout"}], [{"type": "flatten"}],
                                   [{"type": "activation", "activation": "softmax"}]])
def test_a_model_without_a_dense_layer_is_refused(stack):
    refused(with_(model={"input_shape": [2, 2], "layers": stack}), "model.layers: needs a dense layer")


@pytest.mark.parametrize("key, value, words", [
    ("schedule", {"type": "exponential_decay", "decay_rate": 1e300, "decay_steps": 1},
     "schedule.decay_rate: must be between"),
    ("optimizer", {"type": "sgd", "learning_rate": 1e300}, "optimizer.learning_rate: must be between"),
    ("optimizer", {"type": "sgd", "learning_rate": 10**400}, "optimizer.learning_rate: must be between"),
    ("optimizer", {"type": "sgd", "learning_rate": 1e-320}, "optimizer.learning_rate: must be at least 1.175e-38"),
    ("optimizer", {"type": "adam", "epsilon": 1e-45}, "optimizer.epsilon: must be at least"),
    ("optimizer", {"type": "adamw", "weight_decay": 1e39}, "optimizer.weight_decay: must be between"),
    ("schedule", {"type": "reduce_on_plateau", "monitor": "loss", "min_lr": 1e300}, "schedule.min_lr: must be between"),
])
def test_numbers_that_overflow_or_vanish_in_training_are_refused(key, value, words):
    refused(with_(**{key: value}), words, "float32" if "between" in words or "least" in words else "")


def test_a_learning_rate_growing_past_any_float_stops_training_cleanly(tmp_path):
    """exponential_decay with decay_rate > 1 (Keras allows it) grows the rate; once it is past
    a float64 (3e38 ** 10) it is inf, and training stops on the non-finite loss or weights."""
    raw = with_(schedule={"type": "exponential_decay", "decay_rate": 3e38, "decay_steps": 1},
                optimizer={"type": "sgd", "learning_rate": 1e-3}, training={"batch_size": 1, "epochs": 1})
    assert outcome(raw, tmp_path) == "diverged"
    schedule = schedules.get("exponential_decay")(1e-3, decay_steps=1, decay_rate=3e38)
    assert schedule(1, 0) == pytest.approx(3e35) and schedule(10, 0) == math.inf


def test_a_decaying_learning_rate_that_reaches_zero_still_trains(tmp_path):
    raw = with_(schedule={"type": "exponential_decay", "decay_rate": FLOAT32_TINY, "decay_steps": 1},
                training={"batch_size": 1, "epochs": 1})
    assert outcome(raw, tmp_path) == "trained"
    assert resolve(with_(optimizer={"type": "sgd", "learning_rate": FLOAT32_MAX}))  # the edges themselves pass


def test_initializer_ranges_and_values_that_do_not_fit_float32_are_refused(tmp_path):
    def dense(init):
        return with_(model={"input_shape": [4], "layers": [{"type": "dense", "units": 3, "kernel_initializer": init}]})

    refused(dense({"type": "random_uniform", "minval": 1, "maxval": -1}),
            "model.layers[0].kernel_initializer.minval: must be at most maxval (-1), got 1")
    refused(dense({"type": "random_uniform", "minval": -1e308, "maxval": 1e308}), "must be between")
    refused(dense({"type": "constant", "value": 1e300}), "kernel_initializer.value: must be between")
    with pytest.raises(ConfigError, match=r"model\.layers\[0\]\.kernel_initializer: gives weights that are not "
                                          r"finite in float32"):
        raw = dense({"type": "random_normal", "stddev": 3e38})
        build_model(resolve(raw), random_streams(0))


def test_duplicate_layer_names_are_refused(tmp_path):
    stack = [{"type": "dense", "units": 3, "name": "a"}, {"type": "dense", "units": 3, "name": "a"}]
    refused(with_(model={"input_shape": [4], "layers": stack}),
            "model.layers[1].name: 'a' is already the name of model.layers[0]")


def test_sparse_crossentropy_needs_classes(tmp_path):
    one_output = {"input_shape": [4], "layers": [{"type": "dense", "units": 1, "activation": "sigmoid"}]}
    refused(with_(loss="sparse_categorical_crossentropy", model=one_output),
            "loss: sparse_categorical_crossentropy needs one output per class (2 or more), but the model has 1")
    refused(with_(loss="sparse_categorical_crossentropy", task="regression", metrics=["mse"]),
            "needs task: classification")


def test_threads_beyond_what_blas_takes_are_refused():
    refused(with_(training={"threads": 10**30}), "training.threads: must be in [1, 1024]")


# ------------------------------------------------------------------ memory, checked before anything is allocated


def test_inference_batches_shrink_for_very_wide_layers(monkeypatch):
    """Evaluate and predict run Sequential.predict on whatever model a file holds: its batches
    stay within PREDICT_BATCH_BYTES however wide the layers (here made small to see it)."""
    monkeypatch.setattr(model_mod, "PREDICT_BATCH_BYTES", 64 * 2**10)
    model = Sequential([{"type": "dense", "units": 1000}, {"type": "dense", "units": 2}], (1,))
    model.build(np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((100, 1)).astype(np.float32)
    seen = []
    forward = model.forward
    model.forward = lambda chunk, training=False: seen.append(len(chunk)) or forward(chunk, training)
    out = model.predict(x)
    assert sum(seen) == 100 and max(seen) * 2 * 4 * (1 + 1000 + 2) <= 64 * 2**10 and len(seen) > 1
    np.testing.assert_allclose(out, forward(x), rtol=1e-6, atol=1e-6)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mlpcli", *args], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])


@pytest.mark.parametrize("settings, key", [
    (["model.layers[0].units=30000", "training.batch_size=1000000"],
     "training.batch_size: 1,000,000 is too large: a batch of 48,000 rows needs about"),
    (["model.layers[0].units=100000000"], "model.layers[0].units: the model is too large")])
def test_too_much_memory_is_a_config_error_before_the_run_folder(tmp_path, settings, key):
    """configs/mnist.yaml (one process) with a first layer of 30,000 units and a batch of all
    48,000 training rows: about 65 GiB of activations; or a first layer of 1e8 units: refused
    with exit 2 and one Error line, and no run folder."""
    runs_root = tmp_path / "runs"
    sets = [arg for setting in settings + ["training.processes=1"] for arg in ("--set", setting)]
    done = run_cli("train", "configs/mnist.yaml", *sets, "--runs-root", str(runs_root), "-q")
    assert done.returncode == 2, done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and key in lines[0], lines
    assert "GiB" in lines[0] and "this machine has" in lines[0]
    assert not runs_root.exists() or not any(runs_root.iterdir())


def test_crossentropy_on_outputs_that_are_not_probabilities_says_so(tmp_path):
    """Keras's categorical cross-entropy divides by the outputs' sum: 0 for a linear output of
    zeros, so the loss is NaN; the error names the output activation, not the learning rate."""
    raw = with_(model={"input_shape": [4], "layers": [{"type": "dense", "units": 2, "kernel_initializer": "zeros"}]})
    cfg = resolve(raw)
    streams = random_streams(0)
    model = build_model(cfg, streams)
    x, y = tiny_data(cfg, model.n_outputs)
    with pytest.raises(TrainingError, match=r"loss became nan .*categorical_crossentropy needs probabilities, but "
                                            r"the model's last activation is 'linear' \(layer dense\); end the "
                                            r"model with activation: softmax"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            trainer = Trainer(model, cfg, streams, steps_per_epoch=1)
            trainer.run_epoch(x, y, NanGuard(trainer).on_batch_end)


def test_a_batch_larger_than_the_data_trains_on_the_data_rows(tmp_path):
    """A batch never holds more rows than the data: batch_size 1e12 on 5 samples is one batch of 5."""
    raw = with_(training={"batch_size": 10**12, "epochs": 1},
                model={"input_shape": [4], "layers": [{"type": "dense", "units": 3, "activation": "softmax"}]})
    assert outcome(raw, tmp_path) == "trained"


def test_processes_sharing_a_huge_batch_are_refused_naming_the_batch_size(monkeypatch):
    """Several processes share the outputs of a whole batch_size batch (parallel.DataParallel)."""
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    cfg = resolve(with_(training={"batch_size": 10**12, "processes": 2}))
    if usable_processes(2) < 2:
        pytest.skip("training uses one process on this platform")
    with pytest.raises(ConfigError, match=r"training\.batch_size: 1,000,000,000,000 is too large: .* GiB"):
        build_model(cfg, random_streams(0))
