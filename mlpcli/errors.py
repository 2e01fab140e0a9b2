"""Errors the user can act on.

Every error a user can cause (a bad config, a bad file, bad data) is an
``MlpError``; the CLI prints its message without a traceback and exits with
its ``exit_code``.
"""


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


class ModelFileError(MlpError):
    """A model file (HDF5) that cannot be read or does not describe a usable MLP."""


class TrainingError(MlpError):
    """Training had to stop (non-finite loss, ...)."""

    exit_code = 1


class DiskFullError(MlpError):
    """No space left while saving; the file's previous version is untouched."""

    exit_code = 1


class Interrupted(MlpError):
    """Training stopped by SIGINT or SIGTERM after writing a checkpoint."""

    label = "Interrupted"

    def __init__(self, message, signum):
        super().__init__(message)
        self.exit_code = 128 + signum


class FileSystemError(MlpError):
    """The file system refused something on a path (a name too long, no permission, ...)."""

    exit_code = 1
