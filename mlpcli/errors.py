"""Errors the user can act on.

Every error a user can cause (a bad config, a bad file, bad data) is an
``MlpError``; the CLI prints its message without a traceback and exits with
its ``exit_code``.
"""

import os


class MlpError(Exception):
    """A problem the user can fix; the message says what and where."""

    exit_code = 2
    label = "Error"


class ConfigError(MlpError):
    """One or more problems in a config, each naming its key path."""

    def __init__(self, problems):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))

    def __str__(self):
        if len(self.problems) == 1:
            return f"config error: {self.problems[0]}"
        lines = [f"config has {len(self.problems)} errors:"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class DataError(MlpError):
    """A dataset file or array that cannot be used."""


class ImageTooLargeError(DataError):
    """An image over the pixel limit, refused from its header before anything is decoded."""


class ModelFileError(MlpError):
    """A model file (HDF5) that cannot be read or does not describe a usable MLP."""


class NoSavedState(MlpError):
    """A run to resume holds no saved state that can be used."""


class TrainingError(MlpError):
    """Training had to stop (non-finite loss, ...)."""

    exit_code = 1


class FileSystemError(MlpError):
    """The operating system refused a read or write (permissions, a full disk, a name
    too long, a file where a folder should be, ...); the message names the path."""

    exit_code = 1


class DiskFullError(FileSystemError):
    """No space left while saving; the file's previous version is untouched."""


def os_error_text(exc, path=None):
    """``<path>: <what happened>`` for an OSError; ``path`` (the name the user knows, e.g.
    the final name of a file written under a temporary one) replaces the exception's."""
    names = [path if path is not None else exc.filename, None if path is not None else exc.filename2]
    names = [os.fsdecode(n) if isinstance(n, (str, bytes, os.PathLike)) else n for n in names]
    what = exc.strerror or str(exc) or type(exc).__name__
    if names[0] is None:
        return what
    return f"{names[0]} -> {names[1]}: {what}" if names[1] is not None else f"{names[0]}: {what}"


def printable(text):
    """``text`` safe to print or write as UTF-8: bytes of a path that are not UTF-8 (which
    Python keeps as lone surrogates) are shown as ``\\xNN``."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that did not come from a byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


class Interrupted(MlpError):
    """Training stopped by SIGINT or SIGTERM after writing a checkpoint."""

    label = "Interrupted"

    def __init__(self, message, signum):
        super().__init__(message)
        self.exit_code = 128 + signum
