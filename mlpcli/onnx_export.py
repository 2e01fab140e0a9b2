"""The ONNX writer: a model and the numeric part of its input pipeline as one ONNX graph.

The graph is built from the model's layers with ``onnx.helper``: its input ``input``
takes raw samples as ``mlp predict`` reads them (float32 [N, *feature shape]: pixels in
0..255, a table's feature values), scaled by the stored numbers (``x * scale + offset``,
Mul and Add nodes, left out where they change nothing) and reshaped to the model's input.
Each dense layer is a Gemm (MatMul without a bias) and its activation, the normalization
layers are in their inference form, dropout is nothing. A classifier's outputs are
``probabilities`` (as ``mlp predict`` shows them: the softmax row, or [1 - p, p] for one
sigmoid output) and ``class`` (their ArgMax, int64); a regression model's is
``predictions``. The metadata props hold the class names and the pipeline record (JSON),
for what the graph leaves to its caller: decoding images, a table's category columns and
missing cells.

A layer or activation with no entry in ``LAYERS`` or ``ACTIVATIONS`` here is refused,
naming the layer. ``onnx`` is imported only when a graph is made.
"""

import json
import math

import numpy as np

from mlpcli import __version__
from mlpcli.errors import MlpError, printable
from mlpcli.nn.activations import LEAKY_RELU_SLOPE, SELU_ALPHA, SELU_SCALE
from mlpcli.onnx_opsets import DEFAULT_OPSET, GELU_OPSET, LAYER_NORMALIZATION_OPSET, MAX_OPSET, MIN_OPSET

# one protobuf message holds at most 2 GiB; the graph's own nodes need far less than the room left
MAX_WEIGHT_BYTES = 2**31 - 2**24
INSTALL_HINT = "mlp export --format onnx needs the onnx package: pip install 'mlpcli[onnx]'"
PROPS_PREFIX = "mlpcli."


def write_onnx(path, predictor, opset=DEFAULT_OPSET):
    """Write the model of ``predictor`` (a ``Predictor``) to ``path`` as a checked ONNX file."""
    model = onnx_model(predictor, opset)
    with open(path, "wb") as f:
        f.write(model.SerializeToString())


def onnx_model(predictor, opset=DEFAULT_OPSET):
    """The ``onnx.ModelProto`` of ``predictor``'s model, passed by ``onnx.checker.check_model``."""
    onnx = _import_onnx()
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise MlpError(f"--opset {opset}: mlp export writes opsets {MIN_OPSET} to {MAX_OPSET}")
    known = onnx.defs.onnx_opset_version()
    if opset > known:
        raise MlpError(f"--opset {opset}: the installed onnx package ({onnx.__version__}) writes opsets up to "
                       f"{known}; choose one of those, or upgrade it: pip install -U onnx")
    model = predictor.model
    weight_bytes = sum(w.nbytes for w in model.weights)
    if weight_bytes > MAX_WEIGHT_BYTES:
        raise MlpError(f"{predictor.path}: {weight_bytes / 2**30:.1f} GiB of weights; an ONNX file holds at "
                       "most 2 GiB in one file")
    graph = _Graph(onnx, opset)
    x = _scaled_input(graph, predictor)
    for index, (layer, shape) in enumerate(zip(model.layers, model.shapes)):
        write = LAYERS.get(layer.type)
        if write is None:
            raise _refused(index, layer, f"a {layer.type} layer")
        graph.scope, graph.index = layer.name, index
        x = write(graph, layer, x, shape)
    graph.scope = "output"
    if len(model.output_shape) > 1:
        x = graph.node("Flatten", [x], axis=1)
    outputs = _outputs(graph, predictor, x)
    helper = onnx.helper
    onnx_graph = helper.make_graph(graph.nodes, model.name, [graph.input_info(predictor)], outputs,
                                   graph.initializers)
    imports = [helper.make_opsetid("", opset)]
    result = helper.make_model(onnx_graph, opset_imports=imports, producer_name="mlpcli",
                               producer_version=__version__, ir_version=helper.find_min_ir_version_for(imports),
                               doc_string=printable(f"{model.name} exported by mlpcli {__version__} from "
                                                    f"{predictor.path}"))
    helper.set_model_props(result, _metadata(predictor))
    onnx.checker.check_model(result, full_check=True)
    return result


def _import_onnx():
    try:
        import onnx
        import onnx.checker
        import onnx.numpy_helper
    except ImportError:
        raise MlpError(INSTALL_HINT) from None
    return onnx


def _refused(index, layer, what):
    return MlpError(f"layer {index} ({layer.name!r}, type {layer.type}): {what}, which mlp export "
                    "--format onnx cannot express")


class _Graph:
    """The nodes and initializers of a graph being built; names are unique, under ``scope``."""

    def __init__(self, onnx, opset):
        self.onnx, self.opset = onnx, opset
        self.nodes, self.initializers = [], []
        self.scope, self.index = "input", None  # the layer being written: its name, its index
        self._taken = set()

    def _name(self, what):
        base = f"{self.scope}/{what}"
        name, n = base, 1
        while name in self._taken:
            n += 1
            name = f"{base}_{n}"
        self._taken.add(name)
        return name

    def constant(self, what, values, dtype=np.float32):
        name = self._name(what)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(values, dtype), name))
        return name

    def node(self, op, inputs, output=None, **attributes):
        """Add an ``op`` node; returns the name of its (first) output."""
        output = output or self._name(op)
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [output], name=self._name(f"{op}_node"),
                                                     **attributes))
        return output

    def input_info(self, predictor):
        return self.onnx.helper.make_tensor_value_info(
            "input", self.onnx.TensorProto.FLOAT, ["N", *predictor.feature_shape])


def _scaled_input(graph, predictor):
    """``input`` scaled as ``Predictor.prepare`` scales it, in the model's input shape."""
    x = "input"
    if not (predictor.scale == 1).all():
        x = graph.node("Mul", [x, graph.constant("scale", predictor.scale)])
    if predictor.offset.any():
        x = graph.node("Add", [x, graph.constant("offset", predictor.offset)])
    input_shape = predictor.model.input_shape
    if tuple(predictor.feature_shape) != tuple(input_shape):  # 0: the batch axis kept as it is
        x = graph.node("Reshape", [x, graph.constant("shape", [0, *input_shape], np.int64)])
    return x


# ---------------------------------------------------------------- layers


def _dense(graph, layer, x, shape):
    kernel = graph.constant("kernel", layer.kernel)
    if layer.config["use_bias"]:
        z = graph.node("Gemm", [x, kernel, graph.constant("bias", layer.bias)])
    else:
        z = graph.node("MatMul", [x, kernel])
    return _activation(graph, layer, z, shape)


def _activation(graph, layer, x, shape):
    write = ACTIVATIONS.get(layer.activation.name)
    if write is None:
        raise _refused(graph.index, layer, f"its activation {layer.activation.name}")
    return write(graph, x)


def _batch_normalization(graph, layer, x, shape):
    """Inference form, folded: x * gamma / sqrt(moving_variance + epsilon) + (beta - moving_mean * that)."""
    features = layer.moving_mean.size
    inv = 1.0 / np.sqrt(layer.moving_variance.astype(np.float64) + np.float32(layer.config["epsilon"]))
    scale = inv * (layer.gamma if layer.gamma is not None else np.ones(features))
    offset = (layer.beta if layer.beta is not None else np.zeros(features)) - layer.moving_mean * scale
    x = graph.node("Mul", [x, graph.constant("scale", scale)])
    return graph.node("Add", [x, graph.constant("offset", offset)])


def _layer_normalization(graph, layer, x, shape):
    epsilon = float(np.float32(layer.config["epsilon"]))
    if graph.opset >= LAYER_NORMALIZATION_OPSET:
        gamma = layer.gamma if layer.gamma is not None else np.ones(shape[-1], np.float32)
        inputs = [x, graph.constant("gamma", gamma)] + (
            [graph.constant("beta", layer.beta)] if layer.beta is not None else [])
        return graph.node("LayerNormalization", inputs, axis=-1, epsilon=epsilon)
    # as mlpcli computes it: (x - mean) / sqrt(mean((x - mean)^2) + epsilon), then gamma and beta
    centered = graph.node("Sub", [x, graph.node("ReduceMean", [x], axes=[-1], keepdims=1)])
    variance = graph.node("ReduceMean", [graph.node("Mul", [centered, centered])], axes=[-1], keepdims=1)
    root = graph.node("Sqrt", [graph.node("Add", [variance, graph.constant("epsilon", epsilon)])])
    y = graph.node("Div", [centered, root])
    if layer.gamma is not None:
        y = graph.node("Mul", [y, graph.constant("gamma", layer.gamma)])
    if layer.beta is not None:
        y = graph.node("Add", [y, graph.constant("beta", layer.beta)])
    return y


LAYERS = {
    "dense": _dense,
    "activation": _activation,
    "dropout": lambda graph, layer, x, shape: x,  # nothing at inference
    "flatten": lambda graph, layer, x, shape: graph.node("Flatten", [x], axis=1),
    "batch_normalization": _batch_normalization,
    "layer_normalization": _layer_normalization,
}


# ---------------------------------------------------------------- activations, as mlpcli.nn.activations computes them


def _swish(graph, x):
    return graph.node("Mul", [x, graph.node("Sigmoid", [x])])


def _gelu(graph, x):
    """Exact GELU (Keras's approximate=False): the operator, or 0.5 * x * (1 + erf(x / sqrt(2)))."""
    if graph.opset >= GELU_OPSET:
        return graph.node("Gelu", [x], approximate="none")
    erf = graph.node("Erf", [graph.node("Mul", [x, graph.constant("inv_sqrt2", 1 / math.sqrt(2))])])
    half_x = graph.node("Mul", [x, graph.constant("half", 0.5)])
    return graph.node("Mul", [half_x, graph.node("Add", [erf, graph.constant("one", 1.0)])])


def _op(name, **attributes):
    return lambda graph, x: graph.node(name, [x], **attributes)


ACTIVATIONS = {
    "linear": lambda graph, x: x,
    "sigmoid": _op("Sigmoid"),
    "hard_sigmoid": _op("HardSigmoid", alpha=1 / 6, beta=0.5),  # Keras 3's clip(x / 6 + 0.5, 0, 1)
    "tanh": _op("Tanh"),
    "relu": _op("Relu"),
    "leaky_relu": _op("LeakyRelu", alpha=LEAKY_RELU_SLOPE),
    "elu": _op("Elu", alpha=1.0),
    "selu": _op("Selu", alpha=SELU_ALPHA, gamma=SELU_SCALE),
    "softplus": _op("Softplus"),
    "softsign": _op("Softsign"),
    "swish": _swish,
    "silu": _swish,
    "gelu": _gelu,
    "softmax": _op("Softmax", axis=-1),
}


# ---------------------------------------------------------------- outputs and metadata


def _outputs(graph, predictor, x):
    """The graph's outputs (value infos) for the model's output ``x`` (n, outputs)."""
    onnx = graph.onnx
    n_outputs = predictor.model.n_outputs
    if predictor.task != "classification":
        graph.node("Identity", [x], output="predictions")
        return [onnx.helper.make_tensor_value_info("predictions", onnx.TensorProto.FLOAT, ["N", n_outputs])]
    if n_outputs == 1:  # a sigmoid's P(class 1): [1 - p, p], as Predictor.probabilities gives it
        x = graph.node("Concat", [graph.node("Sub", [graph.constant("one", 1.0), x]), x], axis=1)
    graph.node("Identity", [x], output="probabilities")
    graph.node("ArgMax", ["probabilities"], output="class", axis=1, keepdims=0)
    classes = predictor.n_classes
    return [onnx.helper.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT, ["N", classes]),
            onnx.helper.make_tensor_value_info("class", onnx.TensorProto.INT64, ["N"])]


def _metadata(predictor):
    """The model's metadata props: what a caller needs to use it, as JSON or plain text."""
    pipeline = predictor.pipeline
    props = {
        "version": __version__,
        "source": printable(str(predictor.path)),
        "task": predictor.task,
        "input": (f"float32 samples of shape {list(predictor.feature_shape)} as mlp predict reads them "
                  f"(images decoded, a table's cells encoded as the pipeline says), before scaling: the "
                  f"graph scales them ({predictor.scaling})"),
        "pipeline": json.dumps(pipeline.record() if pipeline is not None else None),
    }
    if predictor.run_dir is not None:
        props["run"] = printable(str(predictor.run_dir))
    if predictor.task == "classification":
        props["class_names"] = json.dumps(predictor.class_names)
    return {PROPS_PREFIX + key: value for key, value in props.items()}
