"""RRM: the Residual Retrieval Module (Kordopatis-Zilos et al. 2021, "Leveraging EfficientNet
and Contrastive Learning for Accurate Global-scale Location Estimation", Sec. 3.2), one of the
aggregators Berton et al. 2022 compares.

The feature map (or token map) is average-pooled to g, layer-normalised, and refined by a
two-layer residual MLP: f = LN_2(W_2 ReLU(W_1 LN_1(g) + b_1) + b_2 + LN_1(g)), with W_1 and W_2
of size C x C, so the descriptor keeps the backbone's C channels. The model L2-normalises f.
"""

from torch import nn

from edgevpr.models.registry import AGGREGATORS


class ResidualRetrievalModule(nn.Module):
    def __init__(self, in_channels: int):
        super().__init__()
        self.out_dim = in_channels
        self.norm_in = nn.LayerNorm(in_channels)
        self.fc1 = nn.Linear(in_channels, in_channels)
        self.fc2 = nn.Linear(in_channels, in_channels)
        self.norm_out = nn.LayerNorm(in_channels)

    def forward(self, features):
        pooled = self.norm_in(features.mean(dim=(-2, -1)))
        return self.norm_out(self.fc2(self.fc1(pooled).relu()) + pooled)


@AGGREGATORS.register("rrm")
def build(in_channels):
    return ResidualRetrievalModule(in_channels)
