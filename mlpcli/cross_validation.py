"""K-fold cross-validation for ``mlp train`` (``training.folds: K``, or ``--folds K``).

The data a run would train and validate on (the test data stays out) is split into K
folds (stratified by class for classification; ``mlpcli.data.split.kfold_split``),
seeded by the config's seed. Fold i is an ordinary run, ``RUN/fold-i``, of the config
with ``training.fold: i``: it trains on the other folds and validates on fold i. When the
K runs are done, ``RUN/cross_validation.json`` gets each fold's metrics and their mean and
standard deviation (``mlpcli.fold_runs``), printed as ``val_accuracy 0.9712 ± 0.0031 over
5 folds``. ``--resume RUN`` keeps the finished folds, continues an interrupted one from
its saved state and trains the rest.
"""

import shutil
import signal

from mlpcli import config as config_mod
from mlpcli import files, fold_runs, runs
from mlpcli.errors import Interrupted, MlpError, NoSavedState
from mlpcli.fit_loop import StopRequest


def run_folds(cfg, folder, train_fold, report, overrides=(), runs_root=None):
    """Train the folds of the cross-validation run ``folder`` (its config.yaml is ``cfg``) not
    finished yet, then write and print the summary; return it.

    ``train_fold(config_path, overrides, run_dir=..., resume=...)`` is ``mlp train``'s own
    entry point; ``overrides`` (of ``--resume RUN --set ...``, already in ``cfg``) go to the folds it
    continues, the finished ones too when they ask for more epochs (as ``--resume`` of a finished run
    with more epochs trains on; other settings, such as the threads a sweep gives, leave them be)."""
    k = cfg["training"]["folds"]
    with runs.RunLock(folder), StopRequest(training=True) as stop:
        parent, nesting = _mlflow_parent(cfg, folder, runs_root, report)
        files.write_text(folder / runs.CONFIG_FILE, config_mod.dump_yaml(cfg))
        for fold in range(1, k + 1):
            where = fold_runs.fold_dir(folder, fold)
            if runs.finished(where) and not _more_epochs(cfg, where):
                report.line(f"Fold {fold}/{k}: {where} finished; kept")
                continue
            report.line(f"Fold {fold}/{k}: {where}")
            try:
                _train_one(folder, fold, where, train_fold, overrides, nesting)
            except Interrupted as exc:
                what = str(exc).split("\n")[0]
                raise Interrupted(f"fold {fold} of {k}: {what}\nResume the cross-validation with: "
                                  f"mlp train --resume {folder}", exc.exit_code - 128) from None
            if stop():
                raise Interrupted(f"{signal.Signals(stop.signum).name} after fold {fold} of {k}\nResume the "
                                  f"cross-validation with: mlp train --resume {folder}", stop.signum)
        per_fold = [_fold_results(folder, fold) for fold in range(1, k + 1)]
        summary = fold_runs.summarize(per_fold)
        fold_runs.write_summary(folder, summary)
        if parent is not None:
            from mlpcli.tracking_mlflow import finish_cross_validation

            finish_cross_validation(parent, folder, summary, fold_runs.SUMMARY_FILE)
    report.line(f"Cross-validation over {k} folds: {folder / fold_runs.SUMMARY_FILE}")
    for text in fold_runs.summary_lines(summary):
        report.line(text)
    return summary


def _more_epochs(cfg, where):
    """Whether ``cfg`` (the cross-validation run's, with ``--set`` applied) asks the finished fold
    ``where`` for more epochs than it was given, so that resuming it trains on."""
    return cfg["training"]["epochs"] > runs.run_config(where)["training"]["epochs"]


def _mlflow_parent(cfg, folder, runs_root, report):
    """(the MLflow run the folds' runs are nested in, the --set items that nest one) when the
    config logs to MLflow; (None, []) otherwise. A new run's config records the store's URI."""
    settings = cfg["logging"]["mlflow"]
    if settings is None:
        return None, []
    from mlpcli.tracking_mlflow import flat_params, parent_run

    parent, nesting = parent_run(settings, folder, runs_root or folder.parent, report.warn, "run",
                                 flat_params(cfg))
    settings["tracking_uri"] = settings["tracking_uri"] or parent.uri
    if not parent.failed:
        report.line(f"MLflow: run {parent.run_id} at {parent.uri}, one nested run per fold")
    return parent, [nesting]


def _train_one(folder, fold, where, train_fold, overrides, nesting):
    """Train fold ``fold`` into ``where``: continue it from its saved state when it has one
    (its own config names its MLflow parent already), else start it (again) from the
    cross-validation run's config with ``nesting`` (the --set of its MLflow parent, if any)."""
    if (where / runs.CONFIG_FILE).is_file():
        try:
            train_fold(None, overrides, resume=where)
            return
        except NoSavedState:  # stopped before its first saved state: start it over
            pass
    if where.exists():
        with runs.RunLock(where):
            shutil.rmtree(where)
    train_fold(folder / runs.CONFIG_FILE, [f"training.fold={fold}", *nesting], run_dir=where)


def _fold_results(folder, fold):
    """What the summary keeps of a finished fold's results.json."""
    path = fold_runs.fold_dir(folder, fold) / runs.RESULTS_FILE
    try:
        results = runs.read_json(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise MlpError(f"{runs.shown(path)}: cannot be read ({exc}); move the fold's folder away to train it "
                       f"again with: mlp train --resume {folder}") from None
    if not isinstance(results, dict):
        raise MlpError(f"{runs.shown(path)}: is not the results of a run")
    kept = {"fold": fold, "run": fold_runs.fold_dir(folder, fold).name}
    kept.update({key: results.get(key) for key in ("best_epoch", "monitor", "best_value", "epochs_run", "seconds")})
    kept.update({group: results[group] for group in fold_runs.METRIC_GROUPS if isinstance(results.get(group), dict)})
    return kept
