"""The ``mlp`` command line. Click only: each command parses its options,
calls one stage function and turns known errors into a clean message
(``mlpcli.cli_output``). The commands that tune and compare are in
``mlpcli.cli_tuning``; this module adds them to the ``mlp`` group."""

import click

from mlpcli import __version__, cli_tuning
from mlpcli.cli_output import clean_errors, echo, note, note_all
from mlpcli.onnx_opsets import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET


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
@click.option("--processes", default=None, metavar="N|auto",
              help="Processes that share each batch (same as --set training.processes=N; "
                   "Linux on x86-64, at most the cores; auto: one per core).")
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


@main.command()
@click.argument("run_dir", required=False, type=click.Path(file_okay=False))
@click.option("--checkpoint", default=None, metavar="model.h5|best|last|N",
              help="Which of the run's models: model.h5 (default), best, last, an epoch number or a checkpoint file name.")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), default=None,
              help="Any Keras-layout .h5 or Keras 3 .keras MLP instead of a run's model.")
@click.option("--data", default=None, metavar="DATASET|FILE",
              help="Evaluate on mnist, fashion_mnist, a .npz/.csv file, or a folder (of images, or of .npy arrays for an npy run) instead of the run's test split.")
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
                          image_steps=image_steps, runs_root=runs_root, note=note)
    if as_json:  # stdout holds the JSON alone; where it was saved is a note
        import json

        echo(json.dumps(result.report))
        note_all(result.warnings)
        result.save()
        note(f"Wrote {result.path}")
        return
    echo(format_report(result.report))
    note_all(result.warnings)
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
                          save_preprocessed=save_preprocessed, runs_root=runs_root, note=note, emit=echo)
    note_all(outcome.notes)
    score = outcome.score_line()
    if outcome.out is not None:
        echo(f"Wrote {outcome.count:,} predictions to {outcome.out}")
        if score:
            echo(score)
    elif score:
        note(score)


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
                      overwrite=overwrite, runs_root=runs_root, note=note)
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
              note=note, emit=echo)


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

    dirs = [model_folder(d, runs_root, note) for d in run_dirs] or [model_folder(None, runs_root, note)]
    report = plot_runs(dirs, Path(out_dir) if out_dir else None, fmt)
    for path in report.written:
        echo(f"wrote {path}")
    for line in report.skipped:
        echo(f"skipped {line}")
    report.raise_failures()


for command in (cli_tuning.lr_find, cli_tuning.sweep, cli_tuning.compare, cli_tuning.report):
    main.add_command(command)
