"""The checks a config's values go through, collected so that every problem is reported at once."""

import math
import re
import reprlib
import string

import numpy as np

from mlpcli.files import plain_name_problem
from mlpcli.nn.registry import did_you_mean, unknown_name_message

MODES = ("auto", "min", "max")
# training computes in float32: a number outside its range becomes inf, and a positive one
# below its smallest normal becomes 0 (or a subnormal, which flush_denormals makes 0)
FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_TINY = float(np.finfo(np.float32).tiny)
MAX_THREADS = 1024  # for BLAS, which takes a C int; more helps no machine

# constraints on parameters by name, shared by every component that has them:
# (low, high, low inclusive, high inclusive)
RANGES = {
    "learning_rate": (0, None, False, True), "epsilon": (0, None, False, True),
    "beta_1": (0, 1, True, False), "beta_2": (0, 1, True, False), "rho": (0, 1, True, False),
    "momentum": (0, 1, True, False), "weight_decay": (0, None, True, True),
    "clipnorm": (0, None, False, True), "clipvalue": (0, None, False, True),
    "global_clipnorm": (0, None, False, True), "initial_accumulator_value": (0, None, True, True),
    "rate": (0, 1, True, False), "units": (1, None, True, True), "l1": (0, None, True, True),
    "l2": (0, None, True, True), "stddev": (0, None, False, True),
    "decay_steps": (1, None, True, True), "decay_rate": (0, None, False, True),
    "step_size": (1, None, True, True), "factor": (0, 1, False, False),
    "alpha": (0, 1, True, True), "patience": (0, None, True, True),
    "min_delta": (0, None, True, True), "cooldown": (0, None, True, True),
    "min_lr": (0, None, True, True), "k": (1, None, True, True),
    "epochs": (1, None, True, True), "batch_size": (1, None, True, True),
    "validation_split": (0, 1, True, False), "max_train_samples": (1, None, True, True),
    "max_test_samples": (1, None, True, True), "threads": (1, MAX_THREADS, True, True),
    "processes": (1, None, True, True), "seed": (0, None, True, True),
}
INTEGER_KEYS = {"threads", "processes", "units", "decay_steps", "step_size", "patience", "cooldown", "k", "epochs",
                "batch_size", "max_train_samples", "max_test_samples", "seed"}


class _Checker:
    """Collects problems while resolving a config."""

    def __init__(self):
        self.problems = []

    def error(self, path, message):
        self.problems.append(f"{path}: {message}")

    def mapping(self, path, value, allowed, defaults=None):
        """Check that ``value`` is a mapping of allowed keys; return it with defaults filled."""
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping, got {_show(value)}")
            return dict(defaults or {})
        for key in value:
            if key not in allowed:
                self.error(_join(path, key), _unknown_key(key, allowed))
        out = dict(defaults or {})
        out.update({k: v for k, v in value.items() if k in allowed})
        return out

    def number(self, path, value, key=None, nullable=False):
        key = key or path.rsplit(".", 1)[-1]
        if value is None and nullable:
            return None
        integer = key in INTEGER_KEYS
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok:
            self.error(path, f"must be {'an integer' if integer else 'a number'}"
                             f"{' or null' if nullable else ''}, got {_show(value)}")
            return value
        if isinstance(value, float) and not math.isfinite(value):
            self.error(path, f"must be a finite number, got {value!r}")
            return value
        low, high, low_in, high_in = RANGES.get(key, (None, None, True, True))
        if ((low is not None and (value < low or (value == low and not low_in)))
                or (high is not None and (value > high or (value == high and not high_in)))):
            self.error(path, f"must be in {_interval(RANGES[key])}, got {_brief(value)}")
        elif not integer and abs(value) > FLOAT32_MAX:
            self.error(path, f"must be between -{FLOAT32_MAX:.4g} and {FLOAT32_MAX:.4g} (float32, which "
                             f"training computes in), got {_brief(value)}")
        elif low == 0 and not low_in and not integer and value < FLOAT32_TINY:
            self.error(path, f"must be at least {FLOAT32_TINY:.4g} (smaller numbers are 0 in float32, "
                             f"which training computes in), got {_brief(value)}")
        return value

    def boolean(self, path, value):
        if not isinstance(value, bool):
            self.error(path, f"must be true or false, got {_show(value)}")
        return value

    def choice(self, path, value, allowed, kind="value"):
        if not isinstance(value, str) or value.lower() not in allowed:
            if isinstance(value, str):
                self.error(path, _unknown_name(value, allowed, kind))
            else:
                self.error(path, f"must be one of {', '.join(sorted(allowed))}, got {_show(value)}")
            return value
        return value.lower()

    def string(self, path, value, nullable=False):
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            self.error(path, f"must be a string{' or null' if nullable else ''}, got {_show(value)}")
        return value

    def by_default(self, path, value, default, key):
        """Check ``value`` against the type of ``default`` (a parameter's default)."""
        if isinstance(default, bool):
            return self.boolean(path, value)
        if key == "mode":
            return self.choice(path, value, MODES, "mode")
        if key == "monitor":
            return self.string(path, value)
        return self.number(path, value, key, nullable=default is None)

    def component(self, path, value, registry, kind, params_of, aliases=None):
        """A ``name`` or ``{type: name, **params}``; returns the full spec with defaults."""
        if isinstance(value, str):
            value = {"type": value}
        if not isinstance(value, dict) or "type" not in value:
            self.error(path, f"must be a {kind} name or a mapping with 'type', got {_show(value)}")
            return None
        name = value["type"]
        if isinstance(name, str) and aliases:
            name = aliases.get(name.lower(), name)
        name = self.choice(_join(path, "type"), name, registry, kind)
        if not isinstance(name, str) or name not in registry:
            return None
        defaults = params_of(name)
        spec = self.mapping(path, value, {"type", *defaults}, defaults)
        spec["type"] = name
        for key, default in defaults.items():
            spec[key] = self.by_default(_join(path, key), spec[key], default, key)
        return spec


# a format spec that can only give characters of a file name: fill (no '.', '/' or NUL), align,
# sign, '#', '0', width, grouping, precision and a numeric type ('c' would give any character,
# 'n' the locale's separators)
_SAFE_SPEC = re.compile(r"(?:[A-Za-z0-9_+=,-]?[<>=^])?[-+ ]?z?#?0?[0-9]*[,_]?(?:\.[0-9]+)?[bdeEfFgGoxX%]?")
_CHECKPOINT_FIELDS = ("epoch", "loss", "val_loss", "accuracy", "val_accuracy")
# metric values a name is tried with: ordinary, huge, tiny, the longest repr, not finite
_SAMPLE_VALUES = (0.1234, -FLOAT32_MAX, 1e30, -1e-30, -2.2250738585072014e-308, math.nan, -math.inf)


def check_checkpoint_filename(check, filename, epochs):
    """A template whose every filling is a plain file name in checkpoints/ (no '/', no NUL, no
    leading '.', at most 255 bytes), tried with epoch 1 and the last epoch."""
    def refuse(why):
        check.error("checkpoint.filename", f"{why}, got {_brief(filename)}")

    if not isinstance(filename, str) or not filename.endswith(".h5"):
        check.error("checkpoint.filename", f"must be a file name ending in .h5, got {_show(filename)}")
        return
    if any(c in filename for c in "/\\\0") or filename.startswith("."):
        return refuse("must be a plain file name: no folders, no NUL, not starting with '.'")
    try:
        fields = [(name, conv, spec) for _, name, spec, conv in string.Formatter().parse(filename)
                  if name is not None]
    except ValueError as exc:
        return refuse(f"is not a valid template ({exc})")
    for name, _, spec in fields:
        if name not in _CHECKPOINT_FIELDS:
            return refuse(f"may use the fields {', '.join(_CHECKPOINT_FIELDS)} (e.g. 'model-{{epoch:02d}}.h5'); "
                          f"{{{name}}} is not one")
        if not _SAFE_SPEC.fullmatch(spec):
            return refuse(f"{{{name}:{spec}}}: a field may be padded, signed, grouped, rounded and given a "
                          "numeric type (b, d, e, E, f, F, g, G, o, x, X, %); fill characters are letters, "
                          "digits and _+=,-")
        if any(int(digits) > 64 for digits in re.findall(r"[0-9]+", spec)):
            return refuse("a field is too wide (at most 64 characters)")
    last = epochs if isinstance(epochs, int) and epochs >= 1 else 10**9
    for epoch in sorted({1, last}):
        for value in _SAMPLE_VALUES:
            try:
                name = filename.format(epoch=epoch, **dict.fromkeys(_CHECKPOINT_FIELDS[1:], value))
            except (ValueError, TypeError) as exc:
                return refuse(f"cannot be filled in ({exc})")
            problem = plain_name_problem(name)
            if problem:
                return refuse(f"gives {_brief(name)} (at epoch {epoch}, a metric {value!r}), which {problem}")


def _join(path, key):
    return f"{path}.{key}" if path else key


class _BriefRepr(reprlib.Repr):
    """repr() cut short: a YAML alias bomb or a 5000-digit integer stays a short message."""

    def __init__(self):
        super().__init__()
        self.maxlevel, self.maxlist, self.maxdict, self.maxtuple, self.maxset = 3, 6, 6, 6, 6
        self.maxstring, self.maxother, self.maxlong = 80, 80, 40

    def repr_int(self, x, level):
        if abs(x) >= 10 ** self.maxlong:
            return f"{'-' if x < 0 else ''}<an integer of {len(hex(abs(x))) - 2} hex digits>"
        return repr(x)


_brief = _BriefRepr().repr


def _show(value):
    return f"{_brief(value)} ({type(value).__name__})" if value is not None else "null"


def _unknown_name(name, allowed, kind):
    """``unknown_name_message`` without the edit-distance suggestion for very long names."""
    if len(name) > 64:
        return f"unknown {kind} {_brief(name)}; allowed: {', '.join(sorted(allowed))}"
    return unknown_name_message(name, allowed, kind)


def _interval(r):
    low, high, low_in, high_in = r
    left = ("[" if low_in else "(") + (str(low) if low is not None else "-inf")
    right = (str(high) if high is not None else "inf") + ("]" if high_in and high is not None else ")")
    return f"{left}, {right}"


def _unknown_key(key, allowed):
    hint = did_you_mean(key, allowed) if len(str(key)) <= 64 else ""
    return f"unknown key{hint}; allowed: {', '.join(sorted(allowed))}"
