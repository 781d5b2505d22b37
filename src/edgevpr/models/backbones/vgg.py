"""VGG16 (Simonyan & Zisserman 2015): all convolution layers, without the last max-pool,
as in NetVLAD (Arandjelovic et al. 2016): conv5_3 after ReLU, 512 channels at stride 16."""

from torch import nn

from edgevpr.models.backbones.base import FeatureBackbone, torchvision_classifier
from edgevpr.models.registry import BACKBONES


@BACKBONES.register("vgg16")
def vgg16(config):
    net = torchvision_classifier("vgg16", "VGG16_Weights", config)
    return FeatureBackbone(nn.Sequential(*list(net.features.children())[:-1]), 512)
