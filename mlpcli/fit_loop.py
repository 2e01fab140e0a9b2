"""The training loop: epochs of the ``Trainer``, with callbacks called at fixed points.

``FitLoop.fit`` runs epochs until the configured number or until a callback sets
``loop.finished`` (early stopping); ``FitLoop.finish`` then lets each callback write its
part of the final files, results.json last. Everything a run does besides stepping the
model (history.csv, checkpoints, early stopping, the learning-rate schedule, the progress
bar, resume states, the NaN guard, diagnostics) is a ``Callback`` in
``mlpcli.callbacks`` or ``mlpcli.resume_states``; a new one is a subclass that overrides
the hooks it needs, added to the list the train stage builds.

``StopRequest`` turns SIGINT and SIGTERM into a request the loop honours between batches.
"""

import json
import os
import signal
import threading
import time

import numpy as np

from mlpcli import files, runs
from mlpcli.errors import FileSystemError, Interrupted
from mlpcli.trainer import EpochPaused


class Callback:
    """Hooks called by ``FitLoop``; each does nothing unless overridden.

    Order: ``on_train_begin()``; per epoch ``on_epoch_begin(epoch)``, ``on_batch_end(batch,
    logs)`` after every batch (``batch`` counts from 1, ``logs`` the running ``loss``, and
    ``accuracy`` when it is a metric), ``on_pass_end()`` when the training pass stops
    however it stops, ``on_epoch_paused(epoch, paused)`` when a stop request paused it
    between batches, ``on_epoch_end(epoch, logs)`` with the epoch's training and validation
    metrics, ``lr`` and ``seconds``; at the end ``on_train_end(results)``, which adds to the
    dict written to results.json. Epochs count from 1. Callbacks are called in list order.

    A callback with a ``state_key`` is saved in every resume state under that key
    (``get_state() -> (JSON-able value, {name: array})``) and given it back on --resume
    (``set_state(value, arrays)``). One whose ``finishing`` names its final step (e.g.
    "the diagnostics") is not run when a stop was requested by then.
    """

    state_key = None
    finishing = None
    loop = None  # the FitLoop, once added to one

    def on_train_begin(self):
        pass

    def on_epoch_begin(self, epoch):
        pass

    def on_batch_end(self, batch, logs):
        pass

    def on_pass_end(self):
        pass

    def on_epoch_paused(self, epoch, paused):
        pass

    def on_epoch_end(self, epoch, logs):
        pass

    def on_train_end(self, results):
        pass

    def get_state(self):
        return None, {}

    def set_state(self, state, arrays):
        pass


class FitLoop:
    """Trains ``trainer`` for ``epochs`` epochs, calling ``callbacks`` on the way."""

    def __init__(self, trainer, epochs, callbacks, stop=lambda: False, folder=None):
        """``stop()``: whether a stop was requested (a ``StopRequest``); ``folder``: the run
        folder results.json goes to (None: none is written)."""
        self.trainer, self.model, self.epochs = trainer, trainer.model, epochs
        self.callbacks = list(callbacks)
        self.stop, self.folder = stop, folder
        self.finished = False  # set by a callback (early stopping), or when the epochs are done
        self.history = []  # one row per epoch: epoch, metrics, lr, seconds
        self.weights_epoch = None  # while finishing: the epoch whose weights the model holds
        for callback in self.callbacks:
            callback.loop = self

    def _call(self, hook, *args):
        for callback in self.callbacks:
            getattr(callback, hook)(*args)

    def fit(self, train_set, val_set):
        (x, y), (x_val, y_val) = train_set, val_set
        trainer = self.trainer
        self.started = time.perf_counter()
        # a loss or weights gone non-finite stop the run with a message naming the epoch (the
        # NaN guard); numpy's overflow warnings on the way there would only bury that message
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            self._call("on_train_begin")
            while trainer.epoch < self.epochs and not self.finished:
                epoch = trainer.epoch + 1
                logs, lr, seconds = self._train_pass(x, y, epoch)
                if x_val is not None:
                    logs.update({f"val_{k}": v for k, v in trainer.evaluate(x_val, y_val).items()})
                logs.update(lr=lr, seconds=seconds)
                self.history.append({"epoch": epoch, **logs})
                trainer.end_epoch()
                self.finished = trainer.epoch >= self.epochs
                self._call("on_epoch_end", epoch, logs)

    def _train_pass(self, x, y, epoch):
        """(logs, learning rate at the start, seconds) of the epoch's training pass (possibly
        resumed part-way)."""
        trainer = self.trainer
        t0 = time.perf_counter()
        lr = trainer.epoch_learning_rate
        self._call("on_epoch_begin", epoch)
        try:
            logs = trainer.run_epoch(x, y, lambda batch, running: self._call("on_batch_end", batch, running),
                                     self.stop)
        except EpochPaused as paused:
            self._call("on_epoch_paused", epoch, paused)
            raise
        finally:
            self._call("on_pass_end")
        return logs, lr, round(time.perf_counter() - t0, 3)

    def finish(self):
        """The callbacks' final steps, then results.json (written last, what marks a run as
        finished); a stop request is honoured between them, and a later --resume does what
        is missing."""
        self.weights_epoch = self.history[-1]["epoch"]  # unless early stopping restores an earlier one
        results = {"epochs_run": len(self.history), "seconds": round(time.perf_counter() - self.started, 3)}
        for callback in self.callbacks:
            if callback.finishing:
                self._check_stop(callback.finishing)
            callback.on_train_end(results)
        if self.folder is not None:
            self._check_stop(f"writing {runs.RESULTS_FILE}")
            files.write_text(file_target(self.folder / runs.RESULTS_FILE, self.folder),
                             json.dumps(results, indent=2) + "\n")
        return results

    def _check_stop(self, next_step):
        if self.stop():
            raise Interrupted(f"{signal.Signals(self.stop.signum).name} before {next_step}; training "
                              f"had finished and is saved\nFinish with: mlp train --resume {self.folder}",
                              self.stop.signum)

    def interrupted(self, where, path):
        """The Interrupted error for a stop request honoured ``where``, the state saved at ``path``."""
        name = signal.Signals(self.stop.signum).name
        return Interrupted(f"{name} {where}; saved {path}\nResume with: mlp train --resume {self.folder}",
                           self.stop.signum)


def file_target(path, folder):
    """``path``, once it is known that no folder sits where its file is to be written."""
    if path.is_dir():
        raise FileSystemError(f"{path}: is a folder, where mlp writes a file; move it away, then go on "
                              f"with: mlp train --resume {folder}")
    return path


class SetupInterrupted(BaseException):
    """SIGINT or SIGTERM before training started (a BaseException, like KeyboardInterrupt,
    so that no ``except Exception`` on the way swallows it)."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


class StopRequest:
    """SIGINT and SIGTERM for the whole of ``mlp train``.

    Before ``start_training()`` a signal stops the setup at once (``SetupInterrupted``,
    so the caller can take back a half-made run folder). After it, the first signal
    asks training to stop after the current batch (or the final files to stop after
    the one being written); a second one ends the process at once (the files on disk
    stay complete, since each is written atomically).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, training=False):
        """``training=True``: there is no setup to cut short (``mlp sweep`` only stops
        starting trials), so from the start the first signal is only recorded."""
        self.signum = None
        self.training = training
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def start_training(self):
        self.training = True

    def _handle(self, signum, frame):
        if self.signum is not None:
            os._exit(128 + signum)
        self.signum = signum
        if not self.training:
            raise SetupInterrupted(signum)

    def __call__(self):
        return self.signum is not None

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
