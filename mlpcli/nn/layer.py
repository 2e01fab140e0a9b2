"""The layer protocol every layer follows.

Lifecycle, as in Keras: construct from a config dict, ``build(input_shape,
rng)`` creates the weights and returns the output shape, ``forward(x,
training)`` computes the output (keeping what backward needs),
``backward(dy)`` stores the weight gradients in ``grads`` and returns the
gradient with respect to the input. Shapes exclude the batch axis; arrays are
float32 ``(batch, *shape)``.

``params`` are the trainable weights (the optimizer's), ``state`` the non-trainable ones
(batch normalization's moving statistics, updated by ``forward`` in training);
``weights`` is both, in Keras's order, named by ``weight_names``.
"""

from mlpcli.nn import activations, initializers, regularizers
from mlpcli.nn.spec import BOOLEAN, Component, Param

# every layer with weights it may freeze declares it: false leaves its weights as they are
TRAINABLE = Param("trainable", True, BOOLEAN, "whether training updates its weights (false: frozen)")

# how a parameter of a nested kind is written in a Keras layer config
TO_KERAS = {"activation": lambda name: activations.get(name).name,
            "initializer": initializers.keras_config,
            "regularizer": lambda spec: regularizers.keras_config(spec) if spec else None}


class Layer:
    spec = Component("", "")
    weight_names = ()
    # True: training needs statistics of the whole batch, which processes sharing a batch
    # combine through ``all_sum`` (see BatchNormalization and mlpcli/parallel.py)
    combines_batches = False

    def __init__(self, name=None, **config):
        defaults = self.spec.defaults()
        unknown = set(config) - set(defaults)
        if unknown:
            raise ValueError(f"{self.type}: unknown parameter(s) {sorted(unknown)}")
        self.config = {**defaults, **config}
        self.name = name
        self.params = []
        self.state = []
        self.grads = []
        self.activity_penalty = 0.0

    @property
    def weights(self):
        """Trainable then non-trainable weights: what a model file stores, in Keras's order."""
        return self.params + self.state

    def weight_count(self, input_shape):
        """How many values its weights (trainable and not) hold for inputs of ``input_shape``:
        known before ``build`` allocates them."""
        return 0

    def output_shape(self, input_shape):
        """The shape of this layer's output for inputs of ``input_shape``; ``ValueError`` (saying
        why) when it cannot take them. ``build`` returns it too."""
        return tuple(input_shape)

    def build(self, input_shape, rng):
        return self.output_shape(input_shape)

    def forward(self, x, training):
        return x

    def backward(self, dy):
        return dy

    def penalty(self):
        """Weight-regularization term this layer adds to the loss."""
        return 0.0

    def rebind(self, attribute, arrays):
        """Use ``arrays`` (same shapes, e.g. views of a shared buffer) as ``params`` or ``grads``."""
        setattr(self, attribute, list(arrays))

    @property
    def trainable(self):
        """Whether training updates this layer's weights (``TRAINABLE``; a layer that does not
        declare it is trainable)."""
        return self.config.get("trainable", True)

    def get_config(self):
        """The layer's spec as in a config file: ``{"type": ..., "name": ..., **params}``."""
        return {"type": self.type, "name": self.name, **self.config}

    @property
    def type(self):
        return self.spec.name

    def keras_config(self):
        """The layer's entry in a Keras ``Sequential`` model_config."""
        return {"class_name": self.spec.keras,
                "config": {"name": self.name, "trainable": True, "dtype": "float32",
                           **self.spec.to_keras(self.config, TO_KERAS)}}


