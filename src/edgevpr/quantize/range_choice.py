"""``--calibration layer-error``: each tensor's activation range chosen, among the ranges the
rules of ``calibration`` give it (minmax, percentile, entropy, mse), by the error it causes at
the outputs of the layers that read the tensor.

A rule that scores a range by the tensor's own error (``mse``) treats every channel alike. The
layer that reads the tensor does not: a convolution weighs the rounding error e = Q(x) - x of
channel c by its weights on c. Its output error is conv(Q(x), W) - conv(x, W) = conv(e, W), by
linearity, so the range is chosen to minimise sum over images of ||conv(e, W)||^2 (the layer-wise
output reconstruction objective of Nagel et al. 2020, eq. 4, applied to the activation grid
instead of the weights; Banner et al. 2019 minimise the tensor's own error). For a reader that
is not a convolution, Gemm or MatMul on a weight initializer, the tensor's own error ||e||^2 is
its share. Q is ONNX Runtime's grid (``activation_grid``): the range widened to hold 0, then
256 uint8 levels with a zero point (asymmetric) or 255 int8 levels about 0 (symmetric).

The rules' ranges come from the two calibration passes over every calibration image; a third
pass runs the first ``CHOICE_IMAGES`` of them once more and scores every candidate of every
tensor whose candidates differ."""

from __future__ import annotations

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from edgevpr.models.tf_same import conv2d_same
from edgevpr.quantize import calibration
from edgevpr.quantize.activation_grid import activation_grid, quantize_levels

CANDIDATES = ("mse", "percentile", "entropy", "minmax")  # ties go to the first
METHOD = "layer-error"
CHOICE_IMAGES = 16  # calibration images the third pass scores on (the first ones)
ALL_METHODS = (*calibration.METHODS, METHOD)


def fake_quantized(x: torch.Tensor, low: float, high: float, symmetric: bool) -> torch.Tensor:
    """x on ONNX Runtime's int8 activation grid for the range [low, high], back in float."""
    if symmetric:
        bound = max(-low, high, 0.0)
        scale = bound / 127 if bound > 0 else 1.0
        return torch.clamp(torch.round(x / scale), -127, 127) * scale
    grid = activation_grid(low, high)
    return quantize_levels(x, grid) * np.float32(grid[0])


def _attribute(node: onnx.NodeProto, name: str, default):
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def _linear_reader(node: onnx.NodeProto, weights: dict[str, np.ndarray]):
    """The bias-free linear map ``node`` applies to its first input, or None when it is not a
    convolution / matrix product on a weight initializer."""
    if len(node.input) < 2 or node.input[1] not in weights:
        return None
    weight = torch.from_numpy(weights[node.input[1]].astype(np.float32))
    auto_pad = _attribute(node, "auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if node.op_type == "Conv" and auto_pad in ("NOTSET", "VALID", "SAME_UPPER") and weight.dim() == 4:
        stride, dilation = _attribute(node, "strides", [1, 1]), _attribute(node, "dilations", [1, 1])
        groups = _attribute(node, "group", 1)
        if auto_pad == "SAME_UPPER":  # TensorFlow's 'SAME', as the exported stride-2 convolutions pad
            return lambda e: conv2d_same(e, weight, None, stride, dilation, groups)
        top, left, bottom, right = [0, 0, 0, 0] if auto_pad == "VALID" else _attribute(node, "pads", [0, 0, 0, 0])
        return lambda e: F.conv2d(F.pad(e, (left, right, top, bottom)), weight, None, stride, 0, dilation, groups)
    if node.op_type == "Gemm" and not _attribute(node, "transA", 0):
        matrix = weight.T if _attribute(node, "transB", 0) else weight
        return lambda e: e.flatten(1) @ matrix
    if node.op_type == "MatMul" and weight.dim() == 2:
        return lambda e: e @ weight
    return None


def readers(model: onnx.ModelProto) -> dict[str, list]:
    """Tensor name -> one entry per node reading it: that node's linear map, or None (own error)."""
    weights = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    out: dict[str, list] = {}
    for node in model.graph.node:
        for position, name in enumerate(node.input):
            if name and name not in weights:
                out.setdefault(name, []).append(_linear_reader(node, weights) if position == 0 else None)
    return out


def candidate_ranges(
    stats: calibration.CalibrationStats, symmetric: bool, percentile: float
) -> dict[str, list[tuple[float, float]]]:
    """Tensor name -> its range under each rule of ``CANDIDATES``, in that order."""
    by_rule = [calibration.ranges(stats, rule, symmetric, percentile) for rule in CANDIDATES]
    return {name: [rule_ranges[name] for rule_ranges in by_rule] for name in by_rule[0]}


@torch.no_grad()
def layer_error_ranges(
    model: onnx.ModelProto,
    stats: calibration.CalibrationStats,
    batches,
    symmetric: bool,
    percentile: float = 99.999,
    threads: int | None = None,
    progress=None,
) -> tuple[dict[str, tuple[float, float]], dict[str, dict[str, float]]]:
    """(ranges, choices): each tensor's chosen range, and for every tensor whose rules disagree,
    each rule's summed reader output error with the rule chosen. ``batches`` re-iterable as in
    ``calibration.collect``."""
    candidates = candidate_ranges(stats, symmetric, percentile)
    contested = {name: options for name, options in candidates.items() if len(set(options)) > 1}
    tensor_readers = readers(model)
    errors = {name: np.zeros(len(CANDIDATES)) for name in contested}
    if contested:
        names = list(contested)
        session = calibration.exposing_session(model, names, threads)
        input_name = session.get_inputs()[0].name
        scored = 0
        for batch in batches():
            if scored >= CHOICE_IMAGES:
                break
            scored += len(batch)
            for name, value in zip(names, session.run(names, {input_name: batch})):
                x = torch.from_numpy(value)
                distinct = list(dict.fromkeys(contested[name]))
                # the distinct candidates' errors stacked on the batch axis: each reader runs once per image
                error = torch.cat([fake_quantized(x, low, high, symmetric) - x for low, high in distinct])
                for linear in tensor_readers.get(name) or [None]:
                    out = error if linear is None else linear(error)
                    by_range = dict(zip(distinct, (out * out).reshape(len(distinct), -1).sum(1).tolist()))
                    errors[name] += [by_range[option] for option in contested[name]]
            if progress:
                progress(1)
    chosen, choices = {}, {}
    for name, options in candidates.items():
        best = int(np.argmin(errors[name])) if name in contested else 0
        chosen[name] = options[best]
        if name in contested:
            choices[name] = {"chosen": CANDIDATES[best]} | {
                rule: float(error) for rule, error in zip(CANDIDATES, errors[name])
            }
    return chosen, choices


def activation_ranges(
    model: onnx.ModelProto,
    stats: calibration.CalibrationStats,
    batches,
    method: str,
    symmetric: bool,
    percentile: float = 99.999,
    threads: int | None = None,
    progress=None,
) -> tuple[dict[str, tuple[float, float]], dict[str, dict[str, float]] | None]:
    """The ranges of ``method``: one of ``calibration.METHODS`` (choices None) or ``layer-error``."""
    if method == METHOD:
        return layer_error_ranges(model, stats, batches, symmetric, percentile, threads, progress)
    return calibration.ranges(stats, method, symmetric, percentile), None


def choice_counts(choices: dict[str, dict]) -> dict[str, int]:
    """How many contested tensors each rule won."""
    counts = dict.fromkeys(CANDIDATES, 0)
    for choice in choices.values():
        counts[choice["chosen"]] += 1
    return counts
