"""The ``lr-find`` stage: the learning-rate range test (Smith 2017, "Cyclical Learning
Rates"; PyTorch Lightning's ``LearningRateFinder``).

A throwaway copy of the config's model trains on successive batches of the config's
training data (built as ``mlp train`` builds them: the same seed and data preparation)
while the learning rate grows exponentially from ``start`` to ``end``. It stops early when
the loss diverges. The suggestion is the rate where the smoothed loss falls fastest
against log(rate). Writes into a new folder ``<runs root>/<name>-lr-find-<timestamp>``:
``lr_find.csv`` (rate, loss, smoothed) and ``lr_find.png``. Nothing of the config or of any
run is changed; the folder is removed again when the test does not finish (Ctrl-C, SIGTERM, SIGHUP, an error).
"""

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlpcli import config as config_mod
from mlpcli import figures, files, runs
from mlpcli.data import augment
from mlpcli.ending_signals import ending_signals_interrupt
from mlpcli.errors import MlpError
from mlpcli.trainer import (
    EpochPaused,
    Trainer,
    blas_threads,
    build_model,
    random_streams,
)
from mlpcli.training_data import prepare_data
from mlpcli.training_memory import check_memory

CSV_FILE = "lr_find.csv"
PLOT_FILE = "lr_find.png"
MIN_BATCHES = 5
# a range test is a short look at the loss: Lightning's default is 100; this many is hours of training
MAX_BATCHES = 100_000
# the EMA spans a tenth of the batches: fastai's and Lightning's fixed 0.98 (a span of 50) lags
# most of a 100-batch test, moving the steepest descent to rates several times too high
SPAN = 0.1
DIVERGENCE = 4.0  # stop when the smoothed loss exceeds this many times its best (Lightning's default)
SKIP_BEGIN = 10  # the first points are noise and the EMA's warm-up; at most a tenth of them are skipped


@dataclass
class RangeTest:
    rates: np.ndarray  # float64 (n,): the rate of each batch trained
    losses: np.ndarray  # float64 (n,): that batch's loss
    smoothed: np.ndarray  # float64 (n,): the bias-corrected exponential moving average of the losses
    diverged: bool  # stopped early because the loss diverged
    suggestion: float | None  # None when too few points were recorded to tell


@dataclass
class LrFindResult:
    folder: Path
    test: RangeTest
    batches: int  # asked for


def check_options(start, end, batches):
    """An ``MlpError`` (exit 2) for a range that cannot be tested."""
    if not (math.isfinite(start) and math.isfinite(end)) or start <= 0:
        raise MlpError(f"--start {start} --end {end}: give finite rates above 0")
    if start >= end:
        raise MlpError(f"--start {start} must be below --end {end}")
    if not MIN_BATCHES <= batches <= MAX_BATCHES:
        raise MlpError(f"--batches {batches}: give {MIN_BATCHES} to {MAX_BATCHES} (100 is usual)")


def rate_at(step, start, end, batches):
    """The rate of batch ``step`` (0-based): start at 0, end at ``batches - 1``, geometric between."""
    return start * (end / start) ** (step / (batches - 1))


def smoothing(batches):
    """The EMA factor for a test of ``batches`` batches: 1 - 1/span, span a tenth of them (0.5 to 0.98)."""
    return min(0.98, max(0.5, 1 - 1 / (SPAN * batches)))


def smooth(losses, beta):
    """The exponential moving average of ``losses`` with bias correction (as fastai, Lightning)."""
    out, avg = np.empty(len(losses)), 0.0
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        out[i] = avg / (1 - beta ** (i + 1))
    return out


def suggest(rates, smoothed):
    """The rate of the steepest descent of ``smoothed`` against log(rate) on its descending
    part (up to its lowest point), skipping the first points; None with fewer than 3 there."""
    skip = min(SKIP_BEGIN, len(rates) // 10)
    with np.errstate(invalid="ignore"):
        stop = int(np.nanargmin(np.where(np.isfinite(smoothed), smoothed, np.nan))) + 1 if len(rates) else 0
    if stop - skip < 3:
        return None
    r, s = rates[skip:stop], smoothed[skip:stop]
    return float(r[int(np.argmin(np.gradient(s, np.log(r))))])


def lr_find(config_path, overrides=(), *, start=1e-7, end=10.0, batches=100, out=None,
            runs_root="runs", echo=print):
    """Run the range test of the config's model and data; write its folder; return an ``LrFindResult``."""
    check_options(start, end, batches)
    cfg = config_mod.load_config(config_path, overrides, note=echo)
    training = cfg["training"]
    if training["folds"] and training["fold"] is None:  # a cross-validation config: one fold's training data
        training["fold"] = 1
        echo(f"Cross-validation over {training['folds']} folds: the range test trains on fold 1's training data")
    streams = random_streams(cfg["seed"])
    model = build_model(cfg, streams)
    made, folder = [], None
    with ending_signals_interrupt():  # SIGTERM and SIGHUP also leave no folder behind
        try:
            folder = runs.new_run_dir(runs_root, f"{cfg['name']}-lr-find", out, made, "--out")
            with blas_threads(cfg["training"]["threads"]):
                data = prepare_data(cfg, model, streams["split"], progress=echo)
                n_train = len(data.train[0])
                check_memory(cfg, model, n_train)
                echo(f"Range test of {cfg['name']}: up to {batches} batches of {cfg['training']['batch_size']}, "
                     f"rate {start:g} to {end:g}, on {n_train} training samples")
                trainer = Trainer(model, cfg, streams, math.ceil(n_train / cfg["training"]["batch_size"]),
                                  data.train_weights, augment.from_config(cfg, data.feature_shape))
                test = _range_test(trainer, data.train, start, end, batches)
            _write(folder, test)
        except BaseException:
            runs.abandon_run_dir(folder, made)  # nothing half-made stays
            raise
    return LrFindResult(folder, test, batches)


def _range_test(trainer, train, start, end, batches):
    """Train ``trainer`` batch after batch at growing rates; the recorded ``RangeTest``."""
    trainer.schedule = lambda step, epoch: rate_at(step, start, end, batches)
    rates, losses, smoothed = [], [], []
    best, avg, beta = math.inf, 0.0, smoothing(batches)
    done_total, done_seen = 0.0, 0
    diverged = False

    def on_batch(done, running):
        nonlocal best, avg, done_total, done_seen, diverged
        p = trainer.progress
        seen = min(len(p.order), done * trainer.batch_size)
        loss = (p.total_loss - done_total) / (seen - done_seen)
        done_total, done_seen = p.total_loss, seen
        rates.append(rate_at(trainer.step - 1, start, end, batches))
        losses.append(loss)
        avg = beta * avg + (1 - beta) * loss
        value = avg / (1 - beta ** len(losses))
        smoothed.append(value)
        if not math.isfinite(value) or value > DIVERGENCE * best:
            diverged = True
        best = min(best, value)

    def finished():
        return diverged or len(losses) >= batches

    with np.errstate(over="ignore", invalid="ignore"):  # a diverging model overflows; it is what is measured
        while not finished():
            done_total, done_seen = 0.0, 0
            try:
                trainer.run_epoch(*train, on_batch=on_batch, stop_requested=finished)
            except EpochPaused:
                break
            trainer.end_epoch()
    rates, losses = np.array(rates), np.array(losses)
    smoothed = np.array(smoothed)
    return RangeTest(rates, losses, smoothed, diverged, suggest(rates, smoothed))


def _write(folder, test):
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["rate", "loss", "smoothed"])
    writer.writerows(zip(map(repr, test.rates.tolist()), map(repr, test.losses.tolist()),
                         map(repr, test.smoothed.tolist())))
    files.write_text(folder / CSV_FILE, text.getvalue())
    report = figures.PlotReport()
    fig, ax = figures.new_figure()
    ax.plot(test.rates, test.losses, color="0.75", linewidth=1, label="loss per batch")
    ax.plot(test.rates, test.smoothed, color="C0", label="smoothed")
    if test.suggestion is not None:
        ax.axvline(test.suggestion, color="C3", linestyle="--", label=f"suggested {test.suggestion:.2g}")
    finite = test.smoothed[np.isfinite(test.smoothed)]
    if len(finite):  # the diverging tail would squash the curve that matters
        raw = test.losses[np.isfinite(test.losses)]
        low, high = min(finite.min(), raw.min()), min(max(finite.max(), raw[0]), DIVERGENCE * finite.min())
        ax.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low) + 1e-12)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title("Learning-rate range test")
    ax.legend()
    figures.save(fig, folder / PLOT_FILE, "png", report, "lr_find")
    report.raise_failures()


def rounded(rate):
    """A rate to two significant digits, as a plain number to paste into --set."""
    return float(f"{rate:.2g}")
