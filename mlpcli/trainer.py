"""The training engine: one epoch of shuffled mini-batches at a time, and validation.

``Trainer`` owns everything that changes while a model trains (optimizer
slots, schedule, step and epoch counters, random streams) so that it can be
checkpointed as a whole. It never prints and never decides when to stop: the loop
in ``mlpcli.fit_loop`` runs it epoch by epoch and calls the callbacks.
"""

import contextlib
import math
from dataclasses import dataclass

import numpy as np

from mlpcli.data.features import Features
from mlpcli.errors import ConfigError
from mlpcli.nn import losses as losses_mod
from mlpcli.nn import metrics as metrics_mod
from mlpcli.nn import optimizers as optimizers_mod
from mlpcli.nn import schedules as schedules_mod
from mlpcli.nn.denormals import flush_denormals
from mlpcli.nn.model import Sequential
from mlpcli.parallel import DataParallel, shared_empty_like, usable_processes
from mlpcli.training_memory import check_memory


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


# where a resume state written before EpochMetrics holds the done batches' outputs
EARLIER_OUTPUTS = "progress/outputs"


@dataclass
class EpochProgress:
    """Where an epoch stands: its shuffled order and what the done batches gave."""

    order: np.ndarray  # int64 (n,)
    metrics: metrics_mod.EpochMetrics  # over the done batches
    batch: int = 0  # batches done
    total_loss: float = 0.0
    # outputs of the done batches from a resume state written before EpochMetrics (which
    # kept the epoch's outputs): counted into ``metrics`` when the epoch goes on
    earlier_outputs: np.ndarray | None = None


class EpochPaused(Exception):
    """The epoch stopped between batches because a stop was requested."""

    def __init__(self, done, total):
        super().__init__(f"paused after batch {done} of {total}")
        self.done, self.total = done, total


class Trainer:
    """Trains ``model`` on (x, y) one epoch at a time."""

    def __init__(self, model, cfg, streams, steps_per_epoch=None, sample_weights=None, augmenter=None):
        """``steps_per_epoch``: batches in an epoch, which a schedule over the whole run
        (cosine_decay without decay_steps) needs; ``sample_weights``: float32 (n,), each
        training sample's weight in the loss (None: 1 each), as Keras's ``sample_weight``;
        ``augmenter``: an ``mlpcli.data.augment.Augmenter`` for the training images (None: none)."""
        self.model = model
        self.augmenter = augmenter
        self.loss = losses_mod.from_spec(cfg["loss"])
        self.sample_weights = sample_weights
        self.optimizer = optimizers_mod.from_config(cfg["optimizer"])
        # clipnorm clips each weight array by its own norm, so it needs them one by one
        self.flat = not self.optimizer.clipnorm
        self.batch_size = cfg["training"]["batch_size"]
        # the clipping norms need the whole gradient, which no one process of several has
        processes = 1 if self.optimizer.clipnorm or self.optimizer.global_clipnorm else \
            usable_processes(cfg["training"]["processes"])
        self.parallel = None
        if processes > 1:
            self.parallel = DataParallel(model, processes, self.batch_size, model.n_outputs)
            self.optimizer.build([model.trainable_flat_params], empty_like=shared_empty_like)
        else:  # frozen layers' weights are not the optimizer's (see Sequential._packed_layers)
            self.optimizer.build([model.trainable_flat_params] if self.flat else model.trainable_params)
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

        ``on_batch(done, running)`` is called after every batch with the running mean
        loss (and accuracy, when it is a metric) of the epoch so far; it may raise to
        end the epoch (the NaN guard does, on a loss that is not finite).
        When ``stop_requested()`` turns true, the epoch pauses after the current
        batch (``self.progress`` keeps its place) and ``EpochPaused`` is raised;
        the next call continues where it stopped.
        """
        with flush_denormals():  # see nn/denormals.py: subnormal Adam moments cost ~20% per epoch
            x = Features.wrap(x)
            if self.augmenter is not None:  # before the helpers fork, so that they augment as this process does
                x = self.augmenter.features(x, self.epoch)
            if self.progress is None:
                n = len(x)
                order = self.shuffle_rng.permutation(n) if self.shuffle else np.arange(n)
                self.progress = EpochProgress(order, self._epoch_metrics())
            targets = losses_mod.BatchTargets(self.loss, y, self.model.n_outputs)
            if self.parallel is None:
                return self._run_epoch(x, y, targets, on_batch, stop_requested)
            # one BLAS thread per process: the processes are the parallelism
            with blas_threads(1), self.parallel.running(lambda rank: self._helper_epoch(rank, x, targets)):
                return self._run_epoch(x, y, targets, on_batch, stop_requested)

    def _epoch_metrics(self, state=None):
        return metrics_mod.EpochMetrics(self.metric_specs, self.model.n_outputs, state)

    def _batches(self):
        """(batch number, its rows) of the epoch's batches not done yet."""
        p = self.progress
        for b in range(p.batch, math.ceil(len(p.order) / self.batch_size)):
            yield b, p.order[b * self.batch_size:(b + 1) * self.batch_size]

    def _buffers(self, x, targets):
        """Arrays a batch is gathered into, reused every step (no batch has more rows than
        the data)."""
        rows = min(self.batch_size, len(x))
        return (np.empty((rows,) + x.shape[1:], np.float32),
                np.empty((rows,) + targets.row_shape, targets.dtype))

    def _helper_epoch(self, rank, x, targets):
        """A helper process's part of the epoch (see mlpcli/parallel.py)."""
        buffers = self._buffers(x, targets)
        for _, idx in self._batches():
            self.parallel.step(rank, x, targets, idx, self.loss, self.optimizer, buffers,
                               weights=self.sample_weights)

    def _run_epoch(self, x, y, targets, on_batch, stop_requested):
        p = self.progress
        n = len(x)
        n_batches = math.ceil(n / self.batch_size)
        if p.earlier_outputs is not None:
            p.metrics.add(y[p.order[:len(p.earlier_outputs)]], p.earlier_outputs)
            p.earlier_outputs = None
        track_accuracy = on_batch is not None and any(m["type"] == "accuracy" for m in self.metric_specs)
        x_buf, y_buf = buffers = self._buffers(x, targets)
        y_pred = np.empty((min(self.batch_size, n), self.model.n_outputs), np.float32)
        for b, idx in self._batches():
            batch_pred = y_pred[:len(idx)]
            if self.parallel is None:
                xb, yb = x_buf[:len(idx)], y_buf[:len(idx)]
                x.take(idx, xb)
                targets.take(idx, yb)
                loss = self.loss if self.sample_weights is None else self.loss.weighted(self.sample_weights[idx])
                value, out = self.model.train_step(xb, yb, loss, self.optimizer, self.learning_rate,
                                                   flat=self.flat)
                batch_pred[...] = out.reshape(len(idx), -1)
            else:
                value = self.parallel.step(0, x, targets, idx, self.loss, self.optimizer, buffers,
                                           self.learning_rate, batch_pred, weights=self.sample_weights)
            p.metrics.add(y[idx], batch_pred)
            p.total_loss += value * len(idx)
            p.batch = b + 1
            self.step += 1
            if on_batch:
                seen = min(n, p.batch * self.batch_size)
                running = {"loss": p.total_loss / seen}
                if track_accuracy:
                    running["accuracy"] = p.metrics.value("accuracy")
                on_batch(p.batch, running)
            if stop_requested is not None and stop_requested() and p.batch < n_batches:
                raise EpochPaused(p.batch, n_batches)
        logs = {"loss": p.total_loss / n}
        logs.update(p.metrics.values())
        self.progress = None
        return logs

    def get_state(self):
        """(JSON-able state, arrays) of everything but the weights and optimizer slots."""
        state = {"epoch": self.epoch, "step": self.step,
                 "shuffle_rng": self.shuffle_rng.bit_generator.state,
                 "dropout_rngs": [layer.rng.bit_generator.state for layer in self._dropouts()],
                 "schedule": self.schedule.get_state(), "progress": None}
        arrays = {}
        if self.progress is not None:
            p = self.progress
            state["progress"] = {"batch": p.batch, "total_loss": p.total_loss}
            arrays = {"progress/order": p.order}
            arrays.update({f"progress/metrics/{name}": value for name, value in p.metrics.state().items()})
            if p.earlier_outputs is not None:
                arrays[EARLIER_OUTPUTS] = p.earlier_outputs
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
            prefix = "progress/metrics/"
            earlier = arrays.get(EARLIER_OUTPUTS)  # (then there are no sums: they are counted from it)
            metrics = self._epoch_metrics(None if earlier is not None else
                                          {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
            self.progress = EpochProgress(order, metrics, progress["batch"], progress["total_loss"], earlier)

    def _dropouts(self):
        return [layer for layer in self.model.layers if hasattr(layer, "rng")]

    def evaluate(self, x, y):
        """Loss (with penalties) and metrics on (x, y), dropout off."""
        y_pred = self.model.predict(x).reshape(x.shape[0], -1)
        penalty = self.model.weight_penalty() + self.model.predict_activity_penalty
        logs = {"loss": self.loss.value(self.targets(y), y_pred) + penalty}
        logs.update(metrics_mod.compute(self.metric_specs, y, y_pred))
        return logs

    @property
    def epoch_learning_rate(self):
        """The rate of the first batch of the epoch about to run or under way (history.csv's lr)."""
        done = self.progress.batch if self.progress else 0
        return self.schedule(self.step - done, self.epoch)

    def end_epoch(self):
        self.epoch += 1

    def weights_finite(self):
        return all(np.isfinite(p).all() for p in self.model.params)
