"""SALAD (Izquierdo and Civera 2024, "Optimal Transport Aggregation for Visual Place
Recognition"), on a ViT's patch tokens t_i and class token t_{n+1}:

- local features f_i = MLP_f(t_i) (C -> 512 -> l), scores s_i = MLP_s(t_i) (C -> 512 -> m)
  forming the m x n score matrix S (Eq. 2);
- S augmented with a dustbin row of one learned score z, and the assignment P solved by
  Sinkhorn's optimal transport with marginals 1/(n+m) per cluster and feature and (n-m)/(n+m)
  for the dustbin (Eq. 3-4; ``rerank.sinkhorn.sinkhorn_log``, 3 iterations), the dustbin row
  then dropped;
- V_{j,k} = sum_i P_{k,i} f_{i,j} (Eq. 5), each cluster's column L2-normalised, flattened,
  beside the L2-normalised global token g = MLP_g(t_{n+1}) (C -> 512 -> g), and the whole
  L2-normalised: m * l + g dimensions (64 * 128 + 256 = 8448 in the paper).

The module names follow the authors' release (``token_features``, ``cluster_features``,
``score``, ``dust_bin``) so their checkpoint loads by file (``models.releases``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgevpr.models.params import positive
from edgevpr.models.registry import AGGREGATORS
from edgevpr.rerank.sinkhorn import sinkhorn_log


@dataclass
class SALADParams:
    clusters: int = 64  # m
    cluster_dim: int = 128  # l
    token_dim: int = 256  # g
    dropout: float = 0.3  # in training, before the MLPs' ReLU

    def __post_init__(self):
        for option in ("clusters", "cluster_dim", "token_dim"):
            positive(getattr(self, option), option, ">= 1")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


def salad_assignment(scores: torch.Tensor, dustbin: torch.Tensor, iterations: int = 3) -> torch.Tensor:
    """(B, m, n) scores -> (B, m, n) transport plan, the dustbin row removed (Eq. 3-4)."""
    batch, clusters, features = scores.shape
    couplings = torch.cat([scores, dustbin.expand(batch, 1, features)], dim=1)
    norm = -math.log(features + clusters)
    log_a = torch.full((clusters + 1,), norm, dtype=scores.dtype)
    log_a[-1] = norm + math.log(max(features - clusters, 1))
    log_b = torch.full((features,), norm, dtype=scores.dtype)
    plan = sinkhorn_log(couplings, log_a, log_b, iterations) - norm
    return torch.exp(plan)[:, :-1, :]


class SALAD(nn.Module):
    needs_token = True  # the backbone returns (feature map, class token)

    def __init__(self, in_channels: int, params: SALADParams):
        super().__init__()
        self.clusters, self.cluster_dim = params.clusters, params.cluster_dim
        self.out_dim = params.clusters * params.cluster_dim + params.token_dim
        self.token_features = nn.Sequential(nn.Linear(in_channels, 512), nn.ReLU(), nn.Linear(512, params.token_dim))
        self.cluster_features = nn.Sequential(
            nn.Conv2d(in_channels, 512, 1), nn.Dropout(params.dropout), nn.ReLU(), nn.Conv2d(512, params.cluster_dim, 1)
        )
        self.score = nn.Sequential(
            nn.Conv2d(in_channels, 512, 1), nn.Dropout(params.dropout), nn.ReLU(), nn.Conv2d(512, params.clusters, 1)
        )
        self.dust_bin = nn.Parameter(torch.tensor(1.0))

    def forward(self, inputs):
        features, token = inputs
        local = self.cluster_features(features).flatten(2)  # (B, l, n)
        plan = salad_assignment(self.score(features).flatten(2), self.dust_bin)  # (B, m, n)
        clusters = torch.einsum("bln,bmn->blm", local, plan)
        descriptor = torch.cat(
            [F.normalize(self.token_features(token), dim=-1), F.normalize(clusters, dim=1).flatten(1)], dim=-1
        )
        return F.normalize(descriptor, dim=-1)


@AGGREGATORS.register("salad", params=SALADParams)
def build(in_channels, params: SALADParams):
    return SALAD(in_channels, params)
