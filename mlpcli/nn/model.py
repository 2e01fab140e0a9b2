"""The Sequential model: a stack of layers trained by backpropagation."""

import math

import numpy as np

from mlpcli.nn import layers as layers_mod

PREDICT_ROWS = 4096  # samples per batch of inference
# at most this much for a batch of inference's activations, however wide the layers
PREDICT_BATCH_BYTES = 256 * 2**20
# float32 arrays alive per value of a layer's output at inference: the output and a temporary
_INFERENCE_BYTES = 2 * 4


class Sequential:
    """Layers applied in order to inputs of shape ``(batch, *input_shape)``.

    ``build(rng)`` draws the weights; ``train_step`` runs one forward and
    backward pass and one optimizer update; ``predict`` runs inference in
    batches. Weights are float32 arrays updated in place.
    """

    def __init__(self, layer_specs, input_shape, name="sequential"):
        self.name = name
        self.input_shape = tuple(input_shape)
        self.layers = [layers_mod.from_config(spec) for spec in layer_specs]
        _assign_names(self.layers)
        self.built = False

    def build(self, rng, dropout_rng=None):
        """Create the weights from ``rng``; dropout masks come from ``dropout_rng``.

        Separate generators keep weight initialisation independent of how many
        masks were drawn, and let training resume each stream exactly. ``rng`` None:
        zero weights, for a model whose weights are loaded next (it cannot train).
        """
        dropout_rng = rng if dropout_rng is None else dropout_rng
        output_shapes(self.layers, self.input_shape)  # refuses a stack that does not fit before drawing
        shape = self.input_shape
        self.shapes = []
        for layer in self.layers:
            shape = layer.build(shape, dropout_rng if isinstance(layer, layers_mod.Dropout) else rng)
            self.shapes.append(shape)
        # the first layer with weights never needs the gradient of its input (a dense one
        # can skip computing it; one after a normalization layer with weights cannot)
        for layer in self.layers:
            if layer.params:
                if isinstance(layer, layers_mod.Dense):
                    layer.need_input_grad = False
                break
        self.flat_params = _pack(self._packed_layers(), "params")
        self.flat_grads = _pack(self._packed_layers(), "grads")
        self.built = True
        return self

    def _packed_layers(self):
        """The layers in the order of their weights in ``flat_params``: the trainable ones first,
        so that the optimizer updates a leading part of the buffer and never sees a frozen weight
        (with none frozen, the layers' own order)."""
        return sorted(self.layers, key=lambda layer: not layer.trainable)

    @property
    def trainable_size(self):
        """How many values of ``flat_params`` (its leading part) training updates."""
        return int(sum(p.size for layer in self.layers if layer.trainable for p in layer.params))

    @property
    def trainable_flat_params(self):
        return self.flat_params[:self.trainable_size]

    @property
    def trainable_flat_grads(self):
        return self.flat_grads[:self.trainable_size]

    @property
    def trainable_params(self):
        return [p for layer in self.layers if layer.trainable for p in layer.params]

    @property
    def trainable_grads(self):
        return [g for layer in self.layers if layer.trainable for g in layer.grads]

    def planned_weight_count(self):
        """How many values the weights will hold, before ``build`` allocates them;
        ``LayerShapeError`` when the stack does not fit its input."""
        shapes = output_shapes(self.layers, self.input_shape)
        return sum(layer.weight_count(shape) for layer, shape in zip(self.layers, [self.input_shape, *shapes]))

    @property
    def widths(self):
        """Values per sample: of the input, then of each layer's output."""
        return [math.prod(shape) for shape in [self.input_shape, *self.shapes]]

    @property
    def output_shape(self):
        return self.shapes[-1]

    @property
    def n_outputs(self):
        return int(np.prod(self.output_shape))

    @property
    def params(self):
        return [p for layer in self.layers for p in layer.params]

    @property
    def grads(self):
        return [g for layer in self.layers for g in layer.grads]

    @property
    def weights(self):
        """Every layer's trainable and non-trainable weights, layer by layer in Keras's order."""
        return [w for layer in self.layers for w in layer.weights]

    def count_params(self):
        """Trainable and non-trainable, as Keras's total."""
        return int(sum(w.size for w in self.weights))

    def set_weights(self, arrays):
        """Copy ``arrays`` (in ``weights`` order) into the model's weights."""
        for p, a in zip(self.weights, arrays, strict=True):
            if p.shape != a.shape:
                raise ValueError(f"weight shape {a.shape} does not fit {p.shape}")
            p[...] = a

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def forward(self, x, training=False):
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def penalty(self):
        """Regularization terms added to the loss: the weights', and the activities' of the
        last batch through ``forward``."""
        return sum(layer.penalty() + layer.activity_penalty for layer in self.layers)

    def weight_penalty(self):
        return sum(layer.penalty() for layer in self.layers)

    def backward(self, loss, y_true, y_pred):
        """Backpropagate ``loss`` from the output; fills every layer's ``grads``."""
        last = self.layers[-1]
        fused = (loss.fused_activation is not None and isinstance(last, layers_mod.Dense)
                 and last.activation.name == loss.fused_activation
                 and not last.config["activity_regularizer"])
        if fused:
            dy = last.backward(loss.fused_grad(y_true, y_pred), pre_activation=True)
            rest = self.layers[-2::-1]
        else:
            dy = loss.grad(y_true, y_pred)
            rest = self.layers[::-1]
        for layer in rest:
            if dy is None:
                break
            dy = layer.backward(dy)

    def gradients(self, x, y_true, loss, rows=None):
        """Forward and backward on a batch: fills every layer's ``grads``; returns
        (loss including penalties, predictions).

        ``rows = (start, stop, total)``: the batch is rows start:stop of a batch of
        ``total`` that several processes share (dropout draws those rows of its mask, batch
        normalization combines its statistics with the other processes').
        """
        for layer in self.layers:
            if isinstance(layer, layers_mod.Dropout) or layer.combines_batches:
                layer.rows = rows
        y_pred = self.forward(x, training=True)
        value = loss.value(y_true, y_pred) + self.penalty()
        self.backward(loss, y_true, y_pred)
        return value, y_pred

    @property
    def needs_every_share(self):
        """Whether a layer combines statistics across the processes sharing a batch, so every
        process must run each step, one with no rows too (see ``mlpcli/parallel.py``)."""
        return any(layer.combines_batches for layer in self.layers)

    def skip_dropout(self, n_rows):
        """Move every dropout generator past a batch of ``n_rows`` rows, as ``gradients`` would."""
        for layer, shape_in in zip(self.layers, [self.input_shape] + self.shapes):
            if isinstance(layer, layers_mod.Dropout):
                layer.skip(n_rows, int(np.prod(shape_in)))

    def train_step(self, x, y_true, loss, optimizer, lr, flat=False):
        """One update on a batch; returns (loss including penalties, predictions).

        ``flat``: the optimizer was built on ``[trainable_flat_params]`` and updates all
        trainable weights as one array (fewer, larger numpy calls per step); otherwise on
        ``trainable_params``. Frozen layers' weights are never handed to it.
        """
        value, y_pred = self.gradients(x, y_true, loss)
        if flat:
            optimizer.apply([self.trainable_flat_params], [self.trainable_flat_grads], lr)
        else:
            optimizer.apply(self.trainable_params, self.trainable_grads, lr)
        return value, y_pred

    def use_buffers(self, params=None, grads=None):
        """Move the weights (and/or gradients) into the given 1-D float32 buffers (e.g.
        shared memory), keeping their values; layers see them through new views."""
        if params is not None:
            self.flat_params = _pack(self._packed_layers(), "params", params)
        if grads is not None:
            self.flat_grads = _pack(self._packed_layers(), "grads", grads)

    def predict(self, x, batch_size=PREDICT_ROWS):
        """Outputs for ``x`` of shape (n, *input_shape), computed in large batches (smaller
        ones for layers so wide that a batch's activations would not fit: ``predict_rows``).

        ``predict_activity_penalty`` is then the activity regularizers' penalty on ``x``
        (the row-weighted mean over the batches, as Keras's evaluate reports it).
        """
        out = np.empty((x.shape[0],) + self.output_shape, np.float32)
        batch_size = predict_rows(self.widths, batch_size)
        activity = 0.0
        for start in range(0, x.shape[0], batch_size):
            chunk = x[start:start + batch_size]
            out[start:start + batch_size] = self.forward(chunk, training=False)
            activity += sum(layer.activity_penalty for layer in self.layers) * chunk.shape[0]
        self.predict_activity_penalty = activity / max(x.shape[0], 1)
        return out

    def summary(self):
        """A Keras-style table: layer (type), output shape, params; then totals."""
        rows = [(f"{layer.name} ({type(layer).__name__})", str((None,) + tuple(shape)),
                 sum(w.size for w in layer.weights))
                for layer, shape in zip(self.layers, self.shapes)]
        widths = [max(len("Layer (type)"), *(len(r[0]) for r in rows)) + 2,
                  max(len("Output Shape"), *(len(r[1]) for r in rows)) + 2, 12]
        rule = "=" * sum(widths)
        lines = [f'Model: "{self.name}"', rule,
                 f"{'Layer (type)':<{widths[0]}}{'Output Shape':<{widths[1]}}{'Param #':>{widths[2]}}",
                 rule]
        lines += [f"{a:<{widths[0]}}{b:<{widths[1]}}{c:>{widths[2]},}" for a, b, c in rows]
        total, trainable = self.count_params(), self.trainable_size
        lines += [rule, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
                  f"Non-trainable params: {total - trainable:,}", rule]
        return "\n".join(lines)


def predict_rows(widths, batch_size=PREDICT_ROWS):
    """Samples per batch of inference through layers of ``widths`` (values per sample, the
    input's and each layer's output's): ``batch_size``, fewer for very wide layers."""
    return max(1, min(batch_size, PREDICT_BATCH_BYTES // (_INFERENCE_BYTES * sum(widths))))


def predict_chunk_bytes(widths):
    """Bytes one batch of ``Sequential.predict`` through layers of ``widths`` takes."""
    return predict_rows(widths) * _INFERENCE_BYTES * sum(widths)


class LayerShapeError(ValueError):
    """Layer ``index`` of a stack cannot take the output of the layers before it."""

    def __init__(self, index, message):
        super().__init__(f"layer {index + 1}: {message}")
        self.index, self.message = index, message


def output_shapes(layers, input_shape):
    """Each layer's output shape for inputs of ``input_shape``: the model's outputs are the
    last one's, which must be flat. ``LayerShapeError`` names the first layer that does not fit."""
    shapes, shape = [], tuple(input_shape)
    for i, layer in enumerate(layers):
        try:
            shape = layer.output_shape(shape)
        except ValueError as exc:
            raise LayerShapeError(i, str(exc)) from None
        shapes.append(shape)
    if len(shape) != 1:
        raise LayerShapeError(len(layers) - 1, f"the model's output must be flat (one axis), got shape "
                                               f"{list(shape)}; end with a dense layer")
    return shapes


def _pack(layers, attribute, flat=None):
    """Move every layer's ``params`` (or ``grads``) into one float32 buffer (``flat``, or a
    new one); return it.

    Each layer keeps views into the buffer, so layers and optimizer see the
    same memory: per array, or all at once through the returned 1-D buffer.
    """
    arrays = [a for layer in layers for a in getattr(layer, attribute)]
    if flat is None:
        flat = np.empty(sum(a.size for a in arrays), np.float32)
    start = 0
    for layer in layers:
        views = []
        for a in getattr(layer, attribute):
            view = flat[start:start + a.size].reshape(a.shape)
            view[...] = a
            views.append(view)
            start += a.size
        layer.rebind(attribute, views)
    return flat


def _assign_names(layers):
    """Keras's naming: dense, dense_1, dropout, ... for layers without a name."""
    counts = {}
    taken = {layer.name for layer in layers if layer.name}
    for layer in layers:
        if layer.name:
            continue
        while True:
            n = counts.get(layer.type, 0)
            counts[layer.type] = n + 1
            name = layer.type if n == 0 else f"{layer.type}_{n}"
            if name not in taken:
                break
        layer.name = name
        taken.add(name)
