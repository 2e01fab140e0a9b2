"""Name lookup shared by every kind of component (activations, losses, ...)."""


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
    return f"unknown {kind} '{name}'{did_you_mean(name, choices)}; allowed: {', '.join(sorted(choices))}"


def did_you_mean(name, choices):
    """`` (did you mean 'x'?)`` for the closest choice by edit distance, or ``""``."""
    name = str(name).lower()
    scored = sorted((_edit_distance(name, c.lower()), c) for c in choices)
    if scored and scored[0][0] <= max(2, len(name) // 3):
        return f" (did you mean '{scored[0][1]}'?)"
    return ""


def _edit_distance(a, b):
    """Levenshtein distance counting a swap of neighbours as one edit."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]
