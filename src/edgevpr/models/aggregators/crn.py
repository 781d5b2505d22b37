"""CRN: contextual reweighting network over NetVLAD (Kim, Dunn & Frahm, CVPR 2017).

A small network predicts a weight m_i for every local feature from its context: the feature
map is average-pooled 2x2, filtered by 3x3, 5x5 and 7x7 convolutions (32, 32 and 20 maps,
ReLU), the concatenation is reduced to one map by a 1x1 convolution and upsampled back
bilinearly. The weights enter NetVLAD's sum (NetVLAD Eq. 4 with the mask):
    V(j, k) = sum_i m_i a_k(x_i) (x_i(j) - c_k(j)).
The 1x1 convolution starts at weight 0 and bias 1, so an untrained CRN equals NetVLAD.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgevpr.models.aggregators.netvlad import ClusterParams, NetVLAD
from edgevpr.models.registry import AGGREGATORS


class ContextMask(nn.Module):
    def __init__(self, in_channels: int):
        super().__init__()
        self.filters = nn.ModuleList(
            nn.Conv2d(in_channels, out, kernel, padding=kernel // 2) for kernel, out in ((3, 32), (5, 32), (7, 20))
        )
        self.combine = nn.Conv2d(84, 1, 1)
        nn.init.zeros_(self.combine.weight)
        nn.init.ones_(self.combine.bias)

    def forward(self, features):
        pooled = F.avg_pool2d(features, 2, ceil_mode=True)
        context = torch.cat([F.relu(f(pooled)) for f in self.filters], dim=1)
        mask = self.combine(context)
        return F.interpolate(mask, size=features.shape[-2:], mode="bilinear", align_corners=False)


class CRN(NetVLAD):
    def __init__(self, in_channels: int, clusters: int = 64):
        super().__init__(in_channels, clusters)
        self.context = ContextMask(in_channels)

    def forward(self, features):
        return self.aggregate(features, weights=self.context(features).flatten(2))


@AGGREGATORS.register("crn", params=ClusterParams)
def build(in_channels, params: ClusterParams):
    return CRN(in_channels, clusters=params.clusters)
