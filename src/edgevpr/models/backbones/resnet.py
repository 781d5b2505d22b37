"""ResNet-18/50/101 (He et al. 2016) cut after conv4 (``layer3``, stride 16) or conv5
(``layer4``, stride 32), as NetVLAD-style VPR models use them."""

from torch import nn

from edgevpr.models.backbones.base import FeatureBackbone, torchvision_classifier
from edgevpr.models.registry import BACKBONES

_CHANNELS = {  # depth -> (conv4 channels, conv5 channels)
    18: (256, 512),
    50: (1024, 2048),
    101: (1024, 2048),
}


def _resnet(depth: int, stage: int, config):
    net = torchvision_classifier(f"resnet{depth}", f"ResNet{depth}_Weights", config)
    layers = [net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3]
    if stage == 5:
        layers.append(net.layer4)
    return FeatureBackbone(nn.Sequential(*layers), _CHANNELS[depth][stage - 4])


def _register(depth: int, stage: int) -> None:
    names = [f"resnet{depth}_conv{stage}"] + ([f"resnet{depth}"] if stage == 5 else [])
    BACKBONES.register(*names)(lambda config: _resnet(depth, stage, config))


for _depth in _CHANNELS:
    for _stage in (4, 5):
        _register(_depth, _stage)
