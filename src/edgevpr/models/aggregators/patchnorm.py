"""SeqSLAM's image descriptor (Milford and Wyeth 2012, section III.A): the feature map
area-downsampled to ``rows`` x ``cols``, then patch-normalised, each ``patch`` x ``patch``
block to zero mean and unit variance, I'(x) = (I(x) - mean_P) / std_P, and flattened. On the
``pixels`` backbone it is the low-resolution descriptor sequence matching was designed for."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from edgevpr.models.params import positive
from edgevpr.models.registry import AGGREGATORS


@dataclass
class PatchNormParams:
    rows: int = 32
    cols: int = 64
    patch: int = 8

    def __post_init__(self):
        for option in ("rows", "cols", "patch"):
            positive(getattr(self, option), option, ">= 1")
        if self.rows % self.patch or self.cols % self.patch:
            raise ValueError(f"rows and cols must be multiples of patch {self.patch}, got {self.rows}x{self.cols}")


class PatchNormalised(nn.Module):
    def __init__(self, in_channels: int, params: PatchNormParams):
        super().__init__()
        self.rows, self.cols, self.patch = params.rows, params.cols, params.patch
        self.out_dim = in_channels * params.rows * params.cols

    def forward(self, features):
        small = F.adaptive_avg_pool2d(features, (self.rows, self.cols))
        batch, channels = small.shape[:2]
        p = self.patch
        blocks = small.reshape(batch, channels, self.rows // p, p, self.cols // p, p)
        mean = blocks.mean(dim=(3, 5), keepdim=True)
        std = blocks.std(dim=(3, 5), keepdim=True, unbiased=False)
        normalised = (blocks - mean) / (std + 1e-6)
        return normalised.reshape(batch, -1)


@AGGREGATORS.register("patchnorm", params=PatchNormParams)
def build(in_channels, params: PatchNormParams):
    return PatchNormalised(in_channels, params)
