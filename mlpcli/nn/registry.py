"""Name lookup shared by every kind of component (activations, losses, ...)."""

import difflib


def lookup(registry, name, kind):
    """Return ``registry[name]`` or raise ``ValueError`` naming the choices.

    ``kind`` is the word used in the message ("activation", "optimizer", ...).
    """
    key = str(name).lower()
    if key in registry:
        return registry[key]
    raise ValueError(unknown_name_message(name, registry, kind))


def unknown_name_message(name, choices, kind):
    """``unknown activation 'relux' (did you mean 'relu'?); allowed: ...``."""
    choices = sorted(choices)
    close = difflib.get_close_matches(str(name).lower(), choices, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown {kind} '{name}'{hint}; allowed: {', '.join(choices)}"
