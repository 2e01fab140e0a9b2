"""MLflow tracking of a run (``logging.mlflow``) and of a sweep, with mlflow-skinny (an optional extra).

A run logs to one MLflow run: the resolved config as params (dotted keys, ``model.layers.0.units``),
every history.csv column per epoch as metrics (step = epoch) and the test metrics as
``test_<name>``, tags (``mlpcli.version``, ``mlpcli.run_folder``); at the end model.h5,
history.csv, config.yaml and plots/ as artifacts. The MLflow run's id and tracking URI are kept in
``RUN/mlflow.json``, so ``mlp train --resume`` continues the same MLflow run (logging only the
epochs it has not got). A sweep is a parent MLflow run (its id in ``SWEEP/mlflow.json``) with one
nested run per trial: the trials get the parent's id through their config
(``logging.mlflow.parent_run_id``), so trials in other processes or on Dask workers find it.

The default tracking URI is the file store ``mlruns/`` beside the runs root (``runs/`` ->
``./mlruns``), which mlflow-skinny reads and writes with no database packages; MLflow 3 keeps
that store only on request, so for a ``file:`` URI ``MLFLOW_ALLOW_FILE_STORE`` is set to true
(unless the environment says otherwise). A tracking server that fails never stops training:
the first failure is printed once, naming the URI, and the run goes on without MLflow.
"""

import json
import os
import re
import time
from pathlib import Path

from mlpcli import __version__, files, runs
from mlpcli.errors import MlpError
from mlpcli.fit_loop import Callback

INSTALL_HINT = "logging.mlflow needs mlflow-skinny: pip install 'mlpcli[mlflow]'"
MLRUNS_DIR = "mlruns"  # the default file store, beside the runs root
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag of a nested run
BATCH = 100  # params per log_batch call, MLflow's limit
# a tracking server that does not answer costs the run this long once (then it goes on without MLflow):
# MLflow's own defaults (7 retries backing off, 120 s each) held a run ~4 minutes before its first
# epoch on a refused connection; the environment's own settings win
HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
_KEY_CHARACTERS = re.compile(r"[^A-Za-z0-9_.\- /]")  # what MLflow refuses in a param or metric key


def client_for(uri):
    """An ``MlflowClient`` of ``uri``, or an MlpError naming the extra to install."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise MlpError(f"{INSTALL_HINT} ({exc})") from None
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    for name, value in HTTP_SETTINGS.items():
        os.environ.setdefault(name, value)
    return MlflowClient(uri)


def default_tracking_uri(runs_root):
    """The file store ``mlruns/`` beside the folder ``runs_root``, as a ``file:`` URI."""
    return (Path(runs_root).resolve().parent / MLRUNS_DIR).as_uri()


def flat_params(cfg, prefix=""):
    """{dotted key: text} of a config's values (lists by position: ``model.layers.0.units``)."""
    items = cfg.items() if isinstance(cfg, dict) else enumerate(cfg)
    out = {}
    for key, value in items:
        name = _KEY_CHARACTERS.sub("_", f"{prefix}{key}")
        if isinstance(value, (dict, list)) and value:
            out.update(flat_params(value, f"{name}."))
        else:
            out[name] = json.dumps(value) if value is None or isinstance(value, (bool, dict, list)) else str(value)
    return out


def _param_length():
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    return MAX_PARAM_VAL_LENGTH


class Tracker:
    """One MLflow run, every call guarded: the first failure is told once through ``warn`` (naming
    the tracking URI) and every later call is skipped."""

    def __init__(self, uri, warn):
        self.uri, self.warn = uri, warn
        self.client = client_for(uri)
        self.run_id = None
        self.failed = False

    def call(self, what, *args, **kwargs):
        """``client.<what>(*args, **kwargs)``; None once MLflow has failed."""
        if self.failed:
            return None
        try:
            return getattr(self.client, what)(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure of the tracking server: go on without it
            self.failed = True
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.warn(f"Warning: MLflow at {self.uri} failed ({text[:300]}); training goes on without "
                      "MLflow logging")
            return None

    def start(self, experiment, run_name, tags):
        """Create the MLflow run (in ``experiment``, made when missing); its id, or None."""
        found = self.call("get_experiment_by_name", experiment)
        experiment_id = found.experiment_id if found is not None else self.call("create_experiment", experiment)
        if experiment_id is None:
            return None
        run = self.call("create_run", experiment_id, run_name=run_name,
                        tags={k: v for k, v in tags.items() if v is not None})
        self.run_id = None if run is None else run.info.run_id
        return self.run_id

    def log_params(self, params):
        from mlflow.entities import Param

        limit = _param_length()
        entries = [Param(k, v[:limit]) for k, v in params.items()]
        for start in range(0, len(entries), BATCH):
            self.call("log_batch", self.run_id, params=entries[start:start + BATCH])

    def log_metrics(self, values, step):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.call("log_batch", self.run_id, metrics=[Metric(_KEY_CHARACTERS.sub("_", k), float(v), now, step)
                                                     for k, v in values.items()])

    def log_artifact(self, path, folder=None):
        if path.is_dir():
            self.call("log_artifacts", self.run_id, str(path), folder)
        elif path.is_file():
            self.call("log_artifact", self.run_id, str(path), folder)

    def record(self, folder):
        """Keep the run's id and URI in ``folder``'s mlflow.json, for --resume."""
        files.write_text(folder / runs.MLFLOW_RUN_FILE,
                         json.dumps({"tracking_uri": self.uri, "run_id": self.run_id}, indent=2) + "\n")

    def finish(self):
        self.call("set_terminated", self.run_id, "FINISHED")


def recorded_run(folder):
    """(tracking URI, run id) kept in ``folder``'s mlflow.json, or None when it has none."""
    path = folder / runs.MLFLOW_RUN_FILE
    if not path.exists():
        return None
    try:
        kept = runs.read_json(path)
        return str(kept["tracking_uri"]), str(kept["run_id"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise MlpError(f"{path}: is not the record of an MLflow run ({exc}); remove it to log the rest "
                       "of the run to a new MLflow run") from None


class MlflowLog(Callback):
    """Logs the run to MLflow (see the module's doc); last in the list, after the plots."""

    finishing = "logging to MLflow"

    def __init__(self, cfg, folder, runs_root, warn, line):
        """``runs_root``: the folder of the new run's siblings (None: the run is resumed). A new
        run's config gets the tracking URI it logs to, so its config.yaml says where. ``line``
        is told which MLflow run it is."""
        self.cfg, self.folder, self.settings, self.line = cfg, folder, cfg["logging"]["mlflow"], line
        recorded = recorded_run(folder) if runs_root is None else None
        if self.settings["tracking_uri"] is None:
            self.settings["tracking_uri"] = default_tracking_uri(runs_root or folder.parent)
        uri, self.resumed_id = recorded or (self.settings["tracking_uri"], None)
        self.tracker = Tracker(uri, warn)
        self.logged_through = 0  # the last epoch the MLflow run has
        self.tested_at = set()  # the epochs whose test metrics it has (a run resumed after its final steps)

    def on_train_begin(self):
        tracker = self.tracker
        if self.resumed_id is not None:
            tracker.run_id = self.resumed_id
            logged = tracker.call("get_metric_history", tracker.run_id, "loss") or []
            self.logged_through = max((m.step for m in logged), default=0)
            self.tested_at = {m.step for m in tracker.call("get_metric_history", tracker.run_id, "test_loss") or []}
            tracker.call("update_run", tracker.run_id, "RUNNING")
            for row in self.loop.history:  # epochs saved before the stop that MLflow did not get
                self.on_epoch_end(row["epoch"], {k: v for k, v in row.items() if k != "epoch"})
            self.line(f"MLflow: continuing run {tracker.run_id} at {tracker.uri}")
            return
        tags = {"mlpcli.version": __version__, "mlpcli.run_folder": str(self.folder.resolve()),
                PARENT_TAG: self.settings["parent_run_id"]}
        if tracker.start(self.settings["experiment"], self.settings["run_name"] or self.folder.name, tags):
            tracker.record(self.folder)
            tracker.log_params(flat_params(self.cfg))
            self.line(f"MLflow: run {tracker.run_id} in experiment {self.settings['experiment']} at {tracker.uri}")

    def on_epoch_end(self, epoch, logs):
        if epoch > self.logged_through:
            self.tracker.log_metrics(logs, epoch)
            self.logged_through = epoch

    def on_train_end(self, results):
        tracker = self.tracker
        if results.get("test") and self.logged_through not in self.tested_at:
            tracker.log_metrics({f"test_{k}": v for k, v in results["test"].items()}, self.logged_through)
        for name in (runs.MODEL_FILE, runs.HISTORY_FILE, runs.CONFIG_FILE):
            tracker.log_artifact(self.folder / name)
        tracker.log_artifact(self.folder / runs.PLOTS_DIR, runs.PLOTS_DIR)
        tracker.finish()


def parent_run(settings, folder, runs_root, warn, kind, params=None):
    """The parent MLflow run of a sweep or a cross-validation run (``kind``: "sweep" or "run")
    in ``folder`` (``settings``: its ``logging.mlflow``; the run recorded in ``folder`` when it
    is resumed; nested itself when ``settings`` name a parent), with ``params`` logged, and the
    ``--set`` that nests each trial's or fold's run in it (``logging.mlflow=null`` when MLflow
    failed, so that none tries again)."""
    recorded = recorded_run(folder)
    tracker = Tracker(recorded[0] if recorded else settings["tracking_uri"] or default_tracking_uri(runs_root),
                      warn)
    if recorded:
        tracker.run_id = recorded[1]
        tracker.call("update_run", tracker.run_id, "RUNNING")
    elif tracker.start(settings["experiment"], settings["run_name"] or folder.name,
                       {"mlpcli.version": __version__, f"mlpcli.{kind}_folder": str(folder.resolve()),
                        PARENT_TAG: settings["parent_run_id"]}):
        tracker.record(folder)
        if params:
            tracker.log_params(params)
    if tracker.failed:
        return tracker, "logging.mlflow=null"
    child = {**settings, "tracking_uri": tracker.uri, "run_name": None, "parent_run_id": tracker.run_id}
    return tracker, f"logging.mlflow={json.dumps(child)}"


def finish_cross_validation(tracker, folder, summary, summary_file):
    """The folds' mean and standard deviation of each score as the parent run's metrics
    (``val_accuracy_mean``, ``test_accuracy_std``, ``best_val_loss_mean``, ...), its summary
    file as an artifact."""
    values = {}
    for stat in ("mean", "std"):
        found = summary[stat]
        if found.get("best_value") is not None:
            values[f"best_{summary['monitor']}_{stat}"] = found["best_value"]
        for group, prefix in (("final", ""), ("test", "test_")):
            values.update({f"{prefix}{name}_{stat}": v for name, v in (found.get(group) or {}).items()
                           if name != "lr" and v is not None})
    tracker.log_metrics(values, 0)
    tracker.log_artifact(folder / summary_file)
    tracker.finish()


def finish_sweep(tracker, folder, results_file):
    """The sweep's results (``results_file``) and comparison plots as the parent run's artifacts."""
    tracker.log_artifact(folder / results_file)
    for plot in sorted(folder.glob("*.png")):
        tracker.log_artifact(plot)
    tracker.finish()
