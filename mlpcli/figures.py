"""What every figure shares: formats, size, the Agg backend, atomic saving, the report."""

from dataclasses import dataclass, field
from pathlib import Path

FORMATS = ("png", "svg", "pdf")
FIGSIZE = (6.4, 4.8)
DPI = 100


@dataclass
class PlotReport:
    written: list[Path] = field(default_factory=list)  # files written
    skipped: list[str] = field(default_factory=list)  # what was not drawn and why, one line each


def section(cfg, key):
    value = cfg.get(key)
    return value if isinstance(value, dict) else {}


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def new_figure(figsize=FIGSIZE):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=figsize, dpi=DPI)
    return fig, ax


def save(fig, path, fmt, report, label):
    """Tight-layout, write atomically, close; record the file or the failure."""
    import warnings

    from mlpcli.runs import atomic_path

    plt = pyplot()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "tight_layout not applied" etc.
            fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=DPI)
        report.written.append(path)
    except OSError as exc:
        report.skipped.append(f"{label}: {path.name}: could not be written ({exc})")
    finally:
        plt.close(fig)
