"""SPoC: sum-pooled convolutional features (Babenko & Lempitsky 2015, Eq. 2),
psi(I) = sum over (x, y) of f(x, y), computed as the mean (same direction after L2)."""

from torch import nn

from edgevpr.models.registry import AGGREGATORS


class SPoC(nn.Module):
    def __init__(self, in_channels: int):
        super().__init__()
        self.out_dim = in_channels

    def forward(self, features):
        return features.mean(dim=(-2, -1))


@AGGREGATORS.register("spoc")
def build(in_channels):
    return SPoC(in_channels)
