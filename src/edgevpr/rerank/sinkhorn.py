"""Optimal transport with a dustbin, solved by Sinkhorn iterations in log space (Sarlin et al.
2020, SuperGlue, Sec. 3.2; used by Huang et al. 2022's matcher).

The M x N score matrix S is augmented with a dustbin row and column holding one learnable
score z. The marginals are a = [1_M, N] and b = [1_N, M] (each patch matched once, the dustbins
absorbing the rest), both divided by M + N. Iterating
    u <- log a - logsumexp_j (S~_ij + v_j),   v <- log b - logsumexp_i (S~_ij + u_i)
makes P = exp(S~ + u + v) a transport plan whose rows sum to a and columns to b; the result is
log P + log(M + N), so that a matched query patch has total probability 1."""

from __future__ import annotations

import torch


def augment(scores: torch.Tensor, dustbin: torch.Tensor) -> torch.Tensor:
    """(B, M, N) scores -> (B, M + 1, N + 1) with the dustbin score in the last row and column."""
    column = torch.zeros_like(scores[:, :, :1]) + dustbin
    row = torch.zeros_like(scores[:, :1, :1]).expand(-1, -1, scores.shape[2] + 1) + dustbin
    return torch.cat([torch.cat([scores, column], dim=2), row], dim=1)


def log_optimal_transport(scores: torch.Tensor, dustbin: torch.Tensor, iterations: int) -> torch.Tensor:
    """(B, M + 1, N + 1) log assignment (rows of real patches sum to 1 in probability). Sizes
    are taken as tensors, so that an ONNX export keeps M and N dynamic."""
    couplings = augment(scores, dustbin)
    m = torch.ones_like(scores[0, :, 0]).sum()  # M and N as tensors, not Python numbers
    n = torch.ones_like(scores[0, 0, :]).sum()
    norm = -torch.log(m + n)
    log_a = torch.cat([torch.zeros_like(scores[0, :, 0]) + norm, (torch.log(n) + norm).reshape(1)])
    log_b = torch.cat([torch.zeros_like(scores[0, 0, :]) + norm, (torch.log(m) + norm).reshape(1)])
    return sinkhorn_log(couplings, log_a, log_b, iterations) - norm


def sinkhorn_log(couplings: torch.Tensor, log_a: torch.Tensor, log_b: torch.Tensor, iterations: int) -> torch.Tensor:
    """Sinkhorn's iterations in log space on (B, R, C) couplings with log marginals ``log_a``
    (R,) and ``log_b`` (C,): u <- log a - logsumexp_j (S_ij + v_j), v <- log b - logsumexp_i
    (S_ij + u_i); returns log P = S + u + v. The matcher (above) and SALAD's assignment
    (``models.aggregators.salad``) differ only in their couplings and marginals."""
    u = torch.zeros_like(couplings[:, :, 0])
    v = torch.zeros_like(couplings[:, 0, :])
    for _ in range(iterations):
        u = log_a - torch.logsumexp(couplings + v.unsqueeze(1), dim=2)
        v = log_b - torch.logsumexp(couplings + u.unsqueeze(2), dim=1)
    return couplings + u.unsqueeze(2) + v.unsqueeze(1)


def scaled_optimal_transport(scores: torch.Tensor, dustbin: torch.Tensor, iterations: int) -> torch.Tensor:
    """The same plan as ``log_optimal_transport``, iterated as matrix scaling (Cuturi 2013:
    u <- a / (K v), v <- b / (K^T u) with K = exp(S~)) for inference: two batched matrix-vector
    products per iteration instead of two log-sum-exps over the whole matrix. K is shifted by
    each pair's largest score first, so the exponentials stay in range; the result is returned
    as a log assignment, like ``log_optimal_transport``'s."""
    couplings = augment(scores, dustbin)
    m, n = scores.shape[1], scores.shape[2]
    shift = couplings.amax(dim=(1, 2), keepdim=True)
    kernel = torch.exp(couplings - shift)
    a = torch.full((m + 1,), 1.0 / (m + n), dtype=scores.dtype)
    b = torch.full((n + 1,), 1.0 / (m + n), dtype=scores.dtype)
    a[-1], b[-1] = n / (m + n), m / (m + n)
    v = torch.ones(scores.shape[0], n + 1, 1, dtype=scores.dtype)
    for _ in range(iterations):
        u = a[None, :, None] / (kernel @ v).clamp_min(1e-30)
        v = b[None, :, None] / (kernel.transpose(1, 2) @ u).clamp_min(1e-30)
    plan = u * kernel * v.transpose(1, 2)
    return torch.log(plan.clamp_min(1e-30)) + torch.log(torch.tensor(float(m + n), dtype=scores.dtype))
