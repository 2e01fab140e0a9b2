"""A sweep's trials in local processes, which live and die with the sweep.

``run_local`` hands a trial to a ``spawn``ed pool process only when one is free,
so a trial that has not started is never queued where a stop cannot reach it.
Each pool process:

* is in a process group of its own: a Ctrl-C on the terminal reaches only the
  sweep, which tells every trial once, through ``stop``;
* runs a watchdog thread that, when the sweep sets ``stop`` or is gone (killed
  even by SIGKILL), sends its own process one SIGTERM while ``mlp train`` runs
  in it (its stop handler is installed): before training starts, the trial's
  new folder is taken back; during an epoch, training stops after its batch and
  saves its state; during the final files, it stops between two of them. The
  trial is then ``interrupted`` and ``--resume`` goes on from what was saved.
  Between trials SIGTERM is ignored;
* starts no trial once ``stop`` is set, and exits as soon as it is idle with
  the sweep gone (a finished trial's folder holds its outcome: ``results.json``).

Helpers forked by ``training.processes`` follow their pool process (they watch
their parent), and multiprocessing's resource tracker ends when the last of
them has.
"""

import os
import signal
import threading
import time

from mlpcli.machine import usable_cores
from mlpcli.sweep_trials import POLL_SECONDS, failed_row, run_trial

_sweep = {}  # in a pool process: the sweep's pid, its stop flag, whether a trial is under way


def _init_worker(threads, parent, stop):
    """In each pool process: BLAS threads limited before numpy loads; signals and the watchdog."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # training installs its own handler for its epochs
    _sweep.update(parent=parent, stop=stop, busy=threading.Event())
    threading.Thread(target=_watch, name="mlp-sweep-watchdog", daemon=True).start()


def _sweep_gone():
    return os.getppid() != _sweep["parent"]


def _stopping():
    return bool(_sweep["stop"].value)


def _training():
    """Whether ``mlp train`` runs: its stop handler is installed in place of SIG_IGN."""
    return signal.getsignal(signal.SIGTERM) not in (signal.SIG_IGN, signal.SIG_DFL, None)


def _watch():
    busy = _sweep["busy"]
    told = False
    while True:
        gone = _sweep_gone()
        if gone and not busy.is_set():
            os._exit(0)
        if not told and (gone or _stopping()) and busy.is_set() and _training():
            told = True
            os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(POLL_SECONDS)


def _pool_trial(*args):
    """``run_trial(*args)`` in a pool process; None when the sweep stopped before it started."""
    _sweep["busy"].set()
    try:
        if _stopping() or _sweep_gone():
            return None
        return run_trial(*args)
    finally:
        _sweep["busy"].clear()
        if _sweep_gone():  # nobody waits for this row; the trial's folder holds its outcome
            os._exit(0)


def run_local(config_path, feed, folder, workers, plots, on_done, auto_threads, resume, stop):
    """Run the trials of ``feed`` (a ``TrialList``, or a TPE sweep's feed) in ``workers``
    processes, each once the feed gives it, continuing those named in ``resume``; call
    ``on_done(trial, row)`` as each finishes. Once ``stop()`` is true no trial starts and
    those under way stop after their batch, saving their state."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    # BLAS threads by --workers alone, not by how many trials are left: a resumed sweep's
    # trials then compute exactly as they would have in the first run
    threads = max(1, usable_cores() // workers)
    workers = max(1, min(workers, len(feed)))
    context = multiprocessing.get_context("spawn")
    # a flag in shared memory, read without a lock: a sweep killed at any moment leaves none held
    stop_trials = context.RawValue("b", 0)
    running = {}
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                               initargs=(threads, os.getpid(), stop_trials))
    try:
        while feed.more() or running:
            if stop():
                stop_trials.value = 1
                feed.close()
            while len(running) < workers and (trial := feed.next()) is not None:
                try:
                    running[pool.submit(_pool_trial, str(config_path), trial, str(folder / trial.name),
                                        plots, threads if auto_threads else None,
                                        trial.name in resume)] = trial
                except BrokenProcessPool as exc:
                    on_done(trial, failed_row(trial, f"worker process failed: {exc}"))
            done, _ = wait(running, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            for future in done:
                trial = running.pop(future)
                try:
                    row = future.result()
                except Exception as exc:  # noqa: BLE001 - e.g. a worker process killed
                    row = failed_row(trial, f"worker process failed: {type(exc).__name__}: {exc}")
                if row is not None:
                    on_done(trial, row)
    except BaseException:
        stop_trials.value = 1  # the trials under way save their state; none starts
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
