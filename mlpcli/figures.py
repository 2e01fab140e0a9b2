"""What every figure shares: formats, size, the Agg backend, atomic saving, the report."""

from dataclasses import dataclass, field
from pathlib import Path

from mlpcli.errors import FileSystemError, os_error_text

FORMATS = ("png", "svg", "pdf")
FIGSIZE = (6.4, 4.8)
DPI = 100


@dataclass
class PlotReport:
    written: list[Path] = field(default_factory=list)  # files written
    skipped: list[str] = field(default_factory=list)  # what was not drawn and why, one line each
    failed: list[str] = field(default_factory=list)  # "<path>: <what happened>" of figures not written

    def raise_failures(self):
        """A ``FileSystemError`` naming the first figure that could not be written, if any."""
        if self.failed:
            more = f" ({len(self.failed) - 1} more figure(s) not written)" if len(self.failed) > 1 else ""
            raise FileSystemError(self.failed[0] + more)


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
    """Tight-layout, write atomically, close; record the file or the failure (the next
    figure is still tried: one that cannot be written does not cost the others)."""
    import warnings

    from mlpcli.files import atomic_path

    plt = pyplot()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "tight_layout not applied" etc.
            fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=DPI)
        report.written.append(path)
    except OSError as exc:  # the folder could not be made
        report.failed.append(os_error_text(exc))
    except FileSystemError as exc:
        report.failed.append(str(exc))
    finally:
        plt.close(fig)
