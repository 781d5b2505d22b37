"""CLS: the class token of a transformer backbone as the descriptor (ViT, Dosovitskiy et al.
2021), token 0 of the backbone's (B, C, 1, L) token map."""

from torch import nn

from edgevpr.models.registry import AGGREGATORS


class CLSToken(nn.Module):
    def __init__(self, in_channels: int):
        super().__init__()
        self.out_dim = in_channels

    def forward(self, tokens):
        return tokens[:, :, 0, 0]


@AGGREGATORS.register("cls")
def build(in_channels):
    return CLSToken(in_channels)
