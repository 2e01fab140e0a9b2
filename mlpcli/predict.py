"""The ``predict`` stage: classes and probabilities (or values) for new inputs, streamed.

Inputs of every kind (images, folders of them, .csv, .npy, .npz; see
``mlpcli.predict_inputs``) are prepared through the model's ``Predictor``,
a chunk at a time, and the predictions go to the terminal (lines or JSON) or
to ``--out`` (.csv, .jsonl or .npy; see ``mlpcli.prediction_file``), so a
file of millions of rows is predicted in flat memory.
"""

import contextlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlpcli import files
from mlpcli.ending_signals import ending_signals_interrupt
from mlpcli.errors import MlpError
from mlpcli.predict_inputs import Notices, read_batches
from mlpcli.predictor import Predictor

SAVED_SUFFIX = "-{width}x{height}.png"  # --save-preprocessed: <input name>-28x28.png


@dataclass
class Outcome:
    """What a prediction run did, for the closing lines."""

    count: int = 0
    labelled: int = 0
    correct: int = 0  # classification
    squared: float = 0.0  # regression: sums of squared and absolute errors
    absolute: float = 0.0
    task: str = "classification"
    out: Path | None = None
    notes: list = field(default_factory=list)

    def score_line(self):
        if not self.labelled:
            return None
        if self.task == "classification":
            return f"Accuracy on the {self.labelled:,} labelled inputs: {self.correct / self.labelled:.4f}"
        return (f"On the {self.labelled:,} labelled inputs: mse {self.squared / self.labelled:.6g}, "
                f"mae {self.absolute / self.labelled:.6g}")

    def tally(self, outputs, y, predictor):
        if y is None:
            return
        self.labelled += len(y)
        if self.task == "classification":
            self.correct += int((predictor.probabilities(outputs).argmax(axis=1) == y).sum())
        else:
            error = outputs.astype(np.float64) - y
            self.squared += float(np.square(error).mean(axis=1).sum())
            self.absolute += float(np.abs(error).mean(axis=1).sum())


def predict(inputs, *, run_dir=None, model_path=None, checkpoint=None, top_k=3, out=None, overwrite=False,
            as_json=False, scaling=None, image_steps=None, save_preprocessed=None, runs_root="runs",
            note=None, emit=print, chunk_rows=8192):
    """Predict every input; lines (or JSON objects) go to ``emit`` unless ``out`` is given."""
    if not inputs:
        raise MlpError("nothing to predict: give image files or folders, or .csv, .npy or .npz files")
    if out is not None and as_json:
        raise MlpError("give --out FILE or --json, not both (--out FILE.jsonl writes JSON lines)")
    if out is not None:
        _check_not_an_input(Path(out), inputs)
    predictor = Predictor.open(run_dir, model_path=model_path, checkpoint=checkpoint, runs_root=runs_root,
                               note=note, scaling=scaling)
    outcome = Outcome(task=predictor.task, out=Path(out) if out is not None else None)
    notices = Notices()
    seen, seen_paths = [], []
    with ending_signals_interrupt(), _prediction_file(predictor, out, overwrite) as written:
        for batch in read_batches(predictor, inputs, chunk_rows=chunk_rows, image_steps=image_steps,
                                  notices=notices):
            outputs = predictor.outputs(batch.x, batch.sources)
            outcome.count += len(outputs)
            outcome.tally(outputs, batch.y, predictor)
            if save_preprocessed is not None and batch.seen is not None:
                seen += list(batch.seen)
                seen_paths += batch.paths
            if written is not None:
                written.write(batch.sources, outputs)
            else:
                for line in _lines(predictor, batch.sources, outputs, top_k, as_json):
                    emit(line)
    if seen:
        _save_seen(Path(save_preprocessed), seen_paths, seen)
    outcome.notes = notices.text() + predictor.warnings()
    return outcome


def _check_not_an_input(out, inputs):
    """Refuse an --out that is one of the inputs (by any name: a link, a second hard link),
    --overwrite or not: predictions never take the place of the data they were made from."""
    if not os.path.exists(out):
        return
    for given in map(Path, inputs):
        with contextlib.suppress(OSError):
            if given.is_file() and os.path.samefile(out, given):
                raise MlpError(f"--out {out}: is the input {given}; predictions are never written over "
                               "their inputs (--overwrite or not): choose another --out")


def _prediction_file(predictor, out, overwrite):
    if out is None:
        return contextlib.nullcontext()
    from mlpcli.prediction_file import open_prediction_file

    return open_prediction_file(out, class_names=predictor.class_names, n_outputs=predictor.model.n_outputs,
                                task=predictor.task, overwrite=overwrite)


def _lines(predictor, sources, outputs, top_k, as_json):
    """The terminal's lines for a chunk: one per input."""
    import json

    if predictor.task != "classification":
        values = [row.tolist() if len(row) > 1 else float(row[0]) for row in outputs]
        if as_json:
            return [json.dumps({"source": s, "value": v}) for s, v in zip(sources, values)]
        width = max(len(s) for s in sources)
        return [f"{s:<{width}}  {v}" for s, v in zip(sources, values)]
    results = predictor.decode(sources, outputs, top_k)
    if as_json:
        return [json.dumps(r.as_dict()) for r in results]
    return format_predictions(results).splitlines()


def _save_seen(folder, paths, seen):
    """Write each image the model saw (before scaling) as a PNG under ``folder`` (see
    ``_preprocessed_names``).

    Every file is new: none is written if one of the names exists, and each is
    linked into place complete, so an existing file is never replaced. On failure,
    what this call made (the PNGs and the folders it created) is removed, so nothing
    half-made is left.
    """
    from mlpcli import images

    height, width = seen[0].shape[:2]
    suffix = SAVED_SUFFIX.format(width=width, height=height)
    targets = dict(zip((folder / name for name in _preprocessed_names(paths, suffix)), seen))
    existing = [t for t in targets if t.exists()]
    if existing:
        raise _would_overwrite(existing)
    folders = {d for t in targets for d in (t.parent, *t.parent.parents)}
    made = sorted((d for d in folders if not d.exists()), key=lambda d: len(d.parts), reverse=True)
    written = []
    try:
        for target, image in targets.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            with files.atomic_path(target, replace=False) as tmp:
                images.encode_png(tmp, image)
            written.append(target)
    except BaseException as exc:
        for path in written:
            path.unlink(missing_ok=True)
        for path in made:  # deepest first
            with contextlib.suppress(OSError):
                path.rmdir()
        if isinstance(exc, FileExistsError):  # appeared after the check above
            raise _would_overwrite([target]) from None
        raise


def _preprocessed_names(paths, suffix):
    """Where each input's 28x28 goes, relative to the --save-preprocessed folder: the input's
    path relative to the folder holding all inputs, ``suffix`` in place of its suffix (its
    whole name is kept when two inputs would share one). Distinct inputs get distinct names;
    an input given twice gets the same one."""
    sources = [p.resolve() for p in paths]
    common = Path(os.path.commonpath([s.parent for s in sources]))
    relative = [s.relative_to(common) for s in sources]
    names = [r.with_name(r.stem + suffix) for r in relative]
    inputs_per_name = Counter(name for name, _ in set(zip(names, sources)))
    return [r.with_name(r.name + suffix) if inputs_per_name[name] > 1 else name
            for r, name in zip(relative, names)]


def _would_overwrite(paths):
    return MlpError(f"--save-preprocessed: would overwrite {', '.join(map(str, paths[:3]))}; "
                    "choose an empty folder")


def format_predictions(results):
    """One line per input: the class, its probability and the top-k."""
    width = max(len(r.source) for r in results)
    return "\n".join(f"{r.source:<{width}}  {r.label} ({r.probability:.1%})   top: "
                     + ", ".join(f"{c} {p:.1%}" for c, p in r.top) for r in results)
