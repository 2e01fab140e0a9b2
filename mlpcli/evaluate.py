"""The ``evaluate`` stage: score a model on a test split and write ``evaluation*.json``.

The model is a run's ``model.h5``, one of its checkpoints (``best``, ``last``
or an epoch number) or any Keras-layout ``.h5`` MLP. The data is the test
split of the run's dataset, or ``--data``: a dataset name or a file/folder of
the same kind as the training data.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlpcli import config as config_mod
from mlpcli import files, modelfile, run_models, runs
from mlpcli.data import apply_preprocessing, fit_preprocessing, load_raw
from mlpcli.data.builtin import BUILTINS
from mlpcli.errors import ConfigError, DataError, MlpError, ModelFileError
from mlpcli.nn import losses, metrics
from mlpcli.nn.metrics import confusion_matrix, per_class_scores, predicted_classes

MISCLASSIFIED_KEPT = 100
IMAGE_DATASETS = ("mnist", "fashion_mnist", "image_folder")


@dataclass
class Evaluation:
    report: dict  # what evaluation*.json holds
    path: Path  # where ``save`` writes it

    def save(self):
        files.write_text(self.path, json.dumps(self.report, indent=2) + "\n")


def evaluate(run_dir=None, *, checkpoint=None, model_path=None, data=None, runs_root="runs", note=None):
    """Evaluate a model; see the module docstring. The report is written by ``save``, so it
    can be shown first: a folder that cannot be written to does not cost the user the report.
    ``note`` is told where a link to the run folder led and which trial of a sweep folder is
    used (see ``runs.model_folder``)."""
    if model_path is not None and checkpoint is not None:
        raise MlpError("give either --checkpoint or --model, not both")
    if model_path is None or run_dir is not None:
        run_dir = runs.model_folder(run_dir, runs_root, note)
        if not (run_dir / runs.CONFIG_FILE).exists():
            raise MlpError(f"{run_dir}: not a run folder (no {runs.CONFIG_FILE})")
    if model_path is None:
        model_path = run_models.choose_checkpoint(run_dir, checkpoint)
    model_path = Path(model_path)
    loaded = modelfile.load(model_path)
    if loaded.config:
        cfg = _checked_config(loaded.config, model_path)
    else:
        cfg = runs.run_config(run_dir) if run_dir else None
    x_raw, y, class_names, source, kind = _test_data(cfg, loaded, data, run_dir, model_path)
    # a foreign Keras file does not say how it scaled its inputs: assume Keras's usual x / 255 for images
    preprocessing = loaded.preprocessing or fit_preprocessing(None, "unit" if kind in IMAGE_DATASETS else "none")
    x = apply_preprocessing(x_raw, preprocessing)
    model = loaded.model
    if int(np.prod(x.shape[1:])) != int(np.prod(model.input_shape)):
        raise DataError(f"{source}: samples have {int(np.prod(x.shape[1:]))} values but the model "
                        f"expects input shape {list(model.input_shape)}")
    x = x.reshape((len(x),) + model.input_shape)
    report = score(model, x, y, loss_name=_loss_name(cfg, loaded),
                   metric_specs=cfg["metrics"] if cfg else [{"type": "accuracy"}],
                   task=cfg["task"] if cfg else _guess_task(loaded),
                   class_names=loaded.class_names or class_names)
    report = {"checkpoint": model_path.name, "model_file": str(model_path.resolve()),
              "data": source, "run_test_split": data is None and loaded.config is not None, **report}
    return Evaluation(report, run_models.evaluation_path(run_dir, model_path, data))


def _checked_config(cfg, model_path):
    """The mlpcli config stored in a model file, checked as ``mlp train`` checks a config."""
    try:
        return config_mod.resolve(cfg)
    except ConfigError as exc:
        raise ModelFileError(f"{model_path}: the mlpcli config stored in the file is not valid: "
                             + "; ".join(exc.problems)) from None


def _test_data(cfg, loaded, data, run_dir, model_path):
    """(raw features, targets, class names, description, dataset kind) of the evaluation data.

    Data paths come only from the user: ``--data``, or the config.yaml of the
    run being evaluated; the paths in a model file's stored config are never
    followed (a file from elsewhere could name any local file or folder).
    """
    task = cfg["task"] if cfg else _guess_task(loaded)
    if data is None:
        if run_dir is not None:
            data_cfg = dict(runs.run_config(run_dir)["data"])
        elif cfg is None:
            if int(np.prod(loaded.model.input_shape)) == 784 and loaded.model.n_outputs == 10:
                data_cfg = {"dataset": "mnist"}
            else:
                raise MlpError("this model file carries no mlpcli config; pass --data (a dataset "
                               "name or a file) to say what to evaluate it on")
        else:
            data_cfg = _stored_builtin_data(cfg["data"], model_path)
    elif data in BUILTINS:
        data_cfg = {"dataset": data}
    else:
        kind = _kind_of(Path(data), cfg)
        data_cfg = {**(cfg["data"] if cfg else {}), "dataset": kind, "path": str(data),
                    "test_path": None, "validation_path": None, "max_test_samples": None}
    raw, name = load_raw(data_cfg, task=task)
    kind = data_cfg["dataset"]
    if raw.x_test is not None:
        x, y = raw.x_test[:data_cfg.get("max_test_samples")], raw.y_test[:data_cfg.get("max_test_samples")]
        return x, y, raw.class_names, f"{name} test split ({len(x)} samples)", kind
    if data is not None:
        return raw.x_train, raw.y_train, raw.class_names, f"{name} ({len(raw.x_train)} samples)", kind
    raise MlpError(f"the run's dataset ({name}) has no test split; pass --data FILE to evaluate on")


def _stored_builtin_data(data_cfg, model_path):
    """The ``data:`` section stored in a model file, if it names a built-in dataset (whose
    files are the package's own), without any paths."""
    if data_cfg["dataset"] not in BUILTINS:
        paths = "; ".join(f"data.{key}: {data_cfg[key]}" for key in config_mod.PATH_KEYS
                          if data_cfg.get(key))
        raise MlpError(f"{model_path}: the config stored in this model file reads "
                       f"{data_cfg['dataset']} data from files ({paths}); paths stored in a model "
                       "file are not followed: pass --data (a dataset name, file or folder) to say "
                       "what to evaluate it on")
    return {**data_cfg, **dict.fromkeys(config_mod.PATH_KEYS)}


def _kind_of(path, cfg):
    if path.is_dir():
        return "image_folder"
    suffix = path.suffix.lower()
    if suffix in (".npz", ".csv"):
        return suffix[1:]
    if cfg and cfg["data"]["dataset"] not in BUILTINS:
        return cfg["data"]["dataset"]
    raise MlpError(f"--data {path}: expected mnist, fashion_mnist, a .npz or .csv file, or a folder of images")


def _guess_task(loaded):
    last = loaded.model.layers[-1]
    activation = getattr(getattr(last, "activation", None), "name", "linear")
    return "classification" if activation in ("softmax", "sigmoid") else "regression"


def _loss_name(cfg, loaded):
    if cfg:
        return cfg["loss"]
    if loaded.loss in losses.LOSSES or loaded.loss in losses.ALIASES:
        return loaded.loss
    if _guess_task(loaded) == "regression":
        return "mean_squared_error"
    return "binary_crossentropy" if loaded.model.n_outputs == 1 else "categorical_crossentropy"


def score(model, x, y, *, loss_name, metric_specs, task, class_names=None):
    """Loss, metrics and, for classification, the per-class report of ``model`` on (x, y)."""
    loss = losses.get(loss_name)
    y_pred = model.predict(x).reshape(len(x), -1)
    penalty = model.weight_penalty() + model.predict_activity_penalty
    report = {"samples": int(len(x)),
              "loss": loss.value(losses.encode_targets(loss, y, model.n_outputs), y_pred) + penalty,
              "metrics": metrics.compute(metric_specs, y, y_pred)}
    if task != "classification":
        return report
    n_classes = max(model.n_outputs, 2)
    names = list(class_names) if class_names and len(class_names) == n_classes else \
        [str(i) for i in range(n_classes)]
    predicted = predicted_classes(y_pred)
    cm = confusion_matrix(y.astype(np.int64), predicted, n_classes)
    precision, recall, f1, support = per_class_scores(cm)
    total = support.sum()
    report["class_names"] = names
    report["per_class"] = [{"class": names[i], "precision": float(precision[i]), "recall": float(recall[i]),
                            "f1": float(f1[i]), "support": int(support[i])} for i in range(n_classes)]
    report["macro_avg"] = {"precision": float(precision.mean()), "recall": float(recall.mean()),
                           "f1": float(f1.mean()), "support": int(total)}
    weights = support / max(total, 1)
    report["weighted_avg"] = {"precision": float(precision @ weights), "recall": float(recall @ weights),
                              "f1": float(f1 @ weights), "support": int(total)}
    report["confusion_matrix"] = cm.tolist()
    wrong = np.flatnonzero(predicted != y)[:MISCLASSIFIED_KEPT]
    confidence = y_pred.max(axis=1) if model.n_outputs > 1 else np.abs(y_pred[:, 0] - 0.5) + 0.5
    report["misclassified"] = [{"index": int(i), "true": int(y[i]), "predicted": int(predicted[i]),
                                "probability": float(confidence[i])} for i in wrong]
    return report


def format_report(report):
    """The report as aligned text tables for the terminal."""
    lines = [f"Model: {report['model_file']}", f"Data:  {report['data']}", "",
             f"loss: {report['loss']:.4f}"]
    lines += [f"{k}: {v:.4f}" for k, v in report["metrics"].items()]
    if "per_class" not in report:
        return "\n".join(lines)
    names = report["class_names"]
    width = max(12, *(len(n) for n in names)) + 2
    lines += ["", f"{'class':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    rows = [(r["class"], r) for r in report["per_class"]] + [("macro avg", report["macro_avg"]),
                                                              ("weighted avg", report["weighted_avg"])]
    for i, (name, r) in enumerate(rows):
        if i == len(report["per_class"]):
            lines.append("")
        lines.append(f"{name:<{width}}{r['precision']:>10.4f}{r['recall']:>10.4f}{r['f1']:>10.4f}"
                     f"{r['support']:>10}")
    cm = np.array(report["confusion_matrix"])
    cell = max(5, len(str(cm.max())) + 1, *(len(n) + 1 for n in names))
    lines += ["", "confusion matrix (rows: true class, columns: predicted)",
              " " * width + "".join(f"{n:>{cell}}" for n in names)]
    lines += [f"{names[i]:<{width}}" + "".join(f"{v:>{cell}}" for v in row) for i, row in enumerate(cm)]
    return "\n".join(lines)
