"""The reference training loops bench_train.py measures mlpcli against: PyTorch and JAX on CPU.

Each trains the config's model (its dense layers, ReLU, dropout and softmax output; the
initial weights drawn as each library does by default), with
the config's Adam (learning rate, betas, epsilon) and per-step learning-rate schedule (the
schedule object mlpcli itself builds), batch size and epochs, and validates after every
epoch (loss and accuracy, dropout off, in mlpcli's inference batches), as `mlp train` does.
Both handle the data as a careful user of that library would, and as mlpcli does: the
features stay uint8 as stored; each epoch draws a seeded permutation of the sample indices
and slices it per batch; each batch is gathered by indexing and scaled to float32 there.

- PyTorch: `torch.set_num_threads(threads)`, a `torch.randperm` index tensor (seeded
  generator) sliced per batch, `x[idx].float().mul_(scale)`; no DataLoader(TensorDataset),
  which fetches and stacks one sample at a time.
- JAX: the whole training step (gather and scale, forward, loss, gradient, Adam written out,
  the dropout key's split) is one `jax.jit` function with the parameters and moments donated
  (updated in place); the uint8 data lives in a device array passed to it whole with the
  batch's index slice. XLA's CPU runtime uses its own thread pool over all cores. The first
  epoch compiles (twice: a full and the last, shorter batch); bench_train.py times the
  epochs after it.

torch (`pip install torch==2.13.0`, the CPU build) and jax (`pip install "jax[cpu]"`) are
imported only by their loop; neither is a dependency of mlpcli.
"""

import math
import time
from dataclasses import dataclass

import numpy as np


@dataclass
class Reference:
    """What a reference loop needs of a config and its data (see ``from_config``)."""

    layers: list  # ("dense", units) / ("relu", None) / ("dropout", rate), in order; softmax is in the loss
    n_inputs: int
    optimizer: object  # mlpcli's Adam, for its hyperparameters
    schedule: object  # mlpcli's per-step schedule: schedule(step, epoch) -> learning rate
    batch: int
    seed: int
    train: tuple  # (uint8 (n, n_inputs), int64 (n,))
    val: tuple
    scale: np.ndarray  # float32, a scalar or per feature
    offset: np.ndarray
    eval_rows: int  # samples per validation batch, as mlpcli's predict takes them


def from_config(cfg, data):
    """The Reference of resolved config ``cfg`` and its ``TrainingData`` (features as ``Features``)."""
    from mlpcli.nn import optimizers as optimizers_mod
    from mlpcli.nn import schedules as schedules_mod
    from mlpcli.nn.model import predict_rows

    layers = []
    for spec in cfg["model"]["layers"]:
        kind = spec["type"]
        activation = spec.get("activation") if kind in ("dense", "activation") else None
        if kind == "dense":
            layers.append(("dense", spec["units"]))
        elif kind == "dropout":
            layers.append(("dropout", spec["rate"]))
        elif kind != "activation":
            raise SystemExit(f"the reference loops build dense, activation and dropout layers, not {kind}")
        if activation == "relu":
            layers.append(("relu", None))
        elif activation not in (None, "linear", "softmax"):
            raise SystemExit(f"the reference loops know relu and softmax, not {activation}")
    optimizer = optimizers_mod.from_config(cfg["optimizer"])
    if cfg["optimizer"]["type"] != "adam" or optimizer.amsgrad:
        raise SystemExit("the reference loops train with Adam (without amsgrad)")
    (x, y), (x_val, y_val) = data.train, data.val
    n_inputs = math.prod(x.shape[1:])
    steps = math.ceil(len(x) / cfg["training"]["batch_size"])
    sched_spec = dict(cfg["schedule"])
    schedule = schedules_mod.get(sched_spec.pop("type"))(optimizer.learning_rate,
                                                         cfg["training"]["epochs"] * steps, **sched_spec)
    if not schedule.per_step and type(schedule).__call__ is not schedules_mod.Schedule.__call__:
        raise SystemExit("the reference loops follow per-step schedules (or a constant rate)")
    widths = [n_inputs] + [units for kind, units in layers if kind == "dense"]
    return Reference(layers, n_inputs, optimizer, schedule, cfg["training"]["batch_size"], cfg["seed"],
                     (_rows(x).reshape(len(x), n_inputs), y.astype(np.int64)),
                     (_rows(x_val).reshape(len(x_val), n_inputs), y_val.astype(np.int64)),
                     x.scale.reshape(-1), x.offset.reshape(-1), predict_rows(widths))


def _rows(features):
    """The stored (unscaled) samples of a split, as one array: a split keeps row numbers into
    the loaded array, not a copy (``mlpcli.data.features.Features``)."""
    return features.take_raw(np.arange(len(features)))


def torch_loop(ref, epochs, threads):
    """(seconds, validation accuracy) of each epoch (training pass and validation) of the PyTorch loop."""
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(ref.seed)
    modules, width = [], ref.n_inputs
    for kind, value in ref.layers:
        if kind == "dense":
            modules.append(nn.Linear(width, value))
            width = value
        else:
            modules.append(nn.ReLU() if kind == "relu" else nn.Dropout(value))
    model = nn.Sequential(*modules)
    opt = ref.optimizer
    optimizer = torch.optim.Adam(model.parameters(), lr=opt.learning_rate, betas=(opt.beta_1, opt.beta_2),
                                 eps=opt.epsilon)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: ref.schedule(step, 0) / opt.learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    x, y = (torch.from_numpy(a) for a in ref.train)  # uint8 features, as stored
    x_val, y_val = (torch.from_numpy(a) for a in ref.val)
    scale, offset = torch.from_numpy(ref.scale), torch.from_numpy(ref.offset)
    shift = bool(offset.any())

    def scaled(rows):
        rows = rows.float().mul_(scale)
        return rows.add_(offset) if shift else rows

    generator = torch.Generator().manual_seed(ref.seed)
    times, accuracies = [], []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), ref.batch):
            idx = order[start:start + ref.batch]
            loss = loss_fn(model(scaled(x[idx])), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        model.eval()
        total, correct = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(x_val), ref.eval_rows):
                logits = model(scaled(x_val[start:start + ref.eval_rows]))
                labels = y_val[start:start + ref.eval_rows]
                total += loss_fn(logits, labels).item() * len(labels)
                correct += (logits.argmax(1) == labels).sum().item()
        times.append(time.perf_counter() - t0)
        accuracies.append(correct / len(y_val))
    return times, accuracies


def jax_loop(ref, epochs):
    """(seconds, validation accuracy) of each epoch (training pass and validation; the first one compiles)."""
    import jax
    import jax.numpy as jnp

    opt = ref.optimizer
    beta_1, beta_2, epsilon = opt.beta_1, opt.beta_2, opt.epsilon
    key = jax.random.PRNGKey(ref.seed)
    params, width = [], ref.n_inputs
    for kind, units in ref.layers:
        if kind == "dense":  # glorot uniform, as Keras's default
            key, sub = jax.random.split(key)
            limit = math.sqrt(6 / (width + units))
            params.append((jax.random.uniform(sub, (width, units), jnp.float32, -limit, limit),
                           jnp.zeros(units, jnp.float32)))
            width = units
    scale, offset = jnp.asarray(ref.scale), jnp.asarray(ref.offset)

    def forward(params, x, key, training):
        dense = iter(params)
        for kind, value in ref.layers:
            if kind == "dense":
                w, b = next(dense)
                x = x @ w + b
            elif kind == "relu":
                x = jax.nn.relu(x)
            elif training:
                key, sub = jax.random.split(key)
                keep = jax.random.bernoulli(sub, 1 - value, x.shape)
                x = jnp.where(keep, x / (1 - value), 0.0)
        return x

    def cross_entropy(logits, labels):
        return jnp.mean(jax.nn.logsumexp(logits, axis=1) - jnp.take_along_axis(logits, labels[:, None], 1)[:, 0])

    def batch_loss(params, x, labels, key):
        return cross_entropy(forward(params, x, key, True), labels)

    @jax.jit
    def evaluate(params, x_raw, labels):
        logits = forward(params, x_raw.astype(jnp.float32) * scale + offset, None, False)
        return cross_entropy(logits, labels) * len(labels), jnp.sum(jnp.argmax(logits, 1) == labels)

    def train_step(params, m, v, step, key, x_all, y_all, idx, lr):
        key, sub = jax.random.split(key)
        x = x_all[idx].astype(jnp.float32) * scale + offset
        grads = jax.grad(batch_loss)(params, x, y_all[idx], sub)
        step = step + 1
        alpha = lr * jnp.sqrt(1 - beta_2 ** step) / (1 - beta_1 ** step)
        m = jax.tree_util.tree_map(lambda m, g: m + (g - m) * (1 - beta_1), m, grads)
        v = jax.tree_util.tree_map(lambda v, g: v + (g * g - v) * (1 - beta_2), v, grads)
        params = jax.tree_util.tree_map(lambda p, m, v: p - alpha * m / (jnp.sqrt(v) + epsilon), params, m, v)
        return params, m, v, step, key

    train_step = jax.jit(train_step, donate_argnums=(0, 1, 2))
    m = jax.tree_util.tree_map(jnp.zeros_like, params)
    v = jax.tree_util.tree_map(jnp.zeros_like, params)
    step = jnp.zeros((), jnp.float32)
    x_all, y_all = (jnp.asarray(a) for a in ref.train)  # uint8 features, as stored
    x_val, y_val = (jnp.asarray(a) for a in ref.val)
    order_rng = np.random.default_rng(ref.seed)
    n, done, times, accuracies = len(ref.train[0]), 0, [], []
    for _ in range(epochs):
        t0 = time.perf_counter()
        order = order_rng.permutation(n).astype(np.int32)
        for start in range(0, n, ref.batch):
            lr = np.float32(ref.schedule(done, 0))
            params, m, v, step, key = train_step(params, m, v, step, key, x_all, y_all,
                                                 order[start:start + ref.batch], lr)
            done += 1
        total, correct = 0.0, 0
        for start in range(0, len(x_val), ref.eval_rows):
            batch_total, batch_correct = evaluate(params, x_val[start:start + ref.eval_rows],
                                                  y_val[start:start + ref.eval_rows])
            total, correct = total + batch_total, correct + batch_correct
        correct = int(correct)  # waits for the epoch's last results
        times.append(time.perf_counter() - t0)
        accuracies.append(correct / len(ref.val[1]))
    return times, accuracies
