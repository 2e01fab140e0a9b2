"""What a run's curves say, judged against their own noise: overfitting, plateau, a real
training/validation accuracy gap. The one rule that diagnostics, the loss plot's shading
and compare's notes all call.

The noise of a validation loss curve is how much it jumps from epoch to epoch: the
standard deviation of its epoch-to-epoch differences over ``sqrt(2)``, over the
epochs from its minimum on and at least the last half of the run (the same
validation samples are scored every epoch, so this is the noise a change between
epochs has, and it shrinks as the validation set grows). A rise counts only when the
mean of the last epochs is more than ``CLEAR`` standard errors of its difference
from the minimum above it, more than the sampling error of the minimum itself over ``n_val`` samples
(about ``loss / sqrt(n_val)``, per-sample cross-entropy spreading at least as widely
as its mean), and the curve stays above the minimum plus its noise for at least
``SUSTAINED`` epochs to the end while training loss keeps falling.
"""

import itertools
import math

from mlpcli.history import finite

CLEAR = 3.0  # noise widths a change must exceed to count
SUSTAINED = 2  # epochs a rise must last (to the end of the run)
GAP_SE = 2.0  # standard errors an accuracy gap must exceed: the usual two-sided 95% bound


def _clean(values):
    return [float(v) if finite(v) else math.nan for v in values]


def _jump_sd(values):
    """The epoch-to-epoch noise of ``values``: sd of consecutive differences over sqrt(2)."""
    diffs = [b - a for a, b in itertools.pairwise(values) if not (math.isnan(a) or math.isnan(b))]
    if len(diffs) < 2:
        return 0.0
    mean = sum(diffs) / len(diffs)
    return math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1) / 2)


def _slope(values):
    points = [(i, v) for i, v in enumerate(values) if not math.isnan(v)]
    n = len(points)
    mx = sum(i for i, _ in points) / n
    my = sum(v for _, v in points) / n
    sxx = sum((i - mx) ** 2 for i, _ in points)
    return sum((i - mx) * (v - my) for i, v in points) / sxx if sxx else 0.0


def _sample_floor(low, n_val):
    return low / math.sqrt(n_val) if n_val and low > 0 else 0.0


def overfitting_onset(train_loss, val_loss, n_val=None) -> int | None:
    """The epoch (1-based position) from which validation loss rose clearly, or None.

    With ``m`` the epoch of the lowest validation loss ``low`` (the first on a tie),
    ``jump`` the epoch-to-epoch noise after it and ``floor`` the sampling error of
    ``low`` over ``n_val`` samples: the rise is clear when the mean of the last ``k``
    values (half the epochs after ``m``, at least ``SUSTAINED``) exceeds ``low`` by
    more than ``CLEAR * jump * sqrt(1 + 1/k)`` (the standard error of that difference)
    and by more than ``floor``. The onset is then the first
    epoch ``e`` after ``m`` from which every value to the end is above ``low +
    max(jump, floor)``, at least ``SUSTAINED`` epochs before the end, with the last
    training loss below the training loss at ``e``. Non-finite values never satisfy
    a condition; curves of different lengths are compared over the common length.
    """
    n = min(len(train_loss), len(val_loss))
    train, val = _clean(train_loss[:n]), _clean(val_loss[:n])
    finite_val = [(v, i) for i, v in enumerate(val) if not math.isnan(v)]
    if n < 3 or not finite_val or math.isnan(train[-1]):
        return None
    low, m = min(finite_val)
    after = val[m + 1:]
    if len(after) < SUSTAINED:
        return None
    # from the minimum on, and over at least the last half: a few epochs say little of the noise
    jump, floor = _jump_sd(val[min(m, n // 2):]), _sample_floor(low, n_val)
    k = max(SUSTAINED, len(after) // 2)
    last = after[-k:]
    if any(math.isnan(v) for v in last):
        return None
    rise = sum(last) / k - low
    if rise <= CLEAR * jump * math.sqrt(1 + 1 / k) or rise <= floor:
        return None
    bar = low + max(jump, floor)
    stays_above = [False] * n
    ok = True
    for i in range(n - 1, -1, -1):
        ok = ok and val[i] > bar  # NaN > bar is False
        stays_above[i] = ok
    for e in range(m + 1, n - SUSTAINED + 1):
        if stays_above[e] and train[-1] < train[e]:
            return e + 1
    return None


def plateau(val_loss) -> bool:
    """Whether validation loss ended flat: over its last quarter (at least 3 epochs) neither
    its trend nor its gain over the best earlier value exceeds ``CLEAR`` times its
    epoch-to-epoch noise over the last half."""
    val = [v for v in _clean(val_loss) if not math.isnan(v)]
    k = max(3, len(val) // 4)
    if len(val) < k + 3:
        return False
    tail, before = val[-k:], val[:-k]
    noise = _jump_sd(val[len(val) // 2:])
    trend = abs(_slope(tail)) * (k - 1)
    return trend <= CLEAR * noise and min(before) - min(tail) <= CLEAR * noise


def accuracy_gap_is_real(train_accuracy, val_accuracy, n_train, n_val) -> bool:
    """Whether validation accuracy exceeds training accuracy by more than ``GAP_SE`` times
    the two-proportion standard error ``sqrt(p1 q1 / n_train + p2 q2 / n_val)``.
    Without both sizes the error is unknown and no gap is claimed."""
    if not (n_train and n_val) or not (finite(train_accuracy) and finite(val_accuracy)):
        return False
    p1, p2 = float(train_accuracy), float(val_accuracy)
    se = math.sqrt(max(p1 * (1 - p1), 0.0) / n_train + max(p2 * (1 - p2), 0.0) / n_val)
    if se == 0:
        return p2 > p1
    return p2 - p1 > GAP_SE * se
