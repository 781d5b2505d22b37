"""Simulated quantization in PyTorch, for the mixed-precision search (seed 000 section 3.4).

The searchable layers are the convolutions and linear layers of the BN-folded model, in the
order they run. Each takes one precision:

- ``int8``: weights per-channel symmetric int8 (the scales the deployed int8 model uses, see
  ``weight_grid.channel_scales``); the layer's input activation per tensor, uint8 with the
  calibrated range (as ``--target cpu`` deploys it), or symmetric int8.
- ``int4``: weights per-channel symmetric int4 (max|w| / 7, values in [-8, 7]); activations
  float, as the int4 deployment keeps them.
- ``fp16``: weights and input activation rounded to float16.

Fitness is seed 000's Eq. 10: minus the mean squared difference between the descriptors of
the simulated model and those of the full-precision model on L calibration images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edgevpr.quantize.calibration import BINS, CalibrationStats, TensorStats, ranges
from edgevpr.quantize.weight_grid import channel_scales

PRECISIONS = ("int4", "int8", "fp16")
BITS = {"int4": 4, "int8": 8, "fp16": 16}


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
    handles = [m.register_forward_pre_hook(lambda module, inputs: order.append(module))
               for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        model(example)
    finally:
        for handle in handles:
            handle.remove()
    unique = list(dict.fromkeys(order))
    return [Layer(names[m], m, sum(p.numel() for p in m.parameters())) for m in unique]


def quantized_weight(weight: torch.Tensor, precision: str) -> torch.Tensor:
    if precision == "fp16":
        return weight.half().float()
    if precision == "int8":
        scales = torch.from_numpy(channel_scales(weight.numpy(), 127))
        low, high = -128, 127
    elif precision == "int4":
        flat = weight.reshape(weight.shape[0], -1).abs().amax(dim=1) / 7.0
        scales = torch.where(flat > 0, flat, torch.ones_like(flat))
        low, high = -8, 7
    else:
        raise ValueError(f"unknown precision {precision!r}")
    shape = (-1,) + (1,) * (weight.dim() - 1)
    scales = scales.reshape(shape).to(weight.dtype)
    return torch.clamp(torch.round(weight / scales), low, high) * scales


def fake_activation(x: torch.Tensor, low: float, high: float, asymmetric: bool = True) -> torch.Tensor:
    """Quantize-dequantize per tensor as ONNX Runtime does: uint8 on [min(low, 0), max(high, 0)]
    with a zero point, or symmetric int8 on [-bound, bound]."""
    if asymmetric:
        low, high = min(low, 0.0), max(high, 0.0)
        scale = (high - low) / 255.0 or 1.0
        zero = float(np.clip(round(-low / scale), 0, 255))
        return (torch.clamp(torch.round(x / scale) + zero, 0, 255) - zero) * scale
    bound = max(abs(low), abs(high)) or 1.0
    scale = bound / 127.0
    return torch.clamp(torch.round(x / scale), -127, 127) * scale


def _batches(images: torch.Tensor, size: int = 8):
    for start in range(0, len(images), size):
        yield images[start:start + size]


@torch.no_grad()
def activation_ranges(model: nn.Module, layers: list[Layer], images: torch.Tensor, method: str,
                      asymmetric: bool = True, percentile: float = 99.999) -> dict[str, tuple[float, float]]:
    """Per-tensor ranges of each layer's input, by the calibrators of ``calibration`` (two
    streamed passes: min/max, then a 2048-bin histogram of |x|)."""
    stats = CalibrationStats({layer.name: TensorStats() for layer in layers})

    def first_pass(name):
        def hook(module, inputs):
            s, x = stats.tensors[name], inputs[0]
            s.minimum, s.maximum = min(s.minimum, float(x.min())), max(s.maximum, float(x.max()))
        return hook

    def second_pass(name):
        def hook(module, inputs):
            s = stats.tensors[name]
            top = s.absmax if s.absmax > 0 else 1.0
            counts = torch.histc(inputs[0].abs().float(), bins=BINS, min=0.0, max=top).numpy()
            s.hist = counts if s.hist is None else s.hist + counts
            s.samples += inputs[0].numel()
        return hook

    for make in (first_pass, second_pass):
        handles = [layer.module.register_forward_pre_hook(make(layer.name)) for layer in layers]
        try:
            for batch in _batches(images):
                model(batch)
        finally:
            for handle in handles:
                handle.remove()
    stats.images = len(images)
    return ranges(stats, method, symmetric=not asymmetric, percentile=percentile)


class Simulator:
    """Switches each layer of a (BN-folded) model between fp32, fp16, int8 and int4."""

    def __init__(self, model: nn.Module, layers: list[Layer], act_ranges: dict, images: torch.Tensor,
                 asymmetric: bool = True):
        self.model, self.layers, self.ranges, self.images = model.eval(), layers, act_ranges, images
        self.asymmetric = asymmetric
        self.original = {layer.name: layer.module.weight.detach().clone() for layer in layers}
        self.variants = {(layer.name, p): quantized_weight(self.original[layer.name], p)
                         for layer in layers for p in PRECISIONS}
        self.modes = {layer.name: "fp32" for layer in layers}
        for layer in layers:
            layer.module.register_forward_pre_hook(self._input_hook(layer.name))
        self.reference = self.descriptors()
        self.evaluations = 0

    def _input_hook(self, name: str):
        def hook(module, inputs):
            mode = self.modes[name]
            if mode == "int8":
                return (fake_activation(inputs[0], *self.ranges[name], asymmetric=self.asymmetric),)
            if mode == "fp16":
                return (inputs[0].half().float(),)
            return None
        return hook

    @torch.no_grad()
    def set(self, assignment: list[str] | None) -> None:
        """``assignment[i]`` is the precision of layer i (``None``: everything fp32)."""
        for i, layer in enumerate(self.layers):
            mode = "fp32" if assignment is None else assignment[i]
            self.modes[layer.name] = mode
            weight = self.original[layer.name] if mode == "fp32" else self.variants[(layer.name, mode)]
            layer.module.weight.copy_(weight)

    @torch.no_grad()
    def descriptors(self) -> np.ndarray:
        return torch.cat([self.model(batch) for batch in _batches(self.images)]).numpy()

    def fitness(self, assignment: list[str]) -> float:
        """Eq. 10: minus the mean squared descriptor difference against full precision."""
        self.set(assignment)
        try:
            difference = self.descriptors() - self.reference
        finally:
            self.set(None)
        self.evaluations += 1
        return -float(np.mean(np.sum(difference**2, axis=1)))
