"""Keep weights that are already quantized on their own grid.

Weights from quantization-aware training or converted from an integer model (the MobileNetV2
file in shared/weights was dequantized from a uint8 TFLite model) lie on a uniform grid
w = k * s through zero. Symmetric int8 scales max|w_c| / 127 put the grid points between
int8 levels and round every weight off it. When a tensor lies on such a grid and a channel's
multiples k fit in [-127, 127], that channel's scale is set to s and int8 holds its weights
exactly; other channels, and tensors with no grid, keep the usual max|w_c| / 127.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

TOLERANCE = 1e-3  # of a grid step


def grid_step(weight: np.ndarray, max_divisor: int = 4) -> float | None:
    """The step s of a uniform grid through zero holding every value, or None."""
    values = np.unique(np.abs(weight.astype(np.float64)))
    values = values[values > 0]
    if values.size < 2:
        return None
    gaps = np.diff(values)
    smallest = min(values[0], gaps[gaps > 0].min()) if (gaps > 0).any() else values[0]
    for divisor in range(1, max_divisor + 1):
        step = smallest / divisor
        ratio = values / step
        if np.abs(ratio - np.round(ratio)).max() <= TOLERANCE and ratio.max() <= 127 * 64:
            return float(step)
    return None


def channel_scales(weight: np.ndarray, qmax: int = 127) -> np.ndarray:
    """Per-output-channel symmetric scales: the weights' own grid step where a channel fits
    in [-qmax, qmax] steps, else max|w| / qmax."""
    step = grid_step(weight)
    scales = []
    for channel in weight.reshape(weight.shape[0], -1):
        largest = float(np.abs(channel).max())
        if step is not None and largest / step <= qmax + TOLERANCE:
            scales.append(step)
        else:
            scales.append(largest / qmax if largest > 0 else 1.0)
    return np.asarray(scales, dtype=np.float32)


def is_depthwise(weight_shape, groups: int) -> bool:
    """One input and one output channel per group: what ONNX Runtime runs as a depthwise convolution."""
    return groups > 1 and weight_shape[0] == groups and weight_shape[1] == 1


def grid_overrides(model: onnx.ModelProto, qmax: int = 127, depthwise_qmax: int | None = None) -> dict[str, list[dict]]:
    """ORT ``TensorQuantOverrides`` with per-channel scales on the weights' own grid, ``qmax``
    levels per sign. With ``depthwise_qmax``, every depthwise weight gets explicit scales of that
    many levels, on a grid or not (it differs from what the quantizer applies to the others)."""
    initializers = {i.name: i for i in model.graph.initializer}
    overrides: dict[str, list[dict]] = {}
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in initializers:
            continue
        weight = numpy_helper.to_array(initializers[node.input[1]])
        groups = next((a.i for a in node.attribute if a.name == "group"), 1)
        levels = depthwise_qmax if depthwise_qmax and is_depthwise(weight.shape, groups) else None
        if levels is None and grid_step(weight) is None:
            continue
        overrides |= scale_overrides({node.input[1]: channel_scales(weight, levels or qmax)})
    return overrides


def scale_overrides(scales: dict[str, np.ndarray]) -> dict[str, list[dict]]:
    """ORT ``TensorQuantOverrides`` giving each named weight its per-output-channel symmetric scales."""
    overrides = {}
    for name, channel_scale in scales.items():
        channels = [{"scale": np.float32(scale), "zero_point": 0} for scale in channel_scale]
        channels[0]["axis"] = 0
        overrides[name] = channels
    return overrides


def int8_weight(weight: np.ndarray, qmax: int) -> np.ndarray:
    """The weights an int8 file holds for ``weight`` (float, out-channels first): each channel on
    its ``channel_scales`` grid of ``qmax`` levels per sign, rounded to nearest."""
    scales = channel_scales(weight, qmax).reshape(-1, *([1] * (weight.ndim - 1)))
    return (np.clip(np.round(weight / scales), -qmax, qmax) * scales).astype(np.float32)
