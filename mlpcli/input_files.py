"""Files the user names as inputs (a config, a CSV, an .npy, a PNG, a model file), opened
for reading at once and only when they are regular files.

Opening a FIFO for reading waits for a writer, and a device may never end; a folder or a
name too long would fail later, in another form. So an input is opened with O_NONBLOCK
(a FIFO's open returns at once) and fstat'ed before a byte is read, and any OSError but
a missing file becomes ``<path>: <what happened>`` (``FileSystemError``, exit 1). A
missing file is the reader's to report, in its own terms.
"""

import errno
import os
import stat

from mlpcli.errors import FileSystemError, os_error_text

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def open_input(path):
    """``path`` opened for binary reading (reads block as usual). Raises FileNotFoundError
    when there is no such file, ``FileSystemError`` naming ``path`` for anything else the
    system refuses and for anything but a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise FileSystemError(os_error_text(exc, path)) from None
    try:
        _refuse_unless_regular(os.fstat(fd).st_mode, path)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_input(path):
    """Refuse at once what ``open_input`` refuses, for a reader that opens ``path`` by name
    itself; a missing file is let through, for that reader to report."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise FileSystemError(os_error_text(exc, path)) from None
    _refuse_unless_regular(mode, path)


def _refuse_unless_regular(mode, path):
    if stat.S_ISDIR(mode):
        raise FileSystemError(f"{os.fsdecode(path)}: {os.strerror(errno.EISDIR)}")
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "a special file")
        raise FileSystemError(f"{os.fsdecode(path)}: is {kind}, not a regular file; "
                              "inputs are read from files")
