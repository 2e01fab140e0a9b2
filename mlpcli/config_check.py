"""The checks a config's values go through, collected so that every problem is reported at once."""

import math
import reprlib

import numpy as np

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
