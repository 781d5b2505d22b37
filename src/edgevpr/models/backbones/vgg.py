"""VGG16 (Simonyan & Zisserman 2015): all convolution layers, without the last max-pool,
as in NetVLAD (Arandjelovic et al. 2016): conv5_3, 512 channels at stride 16. conv5_3 is
taken after its ReLU unless ``last_relu`` is false, as Patch-NetVLAD (Hausler et al. 2021)
and CosPlace (Berton et al. 2022) cut it: ``features[:-2]``."""

from dataclasses import dataclass

from torch import nn

from edgevpr.models.backbones.base import FeatureBackbone, torchvision_classifier
from edgevpr.models.registry import BACKBONES


@dataclass
class VGG16Params:
    """last_relu: keep the ReLU after conv5_3 (NetVLAD) or end at the convolution (Patch-NetVLAD)."""

    last_relu: bool = True


@BACKBONES.register("vgg16", params=VGG16Params)
def vgg16(config, params: VGG16Params):
    net = torchvision_classifier("vgg16", "VGG16_Weights", config)
    layers = list(net.features.children())[: -1 if params.last_relu else -2]
    return FeatureBackbone(nn.Sequential(*layers), 512)
