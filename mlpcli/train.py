"""The ``train`` stage: config -> data -> model -> epochs -> run folder.

Writes into a new run folder: ``config.yaml`` (resolved), ``summary.txt``,
``history.csv``, ``checkpoints/*.h5``, ``model.h5``, ``results.json``,
``diagnostics.json``, ``train.log`` and the curves in ``plots/``.
"""

import csv
import io
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlpcli import config as config_mod
from mlpcli import modelfile, runs
from mlpcli.data import load_dataset, stratified_split
from mlpcli.data.features import Features
from mlpcli.diagnostics import report_diagnostics
from mlpcli.errors import DataError, Interrupted, MlpError, ModelFileError, TrainingError
from mlpcli.training import (EarlyStopping, EpochPaused, Monitor, Trainer, blas_threads, build_model,
                             random_streams)
from mlpcli.training_memory import check_memory

RESUME_DIR = "resume"


@dataclass
class TrainResult:
    run_dir: Path | None
    history: list
    results: dict


class Reporter:
    """Prints lines (unless quiet) and copies them to the run's log file."""

    def __init__(self, echo, quiet):
        self.echo = echo
        self.quiet = quiet
        self.log = None

    def line(self, text=""):
        if not self.quiet:
            self.echo(text)
        if self.log:
            self.log.write(text + "\n")
            self.log.flush()

    def progress(self, epoch, epochs, batches):
        """A tqdm bar for one epoch, or None when output is not a terminal."""
        if self.quiet or not sys.stderr.isatty():
            return None
        from tqdm import tqdm

        return tqdm(total=batches, desc=f"Epoch {epoch}/{epochs}", unit="batch", leave=False,
                    dynamic_ncols=True)


def train(config_path=None, overrides=(), *, resume=None, runs_root="runs", run_dir=None,
          dry_run=False, quiet=False, plots=True, echo=print):
    """Train the model described by the config file (or continue the run ``resume``)."""
    if (config_path is None) == (resume is None):
        raise MlpError("give a CONFIG file to start a run, or --resume RUN_DIR to continue one")
    resume = Path(resume) if resume is not None else None
    cfg = _resume_config(resume, overrides) if resume else config_mod.load_config(config_path, overrides)
    report = Reporter(echo, quiet)
    streams = random_streams(cfg["seed"])
    model = build_model(cfg, streams)
    summary = model.summary()
    if dry_run:
        echo(config_mod.dump_yaml(cfg).rstrip())
        echo(summary)
        return TrainResult(None, [], {})

    with blas_threads(cfg["training"]["threads"]):
        return _train(cfg, model, streams, summary, report, resume, runs_root, run_dir, plots)


def _train(cfg, model, streams, summary, report, resume, runs_root, run_dir, plots):
    # features stay as stored (uint8 for images) and are scaled a batch at a time, to keep memory low
    data = load_dataset(cfg["data"], task=cfg["task"], progress=report.line, scale=False)
    x_train, y_train, x_val, y_val = _split(cfg, data, streams["split"])
    x_train, x_val, x_test = (_fit_input(x, model, data.preprocessing, part) for x, part in
                              ((x_train, "training"), (x_val, "validation"), (data.x_test, "test")))
    data.x_train = data.x_val = data.x_test = None
    for y, part in ((y_train, "training"), (y_val, "validation"), (data.y_test, "test")):
        _check_targets(y, model, cfg, part)
    check_memory(cfg, model, len(x_train))  # a batch of this data, before the run folder is made
    config_mod.check_monitors(cfg, x_val is not None)

    folder = resume or runs.new_run_dir(runs_root, cfg["name"], run_dir)
    with runs.RunLock(folder), open(folder / "train.log", "a", encoding="utf-8") as log:
        report.log = log
        session = Session(cfg, model, streams, data, folder, report,
                          math.ceil(len(x_train) / cfg["training"]["batch_size"]))
        if resume:
            session.resume()
        else:
            runs.point_latest(runs_root, folder)
            (folder / "checkpoints").mkdir()
            report.line(f"Run folder: {folder}")
            report.line(summary)
        runs.write_text(folder / "config.yaml", config_mod.dump_yaml(cfg))
        runs.write_text(folder / "summary.txt", summary + "\n")
        report.line(f"Training on {len(x_train)} samples, validating on "
                    f"{0 if x_val is None else len(x_val)}")
        results = session.fit((x_train, y_train), (x_val, y_val), (x_test, data.y_test), plots)
    return TrainResult(folder, session.history, results)


def _resume_config(folder, overrides):
    if not folder.is_dir():
        raise MlpError(f"--resume {folder}: no such run folder")
    if not (folder / "config.yaml").exists():
        raise MlpError(f"--resume {folder}: not a run folder (no config.yaml)")
    try:
        return config_mod.load_config(folder / "config.yaml", overrides)
    except config_mod.ConfigError as exc:
        raise config_mod.ConfigError([f"{folder / 'config.yaml'} no longer validates, so the run "
                                      "cannot be resumed:"] + exc.problems) from None


def _split(cfg, data, rng):
    """Training and validation arrays: explicit validation data, or a stratified split."""
    if data.x_val is not None:
        return data.x_train, data.y_train, data.x_val, data.y_val
    fraction = cfg["data"]["validation_split"]
    if not fraction:
        return data.x_train, data.y_train, None, None
    train_idx, val_idx = stratified_split(data.y_train, fraction, rng)
    return data.x_train[train_idx], data.y_train[train_idx], data.x_train[val_idx], data.y_train[val_idx]


def _fit_input(x, model, preprocessing, part):
    """The features as the model sees them (scaled a batch at a time, in the model's
    input_shape), or an explanation of why they do not fit."""
    if x is None:
        return None
    if len(x) == 0:
        raise DataError(f"the {part} data is empty")
    want = model.input_shape
    if int(np.prod(x.shape[1:])) != int(np.prod(want)):
        raise DataError(f"the {part} data has samples of shape {tuple(x.shape[1:])} "
                        f"({int(np.prod(x.shape[1:]))} values) but model.input_shape is "
                        f"{list(want)}; set model.input_shape to match the data")
    return Features(x, preprocessing, want)


def _check_targets(y, model, cfg, part):
    if y is None:
        return
    outputs = model.n_outputs
    if cfg["task"] == "classification":
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"the {part} labels are not class indices; for numeric targets set task: regression")
        n_classes = 2 if outputs == 1 else outputs
        if y.min() < 0 or y.max() >= n_classes:
            raise DataError(f"the {part} labels range over {int(y.min())}..{int(y.max())} but the model "
                            f"has {outputs} output(s), i.e. {n_classes} classes; make the last dense "
                            f"layer's units match the number of classes")
    else:
        width = 1 if y.ndim == 1 else int(np.prod(y.shape[1:]))
        if width != outputs:
            raise DataError(f"the {part} targets have {width} value(s) per sample but the model has "
                            f"{outputs} output(s)")


class StopRequest:
    """While active, the first SIGINT/SIGTERM asks training to stop after the current
    batch; a second one ends the process at once (the files on disk stay complete,
    since each is written atomically)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum = None
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:
            os._exit(128 + signum)
        self.signum = signum

    def __call__(self):
        return self.signum is not None

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class Session:
    """One training run's moving parts, and how they are saved and restored."""

    def __init__(self, cfg, model, streams, data, folder, report, steps_per_epoch):
        self.cfg, self.model, self.folder, self.report = cfg, model, folder, report
        self.trainer = Trainer(model, cfg, streams, steps_per_epoch)
        ckpt = cfg["checkpoint"]
        self.best = Monitor(ckpt["monitor"], ckpt["mode"])
        es = cfg["early_stopping"]
        self.stopper = EarlyStopping(model, es["monitor"], es["patience"], es["min_delta"], es["mode"],
                                     es["restore_best_weights"]) if es else None
        self.extras = {"config": cfg, "class_names": data.class_names,
                       "preprocessing": {**data.preprocessing, "input_shape": list(model.input_shape)}}
        self.history = []
        self.finished = False

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
        folder = self.folder / RESUME_DIR
        folder.mkdir(exist_ok=True)
        p = self.trainer.progress
        name = f"epoch-{self.trainer.epoch:04d}" + (f"-batch-{p.batch:06d}" if p else "") + ".h5"
        modelfile.save(folder / name, self.model, loss=self.cfg["loss"], optimizer=self.trainer.optimizer,
                       state=state, arrays=arrays, **self.extras)
        for old in _resume_files(self.folder)[2:]:
            old.unlink()
        return folder / name

    def resume(self):
        """Restore the newest valid state in ``resume/``, falling back past damaged ones."""
        removed = runs.remove_stale_temporaries(self.folder)
        if removed:
            self.report.line(f"Removed {removed} temporary file(s) left by an interrupted run")
        for path in _resume_files(self.folder):
            try:
                saved = modelfile.load(path)
                self._restore(saved)
            except (ModelFileError, KeyError, TypeError, ValueError) as exc:
                self.report.line(f"Warning: {path} is not a usable checkpoint ({exc}); trying an older one")
                continue
            self.report.line(f"Resuming {self.folder} from {path.name} (epoch {self.trainer.epoch}"
                             + (f", batch {self.trainer.progress.batch}" if self.trainer.progress else "")
                             + ")")
            runs.write_text(self.folder / "history.csv", _history_csv(self.history) if self.history else "")
            return
        raise MlpError(f"{self.folder}: no valid checkpoint in {RESUME_DIR}/ to resume from; "
                       "start a new run instead (nothing was changed)")

    def _restore(self, saved):
        state = saved.state
        if "trainer" not in state:
            raise KeyError("no training state")
        epochs = self.cfg["training"]["epochs"]
        if state["finished"] and epochs <= state["epochs"]:
            raise MlpError(f"{self.folder}: this run already finished ({state['trainer']['epoch']} "
                           f"epochs); to train further, extend it with --set training.epochs=N "
                           f"(N > {state['epochs']})")
        self.model.set_weights(saved.model.params)
        self.trainer.optimizer.set_state(saved.optimizer_state)
        self.trainer.set_state(state["trainer"], saved.arrays)
        self.best.set_state(state["checkpoint_monitor"])
        if self.stopper and state["early_stopping"]:
            self.stopper.set_state(state["early_stopping"], saved.arrays)
        self.history = state["history"]

    def _checkpoint(self, path, **state):
        modelfile.save(path, self.model, loss=self.cfg["loss"], optimizer=self.trainer.optimizer,
                       metrics=[m["type"] for m in self.cfg["metrics"]], state=state, **self.extras)

    # -- the loop ------------------------------------------------------------------------

    def fit(self, train_set, val_set, test_set, plots):
        (x, y), (x_val, y_val), (x_test, y_test) = train_set, val_set, test_set
        cfg, trainer, report = self.cfg, self.trainer, self.report
        epochs = cfg["training"]["epochs"]
        started = time.perf_counter()
        with StopRequest() as stop:
            while trainer.epoch < epochs and not self.finished:
                epoch = trainer.epoch + 1
                logs, lr, seconds = self._train_epoch(x, y, epoch, epochs, stop)
                if x_val is not None:
                    logs.update({f"val_{k}": v for k, v in trainer.evaluate(x_val, y_val).items()})
                if not trainer.weights_finite():
                    raise TrainingError(f"weights became NaN or infinite in epoch {epoch}; training "
                                        "stopped, the last finite checkpoint is kept")
                path = self._end_epoch(epoch, epochs, logs, lr, seconds)
                if stop():
                    raise self._interrupted(stop.signum, f"after epoch {epoch}", path)
        restored = self.stopper.restore() if self.stopper else False
        if restored and self.stopper.monitor.best_epoch != self.history[-1]["epoch"]:
            report.line(f"Restored the weights of epoch {self.stopper.monitor.best_epoch}")
        final_epoch = self.stopper.monitor.best_epoch if restored else self.history[-1]["epoch"]
        self._checkpoint(self.folder / "model.h5", epoch=final_epoch)
        results = {"epochs_run": len(self.history), "seconds": round(time.perf_counter() - started, 3),
                   "monitor": self.best.name, "best_epoch": self.best.best_epoch,
                   "best_value": self.best.best,
                   "final": {k: v for k, v in self.history[-1].items() if k not in ("epoch", "seconds")}}
        if x_test is not None and y_test is not None:
            results["test"] = trainer.evaluate(x_test, y_test)
            report.line("Test: " + " - ".join(f"{k}: {v:.4f}" for k, v in results["test"].items()))
        runs.write_text(self.folder / "results.json", json.dumps(results, indent=2) + "\n")
        report_diagnostics(self.folder, self.history, cfg, report.line)
        report.line(f"Saved {self.folder / 'model.h5'}")
        if plots:
            from mlpcli.plots import plot_runs

            drawn = plot_runs([self.folder])
            report.line(f"Plots: {len(drawn.written)} figures in {self.folder / 'plots'}")
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
        runs.write_text(self.folder / "history.csv", _history_csv(self.history))
        ckpt = self.cfg["checkpoint"]
        improved = self.best.update(epoch, logs)
        if ckpt["enabled"] and (improved or not ckpt["save_best_only"]):
            self._checkpoint(self.folder / "checkpoints" / ckpt["filename"].format(epoch=epoch, **logs),
                             epoch=epoch)
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


def _resume_files(folder):
    """The run's saved states, newest first: by epochs done, then batches into the next."""
    def progress(path):
        parts = path.stem.split("-")  # epoch-0003 or epoch-0003-batch-000120
        return int(parts[1]), int(parts[3]) if len(parts) == 4 else -1

    return sorted((folder / RESUME_DIR).glob("epoch-*.h5"), key=progress, reverse=True)


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
