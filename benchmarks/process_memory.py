"""The peak memory of a process tree whose members share pages (a parent and its forked helpers)."""

import os
import threading


class TreeMemory:
    """The peak memory of this process and its children while the block runs.

    Helper processes (training.processes) share most of the parent's memory, so the
    tree's memory is sampled as the sum of proportional set sizes (shared pages split
    between their holders) every ``interval`` seconds.
    """

    def __init__(self, interval):
        self.interval, self.peak_mib = interval, 0.0

    def __enter__(self):
        self.done, seen = threading.Event(), set()

        def sample():
            while not self.done.wait(self.interval):
                children = _children()
                total = sum(_pss_kib(pid) for pid in [os.getpid(), *children])
                if seen.issuperset(children):  # a child caught mid-fork reads as a second copy
                    self.peak_mib = max(self.peak_mib, total / 1024)
                seen.update(children)

        self.sampler = threading.Thread(target=sample, daemon=True)
        self.sampler.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.sampler.join()


def _children():
    pids = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            pids += [int(p) for p in f.read().split()]
    return pids


def _pss_kib(pid):
    """Process ``pid``'s proportional set size in KiB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return sum(int(line.split()[1]) for line in f if line.startswith("Pss:"))
    except OSError:
        return 0
