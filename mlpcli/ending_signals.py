"""SIGTERM and SIGHUP ending a command as Ctrl-C does.

A process killed by them leaves its half-written output behind; raised as
``KeyboardInterrupt`` instead, they run the command's cleanup (a temporary file
removed, a folder abandoned) and end it with exit 130 through ``cli.clean_errors``.
Commands that stop between batches and save a checkpoint (``mlp train``) have their
own handling (``fit_loop.StopRequest``).
"""

import contextlib
import signal


@contextlib.contextmanager
def ending_signals_interrupt():
    """Within the block, SIGTERM and SIGHUP raise ``KeyboardInterrupt``. A signal the caller
    ignores (nohup) stays ignored; outside the main thread nothing changes (Python lets only
    it set handlers)."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {}
    with contextlib.suppress(ValueError):
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) is not signal.SIG_IGN:
                previous[sig] = signal.signal(sig, interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
