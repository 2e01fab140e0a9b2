"""The training loop (mlpcli/fit_loop.py) and its callbacks: the hooks a callback sees, in
order and with the right numbers; a callback's state carried through a resume state; early
stopping ending the loop and putting the best weights back."""

import numpy as np
import pytest

from mlpcli import pipeline
from mlpcli.callbacks import EarlyStopping, HistoryFile, LearningRateSchedule, NanGuard
from mlpcli.config import resolve
from mlpcli.fit_loop import Callback, FitLoop
from mlpcli.resume_states import ResumeStates
from mlpcli.trainer import EpochPaused, Trainer, build_model, random_streams

ROWS, BATCH = 10, 4  # batches of 4, 4 and 2


def tiny_cfg(**training):
    return resolve({"name": "t", "data": {"dataset": "npz", "path": "/unused.npz"},
                    "model": {"input_shape": [4], "layers": [{"type": "dense", "units": 3, "activation": "softmax"}]},
                    "metrics": ["accuracy"], "training": {"batch_size": BATCH, "epochs": 3, **training}})


def tiny_data():
    x = np.random.default_rng(0).standard_normal((ROWS, 4)).astype(np.float32)
    return x, np.arange(ROWS) % 3


def new_trainer(cfg):
    streams = random_streams(cfg["seed"])
    return Trainer(build_model(cfg, streams), cfg, streams, steps_per_epoch=3)


class Recorder(Callback):
    """Every hook called, with its numbers."""

    def __init__(self):
        self.calls = []

    def on_train_begin(self):
        self.calls.append(("train_begin",))

    def on_epoch_begin(self, epoch):
        self.calls.append(("epoch_begin", epoch))

    def on_batch_end(self, batch, logs):
        self.calls.append(("batch_end", batch, sorted(logs)))

    def on_pass_end(self):
        self.calls.append(("pass_end",))

    def on_epoch_paused(self, epoch, paused):
        self.calls.append(("epoch_paused", epoch, paused.done, paused.total))

    def on_epoch_end(self, epoch, logs):
        self.calls.append(("epoch_end", epoch, list(logs)))

    def on_train_end(self, results):
        self.calls.append(("train_end", dict(results)))


def test_a_callback_sees_the_hooks_in_order_with_the_epoch_and_batch_numbers():
    cfg = tiny_cfg(epochs=2)
    trainer, recorder = new_trainer(cfg), Recorder()
    loop = FitLoop(trainer, 2, [NanGuard(trainer), recorder])
    x, y = tiny_data()
    loop.fit((x, y), (x, y))
    results = loop.finish()
    batch = ("batch_end", ["accuracy", "loss"])
    epoch_logs = ["loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"]
    expected = [("train_begin",)]
    for epoch in (1, 2):
        expected += [("epoch_begin", epoch)] + [(batch[0], b, batch[1]) for b in (1, 2, 3)]
        expected += [("pass_end",), ("epoch_end", epoch, epoch_logs)]
    assert recorder.calls[:-1] == expected
    assert recorder.calls[-1][0] == "train_end" and set(results) == {"epochs_run", "seconds"}
    assert results["epochs_run"] == 2 and [row["epoch"] for row in loop.history] == [1, 2]
    assert list(loop.history[0]) == ["epoch"] + epoch_logs  # history.csv's columns, in order


def test_a_paused_epoch_calls_the_pause_hook_and_ends_the_loop_where_it_stopped():
    cfg = tiny_cfg()
    recorder = Recorder()
    batches = iter(range(100))
    trainer = new_trainer(cfg)
    loop = FitLoop(trainer, 3, [recorder], stop=lambda: next(batches) >= 4)  # asked during batch 2 of epoch 2
    x, y = tiny_data()
    with pytest.raises(EpochPaused):
        loop.fit((x, y), (None, None))
    assert recorder.calls[-2:] == [("epoch_paused", 2, 2, 3), ("pass_end",)]
    assert trainer.epoch == 1 and trainer.progress.batch == 2 and len(loop.history) == 1


class Counter(Callback):
    """A callback with a state: how many epochs it saw, and an array."""

    state_key = "counter"

    def __init__(self):
        self.seen, self.trace = 0, np.zeros(0)

    def on_epoch_end(self, epoch, logs):
        self.seen += 1
        self.trace = np.append(self.trace, logs["loss"])

    def get_state(self):
        return {"seen": self.seen}, {"counter/trace": self.trace}

    def set_state(self, state, arrays):
        self.seen, self.trace = state["seen"], arrays["counter/trace"]


class Report:
    quiet = True

    def __init__(self):
        self.lines = []

    def line(self, text=""):
        self.lines.append(text)

    warn = line


def loop_with_resume_states(cfg, folder):
    trainer = new_trainer(cfg)
    extras = {"config": cfg, "pipeline": pipeline.from_training(cfg, {"scale": 1.0, "offset": 0.0}, None, (4,))}
    counter, history, states = Counter(), HistoryFile(folder), ResumeStates(cfg, folder, Report(), ROWS, extras)
    loop = FitLoop(trainer, cfg["training"]["epochs"], [NanGuard(trainer), LearningRateSchedule(trainer.schedule),
                                                        counter, history, states], folder=folder)
    return loop, counter, history, states


def test_a_callbacks_state_round_trips_through_a_resume_state(tmp_path):
    cfg = tiny_cfg(epochs=2)
    x, y = tiny_data()
    loop, counter, _, _ = loop_with_resume_states(cfg, tmp_path)
    loop.fit((x, y), (None, None))
    assert counter.seen == 2 and sorted(p.name for p in (tmp_path / "resume").iterdir()) == \
        ["epoch-0001.h5", "epoch-0002.h5"]

    again, restored, history, states = loop_with_resume_states(cfg, tmp_path)
    states.resume(history)
    assert restored.seen == 2 and np.array_equal(restored.trace, counter.trace)
    assert again.history == loop.history and again.finished and again.trainer.epoch == 2
    assert (tmp_path / "history.csv").read_text().startswith("epoch,loss,accuracy,lr,seconds\n")
    for a, b in zip(again.model.params, loop.model.params):
        assert np.array_equal(a, b)


class ScriptedValLoss(Callback):
    """Sets val_loss to given values, epoch by epoch, for early stopping to watch."""

    def __init__(self, values):
        self.values = values

    def on_epoch_end(self, epoch, logs):
        logs["val_loss"] = self.values[epoch - 1]


class WeightsAt(Callback):
    def __init__(self):
        self.weights = {}

    def on_epoch_end(self, epoch, logs):
        self.weights[epoch] = [w.copy() for w in self.loop.model.params]


def test_early_stopping_ends_the_loop_and_puts_the_best_weights_back():
    cfg = tiny_cfg(epochs=10)
    trainer, report, snapshots = new_trainer(cfg), Report(), WeightsAt()
    stopper = EarlyStopping(trainer.model, "val_loss", patience=2, restore_best_weights=True, report=report)
    loop = FitLoop(trainer, 10, [ScriptedValLoss([3.0, 2.0, 2.5, 2.6, 1.0]), snapshots, stopper])
    x, y = tiny_data()
    loop.fit((x, y), (None, None))
    assert len(loop.history) == 4 and loop.finished
    assert report.lines == ["Early stopping: val_loss did not improve for 2 epochs (best 2.0000 at epoch 2)"]
    loop.finish()
    assert loop.weights_epoch == 2 and report.lines[-1] == "Restored the weights of epoch 2"
    for now, best in zip(trainer.model.params, snapshots.weights[2]):
        assert np.array_equal(now, best)
    assert not np.array_equal(snapshots.weights[4][0], snapshots.weights[2][0])
