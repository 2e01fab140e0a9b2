"""Opening files safely: the one place that knows how.

Inputs the user names (a config, a CSV, an .npy/.npz, a PNG, a model file) are
opened by ``open_input``: at once and only when they are regular files. Opening a
FIFO for reading waits for a writer, and a device may never end; a folder or a name
too long would fail later, in another form. So a file is opened with O_NONBLOCK (a
FIFO's open returns at once) and fstat'ed before a byte is read, and any OSError but
a missing file becomes ``<path>: <what happened>`` (``FileSystemError``, exit 1). A
missing file is the reader's to report, in its own terms.

Small text files mlp reads whole (a config, a run's config.yaml, history.csv,
results.json, summary.txt, a sweep's sweep.yaml and base-config.yaml) are read by
``read_text``, the same way and never past a cap (``/dev/zero`` or a huge file named
as a config is refused, not read until memory runs out); it raises ``OSError``
subclasses, which its callers report in their own terms.

Writing in place: the lock file and train.log are opened by ``open_own_file``, which
never follows a link and never writes into a file that is also someone else's (a
FIFO, a device, a file with a second hard link).

Every other file is written atomically (``atomic_path``, ``write_text``): to a
temporary name in its final folder (``.tmp-<writer's pid>-...``), flushed, fsynced and
renamed into place, so a file under its final name is always complete, and a
temporary file is only ever removed once its writer is gone
(``remove_stale_temporaries``).
"""

import contextlib
import errno
import os
import re
import stat
import tempfile
from pathlib import Path

from mlpcli.errors import DiskFullError, FileSystemError, MlpError, os_error_text

TMP_PREFIX = ".tmp-"  # a file being written: ``.tmp-<pid>-...``, renamed into place when whole

MAX_TEXT_BYTES = 64 * 2**20  # history.csv of a very long run stays far below this
MAX_NAME_BYTES = 255  # NAME_MAX of every common file system


class NotARegularFile(OSError):
    """A FIFO, device, socket or folder where a file was expected."""


class FileTooLarge(OSError):
    """A file larger than mlp reads of its kind."""


class LinkedFile(OSError):
    """A link (symbolic, or a second hard link) where mlp writes a file of its own."""


def _kind(mode):
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a special file")


def _open_regular(path):
    """A file descriptor of ``path`` opened for reading without blocking (reads block
    again as usual), once it is known to be a regular file; else ``NotARegularFile``."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):  # as the OS itself says it where a folder is read as a file
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fspath(path))
        if not stat.S_ISREG(mode):
            raise NotARegularFile(errno.EINVAL, f"is {_kind(mode)}, not a regular file", os.fspath(path))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_input(path):
    """``path`` opened for binary reading. Raises FileNotFoundError when there is no such
    file, ``FileSystemError`` naming ``path`` for anything else the system refuses and for
    anything but a regular file."""
    try:
        return os.fdopen(_open_regular(path), "rb")
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise FileSystemError(os_error_text(exc, path)) from None


def check_input(path):
    """Refuse at once what ``open_input`` refuses, for a reader that opens ``path`` by name
    itself; a missing file is let through, for that reader to report."""
    try:
        os.close(_open_regular(path))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise FileSystemError(os_error_text(exc, path)) from None


def read_text(path, limit=MAX_TEXT_BYTES):
    """The UTF-8 text of the regular file ``path``, at most ``limit`` bytes of it.

    Raises ``OSError`` (``NotARegularFile``, ``FileTooLarge`` or what the OS
    says) or ``UnicodeDecodeError``. The file is opened without blocking, so a FIFO
    is refused at once rather than waited on.
    """
    fd = _open_regular(path)
    try:
        chunks, size = [], 0
        while size <= limit:  # read one byte past the cap: a file that grew is refused too
            chunk = os.read(fd, min(limit + 1 - size, 2**20))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise FileTooLarge(errno.EFBIG, f"larger than {_megabytes(limit)}, more than mlp reads of such "
                                        "a file", os.fspath(path))
    return b"".join(chunks).decode("utf-8")


def _megabytes(n):
    return f"{n / 2**20:g} MiB"


def open_own_file(path, flags, mode=0o644):
    """A file descriptor of ``path`` (created when ``flags`` has O_CREAT) that mlp may write in place.

    A link at ``path`` is never followed, and a FIFO, a device or a file with a
    second hard link (whose other name is someone else's file) is refused: each
    raises an ``OSError`` whose text says what was found.
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP and os.path.islink(path):
            raise LinkedFile(errno.ELOOP, "is a symbolic link; mlp does not write through links (remove "
                                          "the link)", os.fspath(path)) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotARegularFile(errno.EINVAL, f"is {_kind(info.st_mode)}, not a regular file",
                                  os.fspath(path))
        if info.st_nlink > 1:
            raise LinkedFile(errno.EMLINK, "has another name (a hard link); mlp does not write into a "
                                           "file that is also another one (remove it)", os.fspath(path))
    except BaseException:
        os.close(fd)
        raise
    return fd


def plain_name_problem(name):
    """Why ``name`` is not a plain, visible file name in its folder (``/``, NUL, ``.``/``..``,
    empty, a leading ``.``, over 255 bytes), else None."""
    if "/" in name or "\0" in name:
        return "holds a '/' or a NUL character"
    if name in ("", ".", ".."):
        return "is not a file name"
    if name.startswith("."):
        return "starts with '.' (a hidden name, as mlp's temporary files have)"
    try:
        size = len(name.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        return "holds characters that cannot be part of a file name"
    if size > MAX_NAME_BYTES:
        return f"is {size} bytes long, over the {MAX_NAME_BYTES} a file name may have"
    return None


# ---------------------------------------------------------------- atomic writes

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
    own included, also under the error a library raised on top of it, as h5py's
    close does after a failed write) becomes a ``FileSystemError`` naming
    ``path``, the name the user knows.
    """
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(), suffix=path.suffix, dir=path.parent)
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
        cause = _os_error_in_chain(exc)
        if cause is not None:
            raise FileSystemError(f"{os_error_text(cause, path)}; its previous version "
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


def _chain(exc):
    """``exc`` and the exceptions it was raised from or while handling, newest first."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _is_disk_full(exc):
    """ENOSPC, also when a library (h5py) wraps it in its own exception."""
    if not isinstance(exc, Exception) or isinstance(exc, MlpError):
        return False
    return any(getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(e)
               for e in _chain(exc))


def _os_error_in_chain(exc):
    """The OSError behind a failed write, also under a library's own error raised on top
    of it; None for an interruption (KeyboardInterrupt, ...) or an error of mlp's own."""
    if not isinstance(exc, Exception) or isinstance(exc, MlpError):
        return None
    found = next((e for e in _chain(exc) if isinstance(e, OSError)), None)
    if found is None:
        return None
    # HDF5 buries the system's error in a long text ("... errno = 27, error message = ...")
    number = found.errno if found.errno is not None else _HDF5_ERRNO.search(str(found))
    number = number if number is None or isinstance(number, int) else int(number.group(1))
    return found if number is None else OSError(number, os.strerror(number))


_HDF5_ERRNO = re.compile(r"\berrno = ([0-9]+)")


def temporary_prefix():
    """``.tmp-<pid>-``: a temporary name says which process is writing it."""
    return f"{TMP_PREFIX}{os.getpid()}-"


def _writer_pid(name):
    """The pid in a temporary name made by ``temporary_prefix``, else None."""
    pid, dash, _ = name[len(TMP_PREFIX):].partition("-")
    return int(pid) if name.startswith(TMP_PREFIX) and dash and pid.isascii() and pid.isdigit() else None


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temporaries(folder):
    """Delete the temporary files under ``folder`` whose writer has died; return how many.

    A temporary file of a live process (a concurrent `mlp plot`, an `mlp
    evaluate`) or one whose name carries no pid is left alone.
    """
    stale = []
    for path in Path(folder).rglob(f"{TMP_PREFIX}*"):
        pid = _writer_pid(path.name)
        if pid and pid != os.getpid() and (path.is_file() or path.is_symlink()) and not _process_alive(pid):
            stale.append(path)
    for p in stale:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return len(stale)


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


def check_new_file(path, what, overwrite=False):
    """Refuse ``path`` as the file to write ``what`` ("predictions", "the model") into: a
    folder, a file in a folder that does not exist, or (without ``overwrite``) one that exists."""
    if path.is_dir():
        raise FileSystemError(f"{path}: is a folder, not a file to write {what} into")
    if not path.absolute().parent.is_dir():
        raise FileSystemError(f"{path}: the folder {path.parent} does not exist; make it first, or "
                              "choose another place")
    if not overwrite and os.path.lexists(path):
        raise exists_error(path)
    if os.path.lexists(path) and not path.is_file():  # a device, a FIFO, a socket: --overwrite means a file
        raise FileSystemError(f"{path}: is not a regular file; {what} is written only to a file, "
                              "and this one stays as it is")


def exists_error(path):
    return MlpError(f"{path}: already exists; choose another name, or pass --overwrite to replace it")
