"""The common shape of a backbone: a feature extractor with a known channel count."""

from __future__ import annotations

from torch import nn

from edgevpr.compat import torchvision
from edgevpr.config import ModelConfig
from edgevpr.models.weights import (
    load_into,
    load_state_dict_file,
    torchvision_pretrained,
)


class FeatureBackbone(nn.Module):
    """Wraps a module mapping images (B, 3, H, W) to features (B, out_channels, h, w)."""

    def __init__(self, body: nn.Module, out_channels: int):
        super().__init__()
        self.body = body
        self.out_channels = out_channels

    def forward(self, x):
        return self.body(x)


def torchvision_classifier(name: str, weights_enum: str, config: ModelConfig) -> nn.Module:
    """A full torchvision classifier with the weights the config asks for.

    ``--weights PATH`` loads a state dict in torchvision's layout (classifier included, as
    torchvision publishes them); ``pretrained`` uses torchvision's weight enum and download.
    """
    builder = getattr(torchvision.models, name)
    if config.pretrained and config.weights is None:
        enum = getattr(torchvision.models, weights_enum).IMAGENET1K_V1
        return torchvision_pretrained(builder, enum, name)
    net = builder(weights=None)
    if config.weights is not None:
        load_into(net, load_state_dict_file(config.weights), config.weights)
    return net
