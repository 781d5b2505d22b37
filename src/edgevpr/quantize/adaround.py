"""AdaRound: learned up-or-down rounding of int8 weights (Nagel et al. 2020, "Up or Down?
Adaptive Rounding for Post-Training Quantization").

Each weight w on its channel's grid of step s may take floor(w / s) or the level above; nearest
rounding picks by distance alone. AdaRound picks, per layer, the rounding that keeps the layer's
output closest to full precision on calibration inputs x: with the quadratic form of the task
loss they derive (their Eq. 20-21), the objective is

    min_V  E[ || (W - W~(V)) x ||^2 ] + lambda * f_reg(V)
    W~(V) = s * clip(floor(W / s) + h(V), -qmax, qmax)
    h(V) = clip(sigmoid(V) (zeta - gamma) + gamma, 0, 1),  zeta = 1.1, gamma = -0.1   (Eq. 23)
    f_reg(V) = sum 1 - |2 h(V) - 1|^beta, beta annealed from 20 to 2              (Eq. 24)

Layers are rounded in the order they run, and each one's objective is asymmetric, as the
paper's reconstruction with quantized inputs: E[|| W x - W~ x~ ||^2], x the input patches the
full-precision network gives the layer, x~ those it gets once the layers before it are rounded
(their weights only; activations stay float). Expanded, it needs only the second moments A =
E[x~ x~^T] and C = E[x x~^T] over the calibration positions (``input_moments``), so no
activations are stored: tr(W~ A W~^T) - 2 tr(W C W~^T) + const. V starts where h(V) equals the
fractional part of w / s, the regulariser is off for the first 20 % of iterations, as in the
paper.

The result is checked against nearest rounding on the same objective, one output channel at a
time (the objective is a sum over output rows), and a row keeps whichever is lower: a layer's
calibration error is never above nearest rounding's.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgevpr.quantize.gptq import input_patches

INT8_ROUNDINGS = ("nearest", "adaround")
ZETA, GAMMA = 1.1, -0.1
REGULARISATION = 0.01  # lambda
BETA = (20.0, 2.0)
WARMUP = 0.2
ITERATIONS = 500
LEARNING_RATE = 0.01


def rectified_sigmoid(v: torch.Tensor) -> torch.Tensor:
    """h(V) of Eq. 23: a sigmoid stretched to (gamma, zeta) and clipped to [0, 1]."""
    return torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0, 1)


def row_errors(quantized: torch.Tensor, hessian: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per output row r of ``quantized`` W~ (groups, rows per group, d): W~_r A W~_r^T - 2 B_r W~_r^T,
    the row's mean squared output error less a constant that does not depend on W~ (A =
    ``hessian``, B = ``target``: see ``adaround_levels``)."""
    return ((torch.bmm(quantized, hessian) - 2 * target) * quantized).sum(-1)


def _gradient(v, step, floor, hessian, target, qmax: int, beta: float | None) -> torch.Tensor:
    """d/dV of the objective, written out: the reconstruction term has gradient 2 (W~ A - B)
    with respect to W~ (A symmetric), one batched product per step; the regulariser's term is
    added once ``beta`` is set."""
    sigmoid = torch.sigmoid(v)
    stretched = sigmoid * (ZETA - GAMMA) + GAMMA
    h = stretched.clamp(0, 1)
    level = floor + h
    soft = step * level.clamp(-qmax, qmax)
    grad_h = 2 * (torch.bmm(soft, hessian) - target) * step * ((level > -qmax) & (level < qmax))
    if beta is not None:
        centred = 2 * h - 1
        grad_h -= REGULARISATION * 2 * beta * centred.abs().pow(beta - 1) * centred.sign()
    return grad_h * (ZETA - GAMMA) * sigmoid * (1 - sigmoid) * ((stretched > 0) & (stretched < 1))


def adaround_levels(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    scales: np.ndarray,
    qmax: int,
    iterations: int | None = None,
    cross: torch.Tensor | None = None,
) -> np.ndarray:
    """Integer levels (int16 array shaped as ``weight``) of ``weight`` (out, ...) on per-output-
    channel ``scales`` within [-qmax, qmax], rounded by AdaRound; no row worse than nearest.

    The objective is E[|| W x - W~ x~ ||^2] over each group's input patches: x the full-precision
    network's, x~ the input this layer gets once the layers before it are rounded. ``hessian`` is
    A = E[x~ x~^T] (groups, d, d) and ``cross`` C = E[x x~^T]; without ``cross``, x~ = x (C = A)
    and the objective is tr(dW A dW^T). Expanded: tr(W~ A W~^T) - 2 tr(W C W~^T) + const."""
    iterations = iterations or ITERATIONS
    groups = hessian.shape[0]
    outputs = weight.shape[0]
    step = torch.from_numpy(np.asarray(scales, dtype=np.float64)).reshape(groups, outputs // groups, 1)
    w = weight.detach().double().reshape(groups, outputs // groups, -1)
    a64 = hessian.double()
    target64 = torch.bmm(w, a64 if cross is None else cross.double())
    floor = torch.floor(w / step)
    nearest = torch.clamp(torch.round(w / step), -qmax, qmax)
    fraction = (w / step - floor).clamp(1e-4, 1 - 1e-4)
    # h(V) = fraction at the start: invert Eq. 23
    v = torch.log((fraction - GAMMA) / (ZETA - fraction)).float()
    step32, floor32, a32, target32 = step.float(), floor.float(), a64.float(), target64.float()
    v.grad = torch.zeros_like(v)
    optimizer = torch.optim.Adam([v], lr=LEARNING_RATE)
    warmup = int(WARMUP * iterations)
    for iteration in range(iterations):
        beta = None
        if iteration >= warmup:
            progress = (iteration - warmup) / max(iterations - warmup, 1)
            beta = BETA[1] + (BETA[0] - BETA[1]) * (1 - progress)
        v.grad = _gradient(v, step32, floor32, a32, target32, qmax, beta)
        optimizer.step()
    with torch.no_grad():
        learned = torch.clamp(floor + (rectified_sigmoid(v).double() >= 0.5).double(), -qmax, qmax)
        better = row_errors(learned * step, a64, target64) < row_errors(nearest * step, a64, target64)
        levels = torch.where(better.unsqueeze(-1), learned, nearest)
    return levels.reshape(weight.shape).numpy().astype(np.int16)


class _Captured(Exception):
    """Raised by a hook once the layer's input is captured: nothing after it needs to run."""


@torch.no_grad()
def input_moments(
    reference: nn.Module, current: nn.Module, name: str, images: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A = E[x~ x~^T] and C = E[x x~^T] (groups, d, d), float64, over the input patches of the
    layer ``name``: x as the full-precision ``reference`` computes them, x~ as ``current`` (the
    same network with its earlier layers rounded) does, on ``images`` one at a time. Each
    network runs only up to that layer."""
    captured = {}

    def hook_for(key: str):
        def hook(module, inputs):
            captured[key] = input_patches(module, inputs[0]).double()
            raise _Captured

        return hook

    layers = (dict(reference.named_modules())[name], dict(current.named_modules())[name])
    handles = [layer.register_forward_pre_hook(hook_for(key)) for layer, key in zip(layers, ("x", "xq"))]
    a = c = None
    positions = 0
    try:
        for index in range(len(images)):
            for network in (reference, current):
                try:
                    network(images[index : index + 1])
                except _Captured:
                    pass
            x, xq = captured["x"], captured["xq"]
            a_part = torch.einsum("bgil,bgjl->gij", xq, xq)
            c_part = torch.einsum("bgil,bgjl->gij", x, xq)
            a, c = (a_part, c_part) if a is None else (a + a_part, c + c_part)
            positions += x.shape[0] * x.shape[-1]
    finally:
        for handle in handles:
            handle.remove()
    return a / positions, c / positions
