"""The ``mlp`` command line. Click only: each command parses its options,
calls one stage function and turns known errors into a clean message."""

import functools
import sys

import click

from mlpcli import __version__
from mlpcli.errors import MlpError


def clean_errors(fn):
    """Print an ``MlpError`` as one message (no traceback) and exit with its code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MlpError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlp")
def main():
    """Train multilayer perceptrons from YAML configs, on numpy.

    \b
    Example:
      mlp train configs/mnist.yaml
    """


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set training.epochs=5 (repeatable).")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None,
              help="Write the run here instead of a new folder under --runs-root.")
@click.option("--runs-root", type=click.Path(file_okay=False), default="runs", show_default=True,
              help="Folder holding the run folders.")
@click.option("--dry-run", is_flag=True, help="Validate, print the resolved config and the model summary; train nothing.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@clean_errors
def train(config, overrides, run_dir, runs_root, dry_run, quiet):
    """Train the model described by CONFIG (a YAML file) into a new run folder.

    \b
    Examples:
      mlp train configs/mnist.yaml
      mlp train configs/mnist.yaml --set training.epochs=5 --set optimizer.learning_rate=0.01
      mlp train configs/mnist.yaml --dry-run
    """
    from mlpcli.train import train as run_train

    run_train(config, overrides, runs_root=runs_root, run_dir=run_dir, dry_run=dry_run,
              quiet=quiet, echo=click.echo)
