"""Resume states: the whole of a run saved to ``resume/`` after each epoch (and when a signal
stops it mid-epoch), and restored by ``mlp train --resume``.

A state is one model file (``modelfile.save``) whose JSON ``state`` holds the trainer's
(``trainer``: counters, random streams, schedule, the epoch under way), the history, whether
training had finished, the configured epochs, and each callback's under its ``state_key``;
its arrays are the trainer's and the callbacks' together.
"""

from mlpcli import files, modelfile, run_models, runs
from mlpcli.errors import (
    ConfigError,
    FileSystemError,
    MlpError,
    ModelFileError,
    NoSavedState,
)
from mlpcli.fit_loop import Callback, file_target

FINAL_FILES = (runs.MODEL_FILE, runs.RESULTS_FILE, runs.DIAGNOSTICS_FILE)


class ResumeStates(Callback):
    """Saves the run to ``resume/`` after every epoch (keeping the two newest) and when a stop
    request pauses an epoch, then ends the run with ``Interrupted`` if one was requested.

    Last in the list of callbacks, so that a state holds what the others did in the epoch.
    """

    def __init__(self, cfg, folder, report, n_train, model_extras):
        """``n_train``: the training samples (an epoch saved part-way must have as many);
        ``model_extras``: the config and input pipeline every model file carries."""
        self.cfg, self.folder, self.report, self.n_train = cfg, folder, report, n_train
        self.extras = model_extras
        self.refused = set()  # saved states resume found unusable

    def on_epoch_paused(self, epoch, paused):
        path = self.save()
        raise self.loop.interrupted(f"in epoch {epoch} after batch {paused.done} of {paused.total}",
                                    path) from None

    def on_epoch_end(self, epoch, logs):
        path = self.save()
        if self.loop.stop() and not self.loop.finished:
            raise self.loop.interrupted(f"after epoch {epoch}", path)

    def _stateful(self):
        return [c for c in self.loop.callbacks if c.state_key]

    def save(self):
        """Write everything needed to continue to ``resume/``; keep the two newest."""
        trainer = self.loop.trainer
        trainer_state, arrays = trainer.get_state()
        state = {"trainer": trainer_state}
        for callback in self._stateful():
            state[callback.state_key], kept = callback.get_state()
            arrays.update(kept)
        state.update(history=self.loop.history, finished=self.loop.finished, epochs=self.loop.epochs)
        p = trainer.progress
        path = file_target(self.folder / runs.RESUME_DIR / run_models.resume_state_name(
            trainer.epoch, p.batch if p else None), self.folder)
        path.parent.mkdir(exist_ok=True)
        modelfile.save(path, trainer.model, loss=self.cfg["loss"], optimizer=trainer.optimizer,
                       state=state, arrays=arrays, **self.extras)
        # the two newest of the states this run can use: one that resume refused is not counted
        for old in [p for p in run_models.resume_states(self.folder) if p not in self.refused][2:]:
            old.unlink()
        return path

    def resume(self, history_file):
        """Restore the newest valid state in ``resume/``, falling back past damaged ones, and
        rewrite ``history_file`` (a ``HistoryFile``) from it."""
        removed = files.remove_stale_temporaries(self.folder)
        if removed:
            self.report.line(f"Removed {removed} temporary file(s) left by an interrupted run")
        for name in (*FINAL_FILES, runs.HISTORY_FILE, runs.CONFIG_FILE, runs.SUMMARY_FILE, runs.PARAMS_FILE):
            file_target(self.folder / name, self.folder)
        for name in (runs.CHECKPOINTS_DIR, runs.RESUME_DIR):
            if (self.folder / name).exists() and not (self.folder / name).is_dir():
                raise FileSystemError(f"{self.folder / name}: is a file, where mlp keeps a folder; move it "
                                      f"away, then go on with: mlp train --resume {self.folder}")
        trainer = self.loop.trainer
        for path in run_models.resume_states(self.folder, warn=self.report.warn):
            try:
                saved = modelfile.load(path)
                self._restore(saved)
            except (ModelFileError, KeyError, TypeError, ValueError) as exc:
                self.report.warn(f"Warning: {path} is not a usable checkpoint ({exc}); trying an older one")
                self.refused.add(path)
                continue
            self.report.line(f"Resuming {self.folder} from {path.name} (epoch {trainer.epoch}"
                             + (f", batch {trainer.progress.batch}" if trainer.progress else "")
                             + ")")
            if self.loop.finished:
                self.report.line("Training had finished; writing the final files")
            history_file.write()
            return
        raise NoSavedState(f"{self.folder}: no valid checkpoint in {runs.RESUME_DIR}/ to resume from; "
                           "start a new run instead (nothing was changed)")

    def _restore(self, saved):
        state = saved.state
        if "trainer" not in state:
            raise KeyError("no training state")
        epochs, done = self.loop.epochs, state["trainer"]["epoch"]
        # training had finished, and nothing asks for more: only the final files may be missing
        finished = state["finished"] and epochs <= state["epochs"]
        if finished and self._final_files_written(len(state["history"])):
            raise MlpError(f"{self.folder}: this run already finished ({done} "
                           f"epochs); to train further, extend it with --set training.epochs=N "
                           f"(N > {state['epochs']})")
        progress = state["trainer"].get("progress")
        if epochs < done or (progress and epochs == done):
            least = done + 1 if progress else done  # an epoch under way is finished, not dropped
            raise ConfigError(f"training.epochs: the run has done {done} epochs"
                              + (f" and is part-way through epoch {done + 1}" if progress else "")
                              + f", --set gives {epochs}; give {least} or more")
        if progress and len(saved.arrays["progress/order"]) != self.n_train:
            raise MlpError(f"{self.folder}: the epoch under way was saved with "
                           f"{len(saved.arrays['progress/order'])} training samples, but the data now "
                           f"gives {self.n_train}; the data changed since, so the run cannot go on")
        self._check_same_inputs(saved.pipeline)
        trainer = self.loop.trainer
        trainer.model.set_weights(saved.model.weights)
        trainer.optimizer.set_state(saved.optimizer_state)
        trainer.set_state(state["trainer"], saved.arrays)
        for callback in self._stateful():
            if state.get(callback.state_key) is not None:  # early stopping saves None when off
                callback.set_state(state[callback.state_key], saved.arrays)
        self.loop.history = state["history"]
        self.loop.finished = finished

    def _check_same_inputs(self, saved):
        """Refuse to go on when the data's feature columns, classes or a column's categories are
        not those the saved state was trained on (reordered, renamed, added): the weights would
        silently take one for another. A state that does not record them is not checked."""
        now = self.extras["pipeline"]
        for what in ("columns", "class_names"):
            before, after = getattr(saved, what) if saved else None, getattr(now, what)
            if before is None or before == after:
                continue
            after = after or []
            at = next((i for i, (b, a) in enumerate(zip(before, after)) if b != a), min(len(before), len(after)))
            shown = [f"{len(names)} {what.replace('_', ' ')}"
                     + (f", #{at + 1} {names[at]!r}" if at < len(names) else "") for names in (before, after)]
            raise MlpError(f"{self.folder}: the run was trained on {shown[0]}, but the data now gives "
                           f"{shown[1]}; the data changed since, so the run cannot go on (start a new run)")
        if saved is not None and saved.categories and saved.categories != now.categories:
            column = next(c for c in {**saved.categories, **now.categories}
                          if saved.categories.get(c) != now.categories.get(c))
            raise MlpError(f"{self.folder}: the run was trained on the categories {saved.categories.get(column)} "
                           f"of column {column!r}, but the data now gives {now.categories.get(column)}; the data "
                           "changed since, so the run cannot go on (start a new run)")

    def _final_files_written(self, epochs_run):
        """Whether results.json (written last) describes a run of ``epochs_run`` epochs."""
        try:
            results = runs.read_json(self.folder / runs.RESULTS_FILE)
        except (OSError, UnicodeDecodeError, ValueError):
            return False
        return isinstance(results, dict) and results.get("epochs_run") == epochs_run
