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

E[|| dW x ||^2] = tr(dW H dW^T) with H = E[x x^T], the mean over calibration positions of each
output's input patch: the same H that GPTQ sums (``gptq.input_hessians``), so no activations are
stored. x comes from the full-precision network (the paper's asymmetric variant feeds the
quantized network's activations instead). V starts where h(V) equals the fractional part of
w / s, the regulariser is off for the first 20 % of iterations, as in the paper.

The result is checked against nearest rounding on the same objective, one output channel at a
time (the objective is a sum over output rows), and a row keeps whichever is lower: a layer's
calibration error is never above nearest rounding's.
"""

from __future__ import annotations

import numpy as np
import torch

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


def output_errors(delta: torch.Tensor, hessian: torch.Tensor) -> torch.Tensor:
    """Per output row of ``delta`` (groups, rows per group, d): dW_r H dW_r^T, the mean squared
    output error that weight change causes over the inputs H (groups, d, d) was taken on."""
    return torch.einsum("goi,gij,goj->go", delta, hessian, delta)


def _gradient(v, w, step, floor, hessian, qmax: int, beta: float | None) -> torch.Tensor:
    """d/dV of the objective, written out: the reconstruction term tr(dW H dW^T) has gradient
    -2 dW H with respect to W~ (H symmetric), one batched product per step; the regulariser's
    term is added once ``beta`` is set."""
    sigmoid = torch.sigmoid(v)
    stretched = sigmoid * (ZETA - GAMMA) + GAMMA
    h = stretched.clamp(0, 1)
    level = floor + h
    delta = w - step * level.clamp(-qmax, qmax)
    grad_h = -2 * torch.bmm(delta, hessian) * step * ((level > -qmax) & (level < qmax))
    if beta is not None:
        centred = 2 * h - 1
        grad_h -= REGULARISATION * 2 * beta * centred.abs().pow(beta - 1) * centred.sign()
    return grad_h * (ZETA - GAMMA) * sigmoid * (1 - sigmoid) * ((stretched > 0) & (stretched < 1))


def adaround_levels(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    scales: np.ndarray,
    qmax: int,
    iterations: int = ITERATIONS,
) -> np.ndarray:
    """Integer levels (int16 array shaped as ``weight``) of ``weight`` (out, ...) on per-output-
    channel ``scales`` within [-qmax, qmax], rounded by AdaRound against ``hessian`` (groups, d, d),
    the mean input second moment of each group's outputs; no row worse than nearest."""
    groups = hessian.shape[0]
    outputs = weight.shape[0]
    step = torch.from_numpy(np.asarray(scales, dtype=np.float64)).reshape(groups, outputs // groups, 1)
    w = weight.detach().double().reshape(groups, outputs // groups, -1)
    h64 = hessian.double()
    floor = torch.floor(w / step)
    nearest = torch.clamp(torch.round(w / step), -qmax, qmax)
    fraction = (w / step - floor).clamp(1e-4, 1 - 1e-4)
    # h(V) = fraction at the start: invert Eq. 23
    v = torch.log((fraction - GAMMA) / (ZETA - fraction)).float()
    w32, step32, floor32, h32 = w.float(), step.float(), floor.float(), h64.float()
    v.grad = torch.zeros_like(v)
    optimizer = torch.optim.Adam([v], lr=LEARNING_RATE)
    warmup = int(WARMUP * iterations)
    for iteration in range(iterations):
        beta = None
        if iteration >= warmup:
            progress = (iteration - warmup) / max(iterations - warmup, 1)
            beta = BETA[1] + (BETA[0] - BETA[1]) * (1 - progress)
        v.grad = _gradient(v, w32, step32, floor32, h32, qmax, beta)
        optimizer.step()
    with torch.no_grad():
        learned = torch.clamp(floor + (rectified_sigmoid(v).double() >= 0.5).double(), -qmax, qmax)
        better = output_errors(w - learned * step, h64) < output_errors(w - nearest * step, h64)
        levels = torch.where(better.unsqueeze(-1), learned, nearest)
    return levels.reshape(weight.shape).numpy().astype(np.int16)
