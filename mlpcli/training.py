"""The training loop: epochs of shuffled mini-batches, validation, early stopping.

``Trainer`` owns everything that changes while a model trains (optimizer
slots, schedule, step and epoch counters, random streams) so that it can be
checkpointed as a whole. It never prints: progress goes through callbacks.
"""

import contextlib
import math
import os
from dataclasses import dataclass

import numpy as np

from mlpcli.data.features import Features
from mlpcli.errors import ConfigError, TrainingError
from mlpcli.nn import losses as losses_mod
from mlpcli.nn import metrics as metrics_mod
from mlpcli.nn import optimizers as optimizers_mod
from mlpcli.nn import schedules as schedules_mod
from mlpcli.nn.denormals import flush_denormals
from mlpcli.nn.metrics import higher_is_better
from mlpcli.nn.layers import Dense
from mlpcli.nn.model import Sequential, output_shapes, predict_chunk_bytes
from mlpcli.parallel import DataParallel, shared_empty_like, usable_processes


def blas_threads(n):
    """A context in which BLAS uses at most ``n`` threads (``None``: the library's default).

    threadpoolctl is the one portable way to change this once numpy (and its
    OpenBLAS or MKL) is loaded; environment variables only work before that.
    """
    if n is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n, user_api="blas")


def random_streams(seed):
    """Independent generators for weights, dropout, shuffling and the validation split."""
    init, dropout, shuffle, split = np.random.SeedSequence(seed).spawn(4)
    return {name: np.random.default_rng(s) for name, s in
            (("init", init), ("dropout", dropout), ("shuffle", shuffle), ("split", split))}


FLOAT32_BYTES = 4
# float32 arrays per row of a batch for each value a layer outputs: forward keeps the
# pre-activation and the output, backward makes the gradient and a temporary
ARRAYS_PER_ACTIVATION = 4
# per row of the model's input: the float32 batch and the stored samples gathered for it
ARRAYS_PER_INPUT = 2


def machine_memory():
    """Bytes of physical memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@dataclass
class MemoryNeed:
    """What training a model takes, worked out from its config (sizes in bytes)."""

    widths: list  # values per sample: the input's, then each layer's output's
    weights: int  # how many
    for_weights: int  # the weights and what goes with them
    per_row: int  # a row of a training batch: its activations and gradients
    rows: int  # in a training batch
    for_batch_outputs: int  # the outputs of a whole batch that several processes share
    for_inference: int  # a batch of Sequential.predict (evaluation)

    def total(self):
        return self.for_weights + self.rows * self.per_row + self.for_batch_outputs + self.for_inference

    def for_model(self):
        """With a batch of one row: what no batch size makes smaller."""
        return self.for_weights + self.per_row + self.for_inference


def memory_needed(cfg, model, data_rows):
    """The ``MemoryNeed`` of training ``model``, the unbuilt Sequential of ``cfg``, on
    ``data_rows`` samples.

    Counted per weight: the weight, its gradient and the optimizer's scratch; the optimizer
    slots and the snapshot of them that saving a checkpoint takes; the best weights early
    stopping keeps; a gradient and a scratch share for each further process. Per row of a
    batch (at most the data's rows; each further process gathers its own): the input as
    gathered and scaled, and every layer's activations and gradients. With several processes,
    the shared outputs of a batch of ``batch_size`` rows. Evaluation's batches on top.
    """
    widths = [math.prod(model.input_shape)] + [math.prod(shape) for shape in
                                               output_shapes(model.layers, model.input_shape)]
    weights = sum(widths[i] * layer.config["units"] + (layer.config["units"] if layer.config["use_bias"] else 0)
                  for i, layer in enumerate(model.layers) if isinstance(layer, Dense))
    processes = usable_processes(cfg["training"]["processes"])
    slots = len(make_optimizer(cfg).slot_names)
    es = cfg["early_stopping"]
    per_weight = 3 + 2 * slots + (1 if es and es["restore_best_weights"] else 0) + 2 * (processes - 1)
    batch_size = cfg["training"]["batch_size"]
    per_row = ARRAYS_PER_INPUT * widths[0] * processes + ARRAYS_PER_ACTIVATION * sum(widths[1:]) + widths[-1]
    shared_outputs = batch_size * widths[-1] if processes > 1 else 0
    return MemoryNeed(widths, weights, weights * per_weight * FLOAT32_BYTES, per_row * FLOAT32_BYTES,
                      min(batch_size, data_rows), shared_outputs * FLOAT32_BYTES, predict_chunk_bytes(widths))


def check_memory(cfg, model, data_rows=1):
    """Refuse a config whose training on ``data_rows`` samples could not fit in this machine's
    memory, before it is allocated: the key to change (the batch size when a batch of one
    would fit, else the widest layer), what training would need and what there is.
    ``build_model`` checks the model itself (a batch of one), ``train`` again once it knows the data's rows."""
    need = memory_needed(cfg, model, data_rows)
    memory = machine_memory()
    if need.total() <= memory:
        return
    if need.for_model() <= memory:
        raise ConfigError(f"training.batch_size: {_count(cfg['training']['batch_size'])} is too large: a batch "
                          f"of {_count(need.rows)} rows needs about {_gib(need.total() - need.for_model())} for "
                          f"its activations and gradients (training {_gib(need.total())} in all), and this "
                          f"machine has {_gib(memory)}; use a smaller batch_size")
    largest = max((i for i, layer in enumerate(model.layers) if isinstance(layer, Dense)),
                  key=lambda i: need.widths[i] * model.layers[i].config["units"])
    raise ConfigError(f"model.layers[{largest}].units: the model is too large: {_count(need.weights)} weights need "
                      f"about {_gib(need.for_model())} to train (with their gradients, optimizer state and "
                      f"its saved copy, and a batch of one), and this machine has {_gib(memory)}")


def _gib(size):
    """``1.5 GiB``; ``10^23 GiB`` (order of magnitude) for sizes no float holds."""
    if size < 2**30 * 10**6:
        return f"{size / 2**30:,.1f} GiB"
    return f"10^{len(str(size // 2**30)) - 1} GiB"


def _count(n):
    return f"{n:,}" if n < 10**15 else f"about 10^{len(str(n)) - 1}"


def make_optimizer(cfg):
    """The optimizer a resolved config describes, not yet built."""
    spec = dict(cfg["optimizer"])
    return optimizers_mod.get(spec.pop("type"))(**spec)


def build_model(cfg, streams):
    """The Sequential model described by a resolved config, with fresh weights.

    A model whose training could not fit in this machine's memory is refused
    before anything is allocated.
    """
    model = Sequential(cfg["model"]["layers"], cfg["model"]["input_shape"], name=cfg["model"]["name"])
    check_memory(cfg, model)
    try:
        model.build(streams["init"], streams["dropout"])
    except MemoryError:
        raise ConfigError("model.layers: the model is too large to allocate") from None
    for i, layer in enumerate(model.layers):
        for name, weights in zip(layer.weight_names, layer.params):
            if not np.isfinite(weights).all():  # e.g. random_normal with stddev 1e38 overflows float32
                raise ConfigError(f"model.layers[{i}].{name}_initializer: gives weights that are not finite "
                                  f"in float32 ({layer.config[name + '_initializer']}); use smaller values")
    return model


@dataclass
class EpochProgress:
    """Where an epoch stands: its shuffled order and what the done batches gave."""

    order: np.ndarray  # int64 (n,)
    outputs: np.ndarray  # float32 (n, outputs); rows of done batches are filled
    batch: int = 0  # batches done
    total_loss: float = 0.0
    correct: int = 0


class EpochPaused(Exception):
    """The epoch stopped between batches because a stop was requested."""

    def __init__(self, done, total):
        super().__init__(f"paused after batch {done} of {total}")
        self.done, self.total = done, total


class Trainer:
    """Trains ``model`` on (x, y) one epoch at a time."""

    def __init__(self, model, cfg, streams, steps_per_epoch=None):
        """``steps_per_epoch``: batches in an epoch, which a schedule over the whole run
        (cosine_decay without decay_steps) needs."""
        self.model = model
        self.loss = losses_mod.get(cfg["loss"])
        self.optimizer = make_optimizer(cfg)
        # clipnorm clips each weight array by its own norm, so it needs them one by one
        self.flat = not self.optimizer.clipnorm
        self.batch_size = cfg["training"]["batch_size"]
        # the clipping norms need the whole gradient, which no one process of several has
        processes = 1 if self.optimizer.clipnorm or self.optimizer.global_clipnorm else \
            usable_processes(cfg["training"]["processes"])
        self.parallel = None
        if processes > 1:
            self.parallel = DataParallel(model, processes, self.batch_size, model.n_outputs)
            self.optimizer.build([model.flat_params], empty_like=shared_empty_like)
        else:
            self.optimizer.build([model.flat_params] if self.flat else model.params)
        sched_spec = dict(cfg["schedule"])
        run_steps = cfg["training"]["epochs"] * steps_per_epoch if steps_per_epoch else None
        self.schedule = schedules_mod.get(sched_spec.pop("type"))(
            self.optimizer.learning_rate, run_steps, **sched_spec)
        self.metric_specs = cfg["metrics"]
        self.shuffle = cfg["training"]["shuffle"]
        self.shuffle_rng = streams["shuffle"]
        self.epoch = 0  # epochs completed
        self.step = 0  # batches completed
        self.progress = None  # the epoch under way, when paused

    @property
    def learning_rate(self):
        return self.schedule(self.step, self.epoch)

    def targets(self, y):
        return losses_mod.encode_targets(self.loss, y, self.model.n_outputs)

    def run_epoch(self, x, y, on_batch=None, stop_requested=None):
        """Train one epoch on x (float32 array or ``Features``, (n, *input_shape)) and raw
        targets y; return its logs.

        ``on_batch(done, total, running)`` is called after every batch with the
        running mean loss (and accuracy, when it is a metric) of the epoch so far.
        When ``stop_requested()`` turns true, the epoch pauses after the current
        batch (``self.progress`` keeps its place) and ``EpochPaused`` is raised;
        the next call continues where it stopped.
        """
        with flush_denormals():  # see nn/denormals.py: subnormal Adam moments cost ~20% per epoch
            x = Features.wrap(x)
            if self.progress is None:
                n = len(x)
                order = self.shuffle_rng.permutation(n) if self.shuffle else np.arange(n)
                self.progress = EpochProgress(order, np.empty((n, self.model.n_outputs), np.float32))
            y_enc = self.targets(y)
            if self.parallel is None:
                return self._run_epoch(x, y, y_enc, on_batch, stop_requested)
            # one BLAS thread per process: the processes are the parallelism
            with blas_threads(1), self.parallel.running(lambda rank: self._helper_epoch(rank, x, y_enc)):
                return self._run_epoch(x, y, y_enc, on_batch, stop_requested)

    def _batches(self):
        """(batch number, its rows) of the epoch's batches not done yet."""
        p = self.progress
        for b in range(p.batch, math.ceil(len(p.order) / self.batch_size)):
            yield b, p.order[b * self.batch_size:(b + 1) * self.batch_size]

    def _buffers(self, x, y_enc):
        """Float32 arrays a batch is gathered into, reused every step (no batch has more
        rows than the data)."""
        rows = min(self.batch_size, len(x))
        return (np.empty((rows,) + x.shape[1:], np.float32), np.empty((rows,) + y_enc.shape[1:], y_enc.dtype))

    def _helper_epoch(self, rank, x, y_enc):
        """A helper process's part of the epoch (see mlpcli/parallel.py)."""
        buffers = self._buffers(x, y_enc)
        for _, idx in self._batches():
            self.parallel.step(rank, x, y_enc, idx, self.loss, self.optimizer, buffers)

    def _run_epoch(self, x, y, y_enc, on_batch, stop_requested):
        p = self.progress
        n = len(x)
        n_batches = math.ceil(n / self.batch_size)
        track_accuracy = on_batch is not None and any(m["type"] == "accuracy" for m in self.metric_specs)
        x_buf, y_buf = buffers = self._buffers(x, y_enc)
        for b, idx in self._batches():
            start = b * self.batch_size
            y_pred = p.outputs[start:start + len(idx)]
            if self.parallel is None:
                xb, yb = x_buf[:len(idx)], y_buf[:len(idx)]
                x.take(idx, xb)
                np.take(y_enc, idx, axis=0, out=yb)
                value, out = self.model.train_step(xb, yb, self.loss, self.optimizer, self.learning_rate,
                                                   flat=self.flat)
                y_pred[...] = out.reshape(len(idx), -1)
            else:
                value = self.parallel.step(0, x, y_enc, idx, self.loss, self.optimizer, buffers,
                                           self.learning_rate, y_pred)
            if not math.isfinite(value):
                raise TrainingError(f"loss became {value} in epoch {self.epoch + 1}, batch {b + 1}; "
                                    f"training stopped ({self._non_finite_hint()})")
            p.total_loss += value * len(idx)
            p.batch = b + 1
            self.step += 1
            if on_batch:
                seen = min(n, p.batch * self.batch_size)
                running = {"loss": p.total_loss / seen}
                if track_accuracy:
                    p.correct += int((metrics_mod.predicted_classes(y_pred) == y[idx]).sum())
                    running["accuracy"] = p.correct / seen
                on_batch(p.batch, n_batches, running)
            if stop_requested is not None and stop_requested() and p.batch < n_batches:
                raise EpochPaused(p.batch, n_batches)
        logs = {"loss": p.total_loss / n}
        logs.update(metrics_mod.compute(self.metric_specs, y[p.order], p.outputs))
        self.progress = None
        return logs

    def _non_finite_hint(self):
        """What to change when the loss is not finite."""
        if self.loss.name in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
            last = next(layer for layer in reversed(self.model.layers) if hasattr(layer, "activation"))
            if last.activation.name != "softmax":
                # Keras's formula divides by the outputs' sum, which is 0 for some rows of these
                return (f"{self.loss.name} needs probabilities, but the model's last activation is "
                        f"'{last.activation.name}' (layer {last.name}); end the model with activation: softmax")
        return "try a lower learning rate or gradient clipping"

    def get_state(self):
        """(JSON-able state, arrays) of everything but the weights and optimizer slots."""
        state = {"epoch": self.epoch, "step": self.step,
                 "shuffle_rng": self.shuffle_rng.bit_generator.state,
                 "dropout_rngs": [layer.rng.bit_generator.state for layer in self._dropouts()],
                 "schedule": self.schedule.get_state(), "progress": None}
        arrays = {}
        if self.progress is not None:
            p = self.progress
            state["progress"] = {"batch": p.batch, "total_loss": p.total_loss, "correct": p.correct}
            arrays = {"progress/order": p.order, "progress/outputs": p.outputs[:p.batch * self.batch_size]}
        return state, arrays

    def set_state(self, state, arrays):
        self.epoch, self.step = state["epoch"], state["step"]
        self.shuffle_rng.bit_generator.state = state["shuffle_rng"]
        for layer, rng_state in zip(self._dropouts(), state["dropout_rngs"], strict=True):
            layer.rng.bit_generator.state = rng_state
        self.schedule.set_state(state["schedule"])
        progress = state.get("progress")
        if progress:
            order = arrays["progress/order"].astype(np.int64)
            outputs = np.empty((len(order), self.model.n_outputs), np.float32)
            done = arrays["progress/outputs"]
            outputs[:len(done)] = done
            self.progress = EpochProgress(order, outputs, progress["batch"], progress["total_loss"],
                                          progress["correct"])

    def _dropouts(self):
        return [layer for layer in self.model.layers if hasattr(layer, "rng")]

    def evaluate(self, x, y):
        """Loss (with penalties) and metrics on (x, y), dropout off."""
        y_pred = self.model.predict(x).reshape(x.shape[0], -1)
        penalty = self.model.weight_penalty() + self.model.predict_activity_penalty
        logs = {"loss": self.loss.value(self.targets(y), y_pred) + penalty}
        logs.update(metrics_mod.compute(self.metric_specs, y, y_pred))
        return logs

    def end_epoch(self, logs):
        self.epoch += 1
        self.schedule.on_epoch_end(self.epoch, logs)

    def weights_finite(self):
        return all(np.isfinite(p).all() for p in self.model.params)


class Monitor:
    """Tracks the best value of a logged quantity (``val_loss``, ``accuracy``, ...)."""

    def __init__(self, name, mode="auto", min_delta=0.0):
        self.name = name
        self.higher = higher_is_better(name, mode)
        self.min_delta = min_delta
        self.best = None
        self.best_epoch = None

    def improved(self, value):
        if self.best is None:
            return True
        if self.higher:
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def update(self, epoch, logs):
        """Record ``logs[name]`` for ``epoch``; True when it is a new best."""
        value = logs.get(self.name)
        if value is None or not self.improved(value):
            return False
        self.best, self.best_epoch = value, epoch
        return True

    def get_state(self):
        return {"best": self.best, "best_epoch": self.best_epoch}

    def set_state(self, state):
        self.best, self.best_epoch = state["best"], state["best_epoch"]


class EarlyStopping:
    """Stop after ``patience`` epochs without improvement; optionally keep the best weights."""

    def __init__(self, model, monitor, patience, min_delta=0.0, mode="auto",
                 restore_best_weights=False):
        self.model = model
        self.monitor = Monitor(monitor, mode, min_delta)
        self.patience = patience
        self.restore_best_weights = restore_best_weights
        self.wait = 0
        self.best_weights = None

    def should_stop(self, epoch, logs):
        if self.monitor.update(epoch, logs):
            self.wait = 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return False
        self.wait += 1
        return self.wait >= self.patience

    def get_state(self):
        """(JSON-able state, arrays): the wait, the monitor and the best weights kept."""
        arrays = {f"best_weights/{i}": w for i, w in enumerate(self.best_weights or [])}
        return {"wait": self.wait, "monitor": self.monitor.get_state()}, arrays

    def set_state(self, state, arrays):
        self.wait = state["wait"]
        self.monitor.set_state(state["monitor"])
        kept = sorted((int(k.split("/")[1]), v) for k, v in arrays.items() if k.startswith("best_weights/"))
        self.best_weights = [v.astype(np.float32) for _, v in kept] or None

    def restore(self):
        """Put the best epoch's weights back (when asked for and known)."""
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
            return True
        return False
