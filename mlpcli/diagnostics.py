"""What the curves of a finished run say: overfitting onset, a plateau, a training/validation gap.

``diagnose(history, cfg, sizes)`` looks at a run's per-epoch history (and the numbers
of training and validation samples, ``{"train": n, "validation": n}``) and returns a
JSON-able dict, written by ``mlp train`` as ``diagnostics.json``::

    {"samples": {"train": 48000, "validation": 12000} or null,
     "overfitting": {"onset_epoch": 8, "lowest_val_loss_epoch": 7, "lowest_val_loss": 0.081,
                     "final_val_loss": 0.093, "hint": "..."} or null,
     "plateau": {"lowest_val_loss_epoch": 15, "lowest_val_loss": 0.0747,
                 "final_val_loss": 0.0751} or null,
     "train_below_validation": {"accuracy": 0.91, "val_accuracy": 0.93,
                                "dropout_rates": [0.3], "warning": "..."} or null,
     "messages": ["...", ...],   # what mlp train prints, one line each
     "notes": ["...", ...]}      # the same in a few words, for mlp compare's table

* Overfitting: the epoch from which validation loss stayed clearly above its
  minimum, beyond the curve's noise, while training loss kept falling
  (``mlpcli.curve_verdicts``, the rule that also shades the loss plot), with a
  hint to stop early or regularize more.
* Plateau: validation loss ended flat within its noise; said without advice.
* Training accuracy below validation accuracy at the last epoch by more than the
  sampling error of the two (not claimed when the sample counts are unknown): the model is
  under-trained, or dropout/regularization/augmentation is too strong. Dropout
  and augmentation are on while training accuracy is measured (and that
  accuracy is averaged over an epoch in which the weights kept changing) but
  off when validation is measured, so the message says so.
"""

import csv
import json
from pathlib import Path

from mlpcli import files, runs
from mlpcli.curve_verdicts import accuracy_gap_is_real, overfitting_onset, plateau
from mlpcli.history import as_columns, epoch_numbers, finite, has_values, read_history


def _dropout_rates(cfg):
    layers = ((cfg or {}).get("model") or {}).get("layers") or []
    return [layer.get("rate") for layer in layers
            if isinstance(layer, dict) and layer.get("type") == "dropout" and layer.get("rate")]


def _regularized(cfg):
    layers = ((cfg or {}).get("model") or {}).get("layers") or []
    return any(isinstance(layer, dict) and layer.get(key) for layer in layers
               for key in ("kernel_regularizer", "bias_regularizer", "activity_regularizer"))


def _lowest(values):
    return min((v, i) for i, v in enumerate(values) if finite(v))


def _plateau(cols, epochs):
    if not has_values(cols, "val_loss") or not plateau(cols["val_loss"]):
        return None
    low, low_index = _lowest(cols["val_loss"])
    return {"lowest_val_loss_epoch": epochs[low_index], "lowest_val_loss": low,
            "final_val_loss": cols["val_loss"][-1]}


def _overfitting(cols, epochs, cfg, n_val):
    if not (has_values(cols, "loss") and has_values(cols, "val_loss")):
        return None
    onset = overfitting_onset(cols["loss"], cols["val_loss"], n_val)
    if onset is None:
        return None
    low, low_index = _lowest(cols["val_loss"][:onset])
    es = (cfg or {}).get("early_stopping")
    if isinstance(es, dict) and es.get("restore_best_weights") and es.get("monitor") == "val_loss":
        hint = (f"early stopping already keeps epoch {epochs[low_index]}'s weights; more "
                "regularization (dropout, an l2 kernel_regularizer) may lower the minimum itself")
    elif isinstance(es, dict):
        hint = (f"early stopping is on (patience {es.get('patience')}); set "
                "early_stopping.restore_best_weights: true to keep the best epoch's weights, "
                "or add regularization (dropout, an l2 kernel_regularizer)")
    else:
        hint = ("use early stopping (early_stopping: {monitor: val_loss, patience: 3, "
                "restore_best_weights: true}) or more regularization (dropout, an l2 "
                "kernel_regularizer)")
    return {"onset_epoch": epochs[onset - 1], "lowest_val_loss_epoch": epochs[low_index],
            "lowest_val_loss": low, "final_val_loss": cols["val_loss"][-1], "hint": hint}


def _train_below_validation(cols, cfg, sizes):
    if not (has_values(cols, "accuracy") and has_values(cols, "val_accuracy")):
        return None
    train, val = cols["accuracy"][-1], cols["val_accuracy"][-1]
    if not accuracy_gap_is_real(train, val, sizes.get("train"), sizes.get("validation")):
        return None
    rates = _dropout_rates(cfg)
    augmented = bool((cfg or {}).get("augment"))
    causes = ([f"dropout ({', '.join(f'{r:g}' for r in rates)})"] if rates else []) + \
        (["weight penalties"] if _regularized(cfg) else []) + (["augmentation"] if augmented else [])
    warning = (f"final training accuracy {train:.4f} is below validation accuracy {val:.4f}: the "
               "model may be under-trained (train more epochs or raise the learning rate)")
    if causes:
        warning += f" or {' and '.join(causes)} too strong"
    if rates or augmented:
        on = " and ".join((["dropout is on"] if rates else []) + (["images are augmented"] if augmented else []))
        warning += (f"; {on} while training accuracy is measured and off when validation "
                    "is measured, so some gap is expected")
    else:
        warning += ("; there is no dropout" + ("" if causes else " or weight penalty") +
                    ", so the gap comes from training accuracy being averaged over an epoch in "
                    "which the weights were still improving (or from a small validation set)")
    return {"accuracy": train, "val_accuracy": val, "dropout_rates": rates, "warning": warning}


def diagnose(history, cfg=None, sizes=None):
    """The diagnostics of a run's history (rows or ``{column: values}``), resolved config and
    sample counts ``{"train": n, "validation": n}`` (None when unknown)."""
    cols = as_columns(history or [])
    epochs = epoch_numbers(cols) if cols else []
    known = sizes or {}
    over = _overfitting(cols, epochs, cfg, known.get("validation")) if epochs else None
    flat = _plateau(cols, epochs) if epochs and not over else None
    gap = _train_below_validation(cols, cfg, known) if epochs else None
    messages, notes = [], []
    if over:
        messages.append(f"Overfitting: validation loss rose from epoch {over['onset_epoch']} on "
                        f"(lowest {over['lowest_val_loss']:.4f} at epoch "
                        f"{over['lowest_val_loss_epoch']}) while training loss kept falling; "
                        f"{over['hint']}")
        notes.append(f"overfits from epoch {over['onset_epoch']}")
    if flat:
        messages.append(f"Plateau: validation loss ended flat within its noise (lowest "
                        f"{flat['lowest_val_loss']:.4f} at epoch {flat['lowest_val_loss_epoch']}, "
                        f"last {flat['final_val_loss']:.4f})")
        notes.append("plateau")
    if gap:
        messages.append(f"Warning: {gap['warning']}")
        notes.append("train acc < val acc")
    return {"samples": sizes, "overfitting": over, "plateau": flat, "train_below_validation": gap,
            "messages": messages, "notes": notes}


def saved_sizes(folder):
    """The sample counts a run's diagnostics.json recorded ({} when it has none)."""
    try:
        saved = runs.read_json(Path(folder) / runs.DIAGNOSTICS_FILE)
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    samples = saved.get("samples") if isinstance(saved, dict) else None
    if not isinstance(samples, dict):
        return {}
    return {k: v for k, v in samples.items()
            if k in ("train", "validation") and isinstance(v, int) and not isinstance(v, bool) and v > 0}


def report_diagnostics(folder, history, cfg, line, sizes=None):
    """Diagnose a finished run, write ``<folder>/diagnostics.json`` and ``line()`` each message."""
    result = diagnose(history, cfg, sizes)
    files.write_text(Path(folder) / runs.DIAGNOSTICS_FILE, json.dumps(result, indent=2) + "\n")
    for message in result["messages"]:
        line(message)
    return result


def diagnose_run(folder, cfg=None):
    """The diagnostics of a run folder from its ``history.csv`` and the sample counts its
    diagnostics.json recorded (None when it has no history)."""
    path = Path(folder) / runs.HISTORY_FILE
    try:
        cols = read_history(path)
    except (OSError, UnicodeDecodeError, csv.Error, ValueError):
        return None
    return diagnose(cols, cfg, saved_sizes(folder))
