"""What every ``mlp`` command shares: printing (paths that are not UTF-8 shown as \\xNN, side
notes to stderr) and turning known errors into one clean message and an exit code."""

import functools
import os
import signal
import sys

import click

from mlpcli.errors import MlpError, os_error_text, printable


def echo(text="", err=False):
    """click.echo of ``text`` with the bytes of non-UTF-8 paths shown as \\xNN (printing them
    as they are would raise UnicodeEncodeError)."""
    click.echo(printable(str(text)), err=err)


def clean_errors(fn):
    """Print an ``MlpError`` as one message (no traceback) and exit with its code; an OSError
    that a stage did not turn into one is printed as ``Error: <path>: <what happened>``, exit 1;
    a reader of stdout that went away (``| head``) ends it quietly, as SIGPIPE would (141)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MlpError as exc:
            echo(f"{exc.label}: {exc}", err=True)
            sys.exit(exc.exit_code)
        except BrokenPipeError:  # stdout went to `head` or the like, which has all it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's exit flush fails silently
            sys.exit(128 + signal.SIGPIPE)
        except OSError as exc:
            echo(f"Error: {os_error_text(exc)}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            echo("Interrupted", err=True)
            sys.exit(130)

    return wrapper


def note(line):
    """A side note (where a run folder's link led): to stderr, keeping stdout parseable."""
    echo(line, err=True)


def note_all(lines):
    for line in lines:
        note(line)
