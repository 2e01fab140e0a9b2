"""The one way into a model: open it, prepare raw inputs as it needs them, predict, score.

``Predictor`` opens a model file (a run's ``model.h5``, one of its checkpoints,
a sweep's recommended trial, or any Keras-layout ``.h5`` or Keras 3 ``.keras``) with the input
pipeline it records (``mlpcli.pipeline``), and prepares raw samples through it:
the scaling and its numbers, the sample shape, the class names.
``mlp evaluate`` and ``mlp predict`` both go through it; reading the inputs
themselves (images, CSV rows, arrays) is ``mlpcli.predict_inputs``.

A foreign Keras file records no pipeline: its inputs go in as they are
(``--scaling none``) unless the user says otherwise, and a warning names the
option when the values suggest otherwise (``RangeCheck``).
"""

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlpcli import modelfile, run_models, runs
from mlpcli.data.features import check_finite, scale_into
from mlpcli.errors import ConfigError, DataError, MlpError, ModelFileError
from mlpcli.nn import losses
from mlpcli.pipeline import SCALINGS, standard_numbers

FOREIGN_SCALING = "none"  # what a file without mlpcli's record gets unless --scaling says otherwise
MISCLASSIFIED_KEPT = 100
# scored by ``mlp evaluate`` whether or not the config lists them
ALWAYS_SCORED = {"classification": ("auc", "pr_auc", "log_loss"), "regression": ("r2",)}


@dataclass
class Prediction:
    source: str  # file name, or "<file>[row]"
    label: str
    probability: float
    top: list  # [(label, probability), ...], best first

    def as_dict(self):
        return {"source": self.source, "class": self.label, "probability": self.probability,
                "top_k": [{"class": c, "probability": p} for c, p in self.top]}


class RangeCheck:
    """The range of the raw values a predictor took in, and the warning it calls for: values
    that look already scaled for a model that divides by 255, or raw pixels for a model that
    takes them as they are.

    Pixels decoded from image files are levels of 0..255 by construction, however dark the
    image: they count towards "raw pixels", never towards "already scaled"."""

    def __init__(self):
        self.low, self.high = math.inf, -math.inf
        self.array_low, self.array_high = math.inf, -math.inf  # of the values not from image files

    def add(self, raw, pixels=False):
        if raw.size:
            low, high = float(raw.min()), float(raw.max())
            self.low, self.high = min(self.low, low), max(self.high, high)
            if not pixels:
                self.array_low, self.array_high = min(self.array_low, low), max(self.array_high, high)

    def warning(self, predictor):
        if self.high < self.low:
            return None
        if predictor.scaling == "unit" and 0 < self.array_high <= 1:  # (all zeros: blank, nothing to tell)
            told = "--scaling unit" if predictor.scaling_given else "the model, as in its training"
            return (f"Warning: input values range over [{self.array_low:g}, {self.array_high:g}], yet they "
                    f"are divided by 255 ({told}); if they are already scaled (x / 255), pass --scaling none")
        seen = f"input values range over [{self.low:g}, {self.high:g}]"
        if predictor.scaling != "none" or self.high <= 1:
            return None
        if predictor.pipeline is not None and predictor.pipeline.scaling == "unit":
            return (f"Warning: {seen} and go in as they are (--scaling none), but the model was trained "
                    "on values divided by 255; leave out --scaling none to scale them as in training")
        if predictor.pipeline is None and not predictor.scaling_given:
            return (f"Warning: {seen} and go in as they are: {predictor.path} does not record how its "
                    f"inputs were scaled, and --scaling defaults to {FOREIGN_SCALING} for such files; if "
                    "the model was trained on x / 255 (as in the Keras MNIST tutorial), pass --scaling "
                    "unit; pass --scaling none to say the inputs are right as they are")
        return None


class Predictor:
    """A model and what its raw inputs need (see the module docstring)."""

    def __init__(self, loaded, path, run_dir=None, *, scaling=None):
        self.loaded, self.model, self.path, self.run_dir = loaded, loaded.model, Path(path), run_dir
        self.pipeline = loaded.pipeline
        if scaling is not None and scaling not in SCALINGS:
            raise MlpError(f"--scaling: must be one of {', '.join(SCALINGS)}, got {scaling!r}")
        self.scaling_given = scaling is not None
        own = self.pipeline.scaling if self.pipeline else FOREIGN_SCALING
        self.scaling = scaling or own
        if self.scaling == "standardize" and self.pipeline is None:
            raise MlpError(f"--scaling standardize: {path} does not record the training data's mean and "
                           "standard deviation (only a model file mlpcli wrote does); standardize the "
                           "inputs yourself and pass --scaling none")
        if self.scaling == "standardize" and self.pipeline.scaling != "standardize":
            raise MlpError(f"--scaling standardize: {path} was trained with scaling "
                           f"{self.pipeline.scaling}, so it records no mean and standard deviation")
        self.scale, self.offset = (self.pipeline.scaling_numbers(self.scaling) if self.pipeline
                                   else standard_numbers(self.scaling))
        self.feature_shape = tuple(self.pipeline.feature_shape) if self.pipeline else self.model.input_shape
        self.task = (self.pipeline.task if self.pipeline else
                     self.config["task"] if self.config else _guess_task(self.model))
        self.range = RangeCheck()

    @classmethod
    def open(cls, run_dir=None, *, model_path=None, checkpoint=None, runs_root="runs", note=None, scaling=None):
        """The model of ``model_path``, else of the run ``run_dir`` (default: the newest run;
        a sweep: its recommended trial), its ``checkpoint`` (model.h5, best, last, an epoch)."""
        if model_path is not None and checkpoint is not None:
            raise MlpError("give either --checkpoint or --model, not both")
        if model_path is None or run_dir is not None:
            run_dir = runs.model_folder(run_dir, runs_root, note)
            if not (run_dir / runs.CONFIG_FILE).exists():
                raise MlpError(f"{run_dir}: not a run folder (no config.yaml)")
        path = Path(model_path) if model_path is not None else run_models.choose_checkpoint(run_dir, checkpoint)
        return cls(modelfile.load(path), path, run_dir, scaling=scaling)

    # ---------------------------------------------------------------- what the model is

    @functools.cached_property
    def config(self):
        """The mlpcli config the file stores, checked as ``mlp train`` checks a config (None for
        a foreign file). Checked when first used: predicting through the recorded pipeline
        needs none of it, and checking imports all of the config's components."""
        return _checked_config(self.loaded.config, self.path) if self.loaded.config else None

    @property
    def n_classes(self):
        return max(self.model.n_outputs, 2)

    @property
    def class_names(self):
        """The names of the classes, by index (the indices themselves when none were recorded)."""
        names = self.pipeline.class_names if self.pipeline else None
        if names and len(names) == self.n_classes:
            return list(names)
        return [str(i) for i in range(self.n_classes)]

    @property
    def loss_name(self):
        if self.config:
            return self.config["loss"]
        if self.loaded.loss in losses.LOSSES or self.loaded.loss in losses.ALIASES:
            return self.loaded.loss
        if self.task == "regression":
            return "mean_squared_error"
        return "binary_crossentropy" if self.model.n_outputs == 1 else "categorical_crossentropy"

    def expects(self):
        """What one sample must be, in words, for messages."""
        count = math.prod(self.model.input_shape)
        shape = self.feature_shape if self.pipeline else self.model.input_shape
        return f"{count} values (shape {list(shape)})"

    # ---------------------------------------------------------------- preparing inputs

    def prepare(self, raw, where, pixels=False):
        """Raw samples (n, ...) -> float32 (n, *input_shape): checked, scaled as the model needs.
        ``pixels``: the samples are images decoded from files (see ``RangeCheck``)."""
        raw = np.asarray(raw)
        if raw.dtype.kind not in "biuf":
            raise DataError(f"{where}: holds {raw.dtype} values, not numbers")
        want = math.prod(self.model.input_shape)
        if raw.ndim < 1 or math.prod(raw.shape[1:]) != want:
            got = math.prod(raw.shape[1:]) if raw.ndim > 1 else 1
            raise DataError(f"{where}: samples of shape {list(raw.shape[1:])} ({got} values); the model "
                            f"takes {self.expects()}")
        if raw.dtype.kind == "f":
            check_finite(raw, where)
        self.range.add(raw, pixels)
        x = np.empty((len(raw), *self.feature_shape), np.float32)
        return scale_into(raw.reshape(x.shape), x, self.scale, self.offset).reshape(
            (len(raw), *self.model.input_shape))

    def encode_labels(self, labels, where, row_name=None):
        """Label cells (str array, or numbers) -> int64 class indices of this model's classes.
        A label that is none of them is named by ``row_name(i)`` (a CSV's file line, an image's
        path), else by its row."""
        labels = np.asarray(labels)
        names = self.class_names
        if labels.dtype.kind in "iu":
            codes = labels.astype(np.int64)
        else:
            text = np.char.strip(labels.astype(str))
            recorded = self.pipeline.class_names if self.pipeline else None
            if recorded:
                known = np.asarray(names, dtype=str)
                order = np.argsort(known, kind="stable")
                at = np.minimum(np.searchsorted(known[order], text), len(known) - 1)
                codes = np.where(known[order][at] == text, order[at], -1).astype(np.int64)
            else:
                try:
                    codes = text.astype(np.int64)
                except ValueError:
                    raise DataError(f"{where}: labels are names, but the model records no class names; "
                                    f"give class indices 0..{len(names) - 1}") from None
        bad = (codes < 0) | (codes >= len(names))
        if bad.any():
            i = int(np.argmax(bad))
            row = row_name(i) if row_name is not None else f"row {i}"
            raise DataError(f"{where}: label {labels[i].item()!r} ({row}) is not one of the model's "
                            f"classes: {', '.join(names[:10])}{', ...' if len(names) > 10 else ''}")
        return codes

    def remap_labels(self, y, data_names, where):
        """Class indices of a dataset whose classes are ``data_names`` -> this model's indices."""
        if not data_names or not self.pipeline or not self.pipeline.class_names or data_names == self.class_names:
            return y
        return self.encode_labels(np.asarray(data_names, dtype=str)[y], where)

    # ---------------------------------------------------------------- outputs

    def outputs(self, x, sources=None):
        """The model's outputs (n, outputs) for prepared ``x``."""
        out = self.model.predict(x).reshape(len(x), -1)
        finite = np.isfinite(out).all(axis=1)
        if not finite.all():  # weights that overflow float32 on this input: no probability to show
            which = sources[int(np.argmin(finite))] if sources else f"sample {int(np.argmin(finite))}"
            raise MlpError(f"{which}: the model's outputs are not finite numbers (its weights overflow "
                           "float32 on this input)")
        return out

    def probabilities(self, outputs):
        """Class probabilities (n, classes): softmax rows as they are, a sigmoid's P(1) as [1-p, p]."""
        return np.hstack([1.0 - outputs, outputs]) if outputs.shape[1] == 1 else outputs

    def decode(self, sources, outputs, top_k=3):
        """A Prediction per row of ``outputs`` (classification) with the ``top_k`` classes."""
        names, probs = self.class_names, self.probabilities(outputs)
        k = max(1, min(top_k, probs.shape[1]))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [Prediction(src, names[o[0]], float(row[o[0]]), [(names[j], float(row[j])) for j in o])
                for src, row, o in zip(sources, probs, order)]

    def warnings(self):
        """What the inputs seen so far suggest the user check (a list of lines)."""
        line = self.range.warning(self)
        return ([line] if line else []) + (self.pipeline.notes if self.pipeline else [])

    # ---------------------------------------------------------------- scoring
    # (mlp evaluate's: the metrics and curves are imported here, not by `mlp predict`)

    def score(self, y_pred, y, activity_penalty, metric_specs=None):
        """Loss, metrics (with ``ALWAYS_SCORED``), the curves ``mlp plot`` draws and, for
        classification, the per-class report on the model's outputs ``y_pred`` for samples
        labelled ``y``; ``activity_penalty``: the activity regularizers' on those samples
        (``Sequential.predict_activity_penalty``, weighted by rows over several calls)."""
        from mlpcli import evaluation_curves
        from mlpcli.nn import metrics

        model = self.model
        metric_specs = metric_specs or (self.config["metrics"] if self.config else [{"type": "accuracy"}])
        listed = {spec["type"] for spec in metric_specs}
        metric_specs = [*metric_specs, *({"type": name} for name in ALWAYS_SCORED.get(self.task, ())
                                         if name not in listed)]
        loss = losses.from_spec(self.loss_name)
        penalty = model.weight_penalty() + activity_penalty
        report = {"samples": len(y_pred),
                  "loss": loss.value(losses.encode_targets(loss, y, model.n_outputs), y_pred) + penalty,
                  "metrics": metrics.compute(metric_specs, y, y_pred)}
        if self.task != "classification":
            return {**report, **evaluation_curves.regression_points(y, y_pred)}
        return {**report, **self._class_report(y.astype(np.int64), y_pred)}

    def _class_report(self, y, y_pred):
        from mlpcli import evaluation_curves
        from mlpcli.nn.metrics import (
            confusion_matrix,
            per_class_scores,
            predicted_classes,
        )

        n_classes, names = self.n_classes, self.class_names
        predicted = predicted_classes(y_pred)
        cm = confusion_matrix(y, predicted, n_classes)
        precision, recall, f1, support = per_class_scores(cm)
        total = support.sum()
        weights = support / max(total, 1)
        wrong = np.flatnonzero(predicted != y)[:MISCLASSIFIED_KEPT]
        confidence = y_pred.max(axis=1) if self.model.n_outputs > 1 else np.abs(y_pred[:, 0] - 0.5) + 0.5
        return {
            "class_names": names,
            "per_class": [{"class": names[i], "precision": float(precision[i]), "recall": float(recall[i]),
                           "f1": float(f1[i]), "support": int(support[i])} for i in range(n_classes)],
            "macro_avg": {"precision": float(precision.mean()), "recall": float(recall.mean()),
                          "f1": float(f1.mean()), "support": int(total)},
            "weighted_avg": {"precision": float(precision @ weights), "recall": float(recall @ weights),
                             "f1": float(f1 @ weights), "support": int(total)},
            "confusion_matrix": cm.tolist(),
            "misclassified": [{"index": int(i), "true": int(y[i]), "predicted": int(predicted[i]),
                               "probability": float(confidence[i])} for i in wrong],
            **evaluation_curves.classifier_curves(y, y_pred, names)}


def _checked_config(cfg, path):
    """The mlpcli config stored in a model file, checked as ``mlp train`` checks a config."""
    from mlpcli import config as config_mod

    try:
        return config_mod.resolve(cfg)
    except ConfigError as exc:
        raise ModelFileError(f"{path}: the mlpcli config stored in the file is not valid: "
                             + "; ".join(exc.problems)) from None


def _guess_task(model):
    """A foreign file's task, from its output activation: a softmax or sigmoid gives probabilities."""
    last = model.layers[-1]
    activation = getattr(getattr(last, "activation", None), "name", "linear")
    return "classification" if activation in ("softmax", "sigmoid") else "regression"

