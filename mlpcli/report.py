"""The ``report`` stage: one self-contained HTML page about a run or a sweep (``mlp report``).

For a run: its diagnostics with the numbers they rest on, its training curves, the
evaluation of its model on the test split (or ``--data``), its model summary and its
config. For a sweep: its trials ranked as ``mlp compare`` ranks them, the recommendation,
the overlaid validation curves and the config every trial started from.

Everything is computed afresh, by the code the other commands use, so the page cannot
show anything staler than the run folder itself: the evaluation by ``mlp evaluate``'s
(through the model's ``Predictor``; no evaluation*.json is written), the diagnostics by
``mlpcli.diagnostics`` from history.csv, the ranking by ``mlpcli.compare``, and the
figures by ``mlp plot``'s and ``mlp compare``'s drawing code into a temporary folder,
inlined as PNG (the run's own plots/ files, which may predate its history or its
evaluation, are not read). The HTML itself is ``mlpcli.report_html``'s.
"""

import csv
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlpcli import __version__, compare, diagnostics, runs, sweep_folder
from mlpcli import report_html as html
from mlpcli.errors import MlpError, printable
from mlpcli.figures import PlotReport
from mlpcli.files import atomic_path, check_new_file, exists_error, read_text
from mlpcli.history import epoch_numbers, finite, has_values, read_history

FIGURE_FORMAT = "png"
CURVES = (("accuracy", "accuracy per epoch"), ("loss", "loss per epoch"),
          ("learning_rate", "learning rate per epoch"))
EVALUATION_FIGURES = (("confusion_matrix", "confusion matrix"), ("misclassified", "misclassified test samples"),
                      ("roc", "ROC curves"), ("precision_recall", "precision-recall curves"),
                      ("calibration", "calibration"), ("predicted_vs_true", "predicted vs true"),
                      ("residuals", "residuals"))


@dataclass
class Written:
    path: Path  # the page
    notes: list = field(default_factory=list)  # what the evaluation suggests the user check


def report(target=None, *, out=None, overwrite=False, checkpoint=None, data=None, runs_root="runs", note=None):
    """Write the report of the run or sweep ``target`` (default: the newest under ``runs_root``)
    to ``out`` (default: ``<target>/report.html``), never over an existing file unless
    ``overwrite``. ``checkpoint`` and ``data`` choose the model and test data as in ``mlp
    evaluate``. ``note`` is told where a link to the folder led."""
    folder = runs.resolve_run_dir(target, runs_root, note)
    sweep = sweep_folder.is_sweep(folder)
    if not sweep and not (folder / runs.CONFIG_FILE).is_file():
        what = "not a run folder (no config.yaml) nor a sweep folder" if folder.is_dir() else "no such run folder"
        raise MlpError(f"{runs.shown(folder)}: {what}; nothing written")
    if sweep and (checkpoint is not None or data is not None):
        raise MlpError(f"--checkpoint, --data: are for a run's report; {runs.shown(folder)} is a sweep "
                       "(give one of its trial-NNN folders to report on that trial)")
    path = Path(out) if out is not None else folder / runs.REPORT_FILE
    check_new_file(path, "the report", overwrite)
    written = Written(path)
    with tempfile.TemporaryDirectory(prefix="mlp-report-") as scratch:
        if sweep:
            text = _sweep_page(folder, Path(scratch))
        else:
            text = _run_page(folder, Path(scratch), checkpoint, data, runs_root, written.notes)
    try:
        with atomic_path(path, replace=overwrite) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except FileExistsError:  # it appeared while the page was being made
        raise exists_error(path) from None
    return written


def _meta(folder, what):
    stamp = time.strftime("%Y-%m-%d %H:%M")
    return [f"{what}: {runs.shown(folder)}", f"written {stamp} by mlp report (mlpcli {__version__})"]


def _figures(drawn: PlotReport):
    """{figure name: PNG bytes} of what was drawn into the scratch folder."""
    drawn.raise_failures()
    return {path.stem: path.read_bytes() for path in drawn.written}


def _figure_row(images, names):
    return "".join(html.figure(images[name], caption) for name, caption in names if name in images)


def _number(value):
    if finite(value) and not float(value).is_integer():
        return f"{value:.4f}"
    return str(value)


# ---------------------------------------------------------------- a run

def _run_page(folder, scratch, checkpoint, data, runs_root, notes):
    from mlpcli.evaluate import NoTestSplit, evaluate
    from mlpcli.plots import plot_history
    from mlpcli.plots_evaluation import plot_evaluation
    from mlpcli.predictor import Predictor

    cfg = runs.run_config(folder)
    predictor = Predictor.open(folder, checkpoint=checkpoint, runs_root=runs_root)
    try:
        evaluation = evaluate(folder, checkpoint=checkpoint, data=data, runs_root=runs_root)
    except NoTestSplit as exc:  # the rest of the page is still worth having
        evaluation, unevaluated = None, str(exc)
    else:
        notes += evaluation.warnings
    drawn, label = PlotReport(), printable(folder.resolve().name)  # drawn in figures: UTF-8 only
    try:
        cols = read_history(folder / runs.HISTORY_FILE)
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        cols = {}
        drawn.skipped.append(f"{runs.HISTORY_FILE} unreadable ({getattr(exc, 'strerror', None) or exc}); "
                             "no curves and no diagnostics")
    sizes = diagnostics.saved_sizes(folder)
    if cols:
        plot_history(cols, cfg, scratch, FIGURE_FORMAT, drawn, label, sizes.get("validation"))
    if evaluation is not None:
        plot_evaluation(evaluation.report, cfg, scratch, FIGURE_FORMAT, drawn, label, "the evaluation")
    images = _figures(drawn)
    sections = [
        html.Section("diagnostics", "Diagnostics", _diagnostics(cols, cfg, sizes)),
        html.Section("curves", "Training curves", _figure_row(images, CURVES)
                     or html.paragraph("No curves: the run has no readable history.", "note")),
        html.Section("evaluation", "Evaluation", _evaluation(evaluation.report, images, notes) if evaluation
                     else html.paragraph(f"Not evaluated: {unevaluated} (mlp report --data FILE).", "note")),
        html.Section("model", "Model", html.preformatted(predictor.model.summary())),
        html.Section("config", "Config", html.preformatted(read_text(folder / runs.CONFIG_FILE))),
    ]
    if drawn.skipped:
        sections.append(html.Section("not-shown", "Not shown", html.bullet_list(drawn.skipped, "note")))
    return html.page(f"Run {label}", _meta(folder, "run folder"), sections)


def _diagnostics(cols, cfg, sizes):
    if not cols:
        return html.paragraph("No diagnostics: the run has no readable history.", "note")
    found = diagnostics.diagnose(cols, cfg, sizes)
    parts = [html.paragraph(message, "verdict") for message in found["messages"]]
    if not parts:
        parts.append(html.paragraph("Nothing to flag: validation loss neither rose beyond its noise nor "
                                    "ended flat, and training accuracy is not below validation accuracy "
                                    "beyond sampling error.", "calm"))
    for kind in ("overfitting", "plateau", "train_below_validation"):
        if found[kind]:
            rows = [(key.replace("_", " "), _evidence_value(value)) for key, value in found[kind].items()
                    if key not in ("hint", "warning")]
            parts += [html.heading(f"Evidence: {kind.replace('_', ' ')}"), html.table(None, rows, {1})]
    parts += [html.heading("The curves these rest on"), html.table(None, _curve_facts(cols, sizes), {1})]
    return "".join(parts)


def _evidence_value(value):
    if isinstance(value, list):
        return ", ".join(_number(v) for v in value) or "none"
    return _number(value)


def _curve_facts(cols, sizes):
    """The numbers the verdicts are drawn from: sample counts, the last and the best values."""
    epochs = epoch_numbers(cols)
    facts = [("epochs", len(epochs)), ("training samples", sizes.get("train", "unknown")),
             ("validation samples", sizes.get("validation", "unknown"))]
    for name in ("loss", "val_loss", "accuracy", "val_accuracy"):
        if has_values(cols, name):
            facts.append((f"final {name}", _number(cols[name][-1])))
    if has_values(cols, "val_loss"):
        position = min((v, i) for i, v in enumerate(cols["val_loss"]) if finite(v))[1]
        facts.append(("lowest val_loss", f"{cols['val_loss'][position]:.4f} (epoch {epochs[position]})"))
    return facts


def _evaluation(ev, images, notes):
    parts = [html.paragraph(f"Model {ev['model_file']} on {ev['data']}; inputs scaled: {ev['scaling']}.")]
    rows = [("loss", _number(ev["loss"])), *((name, _number(v)) for name, v in ev["metrics"].items())]
    parts.append(html.table(None, rows, {1}))
    if notes:
        parts.append(html.bullet_list(notes, "note"))
    if "per_class" in ev:
        rows = [(r["class"], *(f"{r[k]:.4f}" for k in ("precision", "recall", "f1")), r["support"])
                for r in ev["per_class"]]
        rows += [(name, *(f"{ev[key][k]:.4f}" for k in ("precision", "recall", "f1")), ev[key]["support"])
                 for name, key in (("macro avg", "macro_avg"), ("weighted avg", "weighted_avg"))]
        parts += [html.heading("Per class"),
                  html.table(["class", "precision", "recall", "f1", "support"], rows, {1, 2, 3, 4})]
        names = ev["class_names"]
        matrix = [(names[i], *row) for i, row in enumerate(ev["confusion_matrix"])]
        parts += [html.heading("Confusion matrix (rows: true class, columns: predicted)"),
                  html.table(["", *names], matrix, set(range(1, len(names) + 1)))]
    parts.append(_figure_row(images, EVALUATION_FIGURES))
    return "".join(parts)


# ---------------------------------------------------------------- a sweep

def _sweep_page(folder, scratch):
    result = compare.compare([folder], out_dir=scratch, fmt=FIGURE_FORMAT)
    images = _figures(result.plots)
    table = compare.ranked_table(result)
    chosen = result.ranked.index(result.recommended) if result.recommended is not None else None
    said = compare.recommendation(result)
    ranking = [*map(html.paragraph, compare.heading(result)),
               html.table(table.header, table.rows, table.numeric, chosen),
               *(html.paragraph(line, "calm") for line in said)]
    if not said:
        ranking.append(html.paragraph("No trial can be recommended yet: none has finished with a finite score.",
                                      "verdict"))
    ranking += [html.bullet_list(compare.notes_meaning(result), "note")] if compare.notes_meaning(result) else []
    curves = _figure_row(images, (("compare-accuracy", "validation accuracy by trial"),
                                  ("compare-loss", "validation loss by trial")))
    sections = [html.Section("ranking", "Trials ranked", "".join(ranking)),
                html.Section("curves", "Validation curves", curves
                             or html.paragraph("No curves: no trial has a history yet.", "note")),
                html.Section("config", "Base config", _base_config(folder))]
    if result.plots.skipped:
        sections.append(html.Section("not-shown", "Not shown", html.bullet_list(result.plots.skipped, "note")))
    meta = [*_meta(folder, "sweep folder"),
            f"{len(result.ranked)} of {len(result.ranked) + len(result.unranked)} trials ranked"]
    return html.page(f"Sweep {folder.resolve().name}", meta, sections)


def _base_config(folder):
    path = folder / sweep_folder.BASE_CONFIG
    try:
        return html.preformatted(read_text(path))
    except (OSError, UnicodeDecodeError) as exc:
        return html.paragraph(f"{runs.shown(path)}: cannot be read ({getattr(exc, 'strerror', None) or exc})",
                              "note")

