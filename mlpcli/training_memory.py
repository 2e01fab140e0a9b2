"""How much memory training a config's model takes, checked before it is allocated.

One estimate (``memory_needed``) for every size that comes from the config and the
data: the weights and what goes with them (gradients, optimizer slots and the
snapshot of them a checkpoint takes, best weights, further processes), a batch's
activations and gradients, evaluation's batches. ``check_memory`` turns a size
beyond this machine's memory into a ConfigError naming the key to change.
"""

import math
from dataclasses import dataclass

from mlpcli.errors import ConfigError
from mlpcli.machine import physical_memory
from mlpcli.nn import optimizers
from mlpcli.nn.layers import Dense
from mlpcli.nn.model import output_shapes, predict_chunk_bytes
from mlpcli.parallel import usable_processes

FLOAT32_BYTES = 4
# float32 arrays per row of a batch for each value a layer outputs: forward keeps the
# pre-activation and the output, backward makes the gradient and a temporary
ARRAYS_PER_ACTIVATION = 4
# per row of the model's input: the float32 batch and the stored samples gathered for it
ARRAYS_PER_INPUT = 2


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

    Counted per weight: the weight and its gradient; the optimizer slots and the snapshot of
    them that saving a checkpoint takes; the best weights early stopping keeps; a gradient
    for each further process (the optimizer's scratch and the mixed gradient are a piece each). Per row of a
    batch (at most the data's rows; each further process gathers its own): the input as
    gathered and scaled, and every layer's activations and gradients. With several processes,
    the shared outputs of a batch of ``batch_size`` rows. Evaluation's batches on top.
    """
    widths = [math.prod(shape) for shape in [model.input_shape, *output_shapes(model.layers, model.input_shape)]]
    weights = model.planned_weight_count()
    processes = usable_processes(cfg["training"]["processes"])
    slots = len(optimizers.from_config(cfg["optimizer"]).slot_names)
    es = cfg["early_stopping"]
    per_weight = 2 + 2 * slots + (1 if es and es["restore_best_weights"] else 0) + (processes - 1)
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
    memory = physical_memory()
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
