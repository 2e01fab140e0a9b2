"""What a sweep asks for: ``--grid``, ``--random``/``--range``, ``--set`` and a ``sweep:`` section.

``plan_sweep`` turns them into a ``SweepPlan``: the base config every trial
starts from and the trials, each a mapping of dotted keys (the keys of
``--set``) to values. Grid trials come in grid order (the last key varies
fastest); random trials are drawn with ``sweep.seed`` (default 0), so the
same command gives the same trials (``--search tpe``: ``mlpcli.sweep_tpe``). A ``sweep:`` section in the config says
the same as the options::

    sweep:
      name: mnist-batch-sweep          # the sweep folder's prefix (default: <name>-sweep)
      grid: {training.batch_size: [64, 128, 256]}
      # or: random: 8, ranges: {optimizer.learning_rate: "1e-4:1e-2:log", model.layers[2].rate: "0.1:0.5"}
      # or: search: tpe, trials: 20, ranges: {...}, prune: median (grid: lists are TPE's choices)
      set: {training.epochs: 10}       # fixed for every trial, like --set
      workers: 2
      executor: local                  # or dask (with scheduler: tcp://host:8786)

Options given on the command line replace the section's grid or random
trials, workers, executor and scheduler; ``--set`` values apply after the
section's ``set``.
"""

import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mlpcli import config as config_mod
from mlpcli.config_yaml import KEY_PATTERN
from mlpcli.errors import ConfigError, MlpError
from mlpcli.sweep_folder import EXECUTORS, PRUNERS

SECTION_KEYS = ("name", "grid", "random", "ranges", "set", "seed", "workers", "executor", "scheduler",
                "search", "trials", "prune")
SEARCHES = ("random", "tpe")
MAX_TRIALS = 1000
_SCIENTIFIC = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)[eE][+-]?[0-9]+$")


@dataclass
class SweepPlan:
    name: str
    config: str  # the config file, absolute
    sets: list  # KEY=VALUE strings fixed for every trial (already in base_text)
    base_text: str  # the base config as YAML
    trials: list  # [{"name": "trial-001", "overrides": {key: value}}]
    grid: dict | None = None
    random: dict | None = None  # {"trials": n, "seed": s, "ranges": {key: {low, high, log}}}
    tpe: dict | None = None  # sweep_tpe.new_search's: the space, trials, seed, pruner, monitor
    workers: int | None = None
    executor: str | None = None
    scheduler: str | None = None
    extra: dict = field(default_factory=dict)

    def to_spec(self, executor, workers, scheduler, plots):
        """What sweep.yaml records."""
        spec = {"name": self.name, "config": self.config, "set": list(self.sets), "grid": self.grid,
                "random": self.random, "executor": executor, "workers": workers,
                "scheduler": scheduler, "plots": bool(plots), "trials": self.trials}
        return {**spec, "tpe": self.tpe} if self.tpe else spec


# ---------------------------------------------------------------- values

def number_like(value):
    """YAML 1.1 reads ``1e-4`` as a string; a sweep means the number. Lists recursively."""
    if isinstance(value, str) and _SCIENTIFIC.match(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [number_like(v) for v in value]
    return value


def format_value(value):
    """``value`` as YAML text that ``yaml.safe_load`` (as ``--set`` uses) reads back equal."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        mantissa, _, exponent = text.partition("e")
        if exponent and "." not in mantissa:
            text = f"{mantissa}.0e{exponent}"
        return text
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{format_value(str(k))}: {format_value(v)}" for k, v in value.items()) + "}"
    import json

    return json.dumps(str(value))


def trial_sets(overrides):
    return [f"{key}={format_value(value)}" for key, value in overrides.items()]


def _short(key):
    return re.split(r"\.(?![^\[]*\])", key)[-1]


def show_values(overrides):
    """``batch_size=64 learning_rate=0.001``: the trial's values by the last part of each key."""
    shorts = [_short(k) for k in overrides]
    return " ".join(f"{s if shorts.count(s) == 1 else k}="
                    f"{format_value(v) if not isinstance(v, float) else f'{v:g}'}"
                    for (k, v), s in zip(overrides.items(), shorts))


# ---------------------------------------------------------------- options

def _check_key(key, where):
    if not KEY_PATTERN.fullmatch(key):
        raise MlpError(f"{where}: {key!r} is not a config key like training.batch_size or "
                       "model.layers[2].rate")
    return key


def parse_grid(items, where="--grid"):
    """``["training.batch_size=64,128", ...]`` -> ``{"training.batch_size": [64, 128], ...}``."""
    grid = {}
    for item in items:
        if "=" not in item:
            raise MlpError(f"{where} {item!r}: expected KEY=V1,V2,..., e.g. training.batch_size=64,128")
        key, text = (part.strip() for part in item.split("=", 1))
        _check_key(key, f"{where} {item!r}")
        try:
            values = yaml.safe_load(f"[{text}]")
        except (yaml.YAMLError, ValueError, RecursionError):
            raise MlpError(f"{where} {key}: cannot read the values {text!r}; separate them with "
                           "commas, e.g. 0.001,0.01") from None
        if not values:
            raise MlpError(f"{where} {key}: no values given")
        if key in grid:
            raise MlpError(f"{where} {key}: given twice; list every value once, comma-separated")
        grid[key] = number_like(values)
    return grid


def _bounds(key, low, high, log, where):
    for name, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise MlpError(f"{where} {key}: the {name} end must be a finite number, got {v!r}")
    if low > high:
        raise MlpError(f"{where} {key}: the low end {low:g} is above the high end {high:g}")
    if log and low <= 0:
        raise MlpError(f"{where} {key}: a log range needs a low end above 0, got {low:g}")
    return {"low": low, "high": high, "log": bool(log)}


def _range_text(key, text, where):
    parts = [p.strip() for p in str(text).split(":")]
    log = len(parts) == 3 and parts[2].lower() == "log"
    if len(parts) not in (2, 3) or (len(parts) == 3 and not log):
        raise MlpError(f"{where} {key}: expected LO:HI or LO:HI:log, got {text!r}")
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise MlpError(f"{where} {key}: expected numbers in LO:HI[:log], got {text!r}") from None
    return _bounds(key, low, high, log, where)


def parse_ranges(items, where="--range"):
    """``["optimizer.learning_rate=1e-4:1e-2:log"]`` -> ``{key: {low, high, log}}``."""
    ranges = {}
    for item in items:
        if "=" not in item:
            raise MlpError(f"{where} {item!r}: expected KEY=LO:HI[:log], e.g. "
                           "optimizer.learning_rate=1e-4:1e-2:log")
        key, text = (part.strip() for part in item.split("=", 1))
        _check_key(key, f"{where} {item!r}")
        if key in ranges:
            raise MlpError(f"{where} {key}: given twice; give one range per key")
        ranges[key] = _range_text(key, text, where)
    return ranges


def trial_name(number, total):
    """trial-001, ...: numbered from 1, as wide as ``total`` needs (3 digits at least)."""
    return f"trial-{number:0{max(3, len(str(total)))}d}"


def grid_trials(grid):
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def random_trials(ranges, n, seed, cfg):
    """``n`` draws, uniform (or log-uniform) per key; integer keys (by their declaration in the
    resolved config ``cfg``) rounded, others to 4 digits."""
    import numpy as np

    rng = np.random.default_rng(seed)
    trials = []
    for _ in range(n):
        trial = {}
        for key, r in ranges.items():
            if r["log"]:
                value = math.exp(rng.uniform(math.log(r["low"]), math.log(r["high"])))
            else:
                value = rng.uniform(r["low"], r["high"])
            trial[key] = int(round(value)) if config_mod.integer_key(cfg, key) else float(f"{value:.4g}")
        trials.append(trial)
    return trials


# ---------------------------------------------------------------- the sweep: section

def _section(value):
    """The sweep: section as {grid, random, ranges, set, ...}; ConfigError naming sweep.* keys."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"sweep: must be a mapping (grid, random, ranges, set, ...), got {value!r}")
    problems = [f"sweep.{k}: unknown key; allowed: {', '.join(SECTION_KEYS)}"
                for k in value if k not in SECTION_KEYS]
    out = {}
    grid = value.get("grid")
    if grid is not None:
        if not isinstance(grid, dict) or not grid:
            problems.append(f"sweep.grid: must map config keys to lists of values, got {grid!r}")
        else:
            out["grid"] = {}
            for key, values in grid.items():
                if not isinstance(values, list) or not values:
                    problems.append(f"sweep.grid.{key}: must be a non-empty list of values, got {values!r}")
                elif not KEY_PATTERN.fullmatch(str(key)):
                    problems.append(f"sweep.grid.{key}: not a config key like training.batch_size")
                else:
                    out["grid"][str(key)] = number_like(values)
    n = value.get("random")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        problems.append(f"sweep.random: must be the number of random trials (>= 1), got {n!r}")
    ranges = value.get("ranges")
    if ranges is not None:
        if not isinstance(ranges, dict) or not ranges:
            problems.append(f"sweep.ranges: must map config keys to LO:HI[:log], got {ranges!r}")
        else:
            out["ranges"] = {}
            for key, spec in ranges.items():
                try:
                    _check_key(str(key), "sweep.ranges")
                    if isinstance(spec, dict):
                        spec = {k: number_like(v) for k, v in spec.items()}
                        out["ranges"][key] = _bounds(key, spec.get("low"), spec.get("high"),
                                                     spec.get("log", False), "sweep.ranges")
                    elif isinstance(spec, list) and len(spec) == 2:
                        low, high = number_like(spec)
                        out["ranges"][key] = _bounds(key, low, high, False, "sweep.ranges")
                    else:
                        out["ranges"][key] = _range_text(key, spec, "sweep.ranges")
                except MlpError as exc:
                    problems.append(str(exc).replace("sweep.ranges ", "sweep.ranges.", 1))
    sets = value.get("set")
    if isinstance(sets, dict):
        out["set"] = [f"{k}={format_value(number_like(v))}" for k, v in sets.items()]
    elif isinstance(sets, list) and all(isinstance(s, str) and "=" in s for s in sets):
        out["set"] = list(sets)
    elif sets is not None:
        problems.append(f"sweep.set: must map config keys to values, got {sets!r}")
    for key, check in (("name", lambda v: isinstance(v, str) and config_mod.NAME_PATTERN.match(v)),
                       ("search", lambda v: v in SEARCHES),
                       ("trials", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1),
                       ("prune", lambda v: v in PRUNERS),
                       ("seed", lambda v: isinstance(v, int) and not isinstance(v, bool)),
                       ("workers", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1),
                       ("executor", lambda v: v in EXECUTORS),
                       ("scheduler", lambda v: isinstance(v, str))):
        if value.get(key) is not None and not check(value[key]):
            problems.append(f"sweep.{key}: invalid value {value[key]!r}")
    if problems:
        raise ConfigError(problems)
    for key in ("name", "seed", "workers", "executor", "scheduler", "search", "trials", "prune"):
        out[key] = value.get(key)
    out["random"] = n
    return out


def _search(search, n, random_n, grid, ranges, prune, where):
    """(kind, trials): ("grid", None), ("random", n) or ("tpe", n), the options checked together.
    ``where``: how the messages name the options (the command line's, or the section's)."""
    opt = where
    if search is None and n is not None:
        raise MlpError(f"{opt['trials']} N is the number of trials of {opt['search']} random or tpe")
    if search is not None and n is None:
        raise MlpError(f"{opt['search']} {search} needs {opt['trials']} N (how many trials)")
    if search is not None and random_n:
        raise MlpError(f"give {opt['random']} N or {opt['search']} {search} {opt['trials']} N, not both")
    if prune is not None and search != "tpe":
        raise MlpError(f"{opt['prune']} stops poor trials of {opt['search']} tpe; grid and random "
                       "trials train to the end")
    if search == "tpe":
        if not (ranges or grid):
            raise MlpError(f"{opt['search']} tpe needs one or more {opt['range']} KEY=LO:HI[:log] (or "
                           f"{opt['grid']} KEY=V1,V2,... choices)")
        both = [key for key in ranges or {} if key in (grid or {})]
        if both:
            raise MlpError(f"{opt['grid']} and {opt['range']} both give {', '.join(both)}: give each key "
                           "either a range or a list of choices")
        return "tpe", n
    random_n = n if search == "random" else random_n
    if grid and (random_n or ranges):
        raise MlpError(f"give {opt['grid']} or {opt['random']} N with {opt['range']}, not both")
    if ranges and not random_n:
        raise MlpError(f"{opt['range']} needs {opt['random']} N (the number of random trials), or "
                       f"{opt['search']} tpe {opt['trials']} N")
    if random_n and not ranges:
        raise MlpError(f"{opt['random']} N needs one or more {opt['range']} KEY=LO:HI[:log]")
    return ("random", random_n) if random_n else ("grid", None)


_OPTIONS = {k: f"--{k}" for k in ("grid", "random", "range", "search", "trials", "prune")}
_SECTION = {k: f"sweep.{k}" for k in ("grid", "random", "search", "trials", "prune")} | {"range": "sweep.ranges"}


def plan_sweep(config_path, grid_items=(), random_n=None, range_items=(), sets=(), *, search=None,
               trials=None, prune=None, seed=None):
    """The base config and trials of a new sweep; MlpError/ConfigError on bad input.
    ``search`` "random" with ``trials`` N is ``random_n`` N; "tpe" proposes the trials with
    Optuna (``mlpcli.sweep_tpe``: the first ones here, the rest as the sweep runs)."""
    raw = config_mod.read_yaml(config_path)
    section = _section(raw.pop("sweep", None))
    grid = parse_grid(grid_items) if grid_items else None
    ranges = parse_ranges(range_items) if range_items else None
    if grid or random_n or ranges or search:
        kind, n = _search(search, trials, random_n, grid, ranges, prune, _OPTIONS)
    else:  # nothing on the command line: the section's
        grid, ranges = section.get("grid"), section.get("ranges")
        try:
            kind, n = _search(section.get("search"), section.get("trials"), section.get("random"), grid,
                              ranges, section.get("prune"), _SECTION)
        except MlpError as exc:
            raise ConfigError(str(exc)) from None
        prune = prune or section.get("prune")
    if prune is not None and kind != "tpe":
        raise MlpError("--prune stops poor trials of --search tpe; grid and random trials train to the end")
    if kind == "grid" and not grid:
        raise MlpError("nothing to sweep: give --grid KEY=V1,V2,... or --random N --range "
                       "KEY=LO:HI[:log] (or a sweep: section in the config)")
    if seed is not None and kind == "grid":
        raise MlpError("--seed seeds random and tpe searches; a grid has none")
    seed = seed if seed is not None else section.get("seed") or 0

    config_mod.absolute_paths(raw, Path(config_path).resolve().parent)
    fixed = [*(section.get("set") or []), *sets]
    for item in fixed:
        config_mod.apply_override(raw, item)
    config_mod.absolute_paths(raw, Path.cwd())  # paths given with --set are relative to the current folder
    cfg = config_mod.resolve_with_data(raw)  # as each trial's run resolves it: bad data fails here, once
    tpe = None
    if kind == "tpe":
        from mlpcli.sweep_tpe import new_search

        if cfg["training"]["folds"] is not None and prune not in (None, "none"):
            raise MlpError(f"--prune {prune}: pruning judges a trial by its epochs, and a cross-validation "
                           f"trial (training.folds: {cfg['training']['folds']}) has one run per fold; "
                           "use --prune none (the default with folds)")
        default_prune = "median" if cfg["training"]["folds"] is None else "none"
        tpe = new_search(ranges, grid, n, seed, prune or default_prune, cfg,
                         lambda key: config_mod.integer_key(cfg, key))
        grid, overrides = None, []  # proposed as the sweep runs
    else:
        overrides = grid_trials(grid) if kind == "grid" else random_trials(ranges, n, seed, cfg)
    if max(len(overrides), n or 0) > MAX_TRIALS:
        raise MlpError(f"the sweep has {max(len(overrides), n or 0):,} trials; at most {MAX_TRIALS} are allowed")
    trials = [{"name": trial_name(i, len(overrides)), "overrides": o} for i, o in enumerate(overrides, 1)]
    random_spec = {"trials": n, "seed": seed, "ranges": ranges} if kind == "random" else None
    return SweepPlan(name=section.get("name") or f"{cfg['name']}-sweep",
                     config=str(Path(config_path).resolve()), sets=fixed,
                     base_text=yaml.safe_dump(raw, sort_keys=False), trials=trials, grid=grid,
                     random=random_spec, tpe=tpe, workers=section.get("workers"),
                     executor=section.get("executor"), scheduler=section.get("scheduler"))
