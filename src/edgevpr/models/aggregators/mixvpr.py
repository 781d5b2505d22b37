"""MixVPR (Ali-bey et al. 2023, "MixVPR: Feature Mixing for Visual Place Recognition"): the
feature map's h x w cells, flattened to (C, hw), pass L Feature-Mixer blocks, each
X <- X + W_2 ReLU(W_1 LN(X)) mixing across all cells of a channel (Eq. 1); then a depth-wise
projection C -> d (``channel_proj``) and a row-wise projection hw -> r (``row_proj``) give
d x r, flattened and L2-normalised (Eq. 2-3): 1024 x 4 = 4096 dimensions for ResNet-50 conv4
at 320 x 320 (a 20 x 20 map). The mixers are sized for one map size (``in_h`` x ``in_w``);
module names follow the authors' release so their checkpoint loads by file."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from edgevpr.errors import ConfigError
from edgevpr.models.params import positive
from edgevpr.models.registry import AGGREGATORS


@dataclass
class MixVPRParams:
    in_h: int = 20  # the feature map the mixers are sized for: 320 x 320 images at stride 16
    in_w: int = 20
    out_channels: int = 1024  # d
    mix_depth: int = 4  # L
    mlp_ratio: float = 1.0
    out_rows: int = 4  # r

    def __post_init__(self):
        for option in ("in_h", "in_w", "out_channels", "mix_depth", "out_rows"):
            positive(getattr(self, option), option, ">= 1")
        positive(self.mlp_ratio, "mlp_ratio")


class FeatureMixerLayer(nn.Module):
    def __init__(self, cells: int, mlp_ratio: float):
        super().__init__()
        hidden = int(cells * mlp_ratio)
        self.mix = nn.Sequential(nn.LayerNorm(cells), nn.Linear(cells, hidden), nn.ReLU(), nn.Linear(hidden, cells))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        return x + self.mix(x)


class MixVPR(nn.Module):
    def __init__(self, in_channels: int, params: MixVPRParams):
        super().__init__()
        self.in_h, self.in_w = params.in_h, params.in_w
        cells = params.in_h * params.in_w
        self.mix = nn.Sequential(*[FeatureMixerLayer(cells, params.mlp_ratio) for _ in range(params.mix_depth)])
        self.channel_proj = nn.Linear(in_channels, params.out_channels)
        self.row_proj = nn.Linear(cells, params.out_rows)
        self.out_dim = params.out_channels * params.out_rows

    def forward(self, features):
        if tuple(features.shape[-2:]) != (self.in_h, self.in_w):
            raise ConfigError(
                f"MixVPR is sized for {self.in_h}x{self.in_w} feature maps, got {features.shape[-2]}x"
                f"{features.shape[-1]}: give the input size it was built for (--size), or set its params in_h and in_w"
            )
        x = self.mix(features.flatten(2))
        x = self.channel_proj(x.transpose(1, 2)).transpose(1, 2)
        return F.normalize(self.row_proj(x).flatten(1), dim=-1)


@AGGREGATORS.register("mixvpr", params=MixVPRParams)
def build(in_channels, params: MixVPRParams):
    return MixVPR(in_channels, params)
