"""The ``mlp`` commands that tune and compare: ``lr-find``, ``sweep``, ``compare``, ``report``.
Click only, as ``mlpcli.cli`` (which adds them to the ``mlp`` group)."""

import click

from mlpcli.cli_output import clean_errors, echo, note, note_all


@click.command("lr-find")
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


@click.command()
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
              quiet=quiet, echo=echo, note=note)


@click.command()
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
                         runs_root=runs_root, note=note)
    note_all(written.notes)
    echo(f"Wrote {written.path}")


@click.command()
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
                         plots=not no_plots, note=note, runs_root=runs_root)
    echo(format_comparison(result))
    if result.plots is not None:
        result.plots.raise_failures()
