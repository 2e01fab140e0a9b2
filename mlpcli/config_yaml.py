"""Config text: YAML read safely, ``--set KEY=VALUE`` overrides applied, configs written back.

PyYAML is imported by the functions that parse or write YAML, not with this module: a command
that reads no YAML (``mlp predict digit.png``) starts without it."""

import functools
import re

from mlpcli.errors import ConfigError
from mlpcli.files import read_text

MAX_YAML_BYTES = 8 * 2**20  # a sweep.yaml of thousands of trials is well under this


@functools.cache
def _loader():
    """yaml.SafeLoader that also reads ``1e-4`` as a number (YAML 1.2; 1.1 wants ``1.0e-4``)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"))
    return Loader


def safe_load(text):
    """Parse YAML text as plain data (``yaml.SafeLoader``: no tags that build objects)."""
    import yaml

    return yaml.load(text, Loader=_loader())  # noqa: S506 -- _loader() is a SafeLoader


def read_yaml(path):
    """The mapping in a YAML file; ``yaml.safe_load`` only, errors with line and column."""
    import yaml

    try:
        text = read_text(path, MAX_YAML_BYTES)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        raw = safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML at {where}{problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to read") from None
    except ValueError as exc:  # e.g. a 5000-digit integer, a date like 2001-13-45
        raise ConfigError(f"{path}: a value cannot be read ({_first_line(exc)})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(raw).__name__}")
    return raw


_PATH_PART = re.compile(r"([^.\[\]]+)|\[([0-9]{1,9})\]")
# a config key path: names joined by dots, list positions as [N] (model.layers[2].rate)
KEY_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*|\[[0-9]{1,9}\])*")


def apply_override(raw, override):
    """Set ``a.b[2].c=VALUE`` in ``raw``; the value is parsed as YAML (``5``, ``0.1``, ``[1, 2]``)."""
    import yaml

    if "=" not in override:
        raise ConfigError(f"--set {override!r}: expected KEY=VALUE, e.g. training.epochs=5")
    key, text = override.split("=", 1)
    if not KEY_PATTERN.fullmatch(key.strip()):
        raise ConfigError(f"--set {override!r}: malformed key {key!r} (names joined by dots, "
                          "list positions as [N], e.g. model.layers[0].units)")
    parts = [m.group(1) if m.group(1) is not None else int(m.group(2))
             for m in _PATH_PART.finditer(key.strip())]
    try:
        value = safe_load(text)
    except (yaml.YAMLError, ValueError):
        value = text
    except RecursionError:
        raise ConfigError(f"--set {key}: the value is nested too deeply") from None
    node = raw
    for i, part in enumerate(parts[:-1]):
        where = _format_path(parts[:i + 1])
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise ConfigError(f"--set {key}: {where} does not exist")
            if isinstance(node[part], str):
                node[part] = {"type": node[part]}
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {_format_path(parts[:i])} is not a mapping")
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif isinstance(child, str) and not isinstance(parts[i + 1], int):
                child = node[part] = {"type": child}  # `optimizer: adam` -> {type: adam}
            node = child
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise ConfigError(f"--set {key}: {key} does not exist")
    elif not isinstance(node, dict):
        raise ConfigError(f"--set {key}: {_format_path(parts[:-1])} is not a mapping")
    node[last] = value


def _format_path(parts):
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


def _first_line(exc):
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def dump_yaml(cfg):
    """The resolved config as YAML text, keys in the order they were defined."""
    import yaml

    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False)
