"""The config's ``logging:`` section: where a run is tracked besides its own folder.

``logging: {tensorboard: true}`` writes TensorBoard event files into ``RUN/tensorboard/``
(``mlpcli.tracking_tensorboard``); ``logging: {mlflow: {tracking_uri, experiment, run_name}}``
(or ``mlflow: true`` for the defaults) logs the run to MLflow (``mlpcli.tracking_mlflow``).
Each tracker's package is an optional extra, imported only when its logging is on.
"""

from mlpcli.config_check import _Checker, _show
from mlpcli.nn.spec import BOOLEAN, Component, Constraint, Param

NULLABLE_STRING = Constraint("string", nullable=True)

LOGGING = Component("logging", "Where the run is tracked besides its folder.", params=(
    Param("tensorboard", False, BOOLEAN, "TensorBoard event files in `RUN/tensorboard/` (`--tensorboard`)"),
))
MLFLOW = Component("mlflow", "The MLflow run the run logs to.", params=(
    Param("tracking_uri", None, NULLABLE_STRING,
          "the tracking server or store (null: the file store `mlruns/` beside the runs root)"),
    Param("experiment", "mlpcli", Constraint("string"), "the MLflow experiment's name"),
    Param("run_name", None, NULLABLE_STRING, "the MLflow run's name (null: the run folder's name)"),
    Param("parent_run_id", None, NULLABLE_STRING,
          "the MLflow run this one is nested in (set by `mlp sweep` for its trials)"),
))
DEFAULTS = {**LOGGING.defaults(), "mlflow": None}


def logging_options(check, cfg):
    """``logging:`` resolved: each key checked against its declaration; ``mlflow: true`` is
    ``mlflow:`` with every default, ``false`` or null none."""
    spec = cfg["logging"] = check.mapping("logging", cfg["logging"], set(DEFAULTS), DEFAULTS)
    for param in LOGGING.params:
        spec[param.name] = check.param(f"logging.{param.name}", spec[param.name], param, LOGGING)
    mlflow = spec["mlflow"]
    if mlflow is False or mlflow is None:
        spec["mlflow"] = None
        return
    if mlflow is True:
        mlflow = {}
    if not isinstance(mlflow, dict):
        check.error("logging.mlflow", "must be true, false, null or a mapping {tracking_uri, experiment, "
                                      f"run_name}}, got {_show(mlflow)}")
        spec["mlflow"] = None
        return
    mlflow = spec["mlflow"] = check.mapping("logging.mlflow", mlflow, set(MLFLOW.defaults()), MLFLOW.defaults())
    for param in MLFLOW.params:
        mlflow[param.name] = check.param(f"logging.mlflow.{param.name}", mlflow[param.name], param, MLFLOW)


def resolved_logging(raw):
    """The ``logging:`` section of a raw config (a sweep's base config) resolved, or None when
    it has problems (the runs that use it report them)."""
    check = _Checker()
    cfg = {"logging": raw.get("logging") if isinstance(raw, dict) else None}
    logging_options(check, cfg)
    return None if check.problems else cfg["logging"]
