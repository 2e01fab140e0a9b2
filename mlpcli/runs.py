"""Run folders: what they hold, how they are made, locked, found and resumed.

A run folder is ``<runs root>/<name>-<YYYYmmdd-HHMMSS>/``; ``<runs
root>/latest`` points at the newest run or sweep. A command given a run folder
resolves it once (``resolve_run_dir``) and works on the real folder, so a link
that moves meanwhile cannot redirect it; a command that uses a run's model
takes a sweep folder too, and uses its recommended trial (``model_folder``).
Its files are written atomically (``mlpcli.files``).
"""

import contextlib
import csv
import fcntl
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from mlpcli import files, fold_runs, sweep_folder
from mlpcli.errors import (
    ConfigError,
    FileSystemError,
    MlpError,
    os_error_text,
    printable,
)
from mlpcli.files import open_own_file, read_text, temporary_prefix

LOCK_FILE = ".lock"  # held by the process writing into a run or sweep folder
LATEST = "latest"

# What a run folder holds: the one place these names are spelled.
CONFIG_FILE = "config.yaml"  # the resolved config; a folder with one is a run
SUMMARY_FILE = "summary.txt"
PARAMS_FILE = "params.json"  # {"params": N}, written as training starts (compare reads runs under way)
HISTORY_FILE = "history.csv"
LOG_FILE = "train.log"
MODEL_FILE = "model.h5"
RESULTS_FILE = "results.json"  # written last: a run that has it finished
DIAGNOSTICS_FILE = "diagnostics.json"
CHECKPOINTS_DIR = "checkpoints"
MODEL_SUFFIX = ".h5"  # of model.h5, the checkpoints and the saved states
EVALUATION = "evaluation"  # evaluation[-<checkpoint>][-on-<data>].json, written by mlp evaluate
RESUME_DIR = "resume"
PLOTS_DIR = "plots"
REPORT_FILE = "report.html"  # written by mlp report, into a run folder or a sweep folder
TENSORBOARD_DIR = "tensorboard"  # TensorBoard's event files (logging.tensorboard)
MLFLOW_RUN_FILE = "mlflow.json"  # the MLflow run the run logs to (logging.mlflow), for --resume


class RunLock:
    """An exclusive lock on a folder while one process writes into it: a run folder while
    ``mlp train`` trains into it, a sweep folder while ``mlp sweep`` runs its trials.

    ``flock`` is released by the kernel when the process dies, even by SIGKILL,
    so a crashed run never leaves the folder locked. The lock is not passed on
    to programs the holder starts (the file is opened close-on-exec). The pid is
    written into the lock file itself, never through a link at its name.
    """

    def __init__(self, folder, command="mlp train", what="run"):
        self.path = Path(folder) / LOCK_FILE
        self.command, self.what = command, what
        self.fd = None

    def __enter__(self):
        try:
            self.fd = open_own_file(self.path, os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            hint = "is the folder writable?" if isinstance(exc, PermissionError) else "nothing was changed"
            raise FileSystemError(f"{os_error_text(exc, self.path)} (the lock of this {self.what}; "
                                  f"{hint})") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(self.fd)
            raise MlpError(f"{self.path.parent}: another `{self.command}` (pid {holder}) is writing to "
                           f"this {self.what}; wait for it to finish or stop it first") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


def new_run_dir(runs_root, name, run_dir=None, made=None, option="--run-dir"):
    """Create and return a fresh run folder.

    ``run_dir`` (the user's explicit choice, given with ``option``) may be anywhere but must be new
    or empty; otherwise ``<runs_root>/<name>-<timestamp>`` is created, with a
    numeric suffix when two runs start in the same second. The folders this
    call created are appended to ``made`` (for ``abandon_run_dir``).
    """
    made = [] if made is None else made
    if run_dir is not None:
        path = Path(run_dir)
        try:
            if path.exists() and not path.is_dir():
                raise MlpError(f"{path}: is a file, not a folder; choose a new {option}")
            if path.exists() and any(path.iterdir()):
                raise MlpError(f"{path}: already exists and is not empty; choose a new {option} "
                               "(nothing in it was changed)")
        except OSError as exc:
            raise _folder_error(path, exc) from None
        _make_folder(path, made)
        return path
    root = Path(runs_root)
    try:
        is_file = root.exists() and not root.is_dir()
    except OSError as exc:
        raise _folder_error(root, exc) from None
    if is_file:
        raise MlpError(f"{root}: is a file, not a folder for runs; choose another --runs-root")
    _make_folder(root, made)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        path = root / (f"{name}-{stamp}" if n == 1 else f"{name}-{stamp}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            abandon_run_dir(None, made)
            raise _folder_error(path, exc, "cannot create this folder: ") from None
        made.append(path)
        return path
    raise MlpError(f"{root}: could not create a new run folder for {name}-{stamp}")


def shown(path):
    """A path as text that can always be printed (bytes that are not UTF-8 as \\xNN)."""
    return printable(os.fsdecode(path))


def _folder_error(path, exc, what=""):
    """``Error: <path>: <what happened>`` for an OS refusal (exit 1, as every OS error)."""
    return FileSystemError(f"{shown(path)}: {what}{exc.strerror or exc}")


def _make_folder(path, made):
    """Make ``path`` and its missing parents, one at a time, recording each in ``made``."""
    try:
        for folder in reversed([path, *path.parents]):
            if not folder.is_dir():
                folder.mkdir()
                made.append(folder)
    except OSError as exc:
        abandon_run_dir(None, made)
        raise _folder_error(path, exc, "cannot create this folder: ") from None


def abandon_run_dir(path, made):
    """Take back a run that never started training: remove ``path`` (or, when it was
    an empty folder before, empty it again) and the parents in ``made`` that are
    still empty, so nothing half-made stays."""
    path = None if path is None else Path(path)
    if path is not None and path.is_dir() and not path.is_symlink():
        if path in made:
            shutil.rmtree(path, ignore_errors=True)
        else:
            for child in path.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        child.unlink()
    for folder in reversed(made):
        with contextlib.suppress(OSError):  # not empty: another run put its folder there meanwhile
            folder.rmdir()


def point_latest(runs_root, run_dir):
    """Make ``<runs_root>/latest`` a symlink to ``run_dir`` (replaced atomically).

    Returns None, or a warning when ``latest`` could not be pointed at the run:
    a real file or folder named ``latest`` is never replaced.
    """
    root = Path(runs_root)
    run_dir = Path(run_dir)
    link = root / LATEST
    if run_dir.resolve().parent != root.resolve():
        return None
    if (link.exists() or link.is_symlink()) and not link.is_symlink():
        kind = "folder" if link.is_dir() else "file"
        return (f"Warning: {link} is a {kind}, not a link mlp made, so it was left alone and does not "
                f"point at this run; rename it for `latest` to follow the newest run")
    tmp = root / f"{temporary_prefix()}{LATEST}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        tmp.symlink_to(run_dir.name, target_is_directory=True)
        os.replace(tmp, link)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return f"Warning: {link}: could not point it at this run ({exc.strerror or exc})"
    return None


def latest_run(runs_root):
    """The newest run or sweep under ``runs_root``: what ``latest`` names, else the newest
    folder holding a run (config.yaml) or a sweep (sweep.yaml)."""
    root = Path(runs_root)
    link = root / LATEST
    if link.is_symlink():
        if not link.exists():
            raise MlpError(f"{link}: points to {os.readlink(link)}, which does not exist; "
                           "give the run folder")
        return link
    if link.is_dir():  # a run made with --run-dir runs/latest
        return link
    if link.exists():
        raise MlpError(f"{link}: is a file, not a link to a run folder; give the run folder, or "
                       "remove the file")
    found = sorted((p for p in root.glob("*") if p.is_dir() and (
        (p / CONFIG_FILE).exists() or sweep_folder.is_sweep(p))), key=lambda p: p.stat().st_mtime)
    if not found:
        raise MlpError(f"{root}: no runs found; train one with `mlp train CONFIG` (or `mlp sweep CONFIG`)")
    return found[-1]


def resolve_run_dir(path=None, runs_root="runs", note=None):
    """The real folder of a run, resolved once through any links (``None``: the newest run).

    Every command that takes a run folder works on what this returns, so a
    link that moves meanwhile (``latest``, when another run starts) cannot
    redirect what it reads or writes. When a link was followed, ``note`` is
    called with one line saying where it led. A path that does not exist is
    returned as given, for the caller to say what it expected there.
    """
    given = Path(path) if path is not None else latest_run(runs_root)
    real = Path(os.path.realpath(given))
    if not real.exists():
        return given
    if real == Path(os.path.abspath(given)):
        return given
    here = Path.cwd()
    real = real.relative_to(here) if real.is_relative_to(here) else real
    if note is not None:
        note(f"Run folder: {shown(given)} -> {shown(real)}")
    return real


def model_folder(path=None, runs_root="runs", note=None):
    """The run folder whose model a command uses, resolved once (``resolve_run_dir``).

    ``path`` is a run folder, a sweep folder (its recommended trial is used, the one
    ``mlp compare`` recommends, and ``note`` is told which), or a model file a run
    holds (its model.h5 or a checkpoint: that run's folder); None is the newest run or
    sweep. A model file outside any run folder gives None.
    """
    folder = resolve_run_dir(path, runs_root, note)
    if folder.is_file():
        run = folder.parent.parent if folder.parent.name == CHECKPOINTS_DIR else folder.parent
        return run if (run / CONFIG_FILE).is_file() else None
    if not sweep_folder.is_sweep(folder):
        _refuse_folds_run(folder)
        return folder
    choice = recommended_trial(folder)
    trial = choice.recommended
    if note is not None:
        params = f"{trial.params:,} params" if trial.params is not None else "parameter count unknown"
        note(f"Sweep {shown(folder)}: using its recommended trial {trial.path.name} (best {choice.monitor} "
             f"{choice.score_of(trial):.4f}, {params}); give {shown(folder)}/trial-NNN for another")
    _refuse_folds_run(trial.path)
    return trial.path


def _refuse_folds_run(folder):
    """A cross-validation run has one model per fold and none of its own: which one to use is the
    user's choice, so a command that needs a model is told the folds rather than given one."""
    if (Path(folder) / MODEL_FILE).is_file():  # it has a model of its own: no YAML to read (`mlp predict`'s start-up)
        return
    from mlpcli.config_yaml import read_yaml

    try:
        cfg = read_yaml(Path(folder) / CONFIG_FILE)
    except ConfigError:
        return
    if fold_runs.folds_of(cfg):
        raise MlpError(f"{shown(folder)}: is a cross-validation run of {fold_runs.folds_of(cfg)} folds, with "
                       f"one model per fold and none of its own; give one fold's run folder, e.g. "
                       f"{shown(fold_runs.fold_dir(folder, 1))}{fold_runs.best_fold_note(folder, cfg)}")


def recommended_trial(sweep):
    """The ``ranking.Ranking`` of a sweep's finished trials (``RunRecord``s), as ``mlp compare``
    ranks them; its ``recommended`` is the trial to use. An error when none can be used."""
    from mlpcli import ranking

    sweep = Path(sweep)
    spec = sweep_folder.load_sweep_file(sweep)
    records = [read_record(sweep / t["name"]) for t in spec["trials"] if finished(sweep / t["name"])]
    if not records:
        raise MlpError(f"{shown(sweep)}: no trial of this sweep has finished yet, so it has no model "
                       f"to use; see {shown(sweep / sweep_folder.RESULTS_FILE)}, or give a trial's folder")
    monitor, mode = ranking.choose_monitor(records)
    choice = ranking.rank(records, monitor, mode)
    if choice.recommended is None:
        raise MlpError(f"{shown(sweep)}: no finished trial logged a finite {monitor}, so none can be "
                       "recommended; give a trial's folder")
    return choice


# ---------------------------------------------------------------- what a run holds

@dataclass
class RunRecord:
    """What ranking a run needs from its folder."""

    path: Path
    cfg: dict  # config.yaml as written ({} when it is missing or unreadable)
    history: dict | None  # {column: [values per epoch]}; None when history.csv cannot be read
    params: int | None
    error: str | None = None  # why history.csv could not be read
    folds: list | None = None  # a cross-validation run's fold histories (its history: their mean)


def read_record(folder):
    """The ``RunRecord`` of a run folder (its history, config and parameter count)."""
    from mlpcli.config_yaml import read_yaml
    from mlpcli.history import read_history

    folder = Path(folder)
    try:
        cfg = read_yaml(folder / CONFIG_FILE)
    except ConfigError:
        cfg = {}
    if fold_runs.folds_of(cfg):
        return _folds_record(folder, cfg, fold_runs.folds_of(cfg))
    try:
        history = read_history(folder / HISTORY_FILE)
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        return RunRecord(folder, cfg, None, None,
                         f"no readable {HISTORY_FILE} ({getattr(exc, 'strerror', None) or exc})")
    return RunRecord(folder, cfg, history, param_count(folder))


def _folds_record(folder, cfg, k):
    """The ``RunRecord`` of a cross-validation run: its folds' histories, and their mean over the
    epochs every fold ran as its history (for the curves compare draws)."""
    folds = [read_record(fold_runs.fold_dir(folder, fold)) for fold in range(1, k + 1)]
    broken = next((f for f in folds if f.history is None), None)
    if broken is not None:
        return RunRecord(folder, cfg, None, None, f"{broken.path.name}: {broken.error}")
    histories = [f.history for f in folds]
    return RunRecord(folder, cfg, fold_runs.mean_history(histories), param_count(folder), folds=histories)


def finished(run_dir):
    """Whether a folder holds a finished run (train writes results.json last but for the
    diagnostics and plots; a cross-validation run, its summary after all its folds)."""
    return (Path(run_dir) / RESULTS_FILE).is_file() or fold_runs.finished(run_dir)


def read_json(path):
    """The JSON value in one of a run's files (results.json, params.json, an evaluation report);
    ``OSError`` or ``UnicodeDecodeError`` as ``files.read_text`` raises them, ``ValueError``
    when it is not JSON, also when it nests too deeply for the parser (a RecursionError)."""
    text = read_text(path)
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"{shown(path)}: JSON nested too deeply") from None


def write_param_count(folder, count):
    """Store the model's parameter count as a number, for compare and sweeps to read."""
    files.write_text(Path(folder) / PARAMS_FILE, json.dumps({"params": int(count)}) + "\n")


def param_count(folder):
    """A run's parameter count: the number stored when it started training, else (a run made
    before mlp stored it) counted from its model.h5 or a checkpoint, else None."""
    try:
        stored = read_json(Path(folder) / PARAMS_FILE)
        count = stored["params"]
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
            return count
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError):
        pass
    return _counted_params(Path(folder))


def _counted_params(folder):
    """The parameter count of the first of the run's model files that loads (they share one
    architecture): model.h5, else a checkpoint."""
    from mlpcli import modelfile

    checkpoints = folder / CHECKPOINTS_DIR
    checkpoints = sorted(checkpoints.glob(f"*{MODEL_SUFFIX}")) if checkpoints.is_dir() else []
    for path in [folder / MODEL_FILE, *checkpoints]:
        if path.is_file():
            with contextlib.suppress(MlpError):
                return modelfile.load(path).model.count_params()
    return None


def run_config(run_dir):
    """The run's config.yaml, checked as ``mlp train`` checks a config."""
    from mlpcli import config as config_mod

    path = Path(run_dir) / CONFIG_FILE
    raw = config_mod.read_yaml(path)
    try:
        return config_mod.resolve(raw)
    except ConfigError as exc:
        raise ConfigError([f"{path}: {p}" for p in exc.problems]) from None
