"""The layers that quantization treats one by one: the convolutions and linear layers of a
BN-folded model in the order they run, their weights at a lower precision, and the ONNX node
that holds each one's weights after export."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from edgevpr.errors import ConfigError
from edgevpr.quantize.gptq import dequantized
from edgevpr.quantize.int4 import WEIGHT_OPS, quantize_int4_symmetric


@dataclass
class Layer:
    name: str
    module: nn.Module
    params: int


@torch.no_grad()
def searchable_layers(model: nn.Module, example: torch.Tensor) -> list[Layer]:
    """Convolutions and linear layers in the order the forward pass runs them."""
    names = {module: name for name, module in model.named_modules()}
    order: list[nn.Module] = []
    handles = [
        m.register_forward_pre_hook(lambda module, inputs: order.append(module))
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    try:
        model(example)
    finally:
        for handle in handles:
            handle.remove()
    unique = list(dict.fromkeys(order))
    return [Layer(names[m], m, sum(p.numel() for p in m.parameters())) for m in unique]


def quantized_weight(weight: torch.Tensor, precision: str) -> torch.Tensor:
    """The float weights of an int4 or fp16 layer (int8 layers compute on levels: ``Int8Arithmetic``)."""
    if precision == "fp16":
        return weight.half().float()
    if precision != "int4":
        raise ValueError(f"no float weights for precision {precision!r}")
    return dequantized(*quantize_int4_symmetric(weight.numpy(), axis=0))


def _weight_key(array: np.ndarray) -> tuple:
    array = np.ascontiguousarray(array, dtype=np.float32)
    return array.shape, array.tobytes()


def node_of_layer(proto: onnx.ModelProto, layers) -> dict[str, str]:
    """Layer name -> name of the ONNX node whose weight initializer holds the same values."""
    initializers = {i.name: i for i in proto.graph.initializer}
    by_weight: dict[tuple, list[str]] = {}
    for node in proto.graph.node:
        index = WEIGHT_OPS.get(node.op_type)
        if index is not None and len(node.input) > index and node.input[index] in initializers:
            key = _weight_key(numpy_helper.to_array(initializers[node.input[index]]))
            by_weight.setdefault(key, []).append(node.name)
    mapping = {}
    for layer in layers:
        found = by_weight.get(_weight_key(layer.module.weight.detach().numpy()), [])
        if len(found) != 1:
            raise ConfigError(f"layer {layer.name}: {len(found)} ONNX nodes carry its weights; cannot place it")
        mapping[layer.name] = found[0]
    return mapping
