"""One training run's moving parts (``Session``) and the signals that stop it (``StopRequest``).

A session trains epoch by epoch into its run folder, saves its whole state to
``resume/`` after each epoch (and when stopped mid-epoch), restores it on
--resume, and writes the final files, results.json last.
"""

import csv
import io
import json
import math
import os
import signal
import threading
import time

import numpy as np

from mlpcli import files, modelfile, pipeline, run_models, runs
from mlpcli.diagnostics import report_diagnostics
from mlpcli.errors import (ConfigError, FileSystemError, Interrupted, MlpError, ModelFileError, NoSavedState,
                           TrainingError)
from mlpcli.files import plain_name_problem
from mlpcli.training import EarlyStopping, EpochPaused, Monitor, Trainer

FINAL_FILES = (runs.MODEL_FILE, runs.RESULTS_FILE, runs.DIAGNOSTICS_FILE)


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


class Session:
    """One training run's moving parts, and how they are saved and restored."""

    def __init__(self, cfg, model, streams, data, feature_shape, folder, report, n_train):
        self.cfg, self.model, self.folder, self.report = cfg, model, folder, report
        self.n_train = n_train
        self.trainer = Trainer(model, cfg, streams, math.ceil(n_train / cfg["training"]["batch_size"]))
        ckpt = cfg["checkpoint"]
        self.best = Monitor(ckpt["monitor"], ckpt["mode"])
        es = cfg["early_stopping"]
        self.stopper = EarlyStopping(model, es["monitor"], es["patience"], es["min_delta"], es["mode"],
                                     es["restore_best_weights"]) if es else None
        self.extras = {"config": cfg, "pipeline": pipeline.from_training(
            cfg, data.preprocessing, data.class_names, feature_shape, data.table)}
        self.history = []
        self.finished = False
        self.refused = set()  # saved states resume found unusable

    # -- saving and restoring ------------------------------------------------------------

    def save_state(self):
        """Write everything needed to continue to ``resume/``; keep the two newest."""
        trainer_state, arrays = self.trainer.get_state()
        state = {"trainer": trainer_state, "checkpoint_monitor": self.best.get_state(),
                 "early_stopping": None, "history": self.history, "finished": self.finished,
                 "epochs": self.cfg["training"]["epochs"]}
        if self.stopper:
            state["early_stopping"], kept = self.stopper.get_state()
            arrays.update(kept)
        p = self.trainer.progress
        path = self._target(self.folder / runs.RESUME_DIR / run_models.resume_state_name(
            self.trainer.epoch, p.batch if p else None))
        path.parent.mkdir(exist_ok=True)
        modelfile.save(path, self.model, loss=self.cfg["loss"], optimizer=self.trainer.optimizer,
                       state=state, arrays=arrays, **self.extras)
        # the two newest of the states this run can use: one that resume refused is not counted
        for old in [p for p in run_models.resume_states(self.folder) if p not in self.refused][2:]:
            old.unlink()
        return path

    def resume(self):
        """Restore the newest valid state in ``resume/``, falling back past damaged ones."""
        removed = files.remove_stale_temporaries(self.folder)
        if removed:
            self.report.line(f"Removed {removed} temporary file(s) left by an interrupted run")
        for name in (*FINAL_FILES, runs.HISTORY_FILE, runs.CONFIG_FILE, runs.SUMMARY_FILE, runs.PARAMS_FILE):
            self._target(self.folder / name)
        for name in (runs.CHECKPOINTS_DIR, runs.RESUME_DIR):
            if (self.folder / name).exists() and not (self.folder / name).is_dir():
                raise FileSystemError(f"{self.folder / name}: is a file, where mlp keeps a folder; move it "
                                      f"away, then go on with: mlp train --resume {self.folder}")
        for path in run_models.resume_states(self.folder, warn=self.report.warn):
            try:
                saved = modelfile.load(path)
                self._restore(saved)
            except (ModelFileError, KeyError, TypeError, ValueError) as exc:
                self.report.warn(f"Warning: {path} is not a usable checkpoint ({exc}); trying an older one")
                self.refused.add(path)
                continue
            self.report.line(f"Resuming {self.folder} from {path.name} (epoch {self.trainer.epoch}"
                             + (f", batch {self.trainer.progress.batch}" if self.trainer.progress else "")
                             + ")")
            if self.finished:
                self.report.line("Training had finished; writing the final files")
            files.write_text(self.folder / runs.HISTORY_FILE, _history_csv(self.history) if self.history else "")
            return
        raise NoSavedState(f"{self.folder}: no valid checkpoint in {runs.RESUME_DIR}/ to resume from; "
                       "start a new run instead (nothing was changed)")

    def _restore(self, saved):
        state = saved.state
        if "trainer" not in state:
            raise KeyError("no training state")
        epochs, done = self.cfg["training"]["epochs"], state["trainer"]["epoch"]
        # training had finished, and nothing asks for more: only the final files may be missing
        finished = state["finished"] and epochs <= state["epochs"]
        if finished and self._final_files_written(len(state["history"])):
            raise MlpError(f"{self.folder}: this run already finished ({done} "
                           f"epochs); to train further, extend it with --set training.epochs=N "
                           f"(N > {state['epochs']})")
        progress = state["trainer"].get("progress")
        if epochs < done or (progress and epochs == done):
            least = done + 1 if progress else done  # an epoch under way is finished, not dropped
            raise ConfigError(f"training.epochs: the run has done {done} epochs"
                              + (f" and is part-way through epoch {done + 1}" if progress else "")
                              + f", --set gives {epochs}; give {least} or more")
        if progress and len(saved.arrays["progress/order"]) != self.n_train:
            raise MlpError(f"{self.folder}: the epoch under way was saved with "
                           f"{len(saved.arrays['progress/order'])} training samples, but the data now "
                           f"gives {self.n_train}; the data changed since, so the run cannot go on")
        self._check_same_inputs(saved.pipeline)
        self.model.set_weights(saved.model.params)
        self.trainer.optimizer.set_state(saved.optimizer_state)
        self.trainer.set_state(state["trainer"], saved.arrays)
        self.best.set_state(state["checkpoint_monitor"])
        if self.stopper and state["early_stopping"]:
            self.stopper.set_state(state["early_stopping"], saved.arrays)
        self.history = state["history"]
        self.finished = finished

    def _check_same_inputs(self, saved):
        """Refuse to go on when the data's feature columns or classes are not those the saved
        state was trained on (reordered, renamed, added): the weights would silently take one
        column or class for another. A state that does not record them is not checked."""
        now = self.extras["pipeline"]
        for what in ("columns", "class_names"):
            before, after = getattr(saved, what) if saved else None, getattr(now, what)
            if before is None or before == after:
                continue
            after = after or []
            at = next((i for i, (b, a) in enumerate(zip(before, after)) if b != a), min(len(before), len(after)))
            shown = [f"{len(names)} {what.replace('_', ' ')}"
                     + (f", #{at + 1} {names[at]!r}" if at < len(names) else "") for names in (before, after)]
            raise MlpError(f"{self.folder}: the run was trained on {shown[0]}, but the data now gives "
                           f"{shown[1]}; the data changed since, so the run cannot go on (start a new run)")

    def _final_files_written(self, epochs_run):
        """Whether results.json (written last) describes a run of ``epochs_run`` epochs."""
        try:
            results = runs.read_json(self.folder / runs.RESULTS_FILE)
        except (OSError, UnicodeDecodeError, ValueError):
            return False
        return isinstance(results, dict) and results.get("epochs_run") == epochs_run

    def _target(self, path):
        """``path``, once it is known that no folder sits where its file is to be written."""
        if path.is_dir():
            raise FileSystemError(f"{path}: is a folder, where mlp writes a file; move it away, then go on "
                           f"with: mlp train --resume {self.folder}")
        return path

    def _checkpoint_name(self, epoch, logs):
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

    def _checkpoint(self, path, **state):
        modelfile.save(self._target(path), self.model, loss=self.cfg["loss"], optimizer=self.trainer.optimizer,
                       metrics=[m["type"] for m in self.cfg["metrics"]], state=state, **self.extras)

    # -- the loop ------------------------------------------------------------------------

    def fit(self, train_set, val_set, test_set, plots, stop):
        (x, y), (x_val, y_val) = train_set, val_set
        trainer, epochs = self.trainer, self.cfg["training"]["epochs"]
        started = time.perf_counter()
        # as a number, for compare and sweeps to rank this run by, while it trains too
        runs.write_param_count(self.folder, self.model.count_params())
        path = None
        # a loss or weights gone non-finite stop the run with a message naming the epoch;
        # numpy's overflow warnings on the way there would only bury that message
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            while trainer.epoch < epochs and not self.finished:
                epoch = trainer.epoch + 1
                logs, lr, seconds = self._train_epoch(x, y, epoch, epochs, stop)
                if x_val is not None:
                    logs.update({f"val_{k}": v for k, v in trainer.evaluate(x_val, y_val).items()})
                if not trainer.weights_finite():
                    raise TrainingError(f"weights became NaN or infinite in epoch {epoch}; training "
                                        "stopped, the last finite checkpoint is kept")
                path = self._end_epoch(epoch, epochs, logs, lr, seconds)
                if stop() and not self.finished:
                    raise self._interrupted(stop.signum, f"after epoch {epoch}", path)
        return self._finish(test_set, plots, stop, started)

    def _finish(self, test_set, plots, stop, started):
        """The final files, results.json last (what marks a run as finished); a stop request
        is honoured between them, and a later --resume writes what is missing."""
        report, x_test, y_test = self.report, *test_set

        def check_stop(next_step):
            if stop():
                raise Interrupted(f"{signal.Signals(stop.signum).name} before {next_step}; training "
                                  f"had finished and is saved\nFinish with: mlp train --resume {self.folder}",
                                  stop.signum)

        check_stop(f"writing {runs.MODEL_FILE}")
        restored = self.stopper.restore() if self.stopper else False
        if restored and self.stopper.monitor.best_epoch != self.history[-1]["epoch"]:
            report.line(f"Restored the weights of epoch {self.stopper.monitor.best_epoch}")
        final_epoch = self.stopper.monitor.best_epoch if restored else self.history[-1]["epoch"]
        self._checkpoint(self.folder / runs.MODEL_FILE, epoch=final_epoch)
        results = {"epochs_run": len(self.history), "seconds": round(time.perf_counter() - started, 3),
                   "monitor": self.best.name, "best_epoch": self.best.best_epoch,
                   "best_value": self.best.best,
                   "final": {k: v for k, v in self.history[-1].items() if k not in ("epoch", "seconds")}}
        if x_test is not None and y_test is not None:
            check_stop("the test evaluation")
            results["test"] = self.trainer.evaluate(x_test, y_test)
            report.line("Test: " + " - ".join(f"{k}: {v:.4f}" for k, v in results["test"].items()))
        check_stop("the diagnostics")
        report_diagnostics(self.folder, self.history, self.cfg, report.line)
        report.line(f"Saved {self.folder / runs.MODEL_FILE}")
        if plots:
            from mlpcli.plots import plot_runs

            check_stop("drawing the plots")
            drawn = plot_runs([self.folder])
            report.line(f"Plots: {len(drawn.written)} figures in {self.folder / runs.PLOTS_DIR}")
        check_stop(f"writing {runs.RESULTS_FILE}")
        files.write_text(self._target(self.folder / runs.RESULTS_FILE), json.dumps(results, indent=2) + "\n")
        return results

    def _train_epoch(self, x, y, epoch, epochs, stop):
        """(logs, learning rate at the epoch's start, seconds) of one (possibly resumed) epoch."""
        trainer = self.trainer
        t0 = time.perf_counter()
        done = trainer.progress.batch if trainer.progress else 0
        lr = trainer.schedule(trainer.step - done, trainer.epoch)
        bar = self.report.progress(epoch, epochs, math.ceil(len(x) / trainer.batch_size))
        if bar is not None and trainer.progress is not None:
            bar.update(trainer.progress.batch)

        def on_batch(done, total, running):
            bar.update(1)
            if done % 10 == 0 or done == total:
                bar.set_postfix({k: f"{v:.4f}" for k, v in running.items()}, refresh=False)

        try:
            logs = trainer.run_epoch(x, y, on_batch if bar is not None else None, stop)
        except EpochPaused as paused:
            path = self.save_state()
            raise self._interrupted(stop.signum, f"in epoch {epoch} after batch {paused.done} of "
                                                 f"{paused.total}", path) from None
        finally:
            if bar is not None:
                bar.close()
        return logs, lr, time.perf_counter() - t0

    def _end_epoch(self, epoch, epochs, logs, lr, seconds):
        """Log, checkpoint and decide on early stopping; return the saved state's path."""
        row = {"epoch": epoch, **logs, "lr": lr, "seconds": round(seconds, 3)}
        self.history.append(row)
        self.trainer.end_epoch(logs)
        self.report.line(_epoch_line(row, epochs))
        files.write_text(self.folder / runs.HISTORY_FILE, _history_csv(self.history))
        ckpt = self.cfg["checkpoint"]
        improved = self.best.update(epoch, logs)
        if ckpt["enabled"] and (improved or not ckpt["save_best_only"]):
            self._checkpoint(self.folder / runs.CHECKPOINTS_DIR / self._checkpoint_name(epoch, logs), epoch=epoch)
        if self.stopper and self.stopper.should_stop(epoch, logs):
            es = self.cfg["early_stopping"]
            self.report.line(f"Early stopping: {es['monitor']} did not improve for {self.stopper.wait} "
                             f"epochs (best {self.stopper.monitor.best:.4f} at epoch "
                             f"{self.stopper.monitor.best_epoch})")
            self.finished = True
        self.finished = self.finished or self.trainer.epoch >= epochs
        return self.save_state()

    def _interrupted(self, signum, where, path):
        name = signal.Signals(signum).name
        return Interrupted(f"{name} {where}; saved {path}\nResume with: mlp train --resume {self.folder}",
                           signum)


def _epoch_line(row, epochs):
    parts = [f"Epoch {row['epoch']}/{epochs}"]
    parts += [f"{k}: {v:.4f}" for k, v in row.items() if k not in ("epoch", "lr", "seconds")]
    parts += [f"lr: {row['lr']:.3g}", f"{row['seconds']:.1f}s"]
    return " - ".join(parts)


def _history_csv(history):
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(history[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return out.getvalue()
