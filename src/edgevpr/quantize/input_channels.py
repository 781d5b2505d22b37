"""Widen the first int8 convolution of a QOperator graph from 3 input channels to 4.

x86 ONNX Runtime runs a QLinearConv with 3 input channels (the RGB stem of every CNN
backbone) at a fraction of the throughput of the same convolution with 4 channels. On
MobileNetV2 at 480x640, ONNX Runtime's per-node profile put the 3-channel stem at about a sixth
of the whole int8 time and the 4-channel one at less than half of that.

The rewrite is exact: the quantized image is padded with one channel of its zero point, and
the stem's int8 weights with one input channel of zeros, so every output sum is unchanged.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgevpr.quantize.onnx_export import tensor_consumers

CHANNELS = 4


def widen_input_conv(model: onnx.ModelProto, channels: int = CHANNELS) -> bool:
    """Rewrite ``QuantizeLinear(image) -> QLinearConv`` into ``QuantizeLinear -> Pad ->
    QLinearConv`` with ``channels`` input channels, in place. Returns whether the graph had such
    a stem (a model whose first layer stayed in float, or a QDQ graph, is left as it is)."""
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    consumers = tensor_consumers(graph)
    readers = consumers.get(graph.input[0].name, [])
    if len(readers) != 1 or readers[0].op_type != "QuantizeLinear":
        return False
    quantize = readers[0]
    convs = consumers.get(quantize.output[0], [])
    if (
        len(convs) != 1
        or convs[0].op_type != "QLinearConv"
        or convs[0].input[3] not in initializers
        or len(consumers[convs[0].input[3]]) != 1
    ):  # the weight is rewritten: it must be this conv's alone
        return False
    conv = convs[0]
    weight = numpy_helper.to_array(initializers[conv.input[3]])
    group = next((a.i for a in conv.attribute if a.name == "group"), 1)
    if group != 1 or weight.ndim != 4 or weight.shape[1] >= channels:
        return False
    extra = channels - weight.shape[1]
    padded = np.concatenate([weight, np.zeros((weight.shape[0], extra, *weight.shape[2:]), weight.dtype)], axis=1)
    initializers[conv.input[3]].CopyFrom(numpy_helper.from_array(padded, conv.input[3]))

    widened = quantize.output[0] + "_widened"
    pads = numpy_helper.from_array(np.array([0, 0, 0, 0, 0, extra, 0, 0], np.int64), widened + "_pads")
    graph.initializer.append(pads)
    zero_point = list(quantize.input[2:3])  # absent: ONNX's default zero point and Pad's default value are 0
    pad = helper.make_node(
        "Pad", [quantize.output[0], pads.name, *zero_point], [widened], name=widened + "_pad", mode="constant"
    )
    conv.input[0] = widened
    graph.node.insert(list(graph.node).index(quantize) + 1, pad)
    return True
