"""ResNet-18/50/101 (He et al. 2016) cut after conv4 (``layer3``, stride 16) or conv5
(``layer4``, stride 32), as NetVLAD-style VPR models use them."""

from functools import partial

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


BACKBONES.register("resnet18_conv4")(partial(_resnet, 18, 4))
BACKBONES.register("resnet18_conv5", "resnet18")(partial(_resnet, 18, 5))
BACKBONES.register("resnet50_conv4")(partial(_resnet, 50, 4))
BACKBONES.register("resnet50_conv5", "resnet50")(partial(_resnet, 50, 5))
BACKBONES.register("resnet101_conv4")(partial(_resnet, 101, 4))
BACKBONES.register("resnet101_conv5", "resnet101")(partial(_resnet, 101, 5))
