"""Simulated quantization in PyTorch, for the mixed-precision search (seed 000 section 3.4).

The searchable layers are the convolutions and linear layers of the BN-folded model, in the
order they run. Each takes one precision, simulated as ``mixed_export`` deploys it:

- ``int8``: weights per-channel symmetric int8 (the scales the deployed int8 model uses, see
  ``weight_grid.channel_scales``), and the bias on the int32 grid of input scale x weight
  scale that ONNX Runtime's quantizer stores it on (``int8_bias``). The layer's input tensor
  and its output tensor (after the Clip/Relu that ONNX Runtime fuses into it,
  ``mixed_export.int8_tensors``) are quantized per tensor to uint8 with the ranges calibrated
  on the exported graph, the ranges the deployed file uses. As in the QDQ graph, every
  consumer of those tensors reads the quantized values: the input is quantized in place
  before the layer runs, so a residual addition that reads the same tensor afterwards sees it
  quantized too.
- ``int4``: weights per-channel symmetric int4 (max|w| / 7, values in [-8, 7]) and, if asked,
  the bias corrected for the mean output shift those weights cause (module
  ``bias_correction``); activations float, as the int4 deployment keeps them.
- ``fp16``: weights rounded to float16; activations float32, as the deployed file computes
  them (no float16 kernels on a CPU).

Fitness is seed 000's Eq. 10: minus the mean squared difference between the descriptors of
the simulated model and those of the full-precision model on L calibration images. The model
runs in channels-last memory format, which this CPU's convolutions run about 2x faster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edgevpr.quantize.bias_correction import corrected_biases
from edgevpr.quantize.int4 import quantize_int4_symmetric
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
    shape = (-1,) + (1,) * (weight.dim() - 1)
    if precision == "int4":
        levels, scales = quantize_int4_symmetric(weight.numpy(), axis=0)
        return torch.from_numpy(levels.astype(np.float32) * scales.reshape(shape))
    if precision != "int8":
        raise ValueError(f"unknown precision {precision!r}")
    scales = torch.from_numpy(channel_scales(weight.numpy(), 127)).reshape(shape).to(weight.dtype)
    return torch.clamp(torch.round(weight / scales), -128, 127) * scales


def activation_grid(low: float, high: float) -> tuple[float, float]:
    """Scale and zero point of ONNX Runtime's uint8 quantization of the range
    [min(low, 0), max(high, 0)]: a float32 scale, round half to even."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = float(np.float32((high - low) / 255.0)) or 1.0
    return scale, float(np.clip(round(-low / scale), 0, 255))


def fake_activation_(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Quantize-dequantize ``x`` in place as ONNX Runtime's uint8 QuantizeLinear does."""
    scale, zero = activation_grid(low, high)
    return x.div_(scale).round_().add_(zero).clamp_(0, 255).sub_(zero).mul_(scale)


def int8_bias(bias: torch.Tensor, weight: torch.Tensor, input_range: tuple[float, float]) -> torch.Tensor:
    """The bias of an int8 layer as the deployed graph holds it: int32 multiples of
    s_in * s_w[c] (input scale times each output channel's weight scale), the grid on which the
    integer accumulator adds it. Rounding it off that grid moves every output of a channel by the
    same fraction of a step, which the simulation would otherwise miss."""
    step = np.float32(activation_grid(*input_range)[0]) * channel_scales(weight.numpy(), 127)  # float32, as ORT
    levels = np.clip(np.round(bias.numpy().astype(np.float64) / step.astype(np.float64)),
                     np.iinfo(np.int32).min, np.iinfo(np.int32).max)
    return torch.from_numpy((levels.astype(np.float32) * step).astype(np.float32))


def fake_activation(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return fake_activation_(x.clone(), low, high)


def _batches(images: torch.Tensor, size: int = 8):
    for start in range(0, len(images), size):
        yield images[start:start + size]


class Simulator:
    """Switches each layer of a (BN-folded) model between fp32, fp16, int8 and int4.

    ``act_ranges[layer]`` holds the ``"input"`` and ``"output"`` ranges of an int8 layer; with
    ``bias_correction`` an int4 layer's bias is corrected on ``images`` (layers without a bias
    get a zero one)."""

    def __init__(self, model: nn.Module, layers: list[Layer], act_ranges: dict[str, dict[str, tuple[float, float]]],
                 images: torch.Tensor, bias_correction: bool = False):
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.layers, self.ranges = layers, act_ranges
        self.images = images.contiguous(memory_format=torch.channels_last)
        self.original = {layer.name: layer.module.weight.detach().clone() for layer in layers}
        self.variants = {(layer.name, p): quantized_weight(self.original[layer.name], p)
                         for layer in layers for p in PRECISIONS}
        self.modes = {layer.name: "fp32" for layer in layers}
        if bias_correction:
            for layer in layers:
                if layer.module.bias is None:
                    layer.module.bias = nn.Parameter(torch.zeros(layer.module.weight.shape[0]), requires_grad=False)
        self.original_bias = {layer.name: None if layer.module.bias is None else layer.module.bias.detach().clone()
                              for layer in layers}
        self.biases: dict[tuple[str, str], torch.Tensor] = {
            (layer.name, "int8"): int8_bias(self.original_bias[layer.name], self.original[layer.name],
                                            act_ranges[layer.name]["input"])
            for layer in layers if self.original_bias[layer.name] is not None and layer.name in act_ranges}
        # the layer hooks quantize in place, so the caller's images are copied first
        self.model.register_forward_pre_hook(lambda module, inputs: (inputs[0].clone(memory_format=torch.channels_last),
                                                                     *inputs[1:]))
        for layer in layers:
            layer.module.register_forward_pre_hook(self._input_hook(layer.name))
            layer.module.register_forward_hook(self._output_hook(layer.name))
        self.reference = self.descriptors()
        self.evaluations = 0
        if bias_correction:
            biases = corrected_biases(self.model, {layer.name: layer.module for layer in layers},
                                      {layer.name: self.variants[(layer.name, "int4")] for layer in layers},
                                      _batches(self.images))
            self.biases |= {(name, "int4"): bias for name, bias in biases.items()}

    def _input_hook(self, name: str):
        def hook(module, inputs):
            if self.modes[name] == "int8":
                fake_activation_(inputs[0], *self.ranges[name]["input"])
        return hook

    def _output_hook(self, name: str):
        def hook(module, inputs, output):
            if self.modes[name] == "int8":
                return fake_activation_(output, *self.ranges[name]["output"])
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
            bias = self.biases.get((layer.name, mode), self.original_bias[layer.name])
            if bias is not None:
                layer.module.bias.copy_(bias)

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

    def one_layer_errors(self, precision: str, base: str = "fp16", progress=None) -> list[float]:
        """Descriptor error (minus fitness) with one layer at ``precision`` and every other at
        ``base``, for each layer in turn."""
        errors = []
        for i in range(len(self.layers)):
            candidate = [base] * len(self.layers)
            candidate[i] = precision
            errors.append(-self.fitness(candidate))
            if progress:
                progress(1)
        return errors
