"""What ``mlp train --resume RUN --set KEY=VALUE`` may change in a run's config, and what not."""

from mlpcli.config_check import _join, _show
from mlpcli.errors import ConfigError

RESUME_CHANGEABLE = ("training.epochs", "early_stopping.patience", "early_stopping.min_delta",
                     "training.threads", "training.processes", "logging.tensorboard")
ROUNDING_KEYS = ("training.threads", "training.processes")


def resume_changes(saved, wanted):
    """The ``(key path, saved value, new value)`` of each key that ``wanted`` (the run's
    config with --set applied) changes; a ConfigError names every key a resumed run may
    not change."""
    changes = list(_differences(saved, wanted, ""))
    refused = [f"{path}: cannot change when resuming (the run has {_show(old)}, --set gives "
               f"{_show(new)}); a resumed run may change only {', '.join(RESUME_CHANGEABLE)}"
               for path, old, new in changes if path not in RESUME_CHANGEABLE]
    if refused:
        raise ConfigError(refused)
    return changes


def _differences(a, b, path):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            yield from _differences(a.get(key), b.get(key), _join(path, key))
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from _differences(x, y, f"{path}[{i}]")
    elif a != b:
        yield path, a, b
