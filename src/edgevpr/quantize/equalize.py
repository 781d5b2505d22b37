"""Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization Through Weight
Equalization and Bias Correction", section 4.1).

For two convolutions joined by a positively homogeneous function (ReLU, or nothing),
f(W2 g(W1 x + b1)) = f(W2 S g(S^-1 (W1 x + b1))) for any positive diagonal S. Choosing, per
channel i shared by the pair,
    s_i = sqrt(r1_i / r2_i)                                             (their Eq. 7-8)
with r1_i the range of W1's output channel i and r2_i the range of W2's input channel i gives
both the range sqrt(r1_i r2_i): per-channel int8 scales then fit every channel of the pair
equally well, and a depthwise-separable stack stops wasting its levels on a few wide channels.
Chains are equalized pair by pair, repeated until the scales settle.

ReLU6 is not homogeneous (it clips at 6, which S would move), so pairs joined by ReLU6 are left
as they are. Nagel et al. replace ReLU6 by ReLU in MobileNetV2 first; measured here that is not
the same network: descriptor cosine to the ReLU6 model on Gardens Point night images 0.89-0.93
for the shared MobileNetV2 and 0.70-0.85 for EfficientNet-Lite0, whose activations clip often.
Pairs are found in the model's exported graph: a Conv whose output feeds only (a Relu feeding
only) another Conv, with no residual branch between; each is mapped back to its module by its
weights. The fp32 function is unchanged (tests/test_equalize.py: within 1e-5)."""

from __future__ import annotations

import onnx
import torch
from torch import nn

from edgevpr.quantize.layers import node_of_layer, searchable_layers
from edgevpr.quantize.weight_grid import is_depthwise

ROUNDS = 8  # Nagel et al. iterate until convergence; the ranges settle within a few rounds here


def equalizable_pairs(
    proto: onnx.ModelProto, model: nn.Module, example: torch.Tensor
) -> list[tuple[nn.Conv2d, nn.Conv2d]]:
    """(first, second) convolutions joined by nothing or by one Relu, each intermediate tensor
    read by that path only, the second an ordinary or depthwise convolution."""
    layers = searchable_layers(model, example)
    convs = {layer.name: layer.module for layer in layers if isinstance(layer.module, nn.Conv2d)}
    by_node = {node: convs[name] for name, node in node_of_layer(proto, layers).items() if name in convs}
    nodes = {node.name: node for node in proto.graph.node}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in proto.graph.node:
        for tensor in node.input:
            readers.setdefault(tensor, []).append(node)
    outputs = {output.name for output in proto.graph.output}

    def only_reader(tensor: str):
        found = readers.get(tensor, [])
        return found[0] if len(found) == 1 and tensor not in outputs else None

    pairs = []
    for name, first in by_node.items():
        following = only_reader(nodes[name].output[0])
        if following is not None and following.op_type == "Relu":
            following = only_reader(following.output[0])
        if following is None or following.name not in by_node:
            continue
        second = by_node[following.name]
        if second.groups == 1 or is_depthwise(tuple(second.weight.shape), second.groups):
            if second.in_channels == first.out_channels:
                pairs.append((first, second))
    return pairs


def _ranges(first: nn.Conv2d, second: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
    r1 = first.weight.detach().abs().flatten(1).amax(dim=1)
    w2 = second.weight.detach().abs()
    r2 = w2.flatten(1).amax(dim=1) if second.groups > 1 else w2.transpose(0, 1).flatten(1).amax(dim=1)
    return r1, r2


@torch.no_grad()
def equalize_pair(first: nn.Conv2d, second: nn.Conv2d) -> None:
    """Scale ``first``'s output channels by 1/s and ``second``'s input channels by s (Eq. 7-8)."""
    r1, r2 = _ranges(first, second)
    live = (r1 > 0) & (r2 > 0)
    scale = torch.where(live, torch.sqrt(r1 / torch.where(live, r2, 1.0)), torch.ones_like(r1))
    first.weight.div_(scale.view(-1, *([1] * (first.weight.dim() - 1))))
    if first.bias is not None:
        first.bias.div_(scale)
    if second.groups > 1:  # depthwise: input channel i is output channel i
        second.weight.mul_(scale.view(-1, 1, 1, 1))
    else:
        second.weight.mul_(scale.view(1, -1, 1, 1))


def equalize(pairs: list[tuple[nn.Conv2d, nn.Conv2d]], rounds: int = ROUNDS) -> float:
    """Equalize every pair ``rounds`` times (a chain's middle layer is in two pairs); returns the
    largest remaining ratio between a pair's two ranges (1 when settled)."""
    for _ in range(rounds):
        for first, second in pairs:
            equalize_pair(first, second)
    worst = 1.0
    for first, second in pairs:
        r1, r2 = _ranges(first, second)
        live = (r1 > 0) & (r2 > 0)
        if live.any():
            ratio = torch.maximum(r1[live] / r2[live], r2[live] / r1[live]).max().item()
            worst = max(worst, ratio)
    return worst
