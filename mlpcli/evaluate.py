"""The ``evaluate`` stage: score a model on a test split and write ``evaluation*.json``.

The model is a run's ``model.h5``, one of its checkpoints (``best``, ``last``
or an epoch number) or any Keras-layout ``.h5`` MLP, opened by its
``Predictor``, which prepares the data as the model needs it. The data is the
test split of the run's dataset, or ``--data``: a dataset name or a
file/folder of the same kind as the training data (a CSV's columns are
matched to the model's by name).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlpcli import config as config_mod
from mlpcli import files, run_models, runs
from mlpcli.data import holds_pixels, load_raw
from mlpcli.data.builtin import BUILTINS
from mlpcli.data.mapped import row_blocks
from mlpcli.errors import DataError, MlpError
from mlpcli.predictor import Predictor

# samples prepared (as float32) and predicted at a time
PREDICT_CHUNK_ROWS = 8192


class NoTestSplit(MlpError):
    """The run's dataset has no test split and no ``--data`` was given."""


@dataclass
class Evaluation:
    report: dict  # what evaluation*.json holds
    path: Path  # where ``save`` writes it
    warnings: list = field(default_factory=list)  # what the data suggests the user check

    def save(self):
        files.write_text(self.path, json.dumps(self.report, indent=2) + "\n")


def evaluate(run_dir=None, *, checkpoint=None, model_path=None, data=None, scaling=None, image_steps=None,
             runs_root="runs", note=None):
    """Evaluate a model; see the module docstring. The report is written by ``save``, so it
    can be shown first: a folder that cannot be written to does not cost the user the report.
    ``note`` is told where a link to the run folder led (see ``runs.resolve_run_dir``)."""
    predictor = Predictor.open(run_dir, model_path=model_path, checkpoint=checkpoint, runs_root=runs_root,
                               note=note, scaling=scaling)
    if image_steps is not None and (data is None or not Path(data).is_dir()):
        raise MlpError("--images: is for --data FOLDER (of class sub-folders of images)")
    outputs, y, source, notes = _test_data(predictor, data, image_steps)
    report = predictor.score(outputs.rows, y, outputs.activity_penalty)
    model_path = predictor.path
    report = {"checkpoint": model_path.name, "model_file": str(model_path.resolve()), "data": source,
              "run_test_split": data is None and predictor.config is not None, "scaling": predictor.scaling,
              **report}
    return Evaluation(report, run_models.evaluation_path(predictor.run_dir, model_path, data),
                      notes + predictor.warnings())


class Outputs:
    """The model's outputs for samples given a chunk at a time (a file larger than memory
    is never read whole), and the activity regularizers' penalty on them."""

    def __init__(self, predictor):
        self.predictor, self.parts, self.activity = predictor, [], 0.0

    def add(self, x, sources=None):
        """Outputs for prepared samples ``x``."""
        self.parts.append(self.predictor.outputs(x, sources))
        self.activity += self.predictor.model.predict_activity_penalty * len(x)

    @property
    def rows(self):
        return np.concatenate(self.parts)

    @property
    def activity_penalty(self):
        return self.activity / max(sum(map(len, self.parts)), 1)


def _test_data(predictor, data, image_steps=None):
    """(the model's ``Outputs``, targets as the model's class indices, description, notes) of
    the evaluation data.

    Data paths come only from the user: ``--data``, or the config.yaml of the
    run being evaluated; the paths in a model file's stored config are never
    followed (a file from elsewhere could name any local file or folder).
    A file or folder given as ``--data`` is read as ``mlp predict`` reads it.
    """
    cfg, run_dir = predictor.config, predictor.run_dir
    if data is not None and Path(data).suffix.lower() in (".csv", ".npz") and not Path(data).is_dir():
        return _labelled_file(predictor, Path(data))
    if data is not None and Path(data).is_dir() and _takes_images(predictor, image_steps):
        return _labelled_folder(predictor, Path(data), image_steps)
    if data is None:
        if run_dir is not None:
            data_cfg = dict(runs.run_config(run_dir)["data"])
        elif cfg is None:
            if int(np.prod(predictor.model.input_shape)) == 784 and predictor.model.n_outputs == 10:
                data_cfg = {"dataset": "mnist"}
            else:
                raise MlpError("this model file carries no mlpcli config; pass --data (a dataset "
                               "name or a file) to say what to evaluate it on")
        else:
            data_cfg = _stored_builtin_data(cfg["data"], predictor.path)
    elif data in BUILTINS:
        data_cfg = {"dataset": data}
    else:
        kind = _kind_of(Path(data), cfg)
        data_cfg = {**(cfg["data"] if cfg else {}), "dataset": kind, "path": str(data),
                    "test_path": None, "validation_path": None, "max_test_samples": None}
    # a table's cells are encoded as the model's were, not refitted on today's training file
    raw, name = load_raw(data_cfg, task=predictor.task,
                         table=predictor.pipeline.table if predictor.pipeline else None)
    if raw.x_test is not None:
        limit = data_cfg.get("max_test_samples")
        x, y, what = raw.x_test[:limit], raw.y_test[:limit], f"{name} test split"
    elif data is not None:
        x, y, what = raw.x_train, raw.y_train, name
    else:
        raise NoTestSplit(f"the run's dataset ({name}) has no test split; pass --data FILE to evaluate on")
    where = str(data) if data is not None else name
    outputs = Outputs(predictor)
    for block in row_blocks(x, PREDICT_CHUNK_ROWS):
        outputs.add(predictor.prepare(block, where, pixels=holds_pixels(data_cfg["dataset"])))
    if predictor.task == "classification":
        y = predictor.remap_labels(y, raw.class_names, where)
    return outputs, y, f"{what} ({len(x)} samples)", []


def _takes_images(predictor, image_steps):
    """Whether image files are prepared for this model as ``mlp predict`` prepares them;
    DataError for a model that takes no images. An array model takes a folder's images as
    arrays, through the training loader (an older image model that did not record its
    images' size is one)."""
    from mlpcli.predict_inputs import image_steps_of

    if predictor.pipeline is not None and predictor.pipeline.kind == "array" and image_steps is None:
        return False
    image_steps_of(predictor, image_steps)
    return True


def _labelled_folder(predictor, root, image_steps):
    """The images of a folder of class sub-folders, each prepared as ``mlp predict`` prepares
    it (digits centred, other sizes resized, with a note), labelled by its folder's name."""
    from mlpcli.data.image_folder import labelled_images
    from mlpcli.predict_inputs import Notices, image_batches

    files, classes = labelled_images(root)
    labels = np.asarray(classes, dtype=str)
    recorded = predictor.pipeline is not None and predictor.pipeline.class_names
    if not recorded and not all(name.isdigit() for name in set(classes)):
        # numbered as the training loader (and Keras's image_dataset_from_directory) numbers
        # them: by their folders' sorted names
        labels = np.searchsorted(np.unique(labels), labels)
    y = predictor.encode_labels(labels, str(root), lambda i: f"folder {files[i].parent}")
    notices, outputs = Notices(), Outputs(predictor)
    for batch in image_batches(predictor, files, image_steps, notices):
        outputs.add(batch.x, batch.sources)
    return outputs, y, f"{root.name} ({len(y)} samples)", notices.text()


def _labelled_file(predictor, path):
    """A CSV file's rows (columns matched to the model's by name) and its label column, or an
    .npz archive's x_test and y_test (or x and y, or x_train and y_train)."""
    from mlpcli.predict_inputs import Notices, read_batches

    outputs, ys, notices = Outputs(predictor), [], Notices()
    for batch in read_batches(predictor, [path], chunk_rows=PREDICT_CHUNK_ROWS, notices=notices):
        if batch.y is None:
            if path.suffix.lower() == ".npz":
                raise DataError(f"{path}: no labels (y_test, y or y_train) to score the predictions against")
            label = predictor.pipeline.label_column if predictor.pipeline and predictor.pipeline.label_column \
                else "label"
            raise DataError(f"{path}: no label column {label!r} to score the predictions against")
        outputs.add(batch.x, batch.sources)
        ys.append(batch.y)
    return outputs, np.concatenate(ys), f"{path.name} ({sum(map(len, ys))} samples)", notices.text()


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
        return "npy" if cfg and cfg["data"]["dataset"] == "npy" else "image_folder"
    if cfg and cfg["data"]["dataset"] not in BUILTINS:
        return cfg["data"]["dataset"]
    raise MlpError(f"--data {path}: expected mnist, fashion_mnist, a .npz or .csv file, or a folder of images")


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
