"""ONNX Runtime's uint8 activation grid: the scale and zero point its quantizer gives a range,
and QuantizeLinear's levels (q = clamp(round(x / s) + z, 0, 255), round half to even, ``x / s``
in float32). The deploy core scores ranges on it (``range_choice``); the research simulation
(``research.int8_arithmetic``) computes the deployed kernels on it."""

from __future__ import annotations

import numpy as np
import torch


def activation_grid(low: float, high: float) -> tuple[float, float]:
    """Scale and zero point of ONNX Runtime's uint8 quantization of the range
    [min(low, 0), max(high, 0)], computed as its quantizer does: the ends as float32, the
    scale in float64 (stored as float32) and the zero point from the float64 scale, rounded
    half to even (a symmetric range gets 128, not the 127 a float32 scale can give)."""
    low, high = min(float(np.float32(low)), 0.0), max(float(np.float32(high)), 0.0)
    scale = (high - low) / 255.0
    if scale < np.finfo(np.float32).tiny:
        return 1.0, 0.0
    return float(np.float32(scale)), float(np.clip(np.round(-low / scale), 0, 255))


def quantize_levels(x: torch.Tensor, grid: tuple[float, float], in_place: bool = False) -> torch.Tensor:
    """QuantizeLinear's levels, minus the zero point, as float32 (written over ``x`` if ``in_place``)."""
    scale, zero = grid
    levels = x.div_(np.float32(scale)) if in_place else x / np.float32(scale)
    return levels.round_().clamp_(-zero, 255 - zero)
