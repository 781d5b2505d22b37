"""Learned PCA and PCA-whitening projections of descriptors (as NetVLAD, Berton et al. 2022 and
Gong et al. 2021 use them): fitted on database descriptors, kept in the model's state dict, applied
before the final L2 normalisation.

With database descriptors X (N x D), mean mu and covariance eigenpairs (lambda_i, u_i) in
decreasing order, the projection to d dimensions is
    y = U_d^T (x - mu)                                  (PCA)
    y = diag(lambda_1..d + eps)^(-1/2) U_d^T (x - mu)   (PCA-whitening, Jegou & Chum 2012)
so the fitted descriptors have identity covariance after whitening.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgevpr.errors import ConfigError


class PCAProjection(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, whiten: bool = False, eps: float = 1e-9):
        super().__init__()
        if out_dim > in_dim:
            raise ConfigError(f"--pca {out_dim} exceeds the descriptor size {in_dim}")
        self.out_dim, self.whiten, self.eps = out_dim, whiten, eps
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("matrix", torch.zeros(out_dim, in_dim))  # rows: (scaled) components
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, descriptors: np.ndarray) -> None:
        data = np.asarray(descriptors, dtype=np.float64)
        if len(data) <= self.out_dim:
            raise ConfigError(
                f"PCA to {self.out_dim} dimensions needs more than {self.out_dim} descriptors to fit, "
                f"got {len(data)} (a larger database, or more calibration images for an export)"
            )
        mean = data.mean(axis=0)
        _, singular, components = np.linalg.svd(data - mean, full_matrices=False)
        variances = singular**2 / (len(data) - 1)
        available = min(self.out_dim, len(variances))
        matrix = np.zeros((self.out_dim, data.shape[1]))
        matrix[:available] = components[:available]
        if self.whiten:
            matrix[:available] /= np.sqrt(variances[:available] + self.eps)[:, None]
        self.mean.copy_(torch.from_numpy(mean))
        self.matrix.copy_(torch.from_numpy(matrix))
        self.fitted.fill_(True)

    def forward(self, x):
        return (x - self.mean) @ self.matrix.T

    def apply_numpy(self, descriptors: np.ndarray) -> np.ndarray:
        """The same projection and L2 normalisation on already extracted descriptors."""
        projected = (descriptors - self.mean.numpy()) @ self.matrix.numpy().T
        return (projected / (np.linalg.norm(projected, axis=1, keepdims=True) + 1e-12)).astype(np.float32)
