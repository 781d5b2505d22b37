"""MobileNetV2 (Sandler et al. 2018): the ``features`` stack, 1280 channels at stride 32."""

from edgevpr.models.backbones.base import FeatureBackbone, torchvision_classifier
from edgevpr.models.registry import BACKBONES


@BACKBONES.register("mobilenetv2", "mobilenet_v2")
def mobilenetv2(config):
    net = torchvision_classifier("mobilenet_v2", "MobileNet_V2_Weights", config)
    return FeatureBackbone(net.features, 1280)
