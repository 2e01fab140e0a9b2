"""Run folders: what they hold, how they are made, locked, found and resumed.

A run folder is ``<runs root>/<name>-<YYYYmmdd-HHMMSS>/``; ``<runs
root>/latest`` points at the newest. A command given a run folder resolves it
once (``resolve_run_dir``) and works on the real folder, so a link that moves
meanwhile cannot redirect it. Its files are written atomically (``mlpcli.files``).
"""

import contextlib
import fcntl
import os
import re
import shutil
import time
from pathlib import Path

from mlpcli.errors import FileSystemError, MlpError, os_error_text, printable
from mlpcli.files import TMP_PREFIX, open_own_file, read_text, temporary_prefix

LOCK_FILE = ".lock"  # held by the process writing into a run or sweep folder
LATEST = "latest"

# What a run folder holds: the one place these names are spelled.
CONFIG_FILE = "config.yaml"  # the resolved config; a folder with one is a run
SUMMARY_FILE = "summary.txt"
HISTORY_FILE = "history.csv"
LOG_FILE = "train.log"
MODEL_FILE = "model.h5"
RESULTS_FILE = "results.json"  # written last: a run that has it finished
DIAGNOSTICS_FILE = "diagnostics.json"
CHECKPOINTS_DIR = "checkpoints"
RESUME_DIR = "resume"
PLOTS_DIR = "plots"


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


def new_run_dir(runs_root, name, run_dir=None, made=None):
    """Create and return a fresh run folder.

    ``run_dir`` (the user's explicit choice) may be anywhere but must be new
    or empty; otherwise ``<runs_root>/<name>-<timestamp>`` is created, with a
    numeric suffix when two runs start in the same second. The folders this
    call created are appended to ``made`` (for ``abandon_run_dir``).
    """
    made = [] if made is None else made
    if run_dir is not None:
        path = Path(run_dir)
        try:
            if path.exists() and not path.is_dir():
                raise MlpError(f"{path}: is a file, not a folder; choose a new --run-dir")
            if path.exists() and any(path.iterdir()):
                raise MlpError(f"{path}: already exists and is not empty; choose a new --run-dir "
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
    """The newest run under ``runs_root``: what ``latest`` names, else the newest run folder."""
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
    runs = sorted((p for p in root.glob("*") if p.is_dir() and (p / CONFIG_FILE).exists()),
                  key=lambda p: p.stat().st_mtime)
    if not runs:
        raise MlpError(f"{root}: no runs found; train one with `mlp train CONFIG`")
    return runs[-1]


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


# ---------------------------------------------------------------- saved states in resume/

_STATE_NAME = re.compile(r"epoch-([0-9]{4,})(?:-batch-([0-9]{6,}))?\.h5")


def resume_state_name(epoch, batch=None):
    """``epoch-0003.h5`` (3 epochs done) or ``epoch-0003-batch-000120.h5`` (and 120 batches of the 4th)."""
    return f"epoch-{epoch:04d}" + (f"-batch-{batch:06d}" if batch is not None else "") + ".h5"


def _state_progress(name):
    """(epochs, batches) of a name ``resume_state_name`` made, else None."""
    match = _STATE_NAME.fullmatch(name)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)) if match.group(2) else -1


def resume_states(run_dir, warn=None):
    """A run's saved states, newest first. Anything else in ``resume/`` (a name mlp
    does not make, a folder under a state's name) is skipped, and ``warn`` told."""
    folder = Path(run_dir) / RESUME_DIR
    warn = warn or (lambda line: None)
    if not folder.is_dir():
        if folder.exists():
            warn(f"Warning: {folder} is a file, not the folder of saved states; ignored")
        return []
    states = []
    for path in folder.iterdir():
        progress = _state_progress(path.name)
        if path.name.startswith(TMP_PREFIX):
            continue
        if progress is None:
            warn(f"Warning: {path} is not a saved state mlp wrote; ignored")
        elif not path.is_file():
            warn(f"Warning: {path} is not a file; ignored")
        else:
            states.append((progress, path))
    return [path for _, path in sorted(states, reverse=True)]


def param_count(folder):
    """The total parameter count in a run's ``summary.txt``, or None."""
    try:
        text = read_text(Path(folder) / SUMMARY_FILE)
    except (OSError, UnicodeDecodeError):
        return None
    match = re.search(r"Total params:\s*([0-9,]+)", text)
    return int(match.group(1).replace(",", "")) if match else None
