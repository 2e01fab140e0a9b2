"""The ``train`` stage: config -> data -> model -> epochs -> run folder.

Writes into a new run folder: ``config.yaml`` (resolved), ``summary.txt``,
``params.json``, ``history.csv``, ``checkpoints/*.h5``, ``model.h5``, ``results.json``,
``diagnostics.json``, ``train.log`` and the curves in ``plots/``; as ``logging:`` asks,
``tensorboard/`` (``mlpcli.tracking_tensorboard``) and ``mlflow.json`` (``mlpcli.tracking_mlflow``).
"""

import contextlib
import math
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from mlpcli import config as config_mod
from mlpcli import cross_validation, files, fold_runs, pipeline, runs, sweep_folder
from mlpcli.callbacks import (
    Checkpoints,
    Diagnostics,
    EarlyStopping,
    FinalMetrics,
    HistoryFile,
    LearningRateSchedule,
    NanGuard,
    Plots,
    ProgressReport,
    TestEvaluation,
)
from mlpcli.data import augment
from mlpcli.errors import Interrupted, MlpError, os_error_text, printable
from mlpcli.files import open_own_file
from mlpcli.fit_loop import FitLoop, SetupInterrupted, StopRequest
from mlpcli.init_from import copy_matching, source_file
from mlpcli.resume_states import ResumeStates
from mlpcli.trainer import Trainer, blas_threads, build_model, random_streams
from mlpcli.training_data import prepare_data
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


def train(config_path=None, overrides=(), *, resume=None, runs_root="runs", run_dir=None,
          dry_run=False, quiet=False, plots=True, echo=print, init_from=None, callbacks=()):
    """Train the model described by the config file (or continue the run ``resume``);
    ``init_from`` (a run or sweep folder, or a model file) gives a new run its first weights;
    ``callbacks`` join the run's own (a sweep's pruning), after early stopping."""
    if (config_path is None) == (resume is None):
        raise MlpError("give a CONFIG file to start a run, or --resume RUN_DIR to continue one")
    if resume is not None and init_from is not None:
        raise MlpError("--init-from starts a new run from a trained model's weights, and --resume "
                       "continues a run from its own saved state; give one of them")
    report = Reporter(echo, quiet)
    if resume is not None:
        resume = runs.resolve_run_dir(resume, note=report.line)
    notes = []  # what the config did not say but the data did
    cfg = _resume_config(resume, overrides, report) if resume else \
        config_mod.load_config(config_path, overrides, note=notes.append)
    if init_from is not None:
        cfg["init_from"] = config_mod.absolute_path(init_from)
    streams = random_streams(cfg["seed"])
    model = build_model(cfg, streams)
    summary = model.summary()
    if dry_run:
        for text in notes:
            echo(text)
        echo(config_mod.dump_yaml(cfg).rstrip())
        echo(summary)
        return TrainResult(None, [], {})

    if fold_runs.folds_of(cfg):
        return _cross_validate(cfg, model.count_params(), report, resume, overrides, runs_root, run_dir,
                               plots, echo)
    with blas_threads(cfg["training"]["threads"]), StopRequest() as stop:
        if resume:
            return _guarded_setup(stop, lambda: _train(cfg, model, streams, summary, report, resume, stop,
                                                       plots, callbacks=callbacks),
                                  f"; resume again with: mlp train --resume {resume}")
        made, folder = [], None

        def new_run():
            nonlocal folder
            # made before the data is loaded, so a name the file system refuses fails early
            folder = runs.new_run_dir(runs_root, cfg["name"], run_dir, made)
            return _train(cfg, model, streams, summary, report, folder, stop, plots, runs_root, notes, callbacks)

        try:
            return _guarded_setup(stop, new_run, "; the new run folder was removed")
        except BaseException:
            if not stop.training:  # nothing half-made stays behind
                runs.abandon_run_dir(folder, made)
            raise


def _cross_validate(cfg, params, report, resume, overrides, runs_root, run_dir, plots, echo):
    """A cross-validation run (``mlpcli.cross_validation``): a new one, or ``resume``'s folds."""
    def train_fold(config_path, fold_overrides, run_dir=None, resume=None):
        train(config_path, fold_overrides, resume=resume, run_dir=run_dir, quiet=report.quiet, plots=plots,
              echo=echo)

    if resume:
        summary = cross_validation.run_folds(cfg, resume, train_fold, report, overrides)
        return TrainResult(resume, [], summary)
    made = []
    folder = runs.new_run_dir(runs_root, cfg["name"], run_dir, made)
    try:
        files.write_text(folder / runs.CONFIG_FILE, config_mod.dump_yaml(cfg))
        runs.write_param_count(folder, params)
        report.line(f"Run folder: {folder} (cross-validation, {cfg['training']['folds']} folds)")
        summary = cross_validation.run_folds(cfg, folder, train_fold, report, runs_root=runs_root)
    except BaseException as exc:
        if not fold_runs.fold_dir(folder, 1).exists():  # no fold started training: nothing to keep
            runs.abandon_run_dir(folder, made)
            if isinstance(exc, Interrupted):  # not "resume": there is no run left to resume
                raise Interrupted(f"{signal.Signals(exc.exit_code - 128).name} before training started; the new "
                                  "run folder was removed", exc.exit_code - 128) from None
            raise
        _point_latest(runs_root, folder, report)
        raise
    _point_latest(runs_root, folder, report)
    return TrainResult(folder, [], summary)


def _point_latest(runs_root, folder, report):
    """``latest`` moves to a cross-validation run once it is kept: after its folds, or when stopped."""
    warning = runs.point_latest(runs_root, folder)
    if warning:
        report.warn(warning)


def _guarded_setup(stop, run, outcome):
    """``run()``, turning a signal that came before training started into ``Interrupted``."""
    try:
        return run()
    except SetupInterrupted as exc:
        name = signal.Signals(exc.signum).name
        raise Interrupted(f"{name} before training started{outcome}", exc.signum) from None


def _train(cfg, model, streams, summary, report, folder, stop, plots, runs_root=None, notes=(), callbacks=()):
    """Train into ``folder``: the run to resume, or (with ``runs_root``) a new, empty one;
    ``notes`` are printed and logged after the run folder's name."""
    with runs.RunLock(folder), report.logging_to(folder / runs.LOG_FILE):
        started_from = []
        if runs_root is not None and cfg["init_from"] is not None:  # before anything copies the weights
            source = source_file(cfg["init_from"], note=started_from.append)
            started_from += [f"Weights from {source}:", *copy_matching(model, source)]
            cfg["init_from"] = str(source)  # the file itself, which a sweep's recommendation or latest may not stay
        tensorboard, mlflow = _trackers(cfg, folder, summary, runs_root, report)
        data = prepare_data(cfg, model, streams["split"], progress=report.line)
        n_train = len(data.train[0])
        check_memory(cfg, model, n_train)  # a batch of this data, before training allocates it
        config_mod.check_monitors(cfg, data.val[0] is not None)
        trainer = Trainer(model, cfg, streams, math.ceil(n_train / cfg["training"]["batch_size"]),
                          data.train_weights, augment.from_config(cfg, data.feature_shape))
        model_extras = {"config": cfg, "pipeline": pipeline.from_training(
            cfg, data.preprocessing, data.class_names, data.feature_shape, data.table)}
        history_file = HistoryFile(folder)
        resume_states = ResumeStates(cfg, folder, report, n_train, model_extras)
        loop = FitLoop(trainer, cfg["training"]["epochs"], [
            NanGuard(trainer),
            LearningRateSchedule(trainer.schedule),
            ProgressReport(report, math.ceil(n_train / trainer.batch_size)),
            history_file,
            *tensorboard,
            *_early_stopping(cfg, model, report),
            *callbacks,
            Checkpoints(cfg, trainer, folder, model_extras, report),
            resume_states,  # after every callback that changes in an epoch, so that it saves what they did
            FinalMetrics(),
            *([TestEvaluation(*data.test, report)] if data.test[0] is not None and data.test[1] is not None else []),
            Diagnostics(cfg, folder, report, {"train": n_train, "validation": 0 if data.val[0] is None else len(data.val[0])}),
            *([Plots(folder, report)] if plots else []),
            *mlflow,  # last: its artifacts are the files the others write
        ], stop, folder)
        if runs_root is None:
            resume_states.resume(history_file)
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
            for text in started_from:
                report.line(text)
        report.line(f"Training on {n_train} samples, validating on "
                    f"{0 if data.val[0] is None else len(data.val[0])}")
        # as a number, for compare and sweeps to rank this run by, while it trains too
        runs.write_param_count(folder, model.count_params())
        loop.fit(data.train, data.val)
        results = loop.finish()
    return TrainResult(folder, loop.history, results)


def _trackers(cfg, folder, summary, runs_root, report):
    """(TensorBoard callbacks, MLflow callbacks), each a list of none or one, as ``logging:`` asks;
    a tracker's package is imported only when it is on (a missing one is refused before training)."""
    tensorboard, mlflow = [], []
    if cfg["logging"]["tensorboard"]:
        from mlpcli.tracking_tensorboard import TensorBoardLog

        tensorboard.append(TensorBoardLog(folder, summary, cfg))
        report.line(f"TensorBoard: {folder / runs.TENSORBOARD_DIR} (view: tensorboard --logdir {folder.parent})")
    if cfg["logging"]["mlflow"] is not None:
        from mlpcli.tracking_mlflow import MlflowLog

        mlflow.append(MlflowLog(cfg, folder, runs_root, report.warn, report.line))
    return tensorboard, mlflow


def _early_stopping(cfg, model, report):
    """The early-stopping callback the config asks for, as a list of none or one."""
    es = cfg["early_stopping"]
    if not es:
        return []
    return [EarlyStopping(model, es["monitor"], es["patience"], es["min_delta"], es["mode"],
                          es["restore_best_weights"], report)]


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
