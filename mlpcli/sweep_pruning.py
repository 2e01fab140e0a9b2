"""Pruning a TPE sweep's trial after each epoch, in the process that trains it.

A trial of ``mlp sweep --search tpe`` carries a ``PruningPlan``: the pruner, the
monitored quantity, and a frozen record of the trials told before it (each one's
outcome and monitored value per epoch). ``TrialPruning``, a training callback,
rebuilds an in-memory Optuna study from that record, reports each epoch's value
and, when the pruner says so, finishes the run after that epoch like early
stopping does: the run folder is a normal finished run of the epochs it trained,
and its results.json says ``pruned_epoch``. The decisions depend on the record
only, never on which other trials happen to have finished, so they are the same
on the local pool, on Dask and after ``--resume``.

Pruners, for short trainings (``epochs`` of the base config):

* ``median`` (Optuna's MedianPruner): a trial is pruned at an epoch when its value
  is worse than the median of the completed trials' values at that epoch, once
  ``MEDIAN_STARTUP_TRIALS`` trials have completed, and not in its first quarter of
  the epochs (at least one epoch) nor after its last;
* ``hyperband`` (HyperbandPruner): min_resource 1 epoch, max_resource the epochs,
  reduction factor 3.
"""

import math
from dataclasses import dataclass, field

from mlpcli.errors import MlpError
from mlpcli.fit_loop import Callback
from mlpcli.sweep_folder import PRUNED_EPOCH

OPTUNA_HINT = "pip install 'mlpcli[optuna]'"
MEDIAN_STARTUP_TRIALS = 3
HYPERBAND_REDUCTION = 3
STUDY_NAME = "mlp-sweep"  # Hyperband assigns brackets by the study's name and the trial's number
COMPLETE, PRUNED, FAIL = "complete", "pruned", "fail"


def import_optuna():
    """The optuna module, quiet; an MlpError saying how to install it when it is missing."""
    try:
        import optuna
    except ImportError as exc:
        raise MlpError(f"--search tpe needs Optuna, which is not installed ({exc}); install it with: "
                       f"{OPTUNA_HINT}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def warmup_epochs(epochs):
    """Epochs a trial trains before the median pruner may stop it: a quarter, at least 1."""
    return max(1, epochs // 4)


def make_pruner(optuna, kind, epochs):
    if kind == "median":
        # steps are epochs, from 1: Optuna prunes from step n_warmup_steps on
        return optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS,
                                           n_warmup_steps=warmup_epochs(epochs) + 1)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, epochs),
                                              reduction_factor=HYPERBAND_REDUCTION)
    return optuna.pruners.NopPruner()


@dataclass
class Told:
    """A trial's outcome as the search was told it: ``state`` (complete, pruned or fail), its
    value (the best monitored value; complete trials only) and ``steps`` ({epoch: value})."""

    state: str
    value: float | None = None
    steps: dict = field(default_factory=dict)


@dataclass
class PruningPlan:
    """What a trial's process needs to decide its pruning: ``earlier`` holds one ``Told`` per
    trial numbered below it (those not told before it started as ``fail``: not counted)."""

    pruner: str
    monitor: str
    higher: bool
    epochs: int
    earlier: list


def replay(study, told):
    """Add ``told`` to ``study`` as its trial went: each epoch's value reported and the pruner
    asked (Hyperband records its rungs on the trial as it goes), then its outcome."""
    import optuna

    trial = study.ask()
    for step, value in sorted(told.steps.items()):
        trial.report(value, step)
        trial.should_prune()
    if told.state == COMPLETE:
        study.tell(trial, told.value)
    else:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED if told.state == PRUNED
                   else optuna.trial.TrialState.FAIL)


class TrialPruning(Callback):
    """Reports each epoch's monitored value to the pruner; finishes the run when it says so."""

    def __init__(self, plan):
        self.plan = plan
        self.trial = None
        self.pruned_epoch = None

    def on_train_begin(self):
        optuna = import_optuna()
        plan = self.plan
        study = optuna.create_study(study_name=STUDY_NAME, direction="maximize" if plan.higher else "minimize",
                                    pruner=make_pruner(optuna, plan.pruner, plan.epochs),
                                    sampler=optuna.samplers.RandomSampler(seed=0))  # asks for no parameters
        for told in plan.earlier:
            replay(study, told)
        self.trial = study.ask()
        for row in self.loop.history:  # a resumed trial: its epochs so far, decided as they were
            self._report(row["epoch"], row)

    def on_epoch_end(self, epoch, logs):
        self._report(epoch, logs)

    def _report(self, epoch, logs):
        value = logs.get(self.plan.monitor)
        if self.pruned_epoch is not None or value is None or not math.isfinite(value):
            return
        self.trial.report(float(value), int(epoch))
        # after its last epoch a trial has nothing left to save: it completes, and the search
        # is told its value (a pruned trial's is not, and ranks below every complete one)
        if epoch < self.loop.epochs and self.trial.should_prune():
            self.pruned_epoch = int(epoch)
            self.loop.finished = True

    def on_train_end(self, results):
        if self.pruned_epoch is not None:
            results[PRUNED_EPOCH] = self.pruned_epoch
