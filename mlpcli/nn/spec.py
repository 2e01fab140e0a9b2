"""The component protocol: what every layer, activation, initializer, regularizer,
optimizer, schedule, loss and metric declares about itself, in one place.

A ``Component`` names the component (and its aliases), says in one line what it is,
lists its ``Param``s (name, default, ``Constraint``, one-line doc, Keras config key)
and gives its Keras class name. The config check, the defaults a resolved config
gets, the Keras ``get_config`` written into model files, the reading of Keras files
and the README's reference tables are all derived from these declarations.

Constraints follow scikit-learn's ``_parameter_constraints`` (``Interval(Real, 0, 1,
closed="left")``); the Keras mapping follows ``get_config``/``from_config``, where a
component's config is its parameters under Keras's keys.
"""

import math
import reprlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlpcli.nn.registry import lookup, unknown_name_message

# training computes in float32: a number outside its range becomes inf, and a positive one
# below its smallest normal becomes 0 (or a subnormal, which flush_denormals makes 0)
FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_TINY = float(np.finfo(np.float32).tiny)
# the kinds of a parameter whose value is itself a component, resolved by the config check
NESTED = ("activation", "initializer", "regularizer")


@dataclass(frozen=True)
class Constraint:
    """What a value may be. ``type``: "integer", "number", "boolean", "string", "choice",
    "factor" (Keras's augmentation factors: a number f >= 0 meaning [-f, f], or a pair
    [lower, upper]) or a nested component kind (``NESTED``); ``low``/``high`` bound numbers
    (a factor's both ends), ``closed`` says which bounds are allowed ("both", "left", "right",
    "neither"); ``choices`` for "choice"."""

    type: str
    low: float | None = None
    high: float | None = None
    closed: str = "both"
    choices: tuple = ()
    nullable: bool = False
    auto: bool = False  # the string "auto" is allowed too (its meaning is the key's)

    def problem(self, value, kind="value"):
        """Why ``value`` is not allowed (``"must be in [0, 1), got 1.5"``), or None; ``kind``
        names a choice in its message. Nested components are checked by their own declarations."""
        if value is None and self.nullable or self.type in NESTED or self.auto and value == "auto":
            return None
        if self.type == "boolean":
            return None if isinstance(value, bool) else f"must be true or false, got {show(value)}"
        if self.type == "string":
            return None if isinstance(value, str) else \
                f"must be a string{' or null' if self.nullable else ''}, got {show(value)}"
        if self.type == "choice":
            if isinstance(value, str) and value.lower() in self.choices:
                return None
            if isinstance(value, str):
                return unknown_choice(value, self.choices, kind)
            return f"must be one of {', '.join(sorted(self.choices))}, got {show(value)}"
        if self.type == "factor":
            return self._factor_problem(value)
        return self._number_problem(value)

    def _factor_problem(self, value):
        shape = f"must be a number f >= 0 (meaning [-f, f]) or a pair [lower, upper], got {show(value)}"
        bounds = number(self.low, self.high, self.closed)
        if isinstance(value, list):
            if len(value) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
                return shape
            for end in value:
                problem = bounds._number_problem(end)
                if problem:
                    return f"{problem} (in {brief(value)})"
            return f"must have lower <= upper, got {brief(value)}" if value[0] > value[1] else None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return shape
        problem = number(0)._number_problem(value)
        if problem:
            return shape if value < 0 else problem
        if bounds._number_problem(-value) or bounds._number_problem(value):
            return (f"a number f means [-f, f], which must lie in {self.interval()}; got {brief(value)} "
                    f"(for a one-sided range give [lower, upper])")
        return None

    def _number_problem(self, value):
        integer = self.type == "integer"
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok:
            return (f"must be {'an integer' if integer else 'a number'}"
                    f"{' or null' if self.nullable else ''}{' or auto' if self.auto else ''}, got {show(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number, got {value!r}"
        low_in, high_in = self.closed in ("both", "left"), self.closed in ("both", "right")
        if ((self.low is not None and (value < self.low or (value == self.low and not low_in)))
                or (self.high is not None and (value > self.high or (value == self.high and not high_in)))):
            return f"must be in {self.interval()}, got {brief(value)}"
        if not integer and abs(value) > FLOAT32_MAX:
            return (f"must be between -{FLOAT32_MAX:.4g} and {FLOAT32_MAX:.4g} (float32, which "
                    f"training computes in), got {brief(value)}")
        if self.low == 0 and not low_in and not integer and value < FLOAT32_TINY:
            return (f"must be at least {FLOAT32_TINY:.4g} (smaller numbers are 0 in float32, "
                    f"which training computes in), got {brief(value)}")
        return None

    def interval(self):
        """``[0, 1)``, ``(0, inf)``: the allowed range in the usual notation."""
        low_in, high_in = self.closed in ("both", "left"), self.closed in ("both", "right")
        left = ("[" if low_in and self.low is not None else "(") + ("-inf" if self.low is None else str(self.low))
        right = ("inf" if self.high is None else str(self.high)) + ("]" if high_in and self.high is not None else ")")
        return f"{left}, {right}"

    def describe(self):
        """The constraint in words, for the reference tables."""
        if self.type == "choice":
            text = " \\| ".join(f"`{c}`" for c in self.choices)
        elif self.type == "factor":
            bounded = self.low is not None or self.high is not None
            text = "f or [lower, upper]" + (f" in {self.interval()}" if bounded else "")
        elif self.type in ("integer", "number"):
            bounded = self.low is not None or self.high is not None
            text = f"{self.type} in {self.interval()}" if bounded else self.type
        elif self.type == "activation":
            text = "activation name"
        elif self.type in NESTED:
            text = f"{self.type} (name or mapping)"
        else:
            text = self.type
        return text + (" or null" if self.nullable else "") + (" or `auto`" if self.auto else "")


def integer(low=None, high=None, closed="both", nullable=False, auto=False):
    return Constraint("integer", low, high, closed, nullable=nullable, auto=auto)


def number(low=None, high=None, closed="both", nullable=False):
    return Constraint("number", low, high, closed, nullable=nullable)


def factor(low=None, high=None, closed="both", nullable=False):
    return Constraint("factor", low, high, closed, nullable=nullable)


def choice(*choices):
    return Constraint("choice", choices=tuple(choices))


BOOLEAN = Constraint("boolean")
STRING = Constraint("string")
# Keras's spelling of a parameter is its own name unless a Param says otherwise
SAME = object()


@dataclass(frozen=True)
class Param:
    """One parameter: its name in a config, its default (``required``: none, the config must
    give it), its constraint, a one-line doc and its key in Keras's config (None: Keras has
    no such key)."""

    name: str
    default: Any
    constraint: Constraint
    doc: str
    keras: Any = SAME
    required: bool = False

    @property
    def keras_key(self):
        return self.name if self.keras is SAME else self.keras


@dataclass(frozen=True)
class Component:
    """A component's declaration: config name, aliases, doc, parameters and Keras class
    (``keras_fixed``: constant entries of its Keras config that mlpcli has no parameter for)."""

    name: str
    doc: str
    params: tuple = ()
    aliases: tuple = ()
    keras: str | None = None
    keras_fixed: dict = field(default_factory=dict)

    @property
    def spec(self):
        """A component with no code of its own (a regularizer) is its own registry entry."""
        return self

    def defaults(self):
        """{parameter: default}: what a config that names only the component gets."""
        return {p.name: p.default for p in self.params}

    def param(self, name):
        return next(p for p in self.params if p.name == name)

    def to_keras(self, values, convert=None):
        """{Keras key: value} of ``values`` (a spec; a parameter left out has its default),
        ``convert`` maps a nested kind to the function turning our value into Keras's."""
        out = {}
        for p in self.params:
            if p.keras_key is None:
                continue
            value = values.get(p.name, p.default)
            if convert and p.constraint.type in convert:
                value = convert[p.constraint.type](value)
            out[p.keras_key] = value
        return {**out, **self.keras_fixed}

    def from_keras(self, config, convert=None):
        """{parameter: value} read from a Keras config; keys Keras did not write are left out."""
        out = {}
        for p in self.params:
            if p.keras_key is not None and p.keras_key in config:
                value = config[p.keras_key]
                if convert and p.constraint.type in convert:
                    value = convert[p.constraint.type](value)
                out[p.name] = value
        return out


def declare(component):
    """Decorator: attach ``component`` (its declaration) to a function or class as ``.spec``."""
    def attach(obj):
        obj.spec = component
        return obj
    return attach


class Registry(dict):
    """The components of one kind: ``{name: implementation}`` of objects carrying ``.spec``;
    aliases resolve through ``canonical`` and ``lookup``."""

    def __init__(self, kind, implementations):
        super().__init__((impl.spec.name, impl) for impl in implementations)
        self.kind = kind
        self.aliases = {a: impl.spec.name for impl in implementations for a in impl.spec.aliases}

    def canonical(self, name):
        """The component name ``name`` stands for (an alias resolved, lower-cased)."""
        key = str(name).lower()
        return self.aliases.get(key, key)

    def lookup(self, name):
        """The implementation called ``name``; ``ValueError`` naming the choices otherwise."""
        return lookup(self, self.canonical(name), self.kind)

    def spec(self, name):
        return self.lookup(name).spec

    def specs(self):
        return [impl.spec for impl in self.values()]

    def by_keras(self, class_name):
        """The implementation whose Keras class is ``class_name``, or None."""
        return next((impl for impl in self.values() if impl.spec.keras == class_name), None)


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


brief = _BriefRepr().repr


def show(value):
    """A value as a message shows it: cut short, with its type."""
    return f"{brief(value)} ({type(value).__name__})" if value is not None else "null"


def unknown_choice(name, allowed, kind):
    """``unknown_name_message`` without the edit-distance suggestion for very long names."""
    if len(name) > 64:
        return f"unknown {kind} {brief(name)}; allowed: {', '.join(sorted(allowed))}"
    return unknown_name_message(name, allowed, kind)
