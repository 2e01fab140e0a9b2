"""The ``sweep`` stage: train one config many times over a grid or random ranges of keys.

``sweep(config_path, grid=..., ...)`` expands the trials (``mlpcli.sweep_spec``),
makes ``<runs root>/<sweep name>-<YYYYmmdd-HHMMSS>/`` holding

* ``sweep.yaml``: what was asked (config, fixed ``--set`` values, grid or
  ranges, executor) and every trial with its overrides;
* ``base-config.yaml``: the config every trial starts from (the ``sweep:``
  section removed, the ``--set`` values applied, paths made absolute);
* ``trial-001/``, ...: one ordinary run folder per trial;
* ``results.csv``: one row per trial (rewritten as each trial finishes);
* ``compare-accuracy.png`` / ``compare-loss.png``: the trials' validation curves,

runs the trials (``mlpcli.sweep_trials``) and ranks them (``mlpcli.compare``).
``sweep(resume=SWEEP_DIR)`` runs again only the trials whose status is not
``ok``.
"""

import contextlib
import csv
import io
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import yaml

from mlpcli import runs
from mlpcli.config_yaml import read_yaml, safe_load
from mlpcli.errors import ConfigError, Interrupted, MlpError, TrainingError
from mlpcli.sweep_spec import EXECUTORS, SweepPlan, plan_sweep, show_values, trial_sets
from mlpcli.sweep_trials import Trial, available_cores, dask_client, import_dask, resumable, run_dask, run_local

SWEEP_FILE = "sweep.yaml"
RESULTS_FILE = "results.csv"
BASE_CONFIG = "base-config.yaml"
SUMMARY_COLUMNS = ("params", "best_epoch", "monitor", "best_value")
TRIAL_NAME = re.compile(r"^trial-[0-9]{3,}$")


# ---------------------------------------------------------------- the sweep folder

def load_sweep_file(folder):
    """The sweep.yaml of a sweep folder, checked enough to rebuild its trials."""
    folder = Path(folder)
    path = folder / SWEEP_FILE
    if not folder.is_dir():
        raise MlpError(f"{folder}: no such sweep folder")
    if not path.is_file():
        raise MlpError(f"{folder}: not a sweep folder (no {SWEEP_FILE})")
    spec = read_yaml(path)
    trials = spec.get("trials")
    if not isinstance(trials, list) or not all(
            isinstance(t, dict) and isinstance(t.get("name"), str) and TRIAL_NAME.match(t["name"])
            and isinstance(t.get("overrides") or {}, dict) for t in trials):
        raise MlpError(f"{path}: has no list of trials (each with a name trial-NNN and overrides)")
    return spec


def read_results(folder):
    """The rows of a sweep's results.csv as dicts of strings ([] when there is none)."""
    path = Path(folder) / RESULTS_FILE
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return [row for row in csv.DictReader(f) if row.get("trial")]
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MlpError(f"{path}: cannot be read ({exc})") from None


def _cell(value):
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return "" if value is None else value


def write_results(folder, trials, rows):
    """Write results.csv: one row per trial in trial order (``pending`` when not run yet)."""
    varied = []
    for t in trials:
        varied += [k for k in t.overrides if k not in varied]
    finals = []
    for row in rows.values():
        finals += [k for k in row if k.startswith("final_") and k not in finals]
    columns = ["trial", "status", *varied, *SUMMARY_COLUMNS, *finals, "seconds", "error"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for t in trials:
        row = {**{k: "" for k in columns}, "trial": t.name, "status": "pending"}
        row.update({k: v for k, v in rows.get(t.name, {}).items() if k not in varied})
        row.update({k: _cell(v) for k, v in t.overrides.items()})
        writer.writerow({k: _cell(v) for k, v in row.items()})
    runs.write_text(Path(folder) / RESULTS_FILE, out.getvalue())


def _trials_of(spec):
    # the fixed --set values are already in base-config.yaml; a trial adds its own overrides
    return [Trial(t["name"], dict(t.get("overrides") or {}), trial_sets(t.get("overrides") or {}))
            for t in spec["trials"]]


# ---------------------------------------------------------------- progress

class Progress:
    """One line per finished trial; an overall bar on a terminal."""

    def __init__(self, total, quiet, echo, monitor_hint=""):
        self.total, self.quiet, self.echo, self.done = total, quiet, echo, 0
        self.bar = None
        if not quiet and sys.stderr.isatty() and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="Sweep", unit="trial", dynamic_ncols=True)

    def line(self, text):
        if self.quiet:
            return
        if self.bar is not None:
            from tqdm import tqdm

            with tqdm.external_write_mode(file=sys.stdout):
                self.echo(text)
        else:
            self.echo(text)

    def finished(self, trial, row):
        self.done += 1
        values = show_values(trial.overrides)
        if row.get("status") == "ok":
            best = row.get("best_value")
            best = f"{row.get('monitor')} {best:.4f} (epoch {row.get('best_epoch')})" \
                if isinstance(best, (int, float)) else "no monitored value"
            params = f"{row['params']:,} params" if isinstance(row.get("params"), int) else ""
            text = f"{trial.name} ok  {values}  {best}  {params}  {row.get('seconds', 0):.1f}s"
        else:
            text = f"{trial.name} {str(row.get('status')).upper()}  {values}  {row.get('error')}"
        self.line(f"[{self.done}/{self.total}] {text}")
        if self.bar is not None:
            self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------- entry point

def _check_executor(executor, scheduler):
    if executor not in EXECUTORS:
        raise MlpError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if scheduler and executor != "dask":
        raise MlpError("--scheduler is the address of a Dask scheduler; use it with --executor dask")
    if executor == "dask":
        import_dask()


def _prevalidate(base_text, trials):
    """{trial name: config error} for trials whose config does not validate."""
    from mlpcli import config as config_mod

    errors = {}
    for t in trials:
        candidate = safe_load(base_text) or {}
        try:
            for item in t.sets:
                config_mod.apply_override(candidate, item)
            config_mod.resolve(candidate)
        except ConfigError as exc:
            errors[t.name] = exc
    return errors


def _run(folder, base_text, spec, trials, todo, invalid, rows, executor, workers, scheduler,
         client, plots, progress):
    """Run the ``todo`` trials, keeping results.csv up to date; return (rows, seconds).

    A trial interrupted by Ctrl-C continues from its saved state when it runs locally
    (a Dask task trains in a fresh folder on its worker, so there it starts over).
    """
    resume = {t.name for t in todo if executor == "local" and t.name not in invalid
              and rows.get(t.name, {}).get("status") == "interrupted" and resumable(folder / t.name)}
    for t in todo:
        rows.pop(t.name, None)
        if (folder / t.name).exists() and t.name not in resume:
            shutil.rmtree(folder / t.name)
    training = (yaml.safe_load(base_text) or {}).get("training")
    auto_threads = not (isinstance(training, dict) and training.get("threads") is not None)
    runnable = [t for t in todo if t.name not in invalid]
    if executor == "local":
        threads = max(1, available_cores() // workers)
        how = f"{workers} local worker(s), {threads} BLAS thread(s) each"
    else:
        how = f"Dask scheduler {scheduler}" if scheduler else f"a Dask LocalCluster of {workers} worker(s)"
    progress.line(f"Sweep folder: {folder}")
    continuing = f" ({len(resume)} continuing where interrupted)" if resume else ""
    progress.line(f"{len(todo)} of {len(trials)} trial(s) to run on {how}{continuing}")

    def on_done(trial, row):
        rows[trial.name] = row
        write_results(folder, trials, rows)
        progress.finished(trial, row)

    for t in todo:
        if t.name in invalid:
            on_done(t, {"trial": t.name, "status": "failed",
                        "error": str(invalid[t.name]).replace("\n", " | ")})
    write_results(folder, trials, rows)
    started = time.perf_counter()
    try:
        if runnable and executor == "local":
            run_local(folder / BASE_CONFIG, runnable, folder, workers, plots, on_done, auto_threads, resume)
        elif runnable:
            run_dask(client, base_text, runnable, folder, plots, on_done, auto_threads)
    except KeyboardInterrupt:
        for t in runnable:
            rows.setdefault(t.name, {"trial": t.name, "status": "interrupted"})
        write_results(folder, trials, rows)
        progress.close()
        left = sum(1 for t in trials if rows.get(t.name, {}).get("status") != "ok")
        raise Interrupted(f"sweep stopped with {left} trial(s) unfinished\n"
                          f"Resume with: mlp sweep --resume {folder}", signal.SIGINT) from None
    finally:
        progress.close()
    wall = time.perf_counter() - started
    progress.line(f"Wrote {folder / RESULTS_FILE}: "
                  f"{sum(1 for t in trials if rows.get(t.name, {}).get('status') == 'ok')} of "
                  f"{len(trials)} trial(s) ok, {len(runnable)} run in {wall:.1f}s")
    return rows, wall


def sweep(config_path=None, grid=(), random_trials=None, ranges=(), overrides=(), *, workers=None,
          executor=None, scheduler=None, resume=None, runs_root="runs", plots=True, quiet=False,
          echo=print):
    """Run a sweep (or the unfinished trials of ``resume``); return the ``Comparison``."""
    if resume is not None:
        if config_path is not None or grid or random_trials or ranges or overrides:
            raise MlpError("--resume SWEEP_DIR runs the trials recorded in its sweep.yaml; give no "
                           "CONFIG, --grid, --random, --range or --set with it")
        folder = Path(resume)
        spec = load_sweep_file(folder)
        try:
            base_text = (folder / BASE_CONFIG).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MlpError(f"{folder / BASE_CONFIG}: cannot be read ({exc})") from None
        executor = executor or spec.get("executor") or "local"
        stored = spec.get("workers")
        workers = workers or (stored if isinstance(stored, int) and not isinstance(stored, bool)
                              and stored >= 1 else 1)
        scheduler = scheduler if scheduler is not None else (
            spec.get("scheduler") if executor == "dask" else None)
        plots = plots and spec.get("plots", True) is not False
        _check_executor(executor, scheduler)
    else:
        if config_path is None:
            raise MlpError("give a CONFIG file to sweep over, or --resume SWEEP_DIR")
        plan: SweepPlan = plan_sweep(config_path, grid, random_trials, ranges, overrides)
        executor = executor or plan.executor or "local"
        workers = workers or plan.workers or 1
        scheduler = scheduler or plan.scheduler
        _check_executor(executor, scheduler)
        spec = plan.to_spec(executor, workers, scheduler, plots)
        base_text = plan.base_text
    trials = _trials_of(spec)
    rows = {r["trial"]: r for r in read_results(folder)} if resume is not None else {}
    todo = [t for t in trials if rows.get(t.name, {}).get("status") != "ok"
            or not (folder / t.name / "results.json").is_file()]
    invalid = _prevalidate(base_text, todo)
    if resume is None and len(invalid) == len(trials):
        problems = []
        for exc in invalid.values():
            problems += [p for p in exc.problems if p not in problems]
        raise ConfigError(problems)

    runnable = [t for t in todo if t.name not in invalid]
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(dask_client(scheduler, workers)) \
            if executor == "dask" and runnable else None
        if resume is None:
            folder = runs.new_run_dir(runs_root, spec["name"])
            runs.write_text(folder / SWEEP_FILE, yaml.safe_dump(spec, sort_keys=False))
            runs.write_text(folder / BASE_CONFIG, base_text)
        rows, wall = _run(folder, base_text, spec, trials, todo, invalid, rows, executor, workers,
                             scheduler, client, plots, Progress(len(todo), quiet, echo))
    ok = sum(1 for t in trials if rows.get(t.name, {}).get("status") == "ok")
    if not ok:
        raise TrainingError(f"none of the {len(trials)} trial(s) finished; the errors are in "
                            f"{folder / RESULTS_FILE}")
    from mlpcli.compare import compare, format_comparison

    result = compare([folder], out_dir=folder)
    result.folder, result.wall_seconds = folder, wall
    if not quiet:
        echo("")
        echo(format_comparison(result))
    return result
