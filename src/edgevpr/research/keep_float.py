"""int8 with the few most sensitive layers left in float (``edgevpr quantize --keep-float N``).

Some networks lose much of their int8 accuracy in a few layers: on EfficientNet-Lite0 the
first depthwise convolution (320 weights) carries about 40 % of the int8 descriptor error
(0.031 with every layer int8, 0.018 with that one in float, on Gardens Point). Each
searchable layer's sensitivity is measured once by simulated quantization (``simulate``): the
descriptor error with only that layer at int8 and every other in float, on the first
calibration images. The N layers with the largest error stay in float in the deployed file;
all others are quantized as for plain int8.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
import torch

from edgevpr.progress import Progress
from edgevpr.quantize.layers import node_of_layer, searchable_layers
from edgevpr.quantize.precisions import Export
from edgevpr.research.mixed_export import quantized_graph
from edgevpr.research.simulate import Simulator

SAMPLE = 16  # calibration images used to rank the layers


def most_sensitive_layers(
    model: torch.nn.Module,
    example: torch.Tensor,
    proto: onnx.ModelProto,
    calib,
    tensor_ranges: dict[str, tuple[float, float]],
    count: int,
    weight_max: int = 127,
) -> list[dict]:
    """The ``count`` layers whose int8 quantization alone costs most descriptor error, most
    sensitive first: ``{"layer", "node", "error"}``. ``tensor_ranges`` are uint8 ranges by
    ONNX tensor name; ``calib`` is a ``pipeline.CalibrationImages``; ``weight_max`` the int8
    layout's weight range; ``model`` is left untouched."""
    copied = copy.deepcopy(model)
    layers = searchable_layers(copied, example)
    nodes = node_of_layer(proto, layers)
    images = calib.batch(SAMPLE)
    simulator = Simulator(copied, layers, quantized_graph(proto, nodes, tensor_ranges, weight_max), images)
    with Progress(len(layers), "int8 sensitivity", "layer") as bar:
        errors = simulator.one_layer_errors("int8", "fp32", bar.update)
    order = np.argsort(errors)[::-1][:count]
    return [{"layer": layers[i].name, "node": nodes[layers[i].name], "error": float(errors[i])} for i in order]


def layers_kept_float(export: Export, tensor_ranges: dict[str, tuple[float, float]], count: int) -> list[dict]:
    """``quantize --keep-float N``: the deploy pipeline's hook for the ranking above."""
    return most_sensitive_layers(
        export.model, export.example, export.proto, export.calib, tensor_ranges, count, export.layout.weight_max
    )
