"""SqueezeNet 1.1 (Iandola et al. 2016): the ``features`` stack, 512 channels at stride 16."""

from edgevpr.models.backbones.base import FeatureBackbone, torchvision_classifier
from edgevpr.models.registry import BACKBONES


@BACKBONES.register("squeezenet", "squeezenet1_1")
def squeezenet(config):
    net = torchvision_classifier("squeezenet1_1", "SqueezeNet1_1_Weights", config)
    return FeatureBackbone(net.features, 512)
