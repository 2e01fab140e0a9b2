"""The sweep folder's files: the one module that names them, writes and reads them.

``<runs root>/<sweep name>-<YYYYmmdd-HHMMSS>/`` holds ``sweep.yaml`` (what was
asked and every trial with its overrides), ``base-config.yaml`` (the config every
trial starts from), ``results.csv`` (one row per trial) and a run folder
``trial-NNN/`` per trial. ``mlp sweep`` writes them; ``mlp compare`` reads them. (The
HTML page ``mlp report`` writes into a sweep folder is named by ``mlpcli.runs``.)
"""

import csv
import io
import re
from pathlib import Path

from mlpcli import files
from mlpcli.config_yaml import read_yaml
from mlpcli.errors import ConfigError, MlpError
from mlpcli.files import read_text

SWEEP_FILE = "sweep.yaml"
RESULTS_FILE = "results.csv"
BASE_CONFIG = "base-config.yaml"
SUMMARY_COLUMNS = ("params", "best_epoch", "monitor", "best_value")
# of cross-validation trials (training.folds), after those: best_value is then the folds' mean
BEST_VALUE_STD, FOLDS = "best_value_std", "folds"
FOLD_COLUMNS = (BEST_VALUE_STD, FOLDS)
# a pruned trial's last epoch: the key in its results.json, and a pruning sweep's results.csv column
PRUNED_EPOCH = "pruned_epoch"
# what sweep.yaml's executor and a TPE search's prune may say
EXECUTORS = ("local", "dask")
PRUNERS = ("median", "hyperband", "none")
TRIAL_NAME = re.compile(r"^trial-[0-9]{3,}$")


def read_folder_yaml(path):
    """The mapping in one of the sweep folder's YAML files; an error names the file."""
    try:
        return read_yaml(path)
    except ConfigError as exc:
        raise MlpError("\n".join(exc.problems)) from None


def write_sweep_files(folder, spec, base_text):
    """sweep.yaml (``spec``: what was asked and every trial) and base-config.yaml."""
    write_sweep_spec(folder, spec)
    files.write_text(Path(folder) / BASE_CONFIG, base_text)


def write_sweep_spec(folder, spec):
    """sweep.yaml alone: rewritten as a TPE sweep proposes its trials."""
    import yaml  # here, not at the top: `mlp predict` checks for a sweep folder without reading YAML

    files.write_text(Path(folder) / SWEEP_FILE, yaml.safe_dump(spec, sort_keys=False))


def is_sweep(folder):
    """Whether ``folder`` is a sweep folder (it holds a sweep.yaml)."""
    return (Path(folder) / SWEEP_FILE).is_file()


def newest_sweep(runs_root):
    """The sweep folder under ``runs_root`` made last (by its sweep.yaml's time)."""
    root = Path(runs_root)
    # `latest` may name the same sweep: the real folder is found without it
    found = [path for path in root.glob(f"*/{SWEEP_FILE}") if path.is_file() and not path.parent.is_symlink()]
    if not found:
        raise MlpError(f"{root}: no sweeps found; run one with `mlp sweep CONFIG`, or give the run "
                       "or sweep folders to compare")
    return max(found, key=lambda path: path.stat().st_mtime).parent


def load_sweep_file(folder):
    """The sweep.yaml of a sweep folder, checked enough to rebuild its trials."""
    folder = Path(folder)
    path = folder / SWEEP_FILE
    if not folder.is_dir():
        raise MlpError(f"{folder}: no such sweep folder")
    if not path.is_file():
        raise MlpError(f"{folder}: not a sweep folder (no {SWEEP_FILE})")
    spec = read_folder_yaml(path)
    trials = spec.get("trials")
    if not isinstance(trials, list) or not trials or not all(
            isinstance(t, dict) and isinstance(t.get("name"), str) and TRIAL_NAME.match(t["name"])
            and isinstance(t.get("overrides") or {}, dict) for t in trials):
        raise MlpError(f"{path}: has no list of trials (each with a name trial-NNN and overrides)")
    names = [t["name"] for t in trials]
    if len(set(names)) < len(names):
        raise MlpError(f"{path}: names a trial twice ({sorted({n for n in names if names.count(n) > 1})[0]})")
    workers = spec.get("workers")
    problems = [
        (spec.get("executor") not in (None, *EXECUTORS), f"executor: must be one of {', '.join(EXECUTORS)}"),
        (workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1),
         "workers: must be a whole number of 1 or more"),
        (not isinstance(spec.get("scheduler"), (str, type(None))), "scheduler: must be an address"),
    ]
    for bad, problem in problems:
        if bad:
            key = problem.split(":")[0]
            raise MlpError(f"{path}: {problem}, got {spec.get(key)!r}")
    return spec


def read_results(folder):
    """The rows of a sweep's results.csv as dicts of strings ([] when there is none)."""
    path = Path(folder) / RESULTS_FILE
    rebuild = "move it away to rebuild it from the trial folders"
    try:
        with io.StringIO(read_text(path), newline="") as f:
            reader = csv.DictReader(f)
            rows = [row for row in reader if isinstance(row.get("trial"), str) and row["trial"]]
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MlpError(f"{path}: cannot be read ({exc}); {rebuild}") from None
    if reader.fieldnames is not None and not {"trial", "status"} <= set(reader.fieldnames):
        raise MlpError(f"{path}: is not a sweep's results (no trial and status columns); {rebuild}")
    return rows


def _cell(value):
    if isinstance(value, (list, dict)):
        import yaml

        return yaml.safe_dump(value, default_flow_style=True).strip()
    return "" if value is None else value


def write_results(folder, trials, rows, pruning=False):
    """Write results.csv: one row per trial in trial order (``pending`` when not run yet);
    ``pruning``: with the ``pruned_epoch`` column (status ``pruned`` says a trial was)."""
    varied = []
    for t in trials:
        varied += [k for k in t.overrides if k not in varied]
    finals = []
    for row in rows.values():
        finals += [k for k in row if k.startswith("final_") and k not in finals]
    folds = [k for k in FOLD_COLUMNS if any(k in row for row in rows.values())]
    columns = ["trial", "status", *varied, *SUMMARY_COLUMNS, *([PRUNED_EPOCH] if pruning else []), *folds,
               *finals, "seconds", "error"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for t in trials:
        row = {**{k: "" for k in columns}, "trial": t.name, "status": "pending"}
        row.update({k: v for k, v in rows.get(t.name, {}).items() if k not in varied})
        row.update({k: _cell(v) for k, v in t.overrides.items()})
        writer.writerow({k: _cell(v) for k, v in row.items()})
    files.write_text(Path(folder) / RESULTS_FILE, out.getvalue())
