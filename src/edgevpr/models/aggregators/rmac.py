"""R-MAC: regional maximum activations of convolutions (Tolias et al. 2016, Sec. 3).

Square regions at L scales: at scale l the side is 2 * min(H, W) / (l + 1), placed on a
uniform grid with about 40 % overlap (the paper's rule for the number of regions along the
long side). Each region's MAC vector is L2-normalised, the vectors are summed, and the sum
is L2-normalised by the model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from edgevpr.models.registry import AGGREGATORS


def rmac_regions(height: int, width: int, levels: int = 3) -> list[tuple[int, int, int, int]]:
    """(top, left, size_h, size_w) of each region, the whole map first."""
    regions = [(0, 0, height, width)]
    short, long = min(height, width), max(height, width)
    overlap = 0.4
    # Extra regions along the long side: the count whose overlap is closest to 40 %.
    steps = list(range(1, 7))
    costs = [abs(((short**2 - short * (long - short) / s) / short**2) - overlap) for s in steps]
    extra = steps[min(range(len(costs)), key=costs.__getitem__)] if long > short else 0
    for level in range(1, levels + 1):
        side = max(1, math.floor(2 * short / (level + 1)))
        along_h = level + (extra if height > width else 0)
        along_w = level + (extra if width > height else 0)
        for i in range(along_h):
            top = 0 if along_h == 1 else round(i * (height - side) / (along_h - 1))
            for j in range(along_w):
                left = 0 if along_w == 1 else round(j * (width - side) / (along_w - 1))
                regions.append((top, left, side, side))
    return regions


class RMAC(nn.Module):
    def __init__(self, in_channels: int, levels: int = 3):
        super().__init__()
        self.out_dim = in_channels
        self.levels = levels

    def forward(self, features):
        height, width = features.shape[-2:]
        total = torch.zeros(features.shape[:2], dtype=features.dtype, device=features.device)
        for top, left, size_h, size_w in rmac_regions(int(height), int(width), self.levels):
            region = features[..., top : top + size_h, left : left + size_w].amax(dim=(-2, -1))
            total = total + F.normalize(region, dim=-1)
        return total


@AGGREGATORS.register("rmac", "r-mac")
def build(in_channels):
    return RMAC(in_channels)
