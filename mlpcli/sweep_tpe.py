"""Model-based search for ``mlp sweep --search tpe``: Optuna's TPE proposes each trial from the
trials told before it.

The sweep folder is the one record of the search: sweep.yaml holds the search (its
``tpe:`` entry: space, trials, seed, pruner, monitored quantity) and every trial proposed
so far; each finished trial's folder holds its history. Every proposal and every pruning
decision is a function of that record alone, so the same command proposes the same trials
on one worker or many, on the local pool or on Dask, and after ``--resume``:

* trial ``n`` is proposed by a TPE sampler seeded with (seed, n), from a study rebuilt
  from the trials numbered up to ``n - ahead`` (told: their overrides, best monitored
  value and per-epoch values) and those between (proposed, not told: running, so TPE
  proposes away from them). It is proposed once every trial up to ``n - ahead`` has an
  outcome, so up to ``ahead`` trials (4, or ``--workers`` when more) train at once;
* its pruning (``mlpcli.sweep_pruning``) is judged against the same told trials.

The objective is what ``mlp compare`` ranks by (``mlpcli.ranking``): the best value over
the epochs of the base config's ``checkpoint.monitor`` (val_loss unless set), in its
direction. Integer keys are suggested as integers; ``--grid`` lists are categorical
choices. TPE's first ``STARTUP_TRIALS`` proposals are random draws.
"""

import dataclasses
import math

from mlpcli.errors import MlpError
from mlpcli.ranking import best_of
from mlpcli.sweep_folder import FOLDS, PRUNERS
from mlpcli.sweep_pruning import (
    COMPLETE,
    FAIL,
    PRUNED,
    PruningPlan,
    Told,
    import_optuna,
)

DEFAULT_AHEAD = 4
STARTUP_TRIALS = 5
FINAL_STATUSES = ("ok", "pruned", "failed")  # a trial with one of these has been told


# ---------------------------------------------------------------- the search, as sweep.yaml keeps it

def new_search(ranges, choices, trials, seed, prune, cfg, integer_key):
    """The ``tpe:`` entry of a new sweep's sweep.yaml (without ``ahead``, set by ``start``).
    ``integer_key(key)``: whether the config declares ``key`` an integer."""
    space = {}
    for key, r in (ranges or {}).items():
        integer = bool(integer_key(key))
        if integer and math.ceil(r["low"]) > math.floor(r["high"]):
            raise MlpError(f"--range {key}: an integer key needs a whole number between "
                           f"{r['low']:g} and {r['high']:g}")
        if integer and r["log"] and math.ceil(r["low"]) < 1:
            raise MlpError(f"--range {key}: a log range of an integer key needs a low end of 1 or more")
        space[key] = {**r, "integer": integer}
    monitor = cfg["checkpoint"]["monitor"]
    from mlpcli.nn.metrics import higher_is_better

    return {"trials": trials, "seed": seed, "prune": prune, "ranges": space, "choices": dict(choices or {}),
            "monitor": monitor, "higher": higher_is_better(monitor, cfg["checkpoint"]["mode"]),
            "epochs": cfg["training"]["epochs"]}


def checked_search(spec, where):
    """The ``tpe:`` entry of a sweep.yaml, checked enough to go on with; None for other sweeps."""
    search = spec.get("tpe")
    if search is None:
        return None
    ok = (isinstance(search, dict) and isinstance(search.get("trials"), int) and search["trials"] >= 1
          and isinstance(search.get("seed"), int) and search.get("prune") in PRUNERS
          and isinstance(search.get("ranges"), dict) and isinstance(search.get("choices"), dict)
          and (search["ranges"] or search["choices"]) and isinstance(search.get("monitor"), str)
          and isinstance(search.get("higher"), bool) and isinstance(search.get("epochs"), int)
          and isinstance(search.get("ahead"), int) and search["ahead"] >= 1
          and all(isinstance(r, dict) and {"low", "high", "log", "integer"} <= set(r)
                  for r in search["ranges"].values())
          and all(isinstance(v, list) and v for v in search["choices"].values()))
    if not ok:
        raise MlpError(f"{where}: its tpe: entry is not a search this version can go on with")
    return search


def start(search, workers):
    """The search with its ``ahead`` (kept for the whole sweep, --resume included) and the
    overrides of its first trials (those proposed before any is told)."""
    search = {**search, "ahead": max(DEFAULT_AHEAD, workers)}
    optuna = import_optuna()
    proposed = []
    for number in range(1, min(search["ahead"], search["trials"]) + 1):
        proposed.append(propose(optuna, search, number, [], proposed))
    return search, proposed


# ---------------------------------------------------------------- parameters and proposals

def _distributions(optuna, search):
    dists = {}
    for key, r in search["ranges"].items():
        if r["integer"]:
            dists[key] = optuna.distributions.IntDistribution(math.ceil(r["low"]), math.floor(r["high"]),
                                                              log=r["log"])
        else:
            dists[key] = optuna.distributions.FloatDistribution(r["low"], r["high"], log=r["log"])
    for key, values in search["choices"].items():
        dists[key] = optuna.distributions.CategoricalDistribution(tuple(range(len(values))))
    return dists


def _overrides(search, params):
    """A trial's overrides from Optuna's parameters: integers as int, other numbers to 4
    significant digits (within the range), a choice as its value."""
    out = {}
    for key, r in search["ranges"].items():
        value = params[key]
        out[key] = int(value) if r["integer"] else min(max(float(f"{value:.4g}"), r["low"]), r["high"])
    for key, values in search["choices"].items():
        out[key] = values[params[key]]
    return out


def _params(search, overrides, where):
    params = {}
    for key, r in search["ranges"].items():
        value = overrides.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not r["low"] <= value <= r["high"]:
            raise MlpError(f"{where}: a trial's {key} is {value!r}, outside the search's range")
        params[key] = value
    for key, values in search["choices"].items():
        if overrides.get(key) not in values:
            raise MlpError(f"{where}: a trial's {key} is {overrides.get(key)!r}, not one of the search's choices")
        params[key] = values.index(overrides[key])
    return params


def trial_seed(seed, number):
    import numpy as np

    return int(np.random.SeedSequence([number, seed % 2**63]).generate_state(1)[0])


def propose(optuna, search, number, told, in_flight, where="sweep.yaml"):
    """The overrides of trial ``number`` (from 1), from ``told`` [(overrides, Told)] and the
    overrides of the trials ``in_flight`` (proposed, not told)."""
    sampler = optuna.samplers.TPESampler(seed=trial_seed(search["seed"], number),
                                         n_startup_trials=STARTUP_TRIALS)
    study = optuna.create_study(direction="maximize" if search["higher"] else "minimize", sampler=sampler)
    dists = _distributions(optuna, search)
    state = {COMPLETE: optuna.trial.TrialState.COMPLETE, PRUNED: optuna.trial.TrialState.PRUNED,
             FAIL: optuna.trial.TrialState.FAIL}
    for overrides, outcome in told:
        study.add_trial(optuna.trial.create_trial(
            state=state[outcome.state], value=outcome.value, params=_params(search, overrides, where),
            distributions=dists, intermediate_values=outcome.steps))
    for overrides in in_flight:
        study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING,
                                                  params=_params(search, overrides, where),
                                                  distributions=dists))
    return _overrides(search, study.ask(dists).params)


def told_of(run_dir, row, search):
    """What the search is told of a trial with results.csv ``row`` whose folder is ``run_dir``."""
    from mlpcli.history import read_history
    from mlpcli.runs import HISTORY_FILE

    status = row["status"]
    if status not in ("ok", "pruned"):
        return Told(FAIL)
    if row.get(FOLDS):  # a cross-validation trial: the folds' mean, and no epochs of its own
        value = row.get("best_value")
        return Told(COMPLETE, float(value), {}) if isinstance(value, (int, float)) and math.isfinite(value) \
            else Told(FAIL)
    try:
        history = read_history(run_dir / HISTORY_FILE)
    except (OSError, UnicodeDecodeError, ValueError):
        return Told(FAIL)
    values, epochs = history.get(search["monitor"], []), history.get("epoch", [])
    steps = {int(e): float(v) for e, v in zip(epochs, values) if math.isfinite(v) and math.isfinite(e)}
    found = best_of(history, search["monitor"], search["higher"])
    if status == "pruned":
        return Told(PRUNED, None, steps) if steps else Told(FAIL)
    return Told(COMPLETE, float(found[0]), steps) if found else Told(FAIL)


# ---------------------------------------------------------------- the trials, as they can start

class TpeFeed:
    """The trials of a TPE sweep for an executor, each when it may start: first those already
    proposed that must run (``waiting``), then new proposals, up to the search's number of
    trials. ``trials`` (every proposed trial, in order) and ``rows`` (results by trial name)
    are the sweep's, updated as trials finish; ``add(overrides)`` records a new proposal and
    returns its Trial (None when its config is invalid: it is recorded as failed)."""

    def __init__(self, search, folder, trials, rows, waiting, add):
        self.search, self.folder, self.trials, self.rows = search, folder, trials, rows
        self.waiting, self.add = list(waiting), add
        self.closed = False
        self.told = {}  # trial name -> (overrides, Told), read once from its folder
        self.optuna = import_optuna()

    def __len__(self):
        """Trials left to start (at most)."""
        return 0 if self.closed else len(self.waiting) + self.search["trials"] - len(self.trials)

    def more(self):
        return len(self) > 0

    def close(self):
        self.closed = True

    def _number(self, trial):
        return next(i for i, t in enumerate(self.trials, 1) if t.name == trial.name)

    def _ready(self, number):
        return all(self.rows.get(t.name, {}).get("status") in FINAL_STATUSES
                   for t in self.trials[:max(0, number - self.search["ahead"])])

    def _told(self, number):
        """[(overrides, Told)] of the trials told before trial ``number`` may start."""
        out = []
        for t in self.trials[:max(0, number - self.search["ahead"])]:
            if t.name not in self.told:
                self.told[t.name] = (t.overrides, told_of(self.folder / t.name, self.rows[t.name], self.search))
            out.append(self.told[t.name])
        return out

    def _with_plan(self, trial, number):
        if self.search["prune"] == "none":
            return trial
        told = [outcome for _, outcome in self._told(number)]
        told += [Told(FAIL)] * (number - 1 - len(told))  # proposed, not told: not counted
        return dataclasses.replace(trial, pruning=PruningPlan(
            self.search["prune"], self.search["monitor"], self.search["higher"], self.search["epochs"], told))

    def next(self):
        """The next trial that may start now, or None."""
        while not self.closed:
            for trial in self.waiting:
                number = self._number(trial)
                if self._ready(number):
                    self.waiting.remove(trial)
                    return self._with_plan(trial, number)
            number = len(self.trials) + 1
            if number > self.search["trials"] or not self._ready(number):
                return None
            start = max(0, number - self.search["ahead"])
            overrides = propose(self.optuna, self.search, number, self._told(number),
                                [t.overrides for t in self.trials[start:]])
            trial = self.add(overrides)
            if trial is not None:
                return self._with_plan(trial, number)
        return None
