"""Data-parallel training (training.processes): agreement with one process, determinism,
dropout shares, pausing, failures and config checks."""

import os
import signal

import numpy as np
import pytest
from click.testing import CliRunner

from mlpcli import parallel
from mlpcli.callbacks import NanGuard
from mlpcli.cli import main
from mlpcli.config import resolve
from mlpcli.errors import ConfigError, TrainingError
from mlpcli.nn import layers
from mlpcli.trainer import EpochPaused, Trainer, build_model, random_streams

needs_two = pytest.mark.skipif(parallel.usable_processes(2) < 2,
                               reason="data-parallel training needs Linux on x86-64 with 2 cores")


def no_child_left():
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


@pytest.fixture(autouse=True)
def no_hang():
    """A lost partner must end in an error, not a wait forever."""
    def timed_out(*_):
        raise AssertionError("timed out: a process waited forever")
    previous = signal.signal(signal.SIGALRM, timed_out)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def trainer(processes, batch_size=32, optimizer="adam", dropout=0.3, lr=0.01, seed=0, regression=False,
            regularized=False):
    l2 = {"type": "l2", "l2": 0.01} if regularized else None
    cfg = resolve({"name": "t", "seed": seed, "task": "regression" if regression else "classification",
        "model": {"input_shape": [12], "layers": [
            {"type": "dense", "units": 16, "kernel_regularizer": l2}, {"type": "activation", "activation": "relu"},
            {"type": "dropout", "rate": dropout},
            {"type": "dense", "units": 8, "activation": "relu", "activity_regularizer": l2},
            {"type": "dropout", "rate": dropout},
            {"type": "dense", "units": 1 if regression else 4, "activation": "linear" if regression else "softmax"}]},
        "loss": "mse" if regression else "categorical_crossentropy",
        "optimizer": {"type": optimizer, "learning_rate": lr} if isinstance(optimizer, str) else optimizer,
        "metrics": ["mae"] if regression else ["accuracy"],
        "training": {"batch_size": batch_size, "processes": processes}})
    streams = random_streams(seed)
    return Trainer(build_model(cfg, streams), cfg, streams)


def data(n=203, regression=False):  # 203 = 6 batches of 32 and one of 11: shares of unequal size
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, 12)).astype(np.float32)
    if regression:
        return x, (x[:, :3].sum(axis=1, keepdims=True) ** 2).astype(np.float32)
    return x, (x[:, :4].argmax(axis=1) + (x[:, 4] > 1)) % 4


def train(t, epochs=3, **kwargs):
    kwargs.setdefault("regression", t.loss.name == "mean_squared_error")
    x, y = data(**kwargs)
    logs, guard = [], NanGuard(t)
    for _ in range(epochs):
        logs.append(t.run_epoch(x, y, guard.on_batch_end))
        t.end_epoch()
    return logs


@needs_two
def test_two_processes_train_as_one_does():
    one, two = trainer(1), trainer(2)
    assert one.parallel is None and two.parallel is not None
    logs_one, logs_two = train(one), train(two)
    # the same masks, batches and updates: only the order of summing gradients differs
    for a, b in zip(one.model.params, two.model.params, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(logs_one, logs_two):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["accuracy"] == b["accuracy"]
    assert one.step == two.step == 21 and one.optimizer.iterations == two.optimizer.iterations == 21
    # the parent's generators and optimizer slots end where one process's do
    for a, b in zip(one._dropouts(), two._dropouts()):
        assert a.rng.bit_generator.state == b.rng.bit_generator.state
    for key, value in one.optimizer.get_state().items():
        np.testing.assert_allclose(value, two.optimizer.get_state()[key], rtol=1e-4, atol=1e-7)
    # and the trained weights are not the initial ones
    assert not np.allclose(two.model.params[0], trainer(2).model.params[0])


def normalized_trainer(processes, batch_size=32):
    """Batch normalization on the raw inputs (no weights of its own) and after a dense layer
    (without a bias, whose gradient would be rounding noise that Adam magnifies), layer
    normalization, dropout: every step needs the whole batch's statistics."""
    cfg = resolve({"name": "t", "seed": 0, "model": {"input_shape": [12], "layers": [
        {"type": "batch_normalization", "center": False, "scale": False},
        {"type": "dense", "units": 16, "use_bias": False}, {"type": "batch_normalization", "momentum": 0.8},
        {"type": "activation", "activation": "relu"}, {"type": "dropout", "rate": 0.2},
        {"type": "layer_normalization"}, {"type": "dense", "units": 4, "activation": "softmax"}]},
        "loss": "categorical_crossentropy", "optimizer": {"type": "adam", "learning_rate": 0.01},
        "metrics": ["accuracy"], "training": {"batch_size": batch_size, "processes": processes}})
    streams = random_streams(0)
    return Trainer(build_model(cfg, streams), cfg, streams)


@needs_two
@pytest.mark.parametrize("processes, batch_size, n", [(2, 32, 203), (3, 2, 23), (3, 32, 203)])
def test_batch_normalization_uses_the_whole_batch_across_processes(monkeypatch, processes, batch_size, n):
    """The whole batch's statistics (and their gradients) through shared memory: the weights
    and the moving statistics match one process's to rounding; with two rows per batch one
    of three processes has no rows yet meets the others at every sum."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(processes)))
    one, many = normalized_trainer(1, batch_size), normalized_trainer(processes, batch_size)
    assert many.parallel.n == processes
    logs_one, logs_many = train(one, epochs=2, n=n), train(many, epochs=2, n=n)
    assert len(one.model.weights) == len(many.model.weights) == 2 + 1 + 4 + 2 + 2
    for a, b in zip(one.model.weights, many.model.weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    for a, b in zip(logs_one, logs_many):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    assert not np.allclose(many.model.layers[2].moving_variance, 1)
    no_child_left()


@needs_two
@pytest.mark.parametrize("arrived", [True, False])
def test_a_helper_gone_after_the_last_meeting_point_is_no_failure(arrived):
    """The parent may look for dead partners while leaving the epoch's last meeting point,
    after a helper passed it and exited: that helper finished. One that exits before
    arriving did not."""
    dp = trainer(2).parallel
    dp.tick, dp.parent = 1, os.getpid()
    pid = os.fork()
    if pid == 0:
        dp.counters[parallel.LINE] = 1 if arrived else 0
        os._exit(0)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # gone, not yet reaped
    dp.pids, dp.pids_ranks = [pid], {pid: 1}
    if arrived:
        dp._check_partners(0)
        assert dp.pids == []
    else:
        with pytest.raises(TrainingError, match="exit status 0"):
            dp._check_partners(0)
    no_child_left()


@needs_two
def test_two_processes_are_deterministic():
    a, b = trainer(2), trainer(2)
    assert train(a) == train(b)
    for p, q in zip(a.model.params, b.model.params):
        np.testing.assert_array_equal(p, q)


@needs_two
@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop", "adamw", "nadam"])
def test_other_optimizers_update_their_shares(optimizer):
    one, two = trainer(1, optimizer=optimizer), trainer(2, optimizer=optimizer)
    train(one, epochs=2), train(two, epochs=2)
    for a, b in zip(one.model.params, two.model.params):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@needs_two
@pytest.mark.parametrize("regression", [False, True])
def test_regularizers_and_regression_train_as_with_one_process(regression):
    one, two = (trainer(p, regression=regression, regularized=True) for p in (1, 2))
    logs_one, logs_two = train(one, epochs=2), train(two, epochs=2)
    for a, b in zip(one.model.params, two.model.params):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(logs_one, logs_two):
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-5), key
    # the validation loss holds the activity penalty of the evaluated data, not of the last batch
    x, y = data(regression=regression)
    dense, _, _, dense_1, *_ = one.model.layers
    h = np.maximum(np.maximum(x @ dense.kernel + dense.bias, 0) @ dense_1.kernel + dense_1.bias, 0)
    penalties = 0.01 * float(np.square(dense.kernel, dtype=np.float64).sum()) + \
        0.01 * float(np.square(h, dtype=np.float64).sum()) / len(x)
    y_pred = one.model.predict(x).reshape(len(x), -1)
    expected = one.loss.value(one.targets(y), y_pred) + penalties
    assert one.evaluate(x, y)["loss"] == pytest.approx(expected, rel=1e-5)
    assert two.evaluate(x, y)["loss"] == pytest.approx(one.evaluate(x, y)["loss"], rel=1e-5)


@needs_two
def test_three_processes_on_two_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    one, three = trainer(1), trainer(3)
    assert three.parallel.n == 3
    train(one, epochs=2), train(three, epochs=2)
    for a, b in zip(one.model.params, three.model.params):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    no_child_left()


@needs_two
def test_batches_smaller_than_the_processes():
    """With one row per batch one process idles each step, yet moves its generators on."""
    one, two = trainer(1, batch_size=1), trainer(2, batch_size=1)
    train(one, epochs=1, n=23), train(two, epochs=1, n=23)
    for a, b in zip(one.model.params, two.model.params):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(one._dropouts(), two._dropouts()):
        assert a.rng.bit_generator.state == b.rng.bit_generator.state


def test_a_share_of_the_mask_is_those_rows_of_the_whole_mask():
    x = np.ones((10, 7), np.float32)
    whole = layers.Dropout(rate=0.4)
    whole.build((7,), np.random.default_rng(3))
    expected = whole.forward(x, True).copy()
    for start, stop in [(0, 5), (5, 10), (3, 4), (0, 10)]:
        part = layers.Dropout(rate=0.4)
        part.build((7,), np.random.default_rng(3))
        part.rows = (start, stop, 10)
        np.testing.assert_array_equal(part.forward(x[start:stop], True), expected[start:stop])
        assert part.rng.bit_generator.state == whole.rng.bit_generator.state
    skipped = layers.Dropout(rate=0.4)
    skipped.build((7,), np.random.default_rng(3))
    skipped.skip(10, 7)
    assert skipped.rng.bit_generator.state == whole.rng.bit_generator.state


@pytest.mark.parametrize("total", [1, 7, 8, 33])
def test_uint32_draws_of_a_part_equal_that_part_of_the_stream(total):
    whole_gen = np.random.default_rng(11).bit_generator
    whole = layers.uint32_draws(whole_gen, 0, total, total).copy()
    for start in range(total):
        for count in range(total - start + 1):
            gen = np.random.default_rng(11).bit_generator
            np.testing.assert_array_equal(layers.uint32_draws(gen, start, count, total),
                                          whole[start:start + count])
            assert gen.state == whole_gen.state


@needs_two
def test_pause_mid_epoch_then_continue_equals_uninterrupted():
    x, y = data()
    plain = trainer(2)
    plain.run_epoch(x, y)
    paused = trainer(2)
    calls = iter(range(100))
    with pytest.raises(EpochPaused):
        paused.run_epoch(x, y, stop_requested=lambda: next(calls) == 2)
    assert paused.progress.batch == 3
    no_child_left()
    paused.run_epoch(x, y)
    for a, b in zip(plain.model.params, paused.model.params):
        np.testing.assert_array_equal(a, b)


@needs_two
def test_a_failing_helper_is_an_error_with_its_traceback(monkeypatch):
    t = trainer(2)
    parent = os.getpid()
    real = type(t.model).gradients

    def failing(self, *args, **kwargs):
        if os.getpid() != parent:
            raise RuntimeError("boom in a helper")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(t.model), "gradients", failing)
    x, y = data()
    with pytest.raises(TrainingError, match="boom in a helper"):
        t.run_epoch(x, y)
    no_child_left()


@needs_two
def test_loss_that_blows_up_stops_every_process():
    t = trainer(2, optimizer="sgd", lr=1e30)
    x, y = data()
    with pytest.raises(TrainingError, match="loss became"):
        train(t, epochs=3)
    no_child_left()


@needs_two
def test_processes_are_capped_by_the_usable_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert parallel.usable_processes(4) == 1
    assert trainer(4).parallel is None
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    assert parallel.usable_processes(4) == 3
    assert parallel.usable_processes(1) == 1


def test_auto_processes_are_one_per_usable_core(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    assert parallel.usable_processes("auto") == 3
    monkeypatch.setenv(parallel.CORES_ENV, "2")  # a sweep's share of the cores
    assert parallel.usable_processes("auto") == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert parallel.usable_processes("auto") == 1
    assert trainer("auto").parallel is None


@needs_two
def test_auto_processes_train_as_that_many_do():
    """auto is one process per core: the same bits as naming that count, and clipping by norm
    (which needs the whole gradient) quietly trains with one."""
    count = parallel.usable_processes("auto")
    auto, named = trainer("auto"), trainer(count)
    assert auto.parallel.n == count
    assert train(auto) == train(named)
    for p, q in zip(auto.model.params, named.model.params):
        np.testing.assert_array_equal(p, q)
    clipped = trainer("auto", optimizer={"type": "adam", "clipnorm": 1.0})
    assert clipped.parallel is None


def test_config_checks_processes():
    base = {"name": "t", "model": {"input_shape": [2], "layers": [{"type": "dense", "units": 2}]}}
    for bad in (0, 1.5, "two", True):
        with pytest.raises(ConfigError, match="training.processes"):
            resolve({**base, "training": {"processes": bad}})
    with pytest.raises(ConfigError, match=r"training.processes: must be an integer or auto, got 'fast'"):
        resolve({**base, "training": {"processes": "fast"}})
    assert resolve({**base, "training": {"processes": "auto"}})["training"]["processes"] == "auto"
    assert resolve({**base, "training": {"processes": "auto"}, "optimizer": {"type": "adam", "clipnorm": 1.0}})
    with pytest.raises(ConfigError, match=r"training.processes: got 2, but optimizer.clipnorm"):
        resolve({**base, "training": {"processes": 2}, "optimizer": {"type": "adam", "clipnorm": 1.0}})
    with pytest.raises(ConfigError, match=r"optimizer.global_clipnorm"):
        resolve({**base, "training": {"processes": 2}, "optimizer": {"type": "sgd", "global_clipnorm": 1.0}})
    assert resolve({**base, "training": {"processes": 1}, "optimizer": {"type": "adam", "clipnorm": 1.0}})


@needs_two
def test_cli_trains_with_two_processes_and_refuses_clipping_with_exit_2(tmp_path):
    run_dir = tmp_path / "run"
    settings = ["--set", "data.max_train_samples=2000", "--set", "data.max_test_samples=300",
                "--set", "training.epochs=2", "--no-plots", "-q", "--run-dir", str(run_dir)]
    result = CliRunner().invoke(main, ["train", "configs/mnist.yaml", "--processes", "2", *settings])
    assert result.exit_code == 0, result.output
    assert "processes: 2" in (run_dir / "config.yaml").read_text()
    assert (run_dir / "model.h5").exists()
    result = CliRunner().invoke(main, ["train", "configs/mnist.yaml", "--processes", "2",
                                       "--set", "optimizer.clipnorm=1.0", *settings[:-1], str(tmp_path / "r2")])
    assert result.exit_code == 2
    assert "training.processes: got 2, but optimizer.clipnorm" in result.output


def test_cli_takes_auto_processes_and_refuses_other_words_with_exit_2(tmp_path):
    result = CliRunner().invoke(main, ["train", "configs/quick.yaml", "--processes", "auto", "--dry-run"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["train", "configs/quick.yaml", "--processes", "many", "--dry-run"])
    assert result.exit_code == 2
    assert "training.processes: must be an integer or auto, got 'many'" in result.output


@needs_two
def test_fork_failure_is_a_training_error(monkeypatch):
    t = trainer(2)

    def no_fork():
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    x, y = data()
    with pytest.raises(TrainingError, match="could not start training process 2 of 2: .*unavailable"):
        t.run_epoch(x, y)


def _children(pid):
    tasks = f"/proc/{pid}/task"
    found = []
    for task in os.listdir(tasks):
        with open(f"{tasks}/{task}/children") as f:
            found += [int(p) for p in f.read().split()]
    return found


def _running(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except OSError:
        return False


@needs_two
def test_helpers_stop_when_the_parent_is_killed(tmp_path):
    """kill -9 of `mlp train` leaves no helper spinning."""
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "mlpcli", "train", "configs/mnist.yaml", "--processes", "2",
                             "--set", "training.epochs=50", "--no-plots", "-q", "--run-dir", str(tmp_path / "run")])
    deadline = time.time() + 50
    helpers = []
    while not helpers:
        assert proc.poll() is None and time.time() < deadline, "training never started a helper"
        helpers = _children(proc.pid)
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    deadline = time.time() + 10
    while any(_running(pid) for pid in helpers):
        assert time.time() < deadline, f"helper(s) {helpers} still running after the parent was killed"
        time.sleep(0.05)


def test_memory_check_counts_every_process_gradient(monkeypatch):
    """Each further process holds a gradient of the weights (its mixing and scratch are a piece)."""
    from mlpcli.trainer import build_model

    real = os.sysconf
    monkeypatch.setattr(os, "sysconf", lambda name: 2 ** 18 if name == "SC_PHYS_PAGES" else real(name))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(100)))  # 100 usable cores
    memory = real("SC_PAGE_SIZE") * 2 ** 18  # 1 GiB with 4 KiB pages
    spec = {"name": "t", "model": {"input_shape": [10_000], "layers": [{"type": "dense", "units": 1000}]}}
    weights = 10_000 * 1000 + 1000
    # adam: weight, gradient, 2 slots and their saved copies; 1 more per further process
    assert weights * 6 * 4 < memory < weights * (6 + 99) * 4
    assert build_model(resolve({**spec, "training": {"processes": 1}}), random_streams(0)).count_params() == weights
    with pytest.raises(ConfigError, match=r"model\.layers\[0\]\.units: the model is too large: 10,001,000 weights "
                                          r"need about 4\.[0-9] GiB"):
        build_model(resolve({**spec, "training": {"processes": 100}}), random_streams(0))


def test_each_helper_tells_its_own_failure_and_a_one_line_error_keeps_its_start():
    """Three processes' slots (made without forking): a helper's one-line error and another's
    traceback stay each its own, a path's undecodable bytes come through, and a one-line error
    too long for its slot keeps its beginning (the path) where a traceback keeps its end."""
    from mlpcli.errors import MlpError

    t = trainer(1)
    par = parallel.DataParallel(t.model, 3, 32, t.model.n_outputs)
    path = os.fsdecode(b"/data/caf\xe9/" + b"d" * 5000 + b"/x.npy")
    par._record(1, f"{path}: the file ended before row 3", keep="start")
    par.error_code[1] = 2
    par._record(2, "Traceback (most recent call last):\n" + "  frame\n" * 1000 + "RuntimeError: boom", keep="end")
    one_line, crash = par._failure("a training process failed", 1), par._failure("a training process failed", 2)
    assert type(one_line) is MlpError and one_line.exit_code == 2
    assert str(one_line).startswith("/data/caf\udce9/ddd") and len(str(one_line)) < 4000
    assert isinstance(crash, TrainingError) and crash.exit_code == 1
    assert str(crash).startswith("a training process failed:\n") and str(crash).endswith("RuntimeError: boom")
