"""The ``sweep`` stage: train one config many times over a grid or random ranges of keys.

``sweep(config_path, grid=..., ...)`` expands the trials (``mlpcli.sweep_spec``),
makes ``<runs root>/<sweep name>-<YYYYmmdd-HHMMSS>/`` holding

* ``sweep.yaml``: what was asked (config, fixed ``--set`` values, grid or
  ranges, executor) and every trial with its overrides;
* ``base-config.yaml``: the config every trial starts from (the ``sweep:``
  section removed, the ``--set`` values applied, paths made absolute);
* ``trial-001/``, ...: one ordinary run folder per trial;
* ``results.csv``: one row per trial (rewritten as each trial finishes);
* ``compare-accuracy.png`` / ``compare-loss.png``: the trials' validation curves;
* ``.lock``: held while a sweep runs in the folder (only the holder writes in it),

points ``<runs root>/latest`` at it (so commands given no run folder, or the sweep folder,
use its recommended trial: ``runs.model_folder``), runs the trials
(``mlpcli.sweep_workers`` locally, ``mlpcli.sweep_trials`` on Dask; a TPE search's
trials are proposed as they can start, by ``mlpcli.sweep_tpe``, and sweep.yaml grows with
them) and ranks them (``mlpcli.compare``). ``sweep(resume=SWEEP_DIR)`` runs
again only the trials whose folder does not hold a finished run, continuing
those with a saved state.
"""

import contextlib
import copy
import signal
import sys
import time

import yaml

from mlpcli import runs
from mlpcli.config_yaml import safe_load
from mlpcli.errors import ConfigError, Interrupted, MlpError, TrainingError, printable
from mlpcli.machine import usable_cores
from mlpcli.sweep_folder import (
    BASE_CONFIG,
    BEST_VALUE_STD,
    EXECUTORS,
    FOLDS,
    PRUNED_EPOCH,
    RESULTS_FILE,
    SWEEP_FILE,
    load_sweep_file,
    read_folder_yaml,
    read_results,
    write_results,
    write_sweep_files,
    write_sweep_spec,
)
from mlpcli.sweep_spec import (
    SweepPlan,
    plan_sweep,
    show_values,
    trial_name,
    trial_sets,
)
from mlpcli.sweep_trials import (
    DONE,
    Trial,
    TrialList,
    dask_client,
    failed_row,
    finished_row,
    import_dask,
    remove_trial_folder,
    resumable,
    run_dask,
)
from mlpcli.sweep_workers import run_local
from mlpcli.tracking_spec import resolved_logging


def _settle(folder, trials, rows):
    """Make ``rows`` say what the trial folders hold: ``ok`` exactly when the trial's folder holds
    a finished run (so a trial that finished after its sweep was killed counts, and is not
    trained again). Returns ``rows``."""
    for t in trials:
        ok = rows.get(t.name, {}).get("status") in DONE
        if runs.finished(folder / t.name) and not ok:
            rows[t.name] = finished_row(t.name, folder / t.name)
        elif ok and not runs.finished(folder / t.name):
            del rows[t.name]
    return rows


def _record(folder, spec, trials, rows):
    """Write results.csv as the rows and the trial folders say (only the sweep's lock holder calls this)."""
    pruning = (spec.get("tpe") or {}).get("prune", "none") != "none"
    write_results(folder, trials, _settle(folder, trials, rows), pruning)


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
        if row.get("status") in DONE:
            best = row.get("best_value")
            spread = f" ± {row[BEST_VALUE_STD]:.4f} over {row.get(FOLDS)} folds" \
                if isinstance(row.get(BEST_VALUE_STD), (int, float)) else f" (epoch {row.get('best_epoch')})"
            best = f"{row.get('monitor')} {best:.4f}{spread}" if isinstance(best, (int, float)) else "no monitored value"
            params = f"{row['params']:,} params" if isinstance(row.get("params"), int) else ""
            status = "ok" if row["status"] == "ok" else f"pruned after epoch {row.get(PRUNED_EPOCH)}"
            text = f"{trial.name} {status}  {values}  {best}  {params}  {row.get('seconds', 0):.1f}s"
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


def _prevalidate(base, trials):
    """{trial name: config error} for trials whose config does not validate, checked as their
    runs will check it (a model.input_shape left out read from the data)."""
    from mlpcli import config as config_mod

    errors = {}
    for t in trials:
        candidate = copy.deepcopy(base)
        try:
            for item in t.sets:
                config_mod.apply_override(candidate, item)
            config_mod.resolve_with_data(candidate)
        except ConfigError as exc:
            errors[t.name] = exc
    return errors


def _run(folder, spec, base, base_text, trials, todo, invalid, rows, executor, workers, scheduler, client,
         plots, progress, stop, nesting):
    """Run the ``todo`` trials (and a TPE search's trials not proposed yet), keeping results.csv
    and sweep.yaml up to date; return (rows, seconds). ``nesting``: --set items every trial's
    run takes last (its MLflow parent run).

    A trial stopped by Ctrl-C or SIGTERM, or whose sweep was killed, continues from its saved
    state when it runs locally (a Dask task trains in a fresh folder on its worker, so there it
    starts over). Once ``stop()`` is true no trial starts; Interrupted when it was.
    """
    for t in trials:
        t.sets += nesting
    resume = {t.name for t in todo if executor == "local" and t.name not in invalid
              and resumable(folder / t.name)}
    for t in todo:
        rows.pop(t.name, None)
        if t.name in resume:
            with runs.RunLock(folder / t.name):  # refused while a process still trains in it
                pass
        elif t.name not in invalid:
            remove_trial_folder(folder / t.name)
    training = base.get("training")
    auto_threads = not (isinstance(training, dict) and training.get("threads") is not None)
    runnable = [t for t in todo if t.name not in invalid]
    if executor == "local":
        threads = max(1, usable_cores() // workers)
        how = f"{workers} local worker(s), {threads} BLAS thread(s) each"
    else:
        how = f"Dask scheduler {scheduler}" if scheduler else f"a Dask LocalCluster of {workers} worker(s)"
    progress.line(f"Sweep folder: {folder}")
    continuing = f" ({len(resume)} continuing where interrupted)" if resume else ""
    search = spec.get("tpe")
    total = search["trials"] if search else len(trials)
    progress.line(f"{len(todo) + total - len(trials)} of {total} trial(s) to run on {how}{continuing}")

    def on_done(trial, row):
        rows[trial.name] = row
        _record(folder, spec, trials, rows)
        progress.finished(trial, row)

    def add(overrides):
        """A TPE proposal: recorded in sweep.yaml; its Trial, or None when its config is invalid."""
        entry = {"name": trial_name(len(trials) + 1, total), "overrides": overrides}
        spec["trials"].append(entry)
        write_sweep_spec(folder, spec)
        (trial,) = _trials_of({"trials": [entry]})
        trial.sets += nesting
        trials.append(trial)
        error = _prevalidate(base, [trial]).get(trial.name)
        if error is not None:
            on_done(trial, failed_row(trial, error))
            return None
        runnable.append(trial)
        return trial

    for t in todo:
        if t.name in invalid:
            on_done(t, failed_row(t, invalid[t.name]))
    _record(folder, spec, trials, rows)
    if search is None:
        feed = TrialList(runnable)
    else:
        from mlpcli.sweep_tpe import TpeFeed

        feed = TpeFeed(search, folder, trials, rows, list(runnable), add)
    started = time.perf_counter()
    try:
        if feed.more() and executor == "local":
            run_local(folder / BASE_CONFIG, feed, folder, workers, plots, on_done, auto_threads,
                      resume, stop)
        elif feed.more():
            run_dask(client, base_text, feed, folder, plots, on_done, auto_threads, stop)
    finally:
        progress.close()
    if stop():
        _record(folder, spec, trials, rows)
        left = total - sum(1 for t in trials if rows.get(t.name, {}).get("status") in DONE)
        raise Interrupted(f"{signal.Signals(stop.signum).name}: the sweep stopped with {left} trial(s) "
                          f"unfinished\nResume with: mlp sweep --resume {folder}", stop.signum)
    wall = time.perf_counter() - started
    statuses = [rows.get(t.name, {}).get("status") for t in trials]
    pruned = f" ({statuses.count('pruned')} of them pruned)" if "pruned" in statuses else ""
    progress.line(f"Wrote {folder / RESULTS_FILE}: {sum(s in DONE for s in statuses)} of "
                  f"{len(trials)} trial(s) ok{pruned}, {len(runnable)} run in {wall:.1f}s")
    return rows, wall


def _mlflow_parent(base, folder, runs_root):
    """(the sweep's parent MLflow run, the --set items that nest a trial's MLflow run in it) when
    the base config logs to MLflow; (None, []) otherwise."""
    logging = resolved_logging(base)
    if logging is None or logging["mlflow"] is None:
        return None, []
    from mlpcli.tracking_mlflow import parent_run

    parent, nesting = parent_run(logging["mlflow"], folder, runs_root,
                                 lambda text: print(printable(text), file=sys.stderr), "sweep")
    return parent, [nesting]


def _new_sweep_folder(runs_root, spec, base_text, stack, stop):
    """A new sweep folder, locked (the lock held by ``stack``), holding sweep.yaml and
    base-config.yaml. A failure, or a signal before any trial starts, takes it back: no
    half-made sweep folder stays."""
    made = []
    folder = runs.new_run_dir(runs_root, spec["name"], made=made)
    try:
        stack.enter_context(runs.RunLock(folder, "mlp sweep", "sweep"))
        write_sweep_files(folder, spec, base_text)
        if stop():
            raise Interrupted(f"{signal.Signals(stop.signum).name} before any trial started; the "
                              "sweep folder was removed", stop.signum)
    except BaseException:
        runs.abandon_run_dir(folder, made)
        raise
    return folder


def sweep(config_path=None, grid=(), random_trials=None, ranges=(), overrides=(), *, search=None,
          trials=None, prune=None, seed=None, workers=None, executor=None, scheduler=None, resume=None,
          runs_root="runs", plots=True, quiet=False, echo=print, note=None):
    """Run a sweep (or the unfinished trials of ``resume``); return the ``Comparison``.
    ``search`` "random" or "tpe" runs ``trials`` trials (``prune``: a TPE search's pruner;
    ``seed``: the search's seed, else the sweep: section's, else 0; see ``plan_sweep``).
    ``note`` is told where a link to the sweep folder led (see ``runs.resolve_run_dir``).

    The sweep folder is locked while this runs (a second ``--resume`` is refused); every file
    of a sweep folder to resume is read and checked before anything in it changes.
    """
    if resume is not None:
        if config_path is not None or grid or random_trials or ranges or overrides or search or trials \
                or prune or seed is not None:
            raise MlpError("--resume SWEEP_DIR runs the trials recorded in its sweep.yaml; give no "
                           "CONFIG, --grid, --random, --range, --search, --trials, --prune, --seed or "
                           "--set with it")
        folder = runs.resolve_run_dir(resume, note=note)  # once: a link that moves cannot redirect it
        spec = load_sweep_file(folder)
        if spec.get("tpe") is not None:
            from mlpcli.sweep_tpe import checked_search

            checked_search(spec, folder / SWEEP_FILE)
        base = read_folder_yaml(folder / BASE_CONFIG)
        read_results(folder)  # a damaged results.csv is refused here, before anything changes
        executor = executor or spec.get("executor") or "local"
        workers = workers or spec.get("workers") or 1
        scheduler = scheduler if scheduler is not None else (
            spec.get("scheduler") if executor == "dask" else None)
        plots = plots and spec.get("plots", True) is not False
        _check_executor(executor, scheduler)
        base_text = yaml.safe_dump(base, sort_keys=False)
    else:
        if config_path is None:
            raise MlpError("give a CONFIG file to sweep over, or --resume SWEEP_DIR")
        plan: SweepPlan = plan_sweep(config_path, grid, random_trials, ranges, overrides, search=search,
                                     trials=trials, prune=prune, seed=seed)
        executor = executor or plan.executor or "local"
        workers = workers or plan.workers or 1
        scheduler = scheduler or plan.scheduler
        _check_executor(executor, scheduler)
        spec = plan.to_spec(executor, workers, scheduler, plots)
        if plan.tpe:
            from mlpcli.sweep_tpe import start

            spec["tpe"], first = start(plan.tpe, workers)
            spec["trials"] = [{"name": trial_name(i, plan.tpe["trials"]), "overrides": o}
                              for i, o in enumerate(first, 1)]
        base_text = plan.base_text
        base = safe_load(base_text)
    proposed = _trials_of(spec)
    invalid = _prevalidate(base, proposed)
    if len(invalid) == len(proposed):  # not one trial could run (on --resume: a damaged base config)
        where = f"{folder / BASE_CONFIG}: " if resume is not None else ""
        problems = []
        for exc in invalid.values():
            problems += [f"{where}{p}" for p in exc.problems if f"{where}{p}" not in problems]
        raise ConfigError(problems)

    from mlpcli.fit_loop import StopRequest

    with contextlib.ExitStack() as stack:
        # from here the first Ctrl-C or SIGTERM is only recorded: no trial starts after it
        stop = stack.enter_context(StopRequest(training=True))
        rows = {}
        if resume is not None:
            stack.enter_context(runs.RunLock(folder, "mlp sweep", "sweep"))
            # read again under the lock: the sweep that held it may have written it since
            rows = _settle(folder, proposed, {r["trial"]: r for r in read_results(folder)})
        todo = [t for t in proposed if rows.get(t.name, {}).get("status") not in DONE]
        to_propose = spec["tpe"]["trials"] - len(proposed) if spec.get("tpe") else 0
        client = stack.enter_context(dask_client(scheduler, workers)) \
            if executor == "dask" and (any(t.name not in invalid for t in todo) or to_propose) else None
        if resume is None:
            folder = _new_sweep_folder(runs_root, spec, base_text, stack, stop)
            # from here a signal stops the trials but keeps the folder, so `latest` may name it,
            # as it names a run once it trains: every command given it takes its recommended trial
            warning = runs.point_latest(runs_root, folder)
            if warning:
                print(printable(warning), file=sys.stderr)
        parent, nesting = _mlflow_parent(base, folder, runs_root)
        rows, wall = _run(folder, spec, base, base_text, proposed, todo, invalid, rows, executor, workers,
                          scheduler, client, plots, Progress(len(todo) + to_propose, quiet, echo), stop, nesting)
        if not any(rows.get(t.name, {}).get("status") in DONE for t in proposed):
            raise TrainingError(f"none of the {len(proposed)} trial(s) finished; the errors are in "
                                f"{folder / RESULTS_FILE}")
        from mlpcli.compare import compare, format_comparison

        result = compare([folder], out_dir=folder)
        if parent is not None:
            from mlpcli.tracking_mlflow import finish_sweep

            finish_sweep(parent, folder, RESULTS_FILE)
    result.folder, result.wall_seconds = folder, wall
    if not quiet:
        echo("")
        echo(format_comparison(result))
    return result
