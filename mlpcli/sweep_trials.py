"""Running a sweep's trials: one trial, and the executors that run many.

A trial is an ordinary ``mlp train`` run of the sweep's base config with the
trial's overrides, written into ``trial-NNN/``. ``run_trial`` never raises:
an error (a bad value, a NaN loss, anything else) becomes a row with status
``failed`` and the error text.

* ``run_local`` (``mlpcli.sweep_workers``): a pool of ``spawn``ed processes on
  this machine; each trial writes straight into its folder.
* ``run_dask``: each trial is a task on a Dask distributed cluster; the task
  trains in a temporary folder on the worker and returns the folder's files as
  bytes with the row, and the client writes them into ``trial-NNN/``, so no
  shared filesystem is needed.

A trial's folder records its outcome: a folder holding ``results.json`` is a
finished run (``runs.finished``), whatever happened to the sweep process since.

This module imports neither numpy nor Dask at import time, so a worker
process can limit its BLAS threads before numpy loads.
"""

import contextlib
import os
import shutil
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from mlpcli import fold_runs, runs
from mlpcli.errors import Interrupted, MlpError, NoSavedState
from mlpcli.files import TMP_PREFIX, atomic_path
from mlpcli.machine import usable_cores
from mlpcli.runs import LOCK_FILE, RunLock
from mlpcli.sweep_folder import BASE_CONFIG, BEST_VALUE_STD, FOLDS, PRUNED_EPOCH

DASK_HINT = "pip install 'mlpcli[dask]'"
POLL_SECONDS = 0.1  # how often a waiting sweep looks at its trials and at Ctrl-C
DONE = ("ok", "pruned")  # the statuses of a trial whose folder holds a finished run
# one trial at a time per Dask worker process, whatever its --nthreads: BLAS limits and
# matplotlib are process-wide, so trials in threads of one process would interfere
_TRIAL_LOCK = threading.Lock()


@dataclass
class Trial:
    name: str  # trial-001, ...
    overrides: dict  # {dotted key: value}
    sets: list  # the KEY=VALUE strings passed to train, the trial's overrides last
    pruning: object = None  # a TPE sweep's sweep_pruning.PruningPlan, or None: trained to the end


class TrialList:
    """Trials for an executor, in order, each free to start at once (a grid or random sweep's;
    a TPE sweep's come from ``mlpcli.sweep_tpe.TpeFeed``, which has the same methods)."""

    def __init__(self, trials):
        self.waiting = list(trials)

    def __len__(self):
        """Trials left to start."""
        return len(self.waiting)

    def more(self):
        return bool(self.waiting)

    def next(self):
        """The next trial to start, or None."""
        return self.waiting.pop(0) if self.waiting else None

    def close(self):
        self.waiting.clear()


def _with_threads(sets, threads):
    if threads is None or any(s.split("=", 1)[0].strip() == "training.threads" for s in sets):
        return list(sets)
    return [*sets, f"training.threads={threads}"]


def summary_row(folder):
    """What results.csv keeps of a finished run: params, best epoch and value, final metrics."""

    if fold_runs.finished(folder):
        return _folds_row(folder)
    path = Path(folder) / runs.RESULTS_FILE
    try:
        results = runs.read_json(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise MlpError(f"{path}: cannot be read ({exc})") from None
    if not isinstance(results, dict):
        raise MlpError(f"{path}: is not the results of a run (no mapping of results)")
    row = {"params": runs.param_count(folder), "best_epoch": results.get("best_epoch"),
           "monitor": results.get("monitor"), "best_value": results.get("best_value"),
           "seconds": results.get("seconds"), PRUNED_EPOCH: results.get(PRUNED_EPOCH)}
    final = results.get("final") if isinstance(results.get("final"), dict) else {}
    row.update({f"final_{k}": v for k, v in final.items() if k != "lr"})
    return row


def _folds_row(folder):
    """A cross-validation trial's row: its best value is the mean over the folds, with their
    standard deviation and count; its final metrics, their means."""
    path = Path(folder) / fold_runs.SUMMARY_FILE
    try:
        summary = runs.read_json(path)
        mean, std = summary["mean"], summary["std"]
        row = {"params": runs.param_count(folder), "monitor": summary["monitor"], "best_value": mean["best_value"],
               BEST_VALUE_STD: std["best_value"], FOLDS: summary["folds"], "seconds": summary["seconds"]}
        row.update({f"final_{k}": v for k, v in (mean.get("final") or {}).items() if k != "lr"})
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise MlpError(f"{path}: cannot be read as a cross-validation summary ({exc})") from None
    return row


def finished_row(name, run_dir):
    """The row of trial ``name`` whose folder holds a finished run: ``ok``, or ``pruned``."""
    row = summary_row(run_dir)
    return {"trial": name, "status": "ok" if row.get(PRUNED_EPOCH) is None else "pruned", **row}


def remove_trial_folder(run_dir):
    """Delete a trial's folder to train the trial again; refused while a process trains in it."""
    run_dir = Path(run_dir)
    try:
        if run_dir.is_symlink() or run_dir.is_file():
            run_dir.unlink()
        elif run_dir.is_dir():
            with RunLock(run_dir):
                shutil.rmtree(run_dir)
    except OSError as exc:
        raise MlpError(f"{run_dir}: cannot be removed to train the trial again "
                       f"({exc.strerror or exc})") from None


def resumable(run_dir):
    """Whether an interrupted trial's folder holds a saved state to continue from."""
    from mlpcli.run_models import resume_states

    if (Path(run_dir) / runs.CONFIG_FILE).is_file() and fold_runs.fold_dir(run_dir, 1).is_dir():
        return True  # a cross-validation trial: its finished folds are kept
    return (Path(run_dir) / runs.CONFIG_FILE).is_file() and bool(resume_states(run_dir))


def run_trial(config_path, trial, run_dir, plots=True, threads=None, resume=False):
    """Train one trial into ``run_dir`` (``resume``: continue the interrupted run there);
    return its row (status ok or failed, seconds, error)."""
    from mlpcli.parallel import CORES_ENV

    started = time.perf_counter()
    row = {"trial": trial.name, "status": "ok"}
    if threads is not None:  # this trial's share of the cores, for training.processes too
        os.environ[CORES_ENV] = str(threads)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # overflow on the way to a NaN loss
            _train_trial(config_path, trial, run_dir, plots, threads, resume)
        row.update(finished_row(trial.name, run_dir))
    except Interrupted as exc:  # Ctrl-C: `mlp sweep --resume` continues the trial
        row.update(status="interrupted", error=str(exc).split(";")[0])
    except MlpError as exc:
        row.update(status="failed", error=str(exc).replace("\n", " | "))
    except Exception as exc:  # noqa: BLE001 - one trial's crash must not stop the sweep
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}".replace("\n", " | "))
    row["seconds"] = round(time.perf_counter() - started, 3)
    return row


def _train_trial(config_path, trial, run_dir, plots, threads, resume):
    from mlpcli.train import train

    quiet = {"quiet": True, "plots": plots, "echo": lambda *a, **k: None, "callbacks": []}
    if trial.pruning is not None:
        from mlpcli.sweep_pruning import TrialPruning

        quiet["callbacks"].append(TrialPruning(trial.pruning))
    if resume:
        try:
            train(None, _with_threads([], threads), resume=run_dir, **quiet)
            return
        except NoSavedState:  # its saved states are all damaged: start the trial over
            remove_trial_folder(run_dir)
    train(config_path, _with_threads(trial.sets, threads), run_dir=run_dir, **quiet)


def failed_row(trial, error, status="failed"):
    return {"trial": trial.name, "status": status, "error": str(error).replace("\n", " | ")}


# ---------------------------------------------------------------- Dask

def import_dask():
    """(Client, LocalCluster) from dask.distributed, or an MlpError saying how to install it."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as exc:
        raise MlpError(f"--executor dask needs Dask's distributed scheduler, which is not "
                       f"installed ({exc}); install it with: {DASK_HINT}") from None
    return Client, LocalCluster


def dask_trial(config_text, trial, plots, host_slots, auto_threads):
    """A Dask task: train ``trial`` in a temporary folder on the worker; return
    ``{"row": row, "files": {relative path: bytes}}``."""
    threads = None
    if auto_threads:
        slots = 1
        try:
            from urllib.parse import urlparse

            from distributed import get_worker

            slots = host_slots.get(urlparse(get_worker().address).hostname) or 1
        except Exception:  # noqa: BLE001 - not on a worker, or an API change: 1 slot
            pass
        threads = max(1, usable_cores() // slots)
    with _TRIAL_LOCK, tempfile.TemporaryDirectory(prefix="mlp-trial-") as tmp:
        config_path = Path(tmp) / BASE_CONFIG
        config_path.write_text(config_text, encoding="utf-8")
        run_dir = Path(tmp) / trial.name
        row = run_trial(config_path, trial, run_dir, plots, threads)
        files = {}
        if run_dir.is_dir():
            for path in sorted(run_dir.rglob("*")):
                if path.is_file() and path.name != LOCK_FILE and not path.name.startswith(TMP_PREFIX):
                    files[path.relative_to(run_dir).as_posix()] = path.read_bytes()
    return {"row": row, "files": files}


def write_files(folder, files):
    """Write ``{relative path: bytes}`` under ``folder``, each atomically; refuse paths that leave it."""
    root = Path(folder).resolve()
    for rel, data in files.items():
        target = (root / rel).resolve()
        if root not in target.parents:
            raise MlpError(f"a trial returned the file {rel!r}, which is outside {root}")
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)


def _host_slots(client):
    """{host: trials that run there at once}: its worker processes (one trial each at a time)."""
    from urllib.parse import urlparse

    slots = {}
    for address in client.scheduler_info().get("workers", {}):
        host = urlparse(address).hostname
        slots[host] = slots.get(host, 0) + 1
    return slots


@contextlib.contextmanager
def dask_client(scheduler, workers):
    """A Client of the Dask scheduler at ``scheduler``, or of a new LocalCluster of ``workers``
    single-threaded worker processes on 127.0.0.1 (closed on exit)."""
    Client, LocalCluster = import_dask()
    cluster = None
    try:
        if scheduler:
            client = Client(scheduler, timeout="10s")
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=None)
            client = Client(cluster)
    except (OSError, TimeoutError) as exc:
        if cluster is not None:
            cluster.close()
        where = f"the Dask scheduler at {scheduler}" if scheduler else "a local Dask cluster"
        raise MlpError(f"cannot connect to {where}: {exc}") from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_dask(client, config_text, feed, folder, plots, on_done, auto_threads, stop):
    """Run the trials of ``feed`` (a ``TrialList``, or a TPE sweep's feed) as tasks through
    ``client``, each submitted once the feed gives it; write each trial's returned files into
    its folder and call ``on_done(trial, row)`` as each finishes. Once ``stop()`` is true the
    trials not finished are cancelled (a Dask trial starts over when the sweep is resumed)."""
    slots = _host_slots(client)
    left = {}
    while (left or feed.more()) and not stop():
        while (t := feed.next()) is not None:
            left[client.submit(dask_trial, config_text, t, plots, slots, auto_threads, pure=False,
                               key=f"mlp-{folder.name}-{t.name}-{os.getpid()}-{time.time_ns()}")] = t
        done = [future for future in left if future.done()]
        if not done:
            time.sleep(POLL_SECONDS)
        for future in done:
            trial = left.pop(future)
            try:
                result = future.result()
                target = folder / trial.name
                remove_trial_folder(target)
                write_files(target, result["files"])
                row = result["row"]
            except MlpError as exc:
                row = failed_row(trial, exc)
            except Exception as exc:  # noqa: BLE001 - a task that died with its worker, ...
                row = failed_row(trial, f"Dask task failed: {type(exc).__name__}: {exc}")
            on_done(trial, row)
    if left:
        client.cancel(list(left))
