"""MAC: maximum activation of convolutions (Tolias et al. 2016, Eq. 1), f_k = max_x X_k(x)."""

from torch import nn

from edgevpr.models.registry import AGGREGATORS


class MAC(nn.Module):
    def __init__(self, in_channels: int):
        super().__init__()
        self.out_dim = in_channels

    def forward(self, features):
        return features.amax(dim=(-2, -1))


@AGGREGATORS.register("mac")
def build(in_channels):
    return MAC(in_channels)
