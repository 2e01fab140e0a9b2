"""The training loop: epochs of shuffled mini-batches, validation, early stopping.

``Trainer`` owns everything that changes while a model trains (optimizer
slots, schedule, step and epoch counters, random streams) so that it can be
checkpointed as a whole. It never prints: progress goes through callbacks.
"""

import math
import time

import numpy as np

from mlpcli.errors import TrainingError
from mlpcli.nn import losses as losses_mod
from mlpcli.nn import metrics as metrics_mod
from mlpcli.nn import optimizers as optimizers_mod
from mlpcli.nn import schedules as schedules_mod
from mlpcli.nn.metrics import higher_is_better
from mlpcli.nn.model import Sequential


def random_streams(seed):
    """Independent generators for weights, dropout, shuffling and the validation split."""
    init, dropout, shuffle, split = np.random.SeedSequence(seed).spawn(4)
    return {name: np.random.default_rng(s) for name, s in
            (("init", init), ("dropout", dropout), ("shuffle", shuffle), ("split", split))}


def build_model(cfg, streams):
    """The Sequential model described by a resolved config, with fresh weights."""
    model = Sequential(cfg["model"]["layers"], cfg["model"]["input_shape"], name=cfg["model"]["name"])
    return model.build(streams["init"], streams["dropout"])


class Trainer:
    """Trains ``model`` on (x, y) one epoch at a time."""

    def __init__(self, model, cfg, streams):
        self.model = model
        self.loss = losses_mod.get(cfg["loss"])
        opt_spec = dict(cfg["optimizer"])
        self.optimizer = optimizers_mod.get(opt_spec.pop("type"))(**opt_spec)
        self.optimizer.build(model.params)
        sched_spec = dict(cfg["schedule"])
        self.schedule = schedules_mod.get(sched_spec.pop("type"))(
            self.optimizer.learning_rate, **sched_spec)
        self.metric_specs = cfg["metrics"]
        self.batch_size = cfg["training"]["batch_size"]
        self.shuffle = cfg["training"]["shuffle"]
        self.shuffle_rng = streams["shuffle"]
        self.epoch = 0  # epochs completed
        self.step = 0  # batches completed

    @property
    def learning_rate(self):
        return self.schedule(self.step, self.epoch)

    def targets(self, y):
        return losses_mod.encode_targets(self.loss, y, self.model.n_outputs)

    def run_epoch(self, x, y, on_batch=None):
        """Train one epoch on x (n, *input_shape) and raw targets y; return its logs.

        ``on_batch(done, total, running)`` is called after every batch with the
        running mean loss (and accuracy, when it is a metric) of the epoch so far.
        """
        n = x.shape[0]
        order = self.shuffle_rng.permutation(n) if self.shuffle else np.arange(n)
        y_enc = self.targets(y)
        outputs = np.empty((n, self.model.n_outputs), np.float32)
        n_batches = math.ceil(n / self.batch_size)
        total_loss = 0.0
        correct = 0
        track_accuracy = on_batch is not None and any(m["type"] == "accuracy" for m in self.metric_specs)
        for b in range(n_batches):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            value, y_pred = self.model.train_step(x[idx], y_enc[idx], self.loss, self.optimizer,
                                                  self.learning_rate)
            if not math.isfinite(value):
                raise TrainingError(f"loss became {value} in epoch {self.epoch + 1}, batch {b + 1}; "
                                    "training stopped (try a lower learning rate or gradient clipping)")
            outputs[b * self.batch_size:b * self.batch_size + len(idx)] = y_pred.reshape(len(idx), -1)
            total_loss += value * len(idx)
            self.step += 1
            if on_batch:
                seen = min(n, (b + 1) * self.batch_size)
                running = {"loss": total_loss / seen}
                if track_accuracy:
                    correct += int((metrics_mod.predicted_classes(y_pred.reshape(len(idx), -1))
                                    == y[idx]).sum())
                    running["accuracy"] = correct / seen
                on_batch(b + 1, n_batches, running)
        logs = {"loss": total_loss / n}
        logs.update(metrics_mod.compute(self.metric_specs, y[order], outputs))
        return logs

    def evaluate(self, x, y):
        """Loss (with penalties) and metrics on (x, y), dropout off."""
        y_pred = self.model.predict(x).reshape(x.shape[0], -1)
        logs = {"loss": self.loss.value(self.targets(y), y_pred) + self.model.penalty()}
        logs.update(metrics_mod.compute(self.metric_specs, y, y_pred))
        return logs

    def end_epoch(self, logs):
        self.epoch += 1
        self.schedule.on_epoch_end(self.epoch, logs)

    def weights_finite(self):
        return all(np.isfinite(p).all() for p in self.model.params)


class Monitor:
    """Tracks the best value of a logged quantity (``val_loss``, ``accuracy``, ...)."""

    def __init__(self, name, mode="auto", min_delta=0.0):
        self.name = name
        self.higher = higher_is_better(name, mode)
        self.min_delta = min_delta
        self.best = None
        self.best_epoch = None

    def improved(self, value):
        if self.best is None:
            return True
        if self.higher:
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def update(self, epoch, logs):
        """Record ``logs[name]`` for ``epoch``; True when it is a new best."""
        value = logs.get(self.name)
        if value is None or not self.improved(value):
            return False
        self.best, self.best_epoch = value, epoch
        return True


class EarlyStopping:
    """Stop after ``patience`` epochs without improvement; optionally keep the best weights."""

    def __init__(self, model, monitor, patience, min_delta=0.0, mode="auto",
                 restore_best_weights=False):
        self.model = model
        self.monitor = Monitor(monitor, mode, min_delta)
        self.patience = patience
        self.restore_best_weights = restore_best_weights
        self.wait = 0
        self.best_weights = None

    def should_stop(self, epoch, logs):
        if self.monitor.update(epoch, logs):
            self.wait = 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return False
        self.wait += 1
        return self.wait >= self.patience

    def restore(self):
        """Put the best epoch's weights back (when asked for and known)."""
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
            return True
        return False


def timed(fn, *args, **kwargs):
    """(result, seconds) of calling fn."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start
