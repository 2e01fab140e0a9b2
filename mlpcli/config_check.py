"""The checks a config's values go through, collected so that every problem is reported at once."""

import math
import re
import string

from mlpcli.files import plain_name_problem
from mlpcli.nn.registry import did_you_mean
from mlpcli.nn.spec import FLOAT32_MAX, NESTED, brief as _brief, show as _show, unknown_choice

MAX_THREADS = 1024  # for BLAS, which takes a C int; more helps no machine


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

    def number(self, path, value, constraint):
        """Check a number against ``constraint`` (an ``nn.spec.Constraint``)."""
        problem = constraint.problem(value)
        if problem:
            self.error(path, problem)
        return value

    def boolean(self, path, value):
        if not isinstance(value, bool):
            self.error(path, f"must be true or false, got {_show(value)}")
        return value

    def choice(self, path, value, allowed, kind="value"):
        if not isinstance(value, str) or value.lower() not in allowed:
            if isinstance(value, str):
                self.error(path, unknown_choice(value, allowed, kind))
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

    def param(self, path, value, param, component):
        """Check ``value`` against ``param``, a parameter ``component`` declares (nested
        components are the caller's)."""
        constraint = param.constraint
        if constraint.type == "choice":
            return self.choice(path, value, constraint.choices, param.name)
        if constraint.type == "boolean":
            return self.boolean(path, value)
        if constraint.type == "string":
            return self.string(path, value, constraint.nullable)
        if param.required and value is None:
            self.error(path, f"is required for {component.name} ({constraint.describe()})")
            return value
        return self.number(path, value, constraint)

    def component(self, path, value, registry, nested=None, extra=None):
        """A ``name`` or ``{type: name, **params}`` of ``registry`` (an ``nn.spec.Registry``):
        the full spec, defaults filled in and each parameter checked against its declaration.
        ``nested[kind](path, value)`` resolves a parameter that is itself a component;
        ``extra`` ({key: default}) are keys a spec may have besides the parameters."""
        kind = registry.kind
        # a bare name is reported at the key it was given under, not at a 'type' the file lacks
        name_path = path if isinstance(value, str) else _join(path, "type")
        if isinstance(value, str):
            value = {"type": value}
        if not isinstance(value, dict) or "type" not in value:
            self.error(path, f"must be a {kind} name or a mapping with 'type', got {_show(value)}")
            return None
        name = value["type"]
        name = self.choice(name_path, registry.canonical(name) if isinstance(name, str) else name,
                           registry, kind)
        if not isinstance(name, str) or name not in registry:
            return None
        component = registry.spec(name)
        defaults = {**(extra or {}), **component.defaults()}
        spec = self.mapping(path, value, {"type", *defaults}, defaults)
        spec["type"] = name
        for param in component.params:
            where = _join(path, param.name)
            if param.constraint.type in NESTED:
                spec[param.name] = nested[param.constraint.type](where, spec[param.name])
            else:
                spec[param.name] = self.param(where, spec[param.name], param, component)
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


def _unknown_key(key, allowed):
    hint = did_you_mean(key, allowed) if len(str(key)) <= 64 else ""
    return f"unknown key{hint}; allowed: {', '.join(sorted(allowed))}"
