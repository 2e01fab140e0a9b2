"""A cross-validation run's folder: the one module that names what it holds, writes and reads it.

``RUN/`` holds the run's ``config.yaml`` (``training.folds: K``, no ``training.fold``) and
``params.json`` as any run does, one ordinary run folder per fold, ``RUN/fold-1`` ...
``RUN/fold-K`` (its config names its ``training.fold``; ``mlp evaluate``, ``plot`` and
``predict`` take it as any run), and ``RUN/cross_validation.json``, written last: each
fold's best and final metrics (and its test metrics when there is test data) and their
mean and standard deviation over the folds. A folder holding it is a finished run.
"""

import json
import math
from pathlib import Path

import numpy as np

from mlpcli import files

SUMMARY_FILE = "cross_validation.json"
FOLD_PREFIX = "fold-"
METRIC_GROUPS = ("final", "test")  # the mappings of metrics a fold's results.json holds


def fold_dir(folder, fold):
    """The run folder of fold ``fold`` (1..K) of the cross-validation run ``folder``."""
    return Path(folder) / f"{FOLD_PREFIX}{fold}"


def folds_of(cfg):
    """K when ``cfg`` (a config as read from a run folder) is that of a cross-validation run
    (it trains one run per fold), else None (an ordinary run, or one fold's run)."""
    training = cfg.get("training") if isinstance(cfg, dict) else None
    if not isinstance(training, dict) or training.get("fold") is not None:
        return None
    folds = training.get("folds")
    return folds if isinstance(folds, int) and not isinstance(folds, bool) and folds >= 2 else None


def finished(folder):
    return (Path(folder) / SUMMARY_FILE).is_file()


def summarize(per_fold):
    """The summary of the folds' results (each ``{"fold", "best_epoch", "monitor", "best_value",
    "final": {...}, "test": {...}}``, as read from its results.json): those and, for the best
    value and each metric, their mean and standard deviation over the folds (numpy's, ddof 0), and
    the seconds the folds took in all."""
    def spread(values):
        finite = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
        if len(finite) < len(values):
            return None, None
        return float(np.mean(finite)), float(np.std(finite))

    mean, std = {}, {}
    mean["best_value"], std["best_value"] = spread([f.get("best_value") for f in per_fold])
    for group in METRIC_GROUPS:
        names = [k for k in per_fold[0].get(group) or {} if all(k in (f.get(group) or {}) for f in per_fold)]
        if names:
            pairs = {k: spread([f[group][k] for f in per_fold]) for k in names}
            mean[group] = {k: m for k, (m, _) in pairs.items()}
            std[group] = {k: s for k, (_, s) in pairs.items()}
    seconds = sum(f["seconds"] for f in per_fold if isinstance(f.get("seconds"), (int, float)))
    return {"folds": len(per_fold), "monitor": per_fold[0].get("monitor"), "seconds": round(seconds, 3),
            "mean": mean, "std": std, "per_fold": per_fold}


def write_summary(folder, summary):
    files.write_text(Path(folder) / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")


def summary_lines(summary):
    """The scores as printed: ``val_accuracy 0.9712 ± 0.0031 over 5 folds``, one line each."""
    k, mean, std = summary["folds"], summary["mean"], summary["std"]
    lines = []
    if mean.get("best_value") is not None:
        lines.append(f"best {summary['monitor']} {mean['best_value']:.4f} ± {std['best_value']:.4f} over {k} folds "
                     "(each fold's best epoch)")
    for group, what in (("final", "last epoch"), ("test", "test data")):
        for name, value in (mean.get(group) or {}).items():
            if name != "lr" and value is not None:
                shown = f"test_{name}" if group == "test" else name
                lines.append(f"{shown} {value:.4f} ± {std[group][name]:.4f} over {k} folds ({what})")
    return lines


def mean_history(histories):
    """The folds' histories averaged epoch by epoch, over the columns and epochs all of them have."""
    columns = [c for c in histories[0] if all(c in h for h in histories)]
    epochs = min(len(h[c]) for h in histories for c in columns) if columns else 0
    return {c: [sum(h[c][i] for h in histories) / len(histories) for i in range(epochs)] for c in columns}


def best_fold_note(folder, cfg):
    """``; the best val_loss is fold 2's (0.1234)`` from a finished run's summary, else ``""``."""
    from mlpcli.nn.metrics import higher_is_better

    try:
        summary = json.loads(files.read_text(Path(folder) / SUMMARY_FILE))
        scores = [(f["best_value"], f["fold"]) for f in summary["per_fold"]
                  if isinstance(f.get("best_value"), (int, float)) and math.isfinite(f["best_value"])]
        monitor = summary["monitor"]
        mode = cfg["checkpoint"]["mode"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return ""
    if not scores:
        return ""
    sign = -1 if higher_is_better(monitor, mode) else 1
    value, fold = min(scores, key=lambda s: (sign * s[0], s[1]))
    return f"; the best {monitor} is fold {fold}'s ({value:.4f})"
