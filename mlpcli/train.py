"""The ``train`` stage: config -> data -> model -> epochs -> run folder.

Writes into a new run folder: ``config.yaml`` (resolved), ``summary.txt``,
``history.csv``, ``checkpoints/*.h5``, ``model.h5``, ``results.json``,
``train.log`` and the curves in ``plots/``.
"""

import csv
import io
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlpcli import config as config_mod
from mlpcli import modelfile, runs
from mlpcli.data import load_dataset, stratified_split
from mlpcli.errors import DataError, TrainingError
from mlpcli.training import EarlyStopping, Monitor, Trainer, build_model, random_streams


@dataclass
class TrainResult:
    run_dir: Path | None
    history: list
    results: dict


class Reporter:
    """Prints lines (unless quiet) and copies them to the run's log file."""

    def __init__(self, echo, quiet):
        self.echo = echo
        self.quiet = quiet
        self.log = None

    def line(self, text=""):
        if not self.quiet:
            self.echo(text)
        if self.log:
            self.log.write(text + "\n")
            self.log.flush()

    def progress(self, epoch, epochs, batches):
        """A tqdm bar for one epoch, or None when output is not a terminal."""
        if self.quiet or not sys.stderr.isatty():
            return None
        from tqdm import tqdm

        return tqdm(total=batches, desc=f"Epoch {epoch}/{epochs}", unit="batch", leave=False,
                    dynamic_ncols=True)


def train(config_path, overrides=(), *, runs_root="runs", run_dir=None, dry_run=False,
          quiet=False, plots=True, echo=print):
    """Train the model described by the config file; return what it made."""
    cfg = config_mod.load_config(config_path, overrides)
    report = Reporter(echo, quiet)
    streams = random_streams(cfg["seed"])
    model = build_model(cfg, streams)
    summary = model.summary()
    if dry_run:
        echo(config_mod.dump_yaml(cfg).rstrip())
        echo(summary)
        return TrainResult(None, [], {})

    data = load_dataset(cfg["data"], task=cfg["task"], progress=report.line)
    x_train, y_train, x_val, y_val = _split(cfg, data, streams["split"])
    x_train, x_val, x_test = (_fit_input(x, model, cfg, part) for x, part in
                              ((x_train, "training"), (x_val, "validation"), (data.x_test, "test")))
    for y, part in ((y_train, "training"), (y_val, "validation"), (data.y_test, "test")):
        _check_targets(y, model, cfg, part)
    config_mod.check_monitors(cfg, x_val is not None)

    folder = runs.new_run_dir(runs_root, cfg["name"], run_dir)
    runs.point_latest(runs_root, folder)
    (folder / "checkpoints").mkdir()
    runs.write_text(folder / "config.yaml", config_mod.dump_yaml(cfg))
    runs.write_text(folder / "summary.txt", summary + "\n")
    with open(folder / "train.log", "a", encoding="utf-8") as log:
        report.log = log
        report.line(f"Run folder: {folder}")
        report.line(summary)
        report.line(f"Training on {len(x_train)} samples, validating on "
                    f"{0 if x_val is None else len(x_val)}")
        history, results = _fit(cfg, model, streams, data, folder, report,
                                (x_train, y_train), (x_val, y_val), (x_test, data.y_test), plots)
    return TrainResult(folder, history, results)


def _split(cfg, data, rng):
    """Training and validation arrays: explicit validation data, or a stratified split."""
    if data.x_val is not None:
        return data.x_train, data.y_train, data.x_val, data.y_val
    fraction = cfg["data"]["validation_split"]
    if not fraction:
        return data.x_train, data.y_train, None, None
    train_idx, val_idx = stratified_split(data.y_train, fraction, rng)
    return data.x_train[train_idx], data.y_train[train_idx], data.x_train[val_idx], data.y_train[val_idx]


def _fit_input(x, model, cfg, part):
    """Reshape features to the model's input_shape, or explain why they do not fit."""
    if x is None:
        return None
    if len(x) == 0:
        raise DataError(f"the {part} data is empty")
    want = model.input_shape
    if int(np.prod(x.shape[1:])) != int(np.prod(want)):
        raise DataError(f"the {part} data has samples of shape {tuple(x.shape[1:])} "
                        f"({int(np.prod(x.shape[1:]))} values) but model.input_shape is "
                        f"{list(want)}; set model.input_shape to match the data")
    return np.ascontiguousarray(x.reshape((len(x),) + want), dtype=np.float32)


def _check_targets(y, model, cfg, part):
    if y is None:
        return
    outputs = model.n_outputs
    if cfg["task"] == "classification":
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"the {part} labels are not class indices; for numeric targets set task: regression")
        n_classes = 2 if outputs == 1 else outputs
        if y.min() < 0 or y.max() >= n_classes:
            raise DataError(f"the {part} labels range over {int(y.min())}..{int(y.max())} but the model "
                            f"has {outputs} output(s), i.e. {n_classes} classes; make the last dense "
                            f"layer's units match the number of classes")
    else:
        width = 1 if y.ndim == 1 else int(np.prod(y.shape[1:]))
        if width != outputs:
            raise DataError(f"the {part} targets have {width} value(s) per sample but the model has "
                            f"{outputs} output(s)")


def _fit(cfg, model, streams, data, folder, report, train_set, val_set, test_set, plots):
    trainer = Trainer(model, cfg, streams)
    (x, y), (x_val, y_val), (x_test, y_test) = train_set, val_set, test_set
    epochs = cfg["training"]["epochs"]
    ckpt = cfg["checkpoint"]
    best = Monitor(ckpt["monitor"], ckpt["mode"])
    es_cfg = cfg["early_stopping"]
    stopper = EarlyStopping(model, es_cfg["monitor"], es_cfg["patience"], es_cfg["min_delta"],
                            es_cfg["mode"], es_cfg["restore_best_weights"]) if es_cfg else None
    extras = {"config": cfg, "preprocessing": {**data.preprocessing, "input_shape": list(model.input_shape)},
              "class_names": data.class_names}
    history = []
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        lr = trainer.learning_rate
        t0 = time.perf_counter()
        bar = report.progress(epoch, epochs, math.ceil(len(x) / trainer.batch_size))

        def on_batch(done, total, running, bar=bar):
            bar.update(1)
            if done % 10 == 0 or done == total:
                bar.set_postfix({k: f"{v:.4f}" for k, v in running.items()}, refresh=False)

        try:
            logs = trainer.run_epoch(x, y, on_batch if bar is not None else None)
        finally:
            if bar is not None:
                bar.close()
        if x_val is not None:
            logs.update({f"val_{k}": v for k, v in trainer.evaluate(x_val, y_val).items()})
        if not trainer.weights_finite():
            raise TrainingError(f"weights became NaN or infinite in epoch {epoch}; training stopped, "
                                f"the last finite checkpoint is kept in {folder / 'checkpoints'}")
        row = {"epoch": epoch, **logs, "lr": lr, "seconds": round(time.perf_counter() - t0, 3)}
        history.append(row)
        trainer.end_epoch(logs)
        report.line(_epoch_line(row, epochs))
        runs.write_text(folder / "history.csv", _history_csv(history))
        improved = best.update(epoch, logs)
        if ckpt["enabled"] and (improved or not ckpt["save_best_only"]):
            name = ckpt["filename"].format(epoch=epoch, **logs)
            modelfile.save(folder / "checkpoints" / name, model, loss=cfg["loss"],
                           optimizer=trainer.optimizer, metrics=[m["type"] for m in cfg["metrics"]],
                           state={"epoch": epoch, **({"best": best.best} if improved else {})},
                           **extras)
        if stopper and stopper.should_stop(epoch, logs):
            report.line(f"Early stopping: {es_cfg['monitor']} did not improve for "
                        f"{es_cfg['patience']} epochs (best {stopper.monitor.best:.4f} "
                        f"at epoch {stopper.monitor.best_epoch})")
            break
    restored = stopper.restore() if stopper else False
    if restored and stopper.monitor.best_epoch != history[-1]["epoch"]:
        report.line(f"Restored the weights of epoch {stopper.monitor.best_epoch}")
    modelfile.save(folder / "model.h5", model, loss=cfg["loss"], optimizer=trainer.optimizer,
                   metrics=[m["type"] for m in cfg["metrics"]],
                   state={"epoch": stopper.monitor.best_epoch if restored else history[-1]["epoch"]},
                   **extras)
    results = {"epochs_run": len(history), "seconds": round(time.perf_counter() - started, 3),
               "monitor": best.name, "best_epoch": best.best_epoch, "best_value": best.best,
               "final": {k: v for k, v in history[-1].items() if k not in ("epoch", "seconds")}}
    if x_test is not None and y_test is not None:
        results["test"] = trainer.evaluate(x_test, y_test)
        report.line("Test: " + " - ".join(f"{k}: {v:.4f}" for k, v in results["test"].items()))
    runs.write_text(folder / "results.json", json.dumps(results, indent=2) + "\n")
    report.line(f"Saved {folder / 'model.h5'}")
    if plots:
        from mlpcli.plots import plot_runs

        drawn = plot_runs([folder])
        report.line(f"Plots: {len(drawn.written)} figures in {folder / 'plots'}")
    return history, results


def _epoch_line(row, epochs):
    parts = [f"Epoch {row['epoch']}/{epochs}"]
    parts += [f"{k}: {v:.4f}" for k, v in row.items() if k not in ("epoch", "lr", "seconds")]
    parts += [f"lr: {row['lr']:.3g}", f"{row['seconds']:.1f}s"]
    return " - ".join(parts)


def _history_csv(history):
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(history[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return out.getvalue()
