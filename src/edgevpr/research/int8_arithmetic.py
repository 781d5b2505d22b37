"""ONNX Runtime's fused uint8 kernels on x86, reproduced bit for bit in PyTorch.

ONNX Runtime fuses a QDQ graph's DequantizeLinear -> Conv -> QuantizeLinear into QLinearConv,
and DequantizeLinear x 2 -> Add -> QuantizeLinear into QLinearAdd. Their arithmetic rounds
differently from dequantize, float operator, quantize. Each level that flips moves the inputs
of every later layer, so the flips multiply with depth: a simulation of the unfused arithmetic
missed the deployed MobileNetV2's Gardens Point R@1 by up to 3.5 points. Reproduced here
(ONNX Runtime 1.31, MLAS):

- QuantizeLinear: q = clamp(round(x / s) + z, 0, 255), round half to even, ``x / s`` in float32.
- QLinearConv: acc = sum((q_x - z_x) * w_q) + b_q in exact int32 (the VNNI dot products do not
  saturate; on CPUs without them MLAS uses 16-bit pair sums that can), then
  q_y = round(clamp(float32(acc) * M[c], -z_y, 255 - z_y)) + z_y with
  M[c] = float32(float32(s_x * s_w[c]) / s_y) (``ComputeOutputScale`` and the ConvSym
  post-processing).
- QLinearAdd: q_c = round(fma(q_a, r_a, fma(q_b, r_b, z_c - (r_a z_a + r_b z_b)))) saturated
  to uint8, with r_a = s_a / s_c and r_b = s_b / s_c in float32: MLAS's float32 formula, whose
  multiply-adds its x86 build contracts into fused multiply-adds in this order. Found by
  matching every QLinearAdd output of the deployed MobileNetV2 on Gardens Point images; the
  division formula of the unfused graph misses 1 output in 4,000.

A convolution of integer-valued float32 tensors is exact while every partial sum stays below
2**24, which holds for any input when 255 * sum|w_q| < 2**24 in each output channel; wider
layers run as two convolutions with weights of magnitude at most 8 (w_q = 16 * high + low).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from edgevpr.quantize.activation_grid import activation_grid, quantize_levels
from edgevpr.quantize.weight_grid import channel_scales

EXACT = 2.0**24  # float32 holds every integer below this
TAG = "_edgevpr_onnx_tensor"  # attribute naming the ONNX tensor a simulated quantized tensor stands for


def tagged(x: torch.Tensor, name: str) -> torch.Tensor:
    setattr(x, TAG, name)
    return x


@dataclass
class Int8Arithmetic:
    """One int8 layer as QLinearConv computes it. ``weight`` holds the integer weight levels
    (their high part, when ``low`` is set); ``bias`` the int32 bias levels."""

    weight: torch.Tensor
    low: torch.Tensor | None
    bias: torch.Tensor
    multiplier: torch.Tensor
    input_grid: tuple[float, float]
    output_grid: tuple[float, float]

    @classmethod
    def of(
        cls, weight: torch.Tensor, bias: torch.Tensor | None, input_range, output_range, weight_max: int = 127
    ) -> Int8Arithmetic:
        scales = channel_scales(weight.numpy(), weight_max)  # the deployed per-channel int8 scales
        shape = (-1,) + (1,) * (weight.dim() - 1)
        levels = torch.clamp(torch.round(weight / torch.from_numpy(scales).reshape(shape)), -128, 127)
        input_grid, output_grid = activation_grid(*input_range), activation_grid(*output_range)
        step = np.float32(input_grid[0]) * scales  # float32, as the quantizer's bias scale
        bias = np.zeros(len(scales)) if bias is None else bias.numpy().astype(np.float64)
        bias_levels = np.clip(np.round(bias / step.astype(np.float64)), np.iinfo(np.int32).min, np.iinfo(np.int32).max)
        multiplier = (step / np.float32(output_grid[0])).astype(np.float32)
        low = None
        if (255 * levels.abs().reshape(len(levels), -1).sum(1)).max() >= EXACT:
            high = torch.round(levels / 16)
            levels, low = high, levels - 16 * high
        return cls(levels, low, torch.from_numpy(bias_levels), torch.from_numpy(multiplier), input_grid, output_grid)

    def requantize(self, accumulator: torch.Tensor, low: torch.Tensor | None = None) -> torch.Tensor:
        """Dequantized output from the convolution of the input levels with ``weight`` (and
        with ``low``, for a split layer); ``accumulator`` is overwritten."""
        shape = (1, -1) + (1,) * (accumulator.dim() - 2)
        if low is None and self.exact_bias:
            accumulator.add_(self.bias.to(torch.float32).view(shape))  # exact terms, one rounding
        else:
            wide = accumulator.double() * (16 if low is not None else 1) + self.bias.view(shape)
            accumulator = (wide + low.double() if low is not None else wide).float()
        scale, zero = self.output_grid
        return accumulator.mul_(self.multiplier.view(shape)).clamp_(-zero, 255 - zero).round_().mul_(np.float32(scale))

    @property
    def exact_bias(self) -> bool:
        return bool(self.bias.abs().max() < EXACT)


def qlinear_add(a: torch.Tensor, grid_a, b: torch.Tensor, grid_b, grid_c) -> torch.Tensor:
    """QLinearAdd of two dequantized tensors, dequantized (module docstring)."""
    (s_a, z_a), (s_b, z_b), (s_c, z_c) = grid_a, grid_b, grid_c
    r_a, r_b = np.float32(s_a) / np.float32(s_c), np.float32(s_b) / np.float32(s_c)
    fixed = np.float32(z_c) - (r_a * np.float32(z_a) + r_b * np.float32(z_b))
    q_a, q_b = quantize_levels(a, grid_a) + z_a, quantize_levels(b, grid_b) + z_b
    inner = (q_b.double() * float(r_b) + float(fixed)).float()  # a float64 sum of exact terms: one fma rounding
    total = (q_a.double() * float(r_a) + inner.double()).float()
    return total.round_().clamp_(0, 255).sub_(z_c).mul_(np.float32(s_c))
