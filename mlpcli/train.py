"""The ``train`` stage: config -> data -> model -> epochs -> run folder.

Writes into a new run folder: ``config.yaml`` (resolved), ``summary.txt``,
``params.json``, ``history.csv``, ``checkpoints/*.h5``, ``model.h5``, ``results.json``,
``diagnostics.json``, ``train.log`` and the curves in ``plots/``.
"""

import contextlib
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlpcli import config as config_mod
from mlpcli import files, runs, sweep_folder
from mlpcli.data import load_dataset, stratified_split
from mlpcli.data.features import Features
from mlpcli.errors import DataError, Interrupted, MlpError, os_error_text, printable
from mlpcli.files import open_own_file
from mlpcli.session import Session, SetupInterrupted, StopRequest
from mlpcli.training import blas_threads, build_model, random_streams
from mlpcli.training_memory import check_memory


@dataclass
class TrainResult:
    run_dir: Path | None
    history: list
    results: dict


class Reporter:
    """Prints lines (unless quiet) and appends them to the run's ``train.log``.

    The log is a copy of what is printed. When it cannot be opened or appended to
    (a full disk, a read-only file, a link, which is never written through), one warning on stderr says so and training goes
    on without it: the run's own files are written atomically and fail cleanly by
    themselves, and stopping hours of training for a copy of the output would lose more.
    """

    def __init__(self, echo, quiet):
        self.echo = echo
        self.quiet = quiet
        self.log = None
        self.log_path = None

    @contextlib.contextmanager
    def logging_to(self, path):
        """Append every line to ``path`` meanwhile."""
        self.log_path = path
        try:
            fd = open_own_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            self.log = os.fdopen(fd, "a", encoding="utf-8")
        except OSError as exc:
            self._stop_logging(exc)
        try:
            yield self
        finally:
            if self.log is not None:
                with contextlib.suppress(OSError):
                    self.log.close()
            self.log = None

    def line(self, text=""):
        if not self.quiet:
            self.echo(text)
        self._append(text)

    def warn(self, text):
        """A warning: on stderr even with --quiet, and in the log."""
        print(printable(text), file=sys.stderr)
        self._append(text)

    def _append(self, text):
        if self.log is not None:
            try:
                self.log.write(printable(text) + "\n")
                self.log.flush()
            except OSError as exc:
                self._stop_logging(exc)

    def _stop_logging(self, exc):
        if self.log is not None:
            with contextlib.suppress(OSError):
                self.log.close()  # flushing what is left fails the same way
            self.log = None
        print(printable(f"Warning: {os_error_text(exc, self.log_path)}; the log stops here "
                        "(training goes on and its other files are written as before)"),
              file=sys.stderr)

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
    report = Reporter(echo, quiet)
    if resume is not None:
        resume = runs.resolve_run_dir(resume, note=report.line)
    notes = []  # what the config did not say but the data did
    cfg = _resume_config(resume, overrides, report) if resume else \
        config_mod.load_config(config_path, overrides, note=notes.append)
    streams = random_streams(cfg["seed"])
    model = build_model(cfg, streams)
    summary = model.summary()
    if dry_run:
        for text in notes:
            echo(text)
        echo(config_mod.dump_yaml(cfg).rstrip())
        echo(summary)
        return TrainResult(None, [], {})

    with blas_threads(cfg["training"]["threads"]), StopRequest() as stop:
        if resume:
            return _guarded_setup(stop, lambda: _train(cfg, model, streams, summary, report, resume, stop,
                                                       plots), f"; resume again with: mlp train --resume {resume}")
        made, folder = [], None

        def new_run():
            nonlocal folder
            # made before the data is loaded, so a name the file system refuses fails early
            folder = runs.new_run_dir(runs_root, cfg["name"], run_dir, made)
            return _train(cfg, model, streams, summary, report, folder, stop, plots, runs_root, notes)

        try:
            return _guarded_setup(stop, new_run, "; the new run folder was removed")
        except BaseException:
            if not stop.training:  # nothing half-made stays behind
                runs.abandon_run_dir(folder, made)
            raise


def _guarded_setup(stop, run, outcome):
    """``run()``, turning a signal that came before training started into ``Interrupted``."""
    try:
        return run()
    except SetupInterrupted as exc:
        name = signal.Signals(exc.signum).name
        raise Interrupted(f"{name} before training started{outcome}", exc.signum) from None


def _train(cfg, model, streams, summary, report, folder, stop, plots, runs_root=None, notes=()):
    """Train into ``folder``: the run to resume, or (with ``runs_root``) a new, empty one;
    ``notes`` are printed and logged after the run folder's name."""
    with runs.RunLock(folder), report.logging_to(folder / runs.LOG_FILE):
        # features stay as stored (uint8 for images) and are scaled a batch at a time, to keep memory low
        data = load_dataset(cfg["data"], task=cfg["task"], progress=report.line, scale=False)
        # labels are checked against the model's classes before the split, which sorts them
        _check_classes(data.class_names, model, cfg)
        for y, part in ((data.y_train, "training"), (data.y_val, "validation"), (data.y_test, "test")):
            _check_targets(y, model, cfg, part)
        x_train, y_train, x_val, y_val = _split(cfg, data, streams["split"])
        feature_shape = x_train.shape[1:]
        x_train, x_val, x_test = (_fit_input(x, model, data.preprocessing, part) for x, part in
                                  ((x_train, "training"), (x_val, "validation"), (data.x_test, "test")))
        data.x_train = data.x_val = data.x_test = None
        check_memory(cfg, model, len(x_train))  # a batch of this data, before training allocates it
        config_mod.check_monitors(cfg, x_val is not None)
        session = Session(cfg, model, streams, data, feature_shape, folder, report, len(x_train))
        if runs_root is None:
            session.resume()
        else:
            (folder / runs.CHECKPOINTS_DIR).mkdir()
        files.write_text(folder / runs.CONFIG_FILE, config_mod.dump_yaml(cfg))
        files.write_text(folder / runs.SUMMARY_FILE, summary + "\n")
        # from here a signal no longer takes the run back but stops it after a batch, saved;
        # so `latest` (only ever a run with its config.yaml) moves after this, never to a
        # folder that a signal removes
        stop.start_training()
        if runs_root is not None:
            warning = runs.point_latest(runs_root, folder)
            report.line(f"Run folder: {folder}")
            for text in notes:
                report.line(text)
            if warning:
                report.warn(warning)
            report.line(summary)
        report.line(f"Training on {len(x_train)} samples, validating on "
                    f"{0 if x_val is None else len(x_val)}")
        results = session.fit((x_train, y_train), (x_val, y_val), (x_test, data.y_test), plots, stop)
    return TrainResult(folder, session.history, results)


def _resume_config(folder, overrides, report):
    """The run's config with ``overrides`` applied, once they are known to fit its saved state."""
    if not folder.is_dir():
        raise MlpError(f"--resume {folder}: no such run folder")
    if sweep_folder.is_sweep(folder):
        raise MlpError(f"--resume {folder}: is a sweep folder, not a run folder; continue its "
                       f"unfinished trials with: mlp sweep --resume {folder}")
    if not (folder / runs.CONFIG_FILE).exists():
        raise MlpError(f"--resume {folder}: not a run folder (no {runs.CONFIG_FILE})")
    try:
        saved = config_mod.load_config(folder / runs.CONFIG_FILE)
    except config_mod.ConfigError as exc:
        raise config_mod.ConfigError([f"{folder / runs.CONFIG_FILE} no longer validates, so the run "
                                      "cannot be resumed:"] + exc.problems) from None
    cfg = config_mod.load_config(folder / runs.CONFIG_FILE, overrides)
    for key, old, new in config_mod.resume_changes(saved, cfg):
        if key in config_mod.ROUNDING_KEYS:
            report.line(f"Note: {key} changes from {_yaml_value(old)} to {_yaml_value(new)}; the sums round differently, so the "
                        "rest of the run will not match an uninterrupted run bit for bit")
    return cfg


def _yaml_value(value):
    return "null" if value is None else value


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


def _check_classes(class_names, model, cfg):
    """A dataset that names its classes (string labels, image folders, MNIST) needs one output
    per class, or one sigmoid output for two: an extra output is a class that never occurs,
    which predict would still offer."""
    if cfg["task"] != "classification" or not class_names:
        return
    outputs, count = model.n_outputs, len(class_names)
    if outputs == count or (outputs == 1 and count == 2):
        return
    shown = ", ".join(map(str, class_names[:6])) + (", ..." if count > 6 else "")
    key = f"model.layers[{config_mod.last_dense_index(cfg['model']['layers'])}].units"
    raise config_mod.ConfigError(f"{key}: the data has {count} classes ({shown}) but the output layer has "
                                 f"{outputs} unit(s); set it to {count}"
                                 + (" (or 1 with a sigmoid and binary_crossentropy)" if count == 2 else ""))


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


