"""The ``mlp`` command line. Click only: each command parses its options,
calls one stage function and turns known errors into a clean message."""

import functools
import os
import signal
import sys

import click

from mlpcli import __version__
from mlpcli.errors import MlpError, os_error_text, printable
from mlpcli.onnx_opsets import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET


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


def _note(line):
    """A side note (where a run folder's link led): to stderr, keeping stdout parseable."""
    echo(line, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlp")
def main():
    """Train multilayer perceptrons from YAML configs, on numpy.

    \b
    Example:
      mlp train configs/mnist.yaml
    """


@main.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--resume", type=click.Path(file_okay=False), default=None, metavar="RUN_DIR",
              help="Continue this run from its newest valid checkpoint (weights, optimizer, schedule, RNG).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set training.epochs=5 (repeatable).")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None,
              help="Write the run here instead of a new folder under --runs-root.")
@click.option("--runs-root", type=click.Path(file_okay=False), default="runs", show_default=True,
              help="Folder holding the run folders.")
@click.option("--init-from", default=None, metavar="RUN|FILE.h5|FILE.keras",
              help="Start from this run's (or sweep's, or model file's) weights: each layer whose name and "
                   "weight shapes match is copied (same as --set init_from=PATH).")
@click.option("--dry-run", is_flag=True, help="Validate, print the resolved config and the model summary; train nothing.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@click.option("--no-plots", is_flag=True, help="Skip drawing the curves into plots/ at the end.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="BLAS threads for this run (same as --set training.threads=N; default: all cores).")
@click.option("--processes", type=click.IntRange(min=1), default=None,
              help="Processes that share each batch (same as --set training.processes=N; "
                   "Linux on x86-64, at most the cores).")
@click.option("--folds", type=click.IntRange(min=2), default=None, metavar="K",
              help="K-fold cross-validation: one run per fold in RUN/fold-1..K, scored as mean ± std "
                   "(same as --set training.folds=K).")
@click.option("--tensorboard", is_flag=True,
              help="Write TensorBoard event files into RUN/tensorboard/ (same as --set logging.tensorboard=true; "
                   "needs pip install 'mlpcli[tensorboard]').")
@clean_errors
def train(config, resume, overrides, run_dir, runs_root, init_from, dry_run, quiet, no_plots, threads, processes,
          folds, tensorboard):
    """Train the model described by CONFIG (a YAML file) into a new run folder.

    Ctrl-C (or SIGTERM) finishes the current batch, saves a checkpoint and
    exits; --resume continues exactly where it stopped.

    \b
    Examples:
      mlp train configs/mnist.yaml
      mlp train configs/mnist.yaml --set training.epochs=5 --set optimizer.learning_rate=0.01
      mlp train configs/mnist.yaml --dry-run
      mlp train configs/mnist.yaml --processes 1
      mlp train configs/mnist.yaml --init-from runs/latest
      mlp train configs/mnist.yaml --folds 5
      mlp train configs/mnist.yaml --tensorboard
      mlp train --resume runs/mnist-mlp-20261129-212900
      mlp train --resume runs/mnist-mlp-20261129-212900 --set training.epochs=30
    """
    from mlpcli.train import train as run_train

    if threads is not None:
        overrides = (*overrides, f"training.threads={threads}")
    if processes is not None:
        overrides = (*overrides, f"training.processes={processes}")
    if folds is not None:
        overrides = (*overrides, f"training.folds={folds}")
    if tensorboard:
        overrides = (*overrides, "logging.tensorboard=true")
    run_train(config, overrides, resume=resume, runs_root=runs_root, run_dir=run_dir,
              dry_run=dry_run, quiet=quiet, plots=not no_plots, echo=echo, init_from=init_from)


SCALING_HELP = ("What the inputs need before the model: none (already prepared), unit (x / 255) or "
                "standardize (the training mean and std). Default: what the model file records; "
                "none for a Keras file without mlpcli's record.")


def _scaling_option(fn):
    return click.option("--scaling", type=click.Choice(["none", "unit", "standardize"]), default=None,
                        help=SCALING_HELP)(fn)


def _images_option(fn):
    return click.option("--images", "image_steps", type=click.Choice(["digits", "resize"]), default=None,
                        help="For a Keras file without mlpcli's record: centre images as MNIST digits, or "
                             "resize them to the model's input size.")(fn)


def _warn_all(lines):
    for line in lines:
        _note(line)


@main.command("lr-find")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, as in mlp train (repeatable).")
@click.option("--start", type=float, default=1e-7, show_default=True, help="The first batch's learning rate.")
@click.option("--end", type=float, default=10.0, show_default=True, help="The last batch's learning rate.")
@click.option("--batches", type=int, default=100, show_default=True,
              help="Batches over which the rate grows from --start to --end (at least 5).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Write here (new or empty) instead of a new folder under --runs-root.")
@click.option("--runs-root", type=click.Path(file_okay=False), default="runs", show_default=True)
@clean_errors
def lr_find(config, overrides, start, end, batches, out, runs_root):
    """Find a learning rate for CONFIG: the learning-rate range test.

    Trains a throwaway copy of the config's model (its data and seed as mlp
    train has them) for up to --batches batches with the rate growing
    exponentially from --start to --end, stopping when the loss diverges, and
    suggests the rate where the smoothed loss falls fastest. Writes
    lr_find.csv and lr_find.png into a new folder; the config and every run
    are left as they are.

    \b
    Examples:
      mlp lr-find configs/mnist.yaml
      mlp lr-find configs/quick.yaml --start 1e-6 --end 1 --batches 60
    """
    from mlpcli.lr_find import lr_find as run_lr_find
    from mlpcli.lr_find import rounded

    result = run_lr_find(config, overrides, start=start, end=end, batches=batches, out=out,
                         runs_root=runs_root, echo=echo)
    test = result.test
    stopped = (f"stopped after {len(test.rates)} batches: the loss diverged at rate {test.rates[-1]:.2g}"
               if test.diverged else f"{len(test.rates)} batches")
    echo(f"Range test: {stopped}")
    echo(f"Wrote {result.folder}")
    if test.suggestion is None:
        echo("No suggestion: too few batches before the loss diverged; try a lower --end or more --batches")
        return
    rate = rounded(test.suggestion)
    echo(f"Suggested learning rate: {rate:g} (steepest descent of the smoothed loss)")
    echo(f"Use it with: mlp train {config} --set optimizer.learning_rate={rate:g}")


@main.command()
@click.argument("run_dir", required=False, type=click.Path(file_okay=False))
@click.option("--checkpoint", default=None, metavar="model.h5|best|last|N",
              help="Which of the run's models: model.h5 (default), best, last, an epoch number or a checkpoint file name.")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), default=None,
              help="Any Keras-layout .h5 or Keras 3 .keras MLP instead of a run's model.")
@click.option("--data", default=None, metavar="DATASET|FILE",
              help="Evaluate on mnist, fashion_mnist, or a .npz/.csv file or image folder instead of the run's test split.")
@_scaling_option
@_images_option
@click.option("--runs-root", type=click.Path(file_okay=False), default="runs", show_default=True)
@click.option("--json", "as_json", is_flag=True,
              help="Print the report as one JSON object (what evaluation*.json holds) instead of tables.")
@clean_errors
def evaluate(run_dir, checkpoint, model_path, data, scaling, image_steps, runs_root, as_json):
    """Score a model on test data: loss, metrics, per-class precision/recall/F1, confusion matrix.

    RUN_DIR (a run, or a sweep: its recommended trial) defaults to the
    newest run. Writes evaluation.json (or evaluation-<checkpoint>.json)
    into the run folder.

    \b
    Examples:
      mlp evaluate                       # the newest run's model.h5
      mlp evaluate runs/mnist-mlp-20261129-212900 --checkpoint best
      mlp evaluate --model keras_model.h5 --data scaled.npz --scaling none
      mlp evaluate --json | jq .metrics
    """
    from mlpcli.evaluate import evaluate as run_evaluate
    from mlpcli.evaluate import format_report

    result = run_evaluate(run_dir, checkpoint=checkpoint, model_path=model_path, data=data, scaling=scaling,
                          image_steps=image_steps, runs_root=runs_root, note=_note)
    if as_json:  # stdout holds the JSON alone; where it was saved is a note
        import json

        echo(json.dumps(result.report))
        _warn_all(result.warnings)
        result.save()
        _note(f"Wrote {result.path}")
        return
    echo(format_report(result.report))
    _warn_all(result.warnings)
    result.save()
    echo(f"\nWrote {result.path}")


@main.command()
@click.argument("inputs", nargs=-1, type=click.Path())
@click.option("--run", "run_dir", type=click.Path(file_okay=False), default=None,
              help="Use this run's model (a sweep: its recommended trial; default: the newest run).")
@click.option("--checkpoint", default=None, metavar="model.h5|best|last|N",
              help="Which of the run's models (as in mlp evaluate).")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), default=None,
              help="Use this Keras-layout .h5 or Keras 3 .keras model.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the predictions to this .csv, .jsonl or .npy file instead of the terminal.")
@click.option("--overwrite", is_flag=True, help="Let --out replace an existing file.")
@_scaling_option
@_images_option
@click.option("--top-k", default=3, show_default=True, type=click.IntRange(min=1),
              help="How many classes to list per input.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per input.")
@click.option("--npy", type=click.Path(dir_okay=False), default=None, hidden=True,
              help="A .npy file to predict (the same as giving it as an INPUT).")
@click.option("--save-preprocessed", type=click.Path(file_okay=False), default=None,
              help="Write each image as the model saw it (before scaling) as a PNG into this folder.")
@click.option("--runs-root", type=click.Path(file_okay=False), default="runs", show_default=True)
@clean_errors
def predict(inputs, run_dir, checkpoint, model_path, out, overwrite, scaling, image_steps, top_k, as_json, npy,
            save_preprocessed, runs_root):
    """Predict INPUTS: image files or folders, .csv rows, .npy or .npz arrays.

    Each input is prepared as the model's training data was (recorded in the
    model file): a digit model centres digits as MNIST did, an image-folder
    model gets its training size and colour mode, a CSV's columns are matched
    to the model's by name. A CSV or .npz with labels also prints a score.

    \b
    Examples:
      mlp predict digit.png photo.jpg
      mlp predict my_digits/ --run runs/latest --top-k 5 --json
      mlp predict new_rows.csv --out predictions.csv
      mlp predict rows.npy --model keras_model.h5 --scaling none
    """
    from mlpcli.predict import predict as run_predict

    inputs = (*inputs, npy) if npy is not None else inputs
    outcome = run_predict(inputs, run_dir=run_dir, checkpoint=checkpoint, model_path=model_path, top_k=top_k,
                          out=out, overwrite=overwrite, as_json=as_json, scaling=scaling, image_steps=image_steps,
                          save_preprocessed=save_preprocessed, runs_root=runs_root, note=_note, emit=echo)
    _warn_all(outcome.notes)
    score = outcome.score_line()
    if outcome.out is not None:
        echo(f"Wrote {outcome.count:,} predictions to {outcome.out}")
        if score:
            echo(score)
    elif score:
        _note(score)


@main.command()
@click.argument("run_dir", required=False, type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["onnx", "keras"]), required=True,
              help="onnx (needs the onnx package: pip install 'mlpcli[onnx]') or keras (Keras 3's .keras).")
@click.option("--checkpoint", default=None, metavar="model.h5|best|last|N",
              help="Which of the run's models (as in mlp evaluate).")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), default=None,
              help="Export this Keras-layout .h5 or Keras 3 .keras model instead of a run's.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write here (default: <run>/model.onnx, <run>/<checkpoint>.onnx, or beside the --model file).")
@click.option("--opset", type=int, default=None,
              help=f"The ONNX opset, {MIN_OPSET} to {MAX_OPSET} (default {DEFAULT_OPSET}).")
@click.option("--overwrite", is_flag=True, help="Let --out replace an existing file.")
@click.option("--runs-root", type=click.Path(file_okay=False), default="runs", show_default=True)
@clean_errors
def export(run_dir, fmt, checkpoint, model_path, out, opset, overwrite, runs_root):
    """Write a model as ONNX or .keras, for use outside mlpcli.

    RUN_DIR (a run, or a sweep: its recommended trial) defaults to the newest
    run. The ONNX graph takes raw inputs as mlp predict reads them (pixels in
    0..255, a table's feature values) and scales them as the model records;
    its outputs are probabilities and class (classifiers) or predictions.
    Class names and the input pipeline are in its metadata.

    \b
    Examples:
      mlp export --format onnx                     # the newest run -> <run>/model.onnx
      mlp export runs/mnist-mlp-20261129-212900 --format onnx --checkpoint best --out digits.onnx
      mlp export --model keras_model.h5 --format onnx --opset 13
    """
    from mlpcli.export import export as run_export

    path = run_export(run_dir, fmt=fmt, model_path=model_path, checkpoint=checkpoint, out=out, opset=opset,
                      overwrite=overwrite, runs_root=runs_root, note=_note)
    echo(f"Wrote {path}")


@main.command()
@click.argument("run_dir", required=False, type=click.Path(file_okay=False))
@click.option("--model", "model_path", type=click.Path(dir_okay=False), default=None,
              help="Serve this Keras-layout .h5 or Keras 3 .keras model instead of a run's.")
@click.option("--checkpoint", default=None, metavar="model.h5|best|last|N",
              help="Which of the run's models (as in mlp evaluate).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback makes the server reachable from other machines.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: a free one, printed).")
@click.option("--runs-root", type=click.Path(file_okay=False), default="runs", show_default=True)
@clean_errors
def serve(run_dir, model_path, checkpoint, host, port, runs_root):
    """Serve a model over HTTP, with a page to draw a digit or upload an image.

    RUN_DIR (a run, or a sweep: its recommended trial) defaults to the newest
    run. POST /predict takes JSON rows ({"rows": [...]}, or {"columns": {...}}
    for table models), a PNG or JPEG body, or multipart file uploads, and
    answers classes and probabilities as mlp predict --json does; GET /health
    and GET /metadata describe it; / is the page. Needs the serve extra:
    pip install 'mlpcli[serve]'. Stops on Ctrl-C or SIGTERM.

    \b
    Examples:
      mlp serve                                     # the newest run, http://127.0.0.1:8000
      mlp serve runs/mnist-mlp-20261129-212900 --port 0
      curl -s -H 'Content-Type: image/png' --data-binary @digit.png http://127.0.0.1:8000/predict
    """
    from mlpcli.serve import serve as run_serve

    run_serve(run_dir, model_path=model_path, checkpoint=checkpoint, host=host, port=port, runs_root=runs_root,
              note=_note, emit=echo)


@main.command()
@click.argument("run_dirs", nargs=-1, type=click.Path(file_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write the figures here instead of each run's plots/ folder.")
@click.option("--format", "fmt", type=click.Choice(["png", "svg", "pdf"]), default="png", show_default=True)
@click.option("--runs-root", type=click.Path(file_okay=False), default="runs", show_default=True)
@clean_errors
def plot(run_dirs, out_dir, fmt, runs_root):
    """Draw accuracy, loss and learning-rate curves, confusion matrices and misclassified digits.

    RUN_DIRS default to the newest run; a sweep folder means its recommended
    trial. With several runs, compare-accuracy and compare-loss overlay their
    validation curves.

    \b
    Examples:
      mlp plot
      mlp plot runs/mnist-mlp-20261129-212900 --format svg
      mlp plot runs/a runs/b --out comparison/
    """
    from pathlib import Path

    from mlpcli.plots import plot_runs
    from mlpcli.runs import model_folder

    dirs = [model_folder(d, runs_root, _note) for d in run_dirs] or [model_folder(None, runs_root, _note)]
    report = plot_runs(dirs, Path(out_dir) if out_dir else None, fmt)
    for path in report.written:
        echo(f"wrote {path}")
    for line in report.skipped:
        echo(f"skipped {line}")
    report.raise_failures()


@main.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--grid", multiple=True, metavar="KEY=V1,V2,...",
              help="Try every combination of these values (repeatable), e.g. --grid training.batch_size=64,128.")
@click.option("--random", "random_trials", type=click.IntRange(min=1), default=None, metavar="N",
              help="Run N trials with values drawn from the --range options.")
@click.option("--range", "ranges", multiple=True, metavar="KEY=LO:HI[:log]",
              help="A range for --random or --search (repeatable); ':log' draws log-uniformly.")
@click.option("--search", type=click.Choice(["random", "tpe"]), default=None,
              help="How --trials N trials pick their values in the --range ranges: random draws (as "
                   "--random N), or tpe: Optuna's TPE, each trial from the results before it "
                   "(--grid lists are then its choices). Needs: pip install 'mlpcli[optuna]'.")
@click.option("--trials", "n_trials", type=click.IntRange(min=1), default=None, metavar="N",
              help="How many trials --search runs.")
@click.option("--prune", type=click.Choice(["median", "hyperband", "none"]), default=None,
              help="With --search tpe: stop a poor trial after an epoch (default median).")
@click.option("--seed", type=int, default=None,
              help="The seed of --random or --search (default: the sweep: section's seed, else 0).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Fix a config key for every trial, as in mlp train (repeatable).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Trials at once (local processes, or the LocalCluster's workers); default 1.")
@click.option("--executor", type=click.Choice(["local", "dask"]), default=None,
              help="local processes (default) or a Dask distributed cluster.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="The Dask scheduler, e.g. tcp://host:8786 (default: start a LocalCluster).")
@click.option("--resume", type=click.Path(file_okay=False), default=None, metavar="SWEEP_DIR",
              help="Run again the trials of this sweep that did not finish.")
@click.option("--runs-root", type=click.Path(file_okay=False), default="runs", show_default=True,
              help="Folder in which the sweep folder is made.")
@click.option("--no-plots", is_flag=True, help="Skip each trial's plots/ (the comparison plot is still drawn).")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@click.option("--folds", type=click.IntRange(min=2), default=None, metavar="K",
              help="Cross-validate every trial over K folds; rank by the mean (same as --set training.folds=K).")
@clean_errors
def sweep(config, grid, random_trials, ranges, search, n_trials, prune, seed, overrides, workers, executor,
          scheduler, resume, runs_root, no_plots, quiet, folds):
    """Train CONFIG once per trial over a grid or random ranges of config keys; rank the trials.

    Each trial is a run folder runs/<sweep>-<timestamp>/trial-NNN/; the sweep
    folder also holds sweep.yaml, results.csv and compare-*.png. A failed
    trial is recorded and the sweep goes on. Keys are those of --set; a
    sweep: section in CONFIG can say the same.

    --search tpe proposes each trial with Optuna from the trials before it,
    to the best value of checkpoint.monitor (val_loss by default), and stops a
    poor trial after an epoch (--prune): its row in results.csv says pruned
    and pruned_epoch. The same command proposes the same trials.

    Ctrl-C (or SIGTERM) starts no further trial and stops those under way
    after their batch, saving their state; --resume continues them and runs
    the rest (a trial that finished is never trained again).

    \b
    Examples:
      mlp sweep configs/mnist-batch-sweep.yaml --workers 2
      mlp sweep configs/mnist.yaml --grid training.batch_size=64,128,256 --set training.epochs=5
      mlp sweep configs/mnist.yaml --random 8 --range optimizer.learning_rate=1e-4:1e-2:log
      mlp sweep configs/mnist.yaml --search tpe --trials 20 --range optimizer.learning_rate=1e-4:1e-2:log --range 'model.layers[0].units=32:256'
      mlp sweep configs/mnist.yaml --grid 'model.layers[2].rate=0.1,0.3,0.5' --executor dask --scheduler tcp://host:8786
      mlp sweep --resume runs/mnist-batch-sweep-20261129-212900
    """
    from mlpcli.sweep import sweep as run_sweep

    if folds is not None:
        overrides = (*overrides, f"training.folds={folds}")
    run_sweep(config, grid, random_trials, ranges, overrides, search=search, trials=n_trials, prune=prune,
              seed=seed, workers=workers, executor=executor,
              scheduler=scheduler, resume=resume, runs_root=runs_root, plots=not no_plots,
              quiet=quiet, echo=echo, note=_note)


@main.command()
@click.argument("target", required=False, type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the page here (default: report.html in the run or sweep folder).")
@click.option("--overwrite", is_flag=True, help="Replace an existing report file.")
@click.option("--checkpoint", default=None, metavar="model.h5|best|last|N",
              help="Which of the run's models to evaluate (as in mlp evaluate).")
@click.option("--data", default=None, metavar="DATASET|FILE",
              help="Evaluate on mnist, fashion_mnist, or a .npz/.csv file or image folder instead of the run's "
                   "test split (as in mlp evaluate).")
@click.option("--runs-root", type=click.Path(file_okay=False), default="runs", show_default=True)
@clean_errors
def report(target, out, overwrite, checkpoint, data, runs_root):
    """Write one self-contained HTML page about a run or a sweep, to open or send.

    TARGET (a run or a sweep folder) defaults to the newest. For a run: its
    diagnostics and the numbers behind them, training curves, the evaluation
    on its test split (metrics, per-class table, confusion matrix,
    misclassified images, ROC and precision-recall curves, or regression
    plots), model summary and config. For a sweep: its trials ranked as mlp
    compare ranks them, the recommendation and the overlaid validation
    curves. Everything is computed afresh; images are inline, nothing is
    fetched from the network.

    \b
    Examples:
      mlp report                                   # the newest run -> <run>/report.html
      mlp report runs/mnist-batch-sweep-20261129-212900
      mlp report runs/mnist-mlp-20261129-212900 --checkpoint best --out best.html
    """
    from mlpcli.report import report as run_report

    written = run_report(target, out=out, overwrite=overwrite, checkpoint=checkpoint, data=data,
                         runs_root=runs_root, note=_note)
    _warn_all(written.notes)
    echo(f"Wrote {written.path}")


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(file_okay=False))
@click.option("--monitor", default=None, metavar="NAME",
              help="Rank by this logged quantity (default: the runs' checkpoint.monitor, e.g. val_loss).")
@click.option("--tolerance", type=float, default=None,
              help="How close to the best counts as as good: absolute for accuracy-like metrics "
                   "(default 0.002), relative for losses (default 0.02, i.e. 2%).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write compare-accuracy and compare-loss here (default: the sweep folder, "
                   "or the first run's plots/).")
@click.option("--format", "fmt", type=click.Choice(["png", "svg", "pdf"]), default="png", show_default=True)
@click.option("--no-plots", is_flag=True, help="Print the table only.")
@click.option("--runs-root", type=click.Path(file_okay=False), default="runs", show_default=True,
              help="Where to look for the newest sweep when no PATHS are given.")
@clean_errors
def compare(paths, monitor, tolerance, out_dir, fmt, no_plots, runs_root):
    """Rank runs and sweep trials by their best validation score; recommend the smallest good one.

    PATHS (run or sweep folders) default to the newest sweep.

    The recommended run has the fewest parameters among those within
    --tolerance of the best score. Notes flag overfitting and a training
    accuracy below the validation accuracy.

    \b
    Examples:
      mlp compare                        # the newest sweep
      mlp compare runs/mnist-batch-sweep-20261129-212900
      mlp compare runs/mnist-mlp-20261129-212900 runs/quick-20261129-213000 --monitor val_accuracy
    """
    from mlpcli.compare import compare as run_compare
    from mlpcli.compare import format_comparison

    result = run_compare(paths, monitor=monitor, tolerance=tolerance, out_dir=out_dir, fmt=fmt,
                         plots=not no_plots, note=_note, runs_root=runs_root)
    echo(format_comparison(result))
    if result.plots is not None:
        result.plots.raise_failures()
