"""GeM: generalized-mean pooling (Radenovic et al. 2019, Eq. 3),
f_k = (mean_x X_k(x)^p)^(1/p) with a learnable p; features are clamped at eps first."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgevpr.models.params import positive
from edgevpr.models.registry import AGGREGATORS


@dataclass
class GeMParams:
    p: float = 3.0  # initial p of Eq. 3 (learned in training)
    normalize_input: bool = False  # L2-normalise each cell's features first (CosPlace, EigenPlaces)

    def __post_init__(self):
        positive(self.p, "p")


class GeM(nn.Module):
    def __init__(self, in_channels: int, p: float = 3.0, eps: float = 1e-6, normalize_input: bool = False):
        super().__init__()
        self.out_dim = in_channels
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps
        self.normalize_input = normalize_input

    def forward(self, features):
        if self.normalize_input:
            features = F.normalize(features, dim=1)
        pooled = features.clamp(min=self.eps).pow(self.p).mean(dim=(-2, -1))
        return pooled.pow(1.0 / self.p)


@AGGREGATORS.register("gem", params=GeMParams)
def build(in_channels, params: GeMParams):
    return GeM(in_channels, p=params.p, normalize_input=params.normalize_input)
