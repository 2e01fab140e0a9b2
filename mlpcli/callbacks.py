"""The callbacks of ``mlp train`` (see ``mlpcli.fit_loop.Callback`` for the hooks).

Each does one thing: guard against NaN, react to the epoch for the learning-rate schedule,
show progress, write history.csv, stop early, write checkpoints and model.h5, evaluate on
the test data, diagnose the curves, draw the plots. Resume states are in
``mlpcli.resume_states``.
"""

import csv
import io
import math
import sys

import numpy as np

from mlpcli import files, modelfile, runs
from mlpcli.diagnostics import report_diagnostics
from mlpcli.errors import ConfigError, TrainingError
from mlpcli.files import plain_name_problem
from mlpcli.fit_loop import Callback, file_target
from mlpcli.nn.metrics import higher_is_better

NOT_EPOCH_METRICS = ("epoch", "lr", "seconds")  # the history columns that are not the epoch's metrics


class NanGuard(Callback):
    """Stops training when the loss or the weights are no longer finite, naming the epoch."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_batch_end(self, batch, logs):
        # the epoch's running loss: a finite sum plus one batch's inf or nan is that inf or nan
        value = logs["loss"]
        if not math.isfinite(value):
            raise TrainingError(f"loss became {value} in epoch {self.trainer.epoch + 1}, batch {batch}; "
                                f"training stopped ({self._hint()})")

    def on_epoch_end(self, epoch, logs):
        if not self.trainer.weights_finite():
            raise TrainingError(f"weights became NaN or infinite in epoch {epoch}; training "
                                "stopped, the last finite checkpoint is kept")

    def _hint(self):
        """What to change when the loss is not finite."""
        loss, model = self.trainer.loss, self.trainer.model
        if loss.name in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
            last = next(layer for layer in reversed(model.layers) if hasattr(layer, "activation"))
            if last.activation.name != "softmax":
                # Keras's formula divides by the outputs' sum, which is 0 for some rows of these
                return (f"{loss.name} needs probabilities, but the model's last activation is "
                        f"'{last.activation.name}' (layer {last.name}); end the model with activation: softmax")
        return "try a lower learning rate or gradient clipping"


class LearningRateSchedule(Callback):
    """Tells the schedule each epoch's metrics (reduce_on_plateau lowers the rate on them).

    The trainer asks the schedule for every batch's rate; its state is saved with the trainer's.
    """

    def __init__(self, schedule):
        self.schedule = schedule

    def on_epoch_end(self, epoch, logs):
        self.schedule.on_epoch_end(epoch, logs)


class ProgressReport(Callback):
    """A line per epoch, and a tqdm bar over its batches when stderr is a terminal."""

    def __init__(self, report, batches):
        self.report, self.batches = report, batches
        self.bar = None

    def on_epoch_begin(self, epoch):
        if self.report.quiet or not sys.stderr.isatty():
            return
        from tqdm import tqdm

        self.bar = tqdm(total=self.batches, desc=f"Epoch {epoch}/{self.loop.epochs}", unit="batch",
                        leave=False, dynamic_ncols=True)
        progress = self.loop.trainer.progress  # an epoch resumed part-way
        if progress is not None:
            self.bar.update(progress.batch)

    def on_batch_end(self, batch, logs):
        if self.bar is not None:
            self.bar.update(1)
            if batch % 10 == 0 or batch == self.batches:
                self.bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=False)

    def on_pass_end(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_epoch_end(self, epoch, logs):
        parts = [f"Epoch {epoch}/{self.loop.epochs}"]
        parts += [f"{k}: {v:.4f}" for k, v in logs.items() if k not in NOT_EPOCH_METRICS]
        parts += [f"lr: {logs['lr']:.3g}", f"{logs['seconds']:.1f}s"]
        self.report.line(" - ".join(parts))


class HistoryFile(Callback):
    """The run's history.csv, rewritten after every epoch: one row per epoch."""

    def __init__(self, folder):
        self.path = folder / runs.HISTORY_FILE

    def on_epoch_end(self, epoch, logs):
        self.write()

    def write(self):
        history = self.loop.history
        if not history:
            files.write_text(self.path, "")
            return
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(history[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        files.write_text(self.path, out.getvalue())


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

    def get_state(self):
        return {"best": self.best, "best_epoch": self.best_epoch}

    def set_state(self, state):
        self.best, self.best_epoch = state["best"], state["best_epoch"]


class EarlyStopping(Callback):
    """Stop after ``patience`` epochs without improvement; optionally put the best weights back
    at the end (before model.h5 is written)."""

    state_key = "early_stopping"
    finishing = f"writing {runs.MODEL_FILE}"

    def __init__(self, model, monitor, patience, min_delta=0.0, mode="auto", restore_best_weights=False,
                 report=None):
        """``report``: where the decision is told (``line(text)``), or None."""
        self.model = model
        self.monitor = Monitor(monitor, mode, min_delta)
        self.patience = patience
        self.restore_best_weights = restore_best_weights
        self.report = report
        self.wait = 0
        self.best_weights = None

    def on_epoch_end(self, epoch, logs):
        if self.monitor.update(epoch, logs):
            self.wait = 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience:
            if self.report is not None:
                self.report.line(f"Early stopping: {self.monitor.name} did not improve for {self.wait} "
                                 f"epochs (best {self.monitor.best:.4f} at epoch {self.monitor.best_epoch})")
            self.loop.finished = True

    def on_train_end(self, results):
        """Put the best epoch's weights back (when asked for and known)."""
        if not (self.restore_best_weights and self.best_weights is not None):
            return
        self.model.set_weights(self.best_weights)
        if self.monitor.best_epoch != self.loop.weights_epoch and self.report is not None:
            self.report.line(f"Restored the weights of epoch {self.monitor.best_epoch}")
        self.loop.weights_epoch = self.monitor.best_epoch

    def get_state(self):
        """(JSON-able state, arrays): the wait, the monitor and the best weights kept."""
        arrays = {f"best_weights/{i}": w for i, w in enumerate(self.best_weights or [])}
        return {"wait": self.wait, "monitor": self.monitor.get_state()}, arrays

    def set_state(self, state, arrays):
        self.wait = state["wait"]
        self.monitor.set_state(state["monitor"])
        kept = sorted((int(k.split("/")[1]), v) for k, v in arrays.items() if k.startswith("best_weights/"))
        self.best_weights = [v.astype(np.float32) for _, v in kept] or None


class Checkpoints(Callback):
    """checkpoints/ (each epoch, or each new best by checkpoint.monitor) and model.h5 at the end.

    ``model_extras``: what every model file carries besides the model (the config and the
    input pipeline: see ``modelfile.save``).
    """

    state_key = "checkpoint_monitor"
    finishing = f"writing {runs.MODEL_FILE}"

    def __init__(self, cfg, trainer, folder, model_extras, report):
        self.cfg, self.trainer, self.folder, self.extras = cfg, trainer, folder, model_extras
        self.report = report
        self.best = Monitor(cfg["checkpoint"]["monitor"], cfg["checkpoint"]["mode"])

    def on_epoch_end(self, epoch, logs):
        ckpt = self.cfg["checkpoint"]
        improved = self.best.update(epoch, logs)
        if ckpt["enabled"] and (improved or not ckpt["save_best_only"]):
            self._save(self.folder / runs.CHECKPOINTS_DIR / self.file_name(epoch, logs), epoch)

    def on_train_end(self, results):
        self._save(self.folder / runs.MODEL_FILE, self.loop.weights_epoch)
        self.report.line(f"Saved {self.folder / runs.MODEL_FILE}")
        results.update(monitor=self.best.name, best_epoch=self.best.best_epoch, best_value=self.best.best)

    def file_name(self, epoch, logs):
        """checkpoint.filename filled in for ``epoch``. The config check refuses every template
        known to give anything but a plain name; should one still do, nothing is written."""
        template = self.cfg["checkpoint"]["filename"]
        name = template.format(epoch=epoch, **logs)
        problem = plain_name_problem(name)
        if problem:
            raise ConfigError(f"checkpoint.filename: {template!r} gives {name!r} at epoch {epoch}, which "
                              f"{problem}; training stopped before writing it (the state of the epoch "
                              "before is kept)")
        return name

    def _save(self, path, epoch):
        modelfile.save(file_target(path, self.folder), self.trainer.model, loss=self.cfg["loss"],
                       optimizer=self.trainer.optimizer, metrics=[m["type"] for m in self.cfg["metrics"]],
                       state={"epoch": epoch}, **self.extras)

    def get_state(self):
        return self.best.get_state(), {}

    def set_state(self, state, arrays):
        self.best.set_state(state)


class FinalMetrics(Callback):
    """results.json's ``final``: the last epoch's metrics and learning rate."""

    def on_train_end(self, results):
        results["final"] = {k: v for k, v in self.loop.history[-1].items() if k not in ("epoch", "seconds")}


class TestEvaluation(Callback):
    """The loss and metrics on the test data, once training is done."""

    finishing = "the test evaluation"

    def __init__(self, x_test, y_test, report):
        self.x_test, self.y_test, self.report = x_test, y_test, report

    def on_train_end(self, results):
        results["test"] = self.loop.trainer.evaluate(self.x_test, self.y_test)
        self.report.line("Test: " + " - ".join(f"{k}: {v:.4f}" for k, v in results["test"].items()))


class Diagnostics(Callback):
    """diagnostics.json: what the curves say (overfitting, training below validation)."""

    finishing = "the diagnostics"

    def __init__(self, cfg, folder, report, sizes):
        self.cfg, self.folder, self.report, self.sizes = cfg, folder, report, sizes

    def on_train_end(self, results):
        report_diagnostics(self.folder, self.loop.history, self.cfg, self.report.line, self.sizes)


class Plots(Callback):
    """The run's curves in plots/."""

    finishing = "drawing the plots"

    def __init__(self, folder, report):
        self.folder, self.report = folder, report

    def on_train_end(self, results):
        from mlpcli.plots import plot_runs

        drawn = plot_runs([self.folder])
        self.report.line(f"Plots: {len(drawn.written)} figures in {self.folder / runs.PLOTS_DIR}")
