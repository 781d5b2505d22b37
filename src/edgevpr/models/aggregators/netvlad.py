"""NetVLAD (Arandjelovic et al. 2016, Eq. 4):
V(j, k) = sum_i a_k(x_i) (x_i(j) - c_k(j)),  a_k(x_i) = softmax_k(w_k^T x_i + b_k),
with w_k = 2 alpha c_k and b_k = -alpha ||c_k||^2 at initialisation (Eq. 3), local features
L2-normalised first, then intra-normalisation per cluster and a final L2 normalisation.
Clusters start from k-means on local features sampled from images (``init_from_features``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgevpr.models.params import positive
from edgevpr.models.registry import AGGREGATORS


@dataclass
class ClusterParams:
    """NetVLAD and CRN: the number of clusters K."""

    clusters: int = 64

    def __post_init__(self):
        positive(self.clusters, "clusters", ">= 1")


@dataclass
class NetVLADParams(ClusterParams):
    """assign_bias: the soft-assignment's b_k (NetVLAD's Eq. 3; Patch-NetVLAD's released models
    have none: ``vladv2 = False``). final_norm: L2-normalise V inside the aggregator, so that a
    projection after it (Patch-NetVLAD's WPCA) sees the unit vector, as the paper's last step."""

    assign_bias: bool = True
    final_norm: bool = False


class NetVLAD(nn.Module):
    def __init__(
        self,
        in_channels: int,
        clusters: int = 64,
        alpha: float = 100.0,
        assign_bias: bool = True,
        final_norm: bool = False,
    ):
        super().__init__()
        self.clusters = clusters
        self.out_dim = clusters * in_channels
        self.alpha = alpha
        self.final_norm = final_norm
        self.assign = nn.Conv2d(in_channels, clusters, kernel_size=1, bias=assign_bias)
        self.centroids = nn.Parameter(torch.rand(clusters, in_channels))
        self.register_buffer("initialised", torch.tensor(False))

    @torch.no_grad()
    def init_from_features(self, local_features: np.ndarray, seed: int = 0) -> None:
        """k-means on (N, C) local descriptors; alpha from the two nearest centroids' gap."""
        import faiss

        data = np.ascontiguousarray(local_features, dtype=np.float32)
        data /= np.linalg.norm(data, axis=1, keepdims=True) + 1e-12
        if len(data) < self.clusters:
            raise ValueError(f"NetVLAD needs at least {self.clusters} local features, got {len(data)}")
        kmeans = faiss.Kmeans(data.shape[1], self.clusters, niter=50, seed=seed, spherical=True, verbose=False)
        kmeans.train(data)
        centroids = kmeans.centroids / (np.linalg.norm(kmeans.centroids, axis=1, keepdims=True) + 1e-12)
        similarity = data @ centroids.T
        top2 = -np.sort(-similarity, axis=1)[:, :2]
        self.alpha = float(-np.log(0.01) / np.mean(top2[:, 0] - top2[:, 1]))
        c = torch.from_numpy(centroids)
        self.centroids.copy_(c)
        self.assign.weight.copy_((2.0 * self.alpha * c)[:, :, None, None])
        if self.assign.bias is not None:
            self.assign.bias.copy_(-self.alpha * c.pow(2).sum(dim=1))
        self.initialised.fill_(True)

    def forward(self, features):
        return self.aggregate(features)

    def aggregate(self, features, weights=None):
        """NetVLAD; ``weights`` (B, 1, N) scale each local feature's assignment (CRN)."""
        x = F.normalize(features, dim=1)
        soft = F.softmax(self.assign(x), dim=1).flatten(2)  # (B, K, N)
        if weights is not None:
            soft = soft * weights
        x = x.flatten(2)  # (B, C, N)
        vlad = torch.einsum("bkn,bcn->bkc", soft, x) - soft.sum(dim=2).unsqueeze(-1) * self.centroids
        return self.normalise(vlad)

    def normalise(self, vlad: torch.Tensor) -> torch.Tensor:
        """(B, K, C, ...) residual sums -> intra-normalised, flattened (B, K*C, ...), L2 with final_norm."""
        vlad = F.normalize(vlad, dim=2).flatten(1, 2)
        return F.normalize(vlad, dim=1) if self.final_norm else vlad


@AGGREGATORS.register("netvlad", params=NetVLADParams)
def build(in_channels, params: NetVLADParams):
    return NetVLAD(in_channels, params.clusters, assign_bias=params.assign_bias, final_norm=params.final_norm)
