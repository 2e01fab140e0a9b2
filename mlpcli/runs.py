"""Run folders and atomic file writes.

A run folder is ``<runs root>/<name>-<YYYYmmdd-HHMMSS>/``; ``<runs
root>/latest`` points at the newest. Every file is written to a temporary
name in its final folder, flushed, fsynced and renamed into place, so a file
under its final name is always complete.
"""

import contextlib
import errno
import fcntl
import os
import tempfile
import time
from pathlib import Path

from mlpcli.errors import DiskFullError, FileSystemError, MlpError, os_error_text

TMP_PREFIX = ".tmp-"
LOCK_FILE = ".lock"  # held by the process writing into a run or sweep folder


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; final files get the usual 0666 & ~umask
FILE_MODE = 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(path, *, replace=True):
    """Yield a temporary path beside ``path``; on success it replaces ``path``
    (with ``replace=False`` it only ever creates ``path``: an existing file, even one
    that appeared meanwhile, is left alone and ``FileExistsError`` is raised).

    The caller writes the whole file to the yielded path. On any error the
    temporary file is removed and ``path`` is left as it was; an OSError (h5py's
    own included) becomes a ``FileSystemError`` naming ``path``, the name the
    user knows.
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=path.suffix, dir=path.parent)
        os.close(fd)
        os.chmod(tmp, FILE_MODE)
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(exc, FileExistsError) and not replace:
            raise
        if _is_disk_full(exc):
            raise DiskFullError(f"{path}: no space left on the device while writing it; "
                                "its previous version (if any) is untouched") from None
        if isinstance(exc, OSError):
            raise FileSystemError(f"{os_error_text(exc, path)}; its previous version "
                                  "(if any) is untouched") from None
        raise
    _fsync_dir(path.parent)


def _link_new(tmp, path):
    """Move ``tmp`` to ``path`` only if nothing is there: a hard link, unlike a rename,
    never replaces a file."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: claim the name, then fill it
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE))
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def _is_disk_full(exc):
    """ENOSPC, also when a library (h5py) wraps it in its own exception."""
    while exc is not None:
        if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def remove_stale_temporaries(folder):
    """Delete temporary files a killed process left under ``folder``; return how many."""
    stale = [p for p in Path(folder).rglob(f"{TMP_PREFIX}*") if p.is_file() or p.is_symlink()]
    for p in stale:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return len(stale)


class RunLock:
    """An exclusive lock on a folder while one process writes into it: a run folder while
    ``mlp train`` trains into it, a sweep folder while ``mlp sweep`` runs its trials.

    ``flock`` is released by the kernel when the process dies, even by SIGKILL,
    so a crashed run never leaves the folder locked. The lock is not passed on
    to programs the holder starts (the file is opened close-on-exec).
    """

    def __init__(self, folder, command="mlp train", what="run"):
        self.path = Path(folder) / LOCK_FILE
        self.command, self.what = command, what
        self.fd = None

    def __enter__(self):
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise MlpError(f"{self.path}: cannot open this lock file ({exc.strerror or exc})") from None
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


def write_text(path, text):
    """Atomically replace ``path`` with ``text`` (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _fsync_dir(folder):
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def new_run_dir(runs_root, name, run_dir=None):
    """Create and return a fresh run folder.

    ``run_dir`` (the user's explicit choice) may be anywhere but must be new
    or empty; otherwise ``<runs_root>/<name>-<timestamp>`` is created, with a
    numeric suffix when two runs start in the same second.
    """
    if run_dir is not None:
        path = Path(run_dir)
        if path.exists() and not path.is_dir():
            raise MlpError(f"{path}: is a file, not a folder; choose a new --run-dir")
        if path.exists() and any(path.iterdir()):
            raise MlpError(f"{path}: already exists and is not empty; choose a new --run-dir "
                           "(nothing in it was changed)")
        _make_folder(path)
        return path
    root = Path(runs_root)
    if root.exists() and not root.is_dir():
        raise MlpError(f"{root}: is a file, not a folder for runs; choose another --runs-root")
    _make_folder(root)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        path = root / (f"{name}-{stamp}" if n == 1 else f"{name}-{stamp}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise MlpError(f"{root}: could not create a new run folder for {name}-{stamp}")


def _make_folder(path):
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MlpError(f"{path}: cannot create this folder ({exc.strerror or exc})") from None


def point_latest(runs_root, run_dir):
    """Make ``<runs_root>/latest`` a symlink to ``run_dir`` (replaced atomically)."""
    root = Path(runs_root)
    run_dir = Path(run_dir)
    if run_dir.resolve().parent != root.resolve():
        return
    tmp = root / f"{TMP_PREFIX}latest-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        tmp.symlink_to(run_dir.name, target_is_directory=True)
        os.replace(tmp, root / "latest")
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def latest_run(runs_root):
    """The newest run folder under ``runs_root`` (``latest`` link, else newest by name)."""
    root = Path(runs_root)
    link = root / "latest"
    if link.is_dir():
        return link.resolve()
    runs = sorted((p for p in root.glob("*") if p.is_dir() and (p / "config.yaml").exists()),
                  key=lambda p: p.stat().st_mtime)
    if not runs:
        raise MlpError(f"{root}: no runs found; train one with `mlp train CONFIG`")
    return runs[-1]
