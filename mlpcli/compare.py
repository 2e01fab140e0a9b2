"""The ``compare`` stage: rank runs (and a sweep's trials) by a validation metric.

``compare(paths)`` reads run folders made by ``mlp train`` and sweep folders
made by ``mlp sweep`` (each of their trials is a run folder) and ranks every
run by the best value of one monitored quantity over its epochs (by default
the runs' ``checkpoint.monitor``, usually ``val_loss``). It recommends the
run with the fewest parameters whose score is within a tolerance of the best
(``mlpcli.ranking``; every command given a sweep folder uses the trial it
recommends), notes each run's diagnostics (``mlpcli.diagnostics``) and
overlays the runs' validation curves (``compare-accuracy`` and
``compare-loss``, drawn by the plot code).
"""

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from mlpcli import fold_runs, ranking, runs, sweep_folder
from mlpcli.errors import MlpError, printable
from mlpcli.ranking import tolerance_text
from mlpcli.runs import resolve_run_dir


@dataclass
class Entry:
    """One compared run (or a sweep trial that did not finish)."""

    label: str
    path: Path | None = None
    status: str = "ok"  # ok | failed | pending | interrupted (as in a sweep's results.csv)
    values: dict = field(default_factory=dict)  # a sweep trial's overridden keys
    params: int | None = None
    seconds: float | None = None
    error: str | None = None
    history: dict | None = None  # {column: [values per epoch]}
    cfg: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)  # diagnostics, a few words each
    score: float | None = None  # best value of the monitor over the epochs
    best_epoch: int | None = None
    other: float | None = None  # the other validation quantity at the best epoch
    folds: list | None = None  # a cross-validation run's fold histories (``runs.RunRecord.folds``)
    spread: tuple | None = None  # (standard deviation of score over the folds, folds)


@dataclass
class Comparison:
    monitor: str
    higher: bool
    tolerance: float
    ranked: list  # entries with a score, best first
    unranked: list  # failed or unfinished trials, runs without the monitor
    other: str | None = None  # the column shown besides the monitor
    varied: list = field(default_factory=list)  # sweep keys shown as columns
    best: Entry | None = None
    recommended: Entry | None = None
    tied: list = field(default_factory=list)  # cross-validation runs not told apart from the best
    plots: object = None  # a PlotReport, or None when not drawn


# ---------------------------------------------------------------- reading folders

def read_run(folder, label=None):
    """An Entry for a run folder (``runs.read_record``), with its time and diagnostics."""
    from mlpcli.diagnostics import diagnose, saved_sizes

    folder = Path(folder)
    record = runs.read_record(folder)
    entry = Entry(label or folder.resolve().name, folder, cfg=record.cfg, history=record.history,
                  params=record.params, folds=record.folds)
    if record.history is None:
        entry.status, entry.error = "failed", record.error
        return entry
    try:
        results = runs.read_json(folder / (fold_runs.SUMMARY_FILE if record.folds else runs.RESULTS_FILE))
    except (OSError, UnicodeDecodeError, ValueError):
        results = {}
    seconds = results.get("seconds") if isinstance(results, dict) else None
    if not isinstance(seconds, (int, float)):
        seconds = sum(s for s in entry.history.get("seconds", []) if math.isfinite(s)) or None
    entry.seconds = seconds
    if not record.folds:  # the diagnostics judge one run's curves, not a mean over folds
        entry.notes = diagnose(entry.history, entry.cfg, saved_sizes(folder))["notes"]
    pruned = results.get(sweep_folder.PRUNED_EPOCH) if isinstance(results, dict) else None
    if isinstance(pruned, int):
        entry.notes.insert(0, f"pruned after epoch {pruned}")
    return entry


def read_sweep_entries(folder, note=None):
    """Entries for every trial of a sweep folder, in trial order (unfinished ones too). A trial
    is ranked when its folder holds a finished run (``runs.finished``), as every command that
    takes the sweep's recommended trial decides; so an unreadable results.csv, which only says
    how the others fared, loses only that (``note`` is told)."""
    folder = Path(folder)
    spec = sweep_folder.load_sweep_file(folder)
    try:
        rows = {row.get("trial"): row for row in sweep_folder.read_results(folder)}
    except MlpError as exc:
        rows = {}
        if note is not None:
            note(f"Warning: {exc}; the trials that did not finish are shown as pending")
    entries = []
    for trial in spec["trials"]:
        name = trial["name"]
        row = rows.get(name) or {}
        status = row.get("status") or "pending"
        if runs.finished(folder / name):
            entry = read_run(folder / name, label=name)
            if entry.seconds is not None and _float(row.get("seconds")) is not None:
                entry.seconds = _float(row.get("seconds"))
        else:
            missing = f"{runs.RESULTS_FILE} missing" if status == "ok" else None
            entry = Entry(name, folder / name, status=status if status != "ok" else "failed",
                          error=row.get("error") or missing)
        entry.values = dict(trial.get("overrides") or {})
        entries.append(entry)
    return entries


def _float(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _collect(paths, note=None):
    entries, sweeps = [], []
    for path in map(Path, paths):
        if not path.exists():
            raise MlpError(f"{path}: no such run or sweep folder")
        if sweep_folder.is_sweep(path):
            trials = read_sweep_entries(path, note)
            if len(paths) > 1:
                for t in trials:
                    t.label = f"{path.resolve().name}/{t.label}"
            entries += trials
            sweeps.append(path)
        elif path.is_dir() and ((path / runs.HISTORY_FILE).is_file() or (path / runs.CONFIG_FILE).is_file()):
            entries.append(read_run(path))
        else:
            raise MlpError(f"{path}: not a run folder (no {runs.HISTORY_FILE}) or a sweep folder "
                           f"(no {sweep_folder.SWEEP_FILE})")
    seen = {}
    for e in entries:
        e.label = printable(e.label)  # drawn in the figures' legends, which need UTF-8
        seen[e.label] = seen.get(e.label, 0) + 1
        if seen[e.label] > 1:
            e.label = f"{e.label}-{seen[e.label]}"
    return entries, sweeps


def _short_key(key, keys):
    short = re.split(r"\.(?![^\[]*\])", key)[-1]
    clash = sum(1 for k in keys if re.split(r"\.(?![^\[]*\])", k)[-1] == short) > 1
    return key if clash else short


def _plot(comparison, out_dir, fmt):
    """compare-accuracy and compare-loss: the runs' validation curves, overlaid."""
    from mlpcli.plots import PlotReport, _compare_plot

    report = PlotReport()
    curves = []
    for e in comparison.ranked:
        values = " ".join(f"{_short_key(k, comparison.varied)}={_show(e.values[k])}"
                          for k in comparison.varied if k in e.values)
        curves.append((f"{e.label} {values}".strip(), e.history))
    if not curves:
        report.skipped.append("no run has a history to compare")
        return report
    for metric in ("accuracy", "loss"):
        _compare_plot(curves, metric, out_dir / f"compare-{metric}.{fmt}", fmt, report)
    return report


def compare(paths, monitor=None, tolerance=None, out_dir=None, fmt="png", plots=True, note=None,
            runs_root="runs"):
    """Rank the runs in ``paths`` (run or sweep folders; none: the newest sweep under
    ``runs_root``); see the module docstring. ``note`` is told where a link among ``paths``
    led (see ``runs.resolve_run_dir``) and which sweep was taken."""
    if not paths:
        paths = [sweep_folder.newest_sweep(runs_root)]
        if note is not None:
            note(f"Comparing the newest sweep: {paths[0]}")
    entries, sweeps = _collect([resolve_run_dir(p, note=note) for p in paths], note)
    if tolerance is not None and (not math.isfinite(tolerance) or tolerance < 0):
        raise MlpError(f"--tolerance must be a number >= 0, got {tolerance}")
    scored = [e for e in entries if e.status == "ok"]
    monitor, mode = ranking.choose_monitor(scored, monitor)
    order = ranking.rank(scored, monitor, mode, tolerance)
    base = monitor[4:] if monitor.startswith("val_") else monitor
    prefix = "val_" if monitor.startswith("val_") else ""
    other = f"{prefix}loss" if base != "loss" else f"{prefix}accuracy"
    for e, score, position in order.ranked:
        e.score = score
        if position is None:  # a cross-validation run: each fold's best epoch
            e.spread = order.spread_of(e)
            e.best_epoch = "/".join(str(ranking.best_epoch_at(h, ranking.best_of(h, monitor, order.higher)[1]))
                                    for h in e.folds)
            continue
        e.best_epoch = ranking.best_epoch_at(e.history, position)
        column = e.history.get(other)
        if column and position < len(column) and math.isfinite(column[position]):
            e.other = column[position]
    ranked = [e for e, _, _ in order.ranked]
    unranked = [e for e in entries if e.score is None]
    varied = []
    for e in entries:
        varied += [k for k in e.values if k not in varied]
    result = Comparison(monitor, order.higher, order.tolerance, ranked, unranked, varied=varied,
                        other=other if any(e.other is not None for e in ranked) else None,
                        best=order.best, recommended=order.recommended, tied=order.tied)
    if plots:
        if out_dir is None:
            first = Path(paths[0])
            out_dir = first if first in sweeps else first / runs.PLOTS_DIR
        result.plots = _plot(result, Path(out_dir), fmt)
    return result


# ---------------------------------------------------------------- the table

def _show(value):
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _table(header, rows, right):
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [str(c).rjust(w) if i in right else str(c).ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return lines


@dataclass
class Table:
    """The ranked table as cells of text: ranked runs, then the unranked (their status in the
    rank column); ``numeric``: the indices of the columns aligned right."""

    header: list
    rows: list
    numeric: set


def _score_text(e):
    """A run's score as shown: ``0.1234``, or for a cross-validation run ``0.1234 ± 0.0056``."""
    return f"{e.score:.4f}" + (f" ± {e.spread[0]:.4f}" if e.spread else "")


def heading(c):
    """What the ranking is by, one line (two with cross-validation runs)."""
    direction = "higher" if c.higher else "lower"
    lines = [f"Ranked by the best {c.monitor} over the epochs ({direction} is better)"]
    if any(e.spread for e in c.ranked):
        lines.append("cross-validation runs: the mean over their folds of each fold's best ± its standard deviation")
    return lines


def ranked_table(c):
    """The ``Table`` of a ``Comparison``, as ``mlp compare`` prints it."""
    shown = [_short_key(k, c.varied) for k in c.varied]
    header = ["rank", "run", *shown, "params", "best epoch", c.monitor]
    header += [f"{c.other} @best"] if c.other else []
    header += ["seconds", "notes"]
    rows = []
    for rank, e in enumerate(c.ranked, 1):
        row = [rank, e.label, *(_show(e.values[k]) if k in e.values else "" for k in c.varied),
               f"{e.params:,}" if e.params is not None else "?", e.best_epoch, _score_text(e)]
        row += [f"{e.other:.4f}" if e.other is not None else ""] if c.other else []
        notes = list(e.notes) + (["<- recommended"] if e is c.recommended else [])
        row += [f"{e.seconds:.1f}" if e.seconds is not None else "", "; ".join(notes)]
        rows.append(row)
    for e in c.unranked:
        why = e.error or (f"no {c.monitor} logged" if e.status == "ok" else "")
        row = [e.status, e.label, *(_show(e.values[k]) if k in e.values else "" for k in c.varied),
               "", "", "", *([""] if c.other else []), "", why.splitlines()[0] if why else ""]
        rows.append(row)
    n = 2 + len(shown)
    return Table(header, rows, {0, *range(2, n + 4 + (1 if c.other else 0))})


def recommendation(c):
    """Which run is recommended and why, as lines (none when no run is)."""
    r, b = c.recommended, c.best
    if r is None:
        return []
    params = f"{r.params:,} parameters" if r.params is not None else "unknown parameters"
    if c.tied:
        tied = ", ".join(f"{e.label} ({_score_text(e)})" for e in c.tied)
        return [(f"Not distinguishable by these folds: {tied} (their means differ from the best's by less "
                 "than the standard error of the difference)"),
                (f"Recommended among them: {r.label} ({params}, {c.monitor} {_score_text(r)}): the fewest "
                 "parameters; more folds or data may separate them")]
    if r is b:
        return [f"Recommended: {r.label} ({params}, {c.monitor} {_score_text(r)}): the best "
                f"score, and no run within {tolerance_text(c.higher, c.tolerance)} of it "
                "has fewer parameters"]
    return [f"Recommended: {r.label} ({params}, {c.monitor} {_score_text(r)}): the fewest "
            f"parameters within {tolerance_text(c.higher, c.tolerance)} of the best "
            f"({b.score:.4f}, {b.label})"]


def notes_meaning(c):
    """What each kind of note in the table means, one line per kind the table shows."""
    notes = {n.split(" from ")[0].split(" after ")[0] for e in c.ranked for n in e.notes}
    lines = []
    if "overfits" in notes:
        lines.append("overfits from epoch N: validation loss rose beyond its noise from epoch N on "
                     "while training loss kept falling; use early stopping or more regularization")
    if "pruned" in notes:
        lines.append("pruned after epoch N: the search stopped this trial after epoch N (--prune); its score "
                     "is the best of the epochs it trained")
    if "plateau" in notes:
        lines.append("plateau: validation loss ended flat within its noise")
    if "train acc < val acc" in notes:
        lines.append("train acc < val acc (beyond sampling error): under-trained, or dropout/regularization/augmentation too strong "
                     "(dropout and augmentation are off when validation is measured)")
    return lines


def format_comparison(c):
    """The ranked table, the recommendation and what the notes mean, as text."""
    table = ranked_table(c)
    lines = [*heading(c), "", *_table(table.header, table.rows, table.numeric)]
    said = recommendation(c)
    lines += ["", *said] if said else []
    lines += notes_meaning(c)
    if c.plots is not None:
        lines += [""] + [f"wrote {p}" for p in c.plots.written]
    return "\n".join(lines)
