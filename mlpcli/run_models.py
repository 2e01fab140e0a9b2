"""A run's models and the reports on them: which file ``--checkpoint`` names (model.h5, the
best or last checkpoint, an epoch's, a file in checkpoints/), the saved states in resume/
(named by how far training got), and where ``mlp evaluate`` writes its report on one, read
back by ``mlp plot``. The folder names are ``mlpcli.runs``'s.
"""

import csv
import hashlib
import re
from pathlib import Path

from mlpcli import runs
from mlpcli.errors import MlpError
from mlpcli.files import TMP_PREFIX


def choose_checkpoint(run_dir, checkpoint):
    """The model file for ``--checkpoint``: None/"model.h5", "best", "last", an epoch number or a file name."""
    if checkpoint in (None, runs.MODEL_FILE):
        path = run_dir / runs.MODEL_FILE
        if not path.exists():
            raise MlpError(f"{run_dir}: no {runs.MODEL_FILE} yet (the run is still training, or was stopped: "
                           f"`mlp train --resume {run_dir}` finishes it); use --checkpoint last")
        return path
    by_epoch = _checkpoints_by_epoch(run_dir)
    if checkpoint == "last":
        if not by_epoch:
            raise MlpError(f"{run_dir}: no checkpoints")
        return by_epoch[max(by_epoch)]
    if checkpoint == "best":
        epoch = _best_epoch(run_dir)
        if epoch in by_epoch:
            return by_epoch[epoch]
        raise MlpError(f"{run_dir}: no checkpoint of the best epoch ({epoch}) was kept")
    if str(checkpoint).isdigit():
        if int(checkpoint) in by_epoch:
            return by_epoch[int(checkpoint)]
        raise MlpError(f"{run_dir}: no checkpoint of epoch {checkpoint}; there are epochs "
                       f"{', '.join(map(str, sorted(by_epoch))) or 'none'}")
    path = run_dir / runs.CHECKPOINTS_DIR / checkpoint
    if path.exists():
        return path
    raise MlpError(f"--checkpoint {checkpoint}: use {runs.MODEL_FILE}, best, last, an epoch number or a file "
                   f"in {run_dir / runs.CHECKPOINTS_DIR}")


def _checkpoints_by_epoch(run_dir):
    """{epoch: path} of the run's checkpoints, read from each file's own record."""
    from mlpcli import modelfile

    found = {}
    for path in sorted((run_dir / runs.CHECKPOINTS_DIR).glob(f"*{runs.MODEL_SUFFIX}")):
        try:
            epoch = modelfile.load(path).state.get("epoch")
        except MlpError:
            continue  # a damaged checkpoint is simply not offered
        if isinstance(epoch, int):
            found[epoch] = path
    return found


def _best_epoch(run_dir):
    """The epoch with the best value of the run's checkpoint monitor, from history.csv."""
    from mlpcli.history import best_epoch, read_history

    cfg = runs.run_config(run_dir)
    monitor = cfg["checkpoint"]["monitor"]
    path = run_dir / runs.HISTORY_FILE
    try:
        history = read_history(path)
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        raise MlpError(f"{path}: cannot read ({exc})") from None
    epoch = best_epoch(history, monitor, cfg["checkpoint"]["mode"]) if monitor in history else None
    if epoch is None:
        raise MlpError(f"{path}: no values of {monitor}")
    return int(epoch)


def evaluation_path(run_dir, model_path, data=None):
    """Where ``mlp evaluate`` writes its report: evaluation.json for a run's model.h5,
    evaluation-<checkpoint>.json otherwise, in the run folder (or beside a model file that
    is in none); ``-on-<data>`` is added for other data than the run's (``data``: a dataset
    name or a file), so no report replaces another's."""
    folder = run_dir if run_dir is not None else model_path.parent
    on = f"-on-{_data_tag(data)}" if data is not None else ""
    if run_dir is not None and model_path.resolve() == (run_dir / runs.MODEL_FILE).resolve():
        return folder / f"{runs.EVALUATION}{on}.json"
    return folder / f"{runs.EVALUATION}-{model_path.stem}{on}.json"


def _data_tag(data):
    """A name for ``--data`` in a file name: the dataset, or the file's stem and a hash of its
    full path (two different test.csv files get two reports)."""
    from mlpcli.data.builtin import BUILTINS

    if data in BUILTINS:
        return data
    path = str(Path(data).resolve())
    return f"{Path(data).stem}-{hashlib.sha1(path.encode()).hexdigest()[:8]}"


def evaluation_reports(run_dir):
    """The run's evaluation reports, by name."""
    return sorted(Path(run_dir).glob(f"{runs.EVALUATION}*.json"))


def evaluation_suffix(path):
    """``evaluation.json`` -> "", ``evaluation-model-03.json`` -> "-model-03"."""
    rest = Path(path).stem[len(runs.EVALUATION):]
    return rest if not rest or rest.startswith("-") else f"-{rest}"


# ---------------------------------------------------------------- saved states in resume/

_STATE_NAME = re.compile(r"epoch-([0-9]{4,})(?:-batch-([0-9]{6,}))?" + re.escape(runs.MODEL_SUFFIX))


def resume_state_name(epoch, batch=None):
    """``epoch-0003.h5`` (3 epochs done) or ``epoch-0003-batch-000120.h5`` (and 120 batches of the 4th)."""
    return f"epoch-{epoch:04d}" + (f"-batch-{batch:06d}" if batch is not None else "") + runs.MODEL_SUFFIX


def _state_progress(name):
    """(epochs, batches) of a name ``resume_state_name`` made, else None."""
    match = _STATE_NAME.fullmatch(name)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)) if match.group(2) else -1


def resume_states(run_dir, warn=None):
    """A run's saved states, newest first. Anything else in ``resume/`` (a name mlp
    does not make, a folder under a state's name) is skipped, and ``warn`` told."""
    folder = Path(run_dir) / runs.RESUME_DIR
    warn = warn or (lambda line: None)
    if not folder.is_dir():
        if folder.exists():
            warn(f"Warning: {folder} is a file, not the folder of saved states; ignored")
        return []
    states = []
    for path in folder.iterdir():
        progress = _state_progress(path.name)
        if path.name.startswith(TMP_PREFIX):
            continue
        if progress is None:
            warn(f"Warning: {path} is not a saved state mlp wrote; ignored")
        elif not path.is_file():
            warn(f"Warning: {path} is not a file; ignored")
        else:
            states.append((progress, path))
    return [path for _, path in sorted(states, reverse=True)]
