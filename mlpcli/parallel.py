"""Data-parallel training: the processes of one machine share each batch.

Every step, each of ``n`` processes runs forward and backward on its rows of
the batch into its own gradient buffer and waits for the others; then each
updates its share of the weights (a slice of the one flat weight array) with
the row-weighted average of all gradients, and waits again. Weights,
optimizer slots and gradients live in shared memory. The waits spin on
counters in shared memory: a wake-up through the operating system costs tens
of microseconds, and a step takes about a millisecond.

Helper processes are forked when an epoch starts and end with it, so they
start from this process's exact state (optimizer step, dropout generators,
the epoch's order) and nothing but shared memory flows back. Every process
moves the dropout generators past the whole batch's masks while drawing only
its own rows, so this process's generators, optimizer and counters end each
step where a single process's would, and a checkpoint needs nothing from the
helpers. The weights differ from a single process's only in the order in
which the gradients are summed.

Batch normalization needs the whole batch's statistics mid-step: each process
writes its sums into its row of a shared table, waits for the others, and adds
up the rows in one order (``all_sum``), so every process gets the same totals.
Two tables, used in turn, let a process write the next sums while a slower one
still reads the last. Every process then runs every step, one with no rows
too, so that each meets the others at every sum.

Linux on x86-64 only: fork, and x86's ordered stores, which let one process
read what another wrote before raising its counter without explicit fences.
Elsewhere, and on one core, training uses one process.
"""

import contextlib
import mmap
import os
import platform
import signal
import sys
import traceback
import warnings

import numpy as np

from mlpcli.errors import MlpError, TrainingError
from mlpcli.machine import usable_cores
from mlpcli.nn.optimizers import PIECE

ALIGN = 16  # float32s per 64-byte cache line: no two processes write one line of weights
LINE = 8  # int64s per counter: each process's counter on a cache line of its own
SPINS_BEFORE_YIELD = 1 << 14  # then give the core away on each check (more processes than cores)
SPINS_PER_CHECK = 1 << 12  # how often a waiting process looks for a dead partner


AUTO = "auto"  # training.processes: one process per usable core
CORES_ENV = "MLPCLI_CORES"  # set by sweeps: the cores one of several trials at once may use


def usable_processes(requested):
    """How many processes to train with: ``requested``, at most the usable cores (and
    ``$MLPCLI_CORES``); 1 where fork or x86's store ordering is missing. ``"auto"``: one per
    usable core (measured, benchmarks/profile_step.py: on 2 cores, two processes with one BLAS
    thread each beat one process with two for the seed model and the wide one alike)."""
    if requested != AUTO and requested <= 1 or not sys.platform.startswith("linux") or \
            platform.machine() not in ("x86_64", "AMD64"):
        return 1
    cores = usable_cores()
    if os.environ.get(CORES_ENV, "").isdigit():
        cores = min(cores, int(os.environ[CORES_ENV]))
    return max(1, cores if requested == AUTO else min(requested, cores))


def shared_empty(shape, dtype=np.float32):
    """An uninitialised array in memory that forked processes share."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    buffer = mmap.mmap(-1, max(count * dtype.itemsize, 1))  # anonymous and MAP_SHARED
    return np.frombuffer(buffer, dtype, count).reshape(shape)


def shared_empty_like(array):
    return shared_empty(array.shape, array.dtype)


def _shared_copy(array):
    copy = shared_empty_like(array)
    copy[...] = array
    return copy


class Stopped(Exception):
    """In a helper: the parent asked the helpers to stop, or is gone."""


class DataParallel:
    """``n`` processes training ``model`` on each batch; this process is rank 0.

    Build it before the optimizer, and build the optimizer with
    ``empty_like=shared_empty_like`` on ``[model.trainable_flat_params]``.
    """

    def __init__(self, model, n, batch_size, n_outputs):
        self.model, self.n = model, n
        size = model.flat_params.size
        model.use_buffers(params=_shared_copy(model.flat_params), grads=_shared_copy(model.flat_grads))
        self.grads = [model.flat_grads] + [shared_empty(size) for _ in range(n - 1)]
        trained = model.trainable_size  # the leading part of the weights that the optimizer updates
        cuts = [min(trained, round(trained * r / n / ALIGN) * ALIGN) for r in range(n)] + [trained]
        self.shares = [slice(a, b) for a, b in zip(cuts, cuts[1:])]
        self.mixed = np.empty(PIECE, np.float32)  # a piece of the mixed gradient (see step)
        self.counters = shared_empty((n + 1) * LINE, np.int64)  # one per rank, then "stop"
        self.numbers = shared_empty(n + 1, np.float64)  # each rank's loss, then the learning rate
        self.outputs = shared_empty((batch_size, n_outputs))
        self.error = shared_empty((n, 4000), np.uint8)  # each failed helper's message, NUL-terminated
        # per helper, 0: its message is a traceback; else the exit code of the MlpError it is of
        self.error_code = shared_empty(n, np.int64)
        combined = [layer for layer in model.layers if layer.combines_batches]
        for layer in combined:
            layer.all_sum = self.all_sum
        width = max((layer.sums_width for layer in combined), default=0)
        self.sums = shared_empty((2, n, width), np.float64)
        self.rank = 0
        self.sums_done = 0
        self.parent = None
        self.pids = []
        self.tick = 0

    # ---------------------------------------------------------------- processes

    @contextlib.contextmanager
    def running(self, work):
        """Fork the helpers, each running ``work(rank)`` (its part of the epoch's steps), for
        the length of the context; on leaving, wait for them (stopping them first when the
        context ends by an exception)."""
        self.counters[:] = 0
        self.tick = 0
        self.sums_done = 0
        self.error[:, 0] = 0
        self.error_code[:] = 0
        self.parent, self.pids, self.pids_ranks = os.getpid(), [], {}
        try:
            for rank in range(1, self.n):
                self.pids.append(self._fork(rank, work))
                self.pids_ranks[self.pids[-1]] = rank
            yield self
        except BaseException:
            self.counters[self.n * LINE] = 1
            self._reap(check=False)  # the exception that ended the epoch is the one to report
            raise
        self._reap()

    def _fork(self, rank, work):
        """Start helper ``rank``; its pid."""
        try:
            with warnings.catch_warnings():
                # Python 3.12+ warns of fork beside threads (a progress bar's): the helper
                # runs nothing but numpy on its own data and leaves by os._exit
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except OSError as exc:
            raise TrainingError(f"could not start training process {rank + 1} of {self.n}: {exc}") from None
        if pid == 0:
            self._helper(rank, work)
        return pid

    def _helper(self, rank, work):
        """The body of a forked helper; never returns."""
        status = 0
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):  # the parent's to handle: it stops the helpers
                signal.signal(sig, signal.SIG_IGN)
            self.rank = rank
            self.model.use_buffers(grads=self.grads[rank])
            work(rank)
        except Stopped:
            pass
        except MlpError as exc:  # the user's data or files: told in one line, as this process would
            self._record(rank, str(exc), keep="start")
            self.error_code[rank] = exc.exit_code
            status = 1
        except BaseException:
            self._record(rank, traceback.format_exc(), keep="end")
            status = 1
        finally:
            os._exit(status)

    def _record(self, rank, message, keep):
        """Leave ``message`` for the parent in helper ``rank``'s slot; one too long for it keeps
        its ``keep`` ("start": a one-line error, its path first; "end": a traceback's last call).
        Undecodable bytes of paths go through as they were (surrogateescape)."""
        data, room = message.encode("utf-8", "surrogateescape"), self.error.shape[1] - 1
        text = data[:room] if keep == "start" else data[-room:]
        self.error[rank, :len(text)] = np.frombuffer(text, np.uint8)
        self.error[rank, len(text)] = 0

    def _failure(self, what, rank):
        """The error to raise for helper ``rank``, which failed: its own MlpError, one line as
        it was, or a TrainingError saying ``what`` with the helper's traceback."""
        if self.error_code[rank]:
            error = MlpError(self._error_text(rank))
            error.exit_code = int(self.error_code[rank])
            return error
        return TrainingError(f"{what}:\n{self._error_text(rank)}")

    def _reap(self, check=True):
        """Wait for every helper; if one failed (and ``check``), raise the first one's error."""
        failed = None
        for pid in self.pids:
            _, status = os.waitpid(pid, 0)
            if failed is None and os.waitstatus_to_exitcode(status) != 0:
                failed = self.pids_ranks[pid]
        self.pids = []
        if failed is not None and check:
            raise self._failure("a training process failed", failed)

    def _error_text(self, rank):
        raw = self.error[rank].tobytes()
        return raw[:raw.index(0)].decode("utf-8", "surrogateescape").strip() or "(it left no message)"

    def _check_partners(self, rank):
        """While waiting: a helper whose parent is gone stops; the parent raises when a helper died."""
        if rank:
            if os.getppid() != self.parent or self.counters[self.n * LINE]:
                raise Stopped
            return
        for pid in list(self.pids):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                self.pids.remove(pid)
                code = os.waitstatus_to_exitcode(status)
                if code == 0 and self.counters[self.pids_ranks[pid] * LINE] >= self.tick:
                    continue  # it passed the epoch's last meeting point, which this process is leaving
                self.counters[self.n * LINE] = 1
                raise self._failure(f"a training process ended (exit status {code}) during the epoch",
                                    self.pids_ranks[pid])

    def wait(self, rank):
        """Arrive at the next meeting point; return when every process has arrived."""
        self.tick += 1
        counters = self.counters
        counters[rank * LINE] = self.tick
        spins = 0
        for other in range(self.n):
            while counters[other * LINE] < self.tick:
                spins += 1
                if spins % SPINS_PER_CHECK == 0:
                    self._check_partners(rank)
                if spins > SPINS_BEFORE_YIELD:
                    os.sched_yield()

    # ---------------------------------------------------------------- one step

    def step(self, rank, x, targets, idx, loss, optimizer, buffers, lr=None, outputs=None, weights=None):
        """This process's part of one training step on the batch of rows ``idx``.

        ``targets``: a ``losses.BatchTargets`` of the training targets; ``buffers``: (x, y)
        arrays of at least a share's rows, reused every step.
        Rank 0 passes ``lr`` and ``outputs`` (where the batch's predictions go) and gets
        the batch's loss; helpers pass neither and get None. ``weights``: every training
        sample's weight (None: 1 each); a share's loss is over the whole batch's size, so the
        row-weighted mix of the shares is the one-process value.
        """
        total = len(idx)
        cuts = [total * r // self.n for r in range(self.n + 1)]
        start, stop = cuts[rank], cuts[rank + 1]
        if rank == 0:
            self.numbers[self.n] = lr
        if stop > start or self.model.needs_every_share:
            xb, yb = buffers[0][:stop - start], buffers[1][:stop - start]
            x.take(idx[start:stop], xb)
            targets.take(idx[start:stop], yb)
            if weights is not None:
                loss = loss.weighted(weights[idx[start:stop]])
            with contextlib.ExitStack() as quiet:
                if stop == start:  # the mean loss of no rows is NaN, and unused
                    quiet.enter_context(np.errstate(invalid="ignore", divide="ignore"))
                    quiet.enter_context(warnings.catch_warnings())
                    warnings.simplefilter("ignore", RuntimeWarning)
                value, y_pred = self.model.gradients(xb, yb, loss, rows=(start, stop, total))
            self.outputs[start:stop] = y_pred.reshape(stop - start, self.outputs.shape[1])
            self.numbers[rank] = value
        else:
            self.model.skip_dropout(total)
        self.wait(rank)  # every share's gradients are in
        weights = [(b - a) / total for a, b in zip(cuts, cuts[1:])]
        value = None
        if rank == 0:
            value = sum(w * float(v) for w, v in zip(weights, self.numbers[:self.n]) if w)
            outputs[...] = self.outputs[:total]
        share = self.shares[rank]
        # a piece at a time, mixed then updated while the piece is in the cache
        optimizer.apply_in_pieces(self.model.flat_params[share], lambda piece: self._mixed_gradient(piece, weights),
                                  float(self.numbers[self.n]), share)
        self.wait(rank)  # every share of the weights is updated
        return value

    def all_sum(self, values):
        """The sum over the processes of each one's ``values`` (float64, 1-D), the same in every one."""
        table = self.sums[self.sums_done % 2]
        self.sums_done += 1
        table[self.rank, :values.size] = values
        self.wait(self.rank)
        return table[:, :values.size].sum(axis=0)

    def _mixed_gradient(self, share, weights):
        """The batch's gradient on ``share`` (at most ``PIECE`` values): the row-weighted mean of
        the processes' gradients."""
        mixed = self.mixed[:share.stop - share.start]
        used = [(w, g[share]) for w, g in zip(weights, self.grads) if w]
        if len(used) == 1:
            return used[0][1]
        if len({w for w, _ in used}) == 1:  # equal shares: sum, then one scaling
            np.add(used[0][1], used[1][1], out=mixed)
            for _, g in used[2:]:
                mixed += g
            mixed *= np.float32(1 / len(used))
            return mixed
        np.multiply(used[0][1], np.float32(used[0][0]), out=mixed)
        for w, g in used[1:]:
            mixed += g * np.float32(w)
        return mixed
