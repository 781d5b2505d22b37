"""SeqPool: attention-based sequence pooling of CCT (Hassani et al. 2021, Eq. 2-4):
z = softmax(g(x_L)^T) x_L, with g a linear map from each token to one score."""

import torch
from torch import nn

from edgevpr.models.registry import AGGREGATORS


class SeqPool(nn.Module):
    def __init__(self, in_channels: int):
        super().__init__()
        self.out_dim = in_channels
        self.score = nn.Linear(in_channels, 1)

    def forward(self, features):
        tokens = features.flatten(2).transpose(1, 2)  # (B, L, C): any feature map, tokens or pixels
        weights = torch.softmax(self.score(tokens), dim=1)  # (B, L, 1)
        return (weights * tokens).sum(dim=1)


@AGGREGATORS.register("seqpool")
def build(in_channels):
    return SeqPool(in_channels)
