"""The ONNX opsets ``mlp export`` writes, and from which opset it uses an operator over its
formula; apart from ``mlpcli.onnx_export`` (which needs numpy) so that ``mlp --help`` can
state them without loading it."""

DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 13, 21  # 13: Softmax over one axis; 21: what onnx 1.16 writes
LAYER_NORMALIZATION_OPSET = 17  # the first with a LayerNormalization operator
GELU_OPSET = 20  # the first with a Gelu operator
