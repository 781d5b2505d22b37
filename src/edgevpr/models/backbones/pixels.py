"""The image itself as the feature map: grey levels (ITU-R BT.601 luma), the input of
SeqSLAM's descriptor (Milford and Wyeth 2012) with the ``patchnorm`` aggregator. No weights."""

from __future__ import annotations

import torch
from torch import nn

from edgevpr.errors import ConfigError
from edgevpr.models.registry import BACKBONES

LUMA = (0.299, 0.587, 0.114)


class GreyPixels(nn.Module):
    out_channels = 1

    def __init__(self):
        super().__init__()
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1))

    def forward(self, images):
        return (images * self.luma).sum(dim=1, keepdim=True)


@BACKBONES.register("pixels")
def pixels(config):
    if config.weights is not None or config.pretrained:
        raise ConfigError("backbone 'pixels' has no weights; leave out --weights and --pretrained")
    return GreyPixels()
