"""How runs are ranked and which one is recommended: the rule ``mlp compare`` prints and every
command that is given a sweep folder follows (it uses the sweep's recommended trial).

Pure functions of what was read from the run folders (their configs, histories and
parameter counts): the monitored quantity, each run's best value of it over the epochs,
the order, and the recommendation, the run with the fewest parameters whose score is
within a tolerance of the best. Reading the folders is ``mlpcli.runs``'s.
"""

import math
import statistics
from dataclasses import dataclass, field

from mlpcli.errors import MlpError
from mlpcli.history import best_index, epoch_numbers

# default tolerance: absolute for quantities that go up (accuracy), relative for the rest (loss)
TOLERANCE_HIGHER = 0.002
TOLERANCE_LOWER = 0.02
_EPS = 1e-12


@dataclass
class Ranking:
    """Runs (any objects with ``cfg``, ``history`` and ``params``) in order, best first."""

    monitor: str
    higher: bool
    tolerance: float
    ranked: list  # (run, score, position of the best epoch in its history), best first
    best: object = None  # the run with the best score, or None when no run has one
    recommended: object = None
    # cross-validation runs whose mean is not distinguishable from the best's (``indistinct``),
    # the best first; empty when the best is no cross-validation run or all others are clearly worse
    tied: list = field(default_factory=list)

    def score_of(self, run):
        return next(score for ranked, score, _ in self.ranked if ranked is run)

    def spread_of(self, run):
        """(standard deviation over the folds of their best values (numpy's, ddof 0), folds) of a
        cross-validation run, else None."""
        values = fold_bests(run, self.monitor, self.higher)
        return None if values is None else (statistics.pstdev(values), len(values))


def default_tolerance(higher):
    return TOLERANCE_HIGHER if higher else TOLERANCE_LOWER


def tolerance_text(higher, tolerance):
    return f"{tolerance:g}" if higher else f"{tolerance * 100:g}%"


def within(score, best, higher, tolerance):
    """Whether ``score`` is close enough to ``best``: ``best - tol`` for quantities that go
    up (absolute), ``best + tol * |best|`` for those that go down (relative)."""
    if higher:
        return score >= best - tolerance - _EPS
    return score <= best + tolerance * abs(best) + _EPS


def recommend(scores, params, higher, tolerance=None, tied=()):
    """(index of the best score, index of the recommended run); (None, None) without scores.

    The recommended run has the fewest parameters among the runs whose score is
    within the tolerance of the best (``within``) or ``tied`` with it (indices of runs that
    cross-validation does not tell from it, ``indistinct``); ties go to the better score,
    then to the earlier run. A run with an unknown parameter count (None) is
    recommended only when no run within the tolerance has a known one.
    ``tolerance`` defaults to 0.002 (absolute) when higher is better, else 0.02 (2%).
    """
    if tolerance is None:
        tolerance = default_tolerance(higher)
    scored = [i for i, s in enumerate(scores) if s is not None and math.isfinite(s)]
    if not scored:
        return None, None
    sign = -1 if higher else 1
    best = min(scored, key=lambda i: (sign * scores[i], i))
    close = [i for i in scored if within(scores[i], scores[best], higher, tolerance) or i in tied]
    recommended = min(close, key=lambda i: (params[i] is None, params[i] or 0, sign * scores[i], i))
    return best, recommended


def monitor_of(cfg):
    """(checkpoint.monitor, its mode) of a run's config as written, or (None, "auto")."""
    ckpt = cfg.get("checkpoint") if isinstance(cfg, dict) and isinstance(cfg.get("checkpoint"), dict) else {}
    monitor = ckpt.get("monitor")
    mode = ckpt.get("mode") if ckpt.get("mode") in ("auto", "min", "max") else "auto"
    return (monitor, mode) if isinstance(monitor, str) else (None, "auto")


def choose_monitor(runs, monitor=None):
    """(monitor, mode) to rank ``runs`` by: ``monitor`` when given (an error when no run logged
    it), else the checkpoint monitor the runs share, else val_loss, else loss."""
    with_history = [r for r in runs if r.history]
    if monitor is not None:
        if with_history and not any(monitor in r.history for r in with_history):
            raise MlpError(f"--monitor {monitor}: no compared run logged it; logged: "
                           f"{', '.join(sorted({c for r in with_history for c in r.history}))}")
        modes = {monitor_of(r.cfg)[1] for r in with_history if monitor_of(r.cfg)[0] == monitor}
        return monitor, modes.pop() if len(modes) == 1 else "auto"
    found = {monitor_of(r.cfg) for r in with_history if monitor_of(r.cfg)[0]}
    monitor, mode = found.pop() if len(found) == 1 else ("val_loss", "auto")
    if with_history and not any(monitor in r.history for r in with_history):
        monitor, mode = "loss", "auto"
    return monitor, mode


def best_of(history, monitor, higher):
    """(best value of ``monitor`` over the epochs, its position), or None when it has no finite value."""
    values = history.get(monitor) if history else None
    position = best_index(values, higher) if values else None
    return None if position is None else (values[position], position)


def fold_bests(run, monitor, higher):
    """A cross-validation run's best value of ``monitor`` in each fold (None: not such a run, or a
    fold without a finite value); its score is their mean."""
    folds = getattr(run, "folds", None)
    if not folds:
        return None
    found = [best_of(history, monitor, higher) for history in folds]
    return None if None in found else [value for value, _ in found]


def indistinct(a, b):
    """Whether two cross-validation runs' scores (each a list of per-fold values) cannot be told
    apart by their folds: their means differ by less than the standard error of that difference,
    sqrt(s_a^2 / k_a + s_b^2 / k_b) with s the folds' sample standard deviation (ddof 1)."""
    error = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    return abs(statistics.fmean(a) - statistics.fmean(b)) < error


def best_epoch_at(history, position):
    return epoch_numbers(history)[position]


def rank(runs, monitor, mode, tolerance=None):
    """The ``Ranking`` of ``runs`` by ``monitor``: the runs with a finite value of it, best first
    (ties keep the given order), the best and the recommended (``recommend``)."""
    from mlpcli.nn.metrics import higher_is_better

    higher = higher_is_better(monitor, mode)
    tolerance = default_tolerance(higher) if tolerance is None else tolerance
    scored = [(run, *found) for run in runs if (found := _score(run, monitor, higher))]
    scored.sort(key=lambda item: -item[1] if higher else item[1])
    result = Ranking(monitor, higher, tolerance, scored)
    scores = [s for _, s, _ in scored]
    best, _ = recommend(scores, [r.params for r, _, _ in scored], higher, tolerance)
    if best is None:
        return result
    per_fold = [fold_bests(r, monitor, higher) for r, _, _ in scored]
    tied = [i for i in range(len(scored)) if i != best and per_fold[best] and per_fold[i]
            and indistinct(per_fold[best], per_fold[i])]
    _, recommended = recommend(scores, [r.params for r, _, _ in scored], higher, tolerance, tied)
    result.best, result.recommended = scored[best][0], scored[recommended][0]
    result.tied = [scored[i][0] for i in [best, *tied]] if tied else []
    return result


def _score(run, monitor, higher):
    """(score, position of the best epoch in the run's history, or None for a cross-validation run,
    whose score is the mean of its folds' best values), or None when it has none."""
    values = fold_bests(run, monitor, higher)
    if values is not None:
        return statistics.fmean(values), None
    return None if getattr(run, "folds", None) else best_of(run.history, monitor, higher)
