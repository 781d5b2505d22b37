"""GhostCNN with dilated Ghost modules (Gong et al. 2021, Table 1 and Figures 2-3).

The trunk follows GhostNet 1.0x (Han et al. 2020, Table 1): a 3x3 stride-2 stem of 16
channels, sixteen Ghost bottlenecks in five resolution stages (output strides 2, 4, 8, 16,
32) and a final 1x1 convolution to 960 channels; the pooling and classifier layers are
dropped, so the features keep their spatial layout for NetVLAD.

A Ghost module (GhostNet Eq. 3-5) makes m = ceil(n / s) intrinsic maps Y' = X * f' with a
primary convolution and s - 1 ghost maps per intrinsic map with cheap depthwise operations
y_ij = Phi_ij(y'_i); the identity y'_i is kept, and the concatenation is cut to n channels
(s = 2 here). A Ghost bottleneck stacks an expansion module (ReLU), a stride-2 depthwise
convolution where the stride is 2, squeeze-and-excitation where Table 1 marks SE, and a
projection module (no ReLU), with an identity or depthwise+pointwise shortcut.

Dilation. Gong et al. 2021 dilate the Ghost modules with rate a in stages 1-4 and b in stage 5 (its
best: a, b = 5, 2). GhostNet's primary convolutions are 1x1, where a dilation changes
nothing, and a 3x3 primary would multiply the trunk's cost several times, against the
paper's claims (-99.04 % FLOPs, -80.16 % params against VGG16-NetVLAD; see
benchmarks/architectures_table.py, which measures both readings). So the dilation applies to
each Ghost module's spatial convolution: the primary one when ``primary_kernel`` > 1, the
cheap depthwise one otherwise. Dilation leaves params and FLOPs unchanged.

Parameter names follow timm's ``ghostnet_100``, so its checkpoints load with ``--weights``
(the classifier head is ignored); with dilation 1,1 the trunk equals timm's forward_features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from edgevpr.models.backbones.base import FeatureBackbone
from edgevpr.models.registry import BACKBONES
from edgevpr.models.weights import download_failed, load_into, load_state_dict_file

# GhostNet Table 1, grouped by resolution stage: (depthwise kernel, expansion, output, SE ratio, stride)
GHOSTNET_STAGES = (
    ((3, 16, 16, 0.0, 1),),
    ((3, 48, 24, 0.0, 2), (3, 72, 24, 0.0, 1)),
    ((5, 72, 40, 0.25, 2), (5, 120, 40, 0.25, 1)),
    (
        (3, 240, 80, 0.0, 2),
        (3, 200, 80, 0.0, 1),
        (3, 184, 80, 0.0, 1),
        (3, 184, 80, 0.0, 1),
        (3, 480, 112, 0.25, 1),
        (3, 672, 112, 0.25, 1),
    ),
    (
        (5, 672, 160, 0.25, 2),
        (5, 960, 160, 0.0, 1),
        (5, 960, 160, 0.25, 1),
        (5, 960, 160, 0.0, 1),
        (5, 960, 160, 0.25, 1),
    ),
)
# timm groups the same blocks differently (its checkpoints' "blocks.i.j" names): sizes of its groups
TIMM_GROUPS = (1, 1, 1, 1, 1, 1, 5, 1, 4)
HEAD_CHANNELS = 960


def _make_divisible(value: float, divisor: int = 4) -> int:
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _conv_bn(in_channels, out_channels, kernel, stride=1, dilation=1, groups=1, relu=True) -> nn.Sequential:
    padding = dilation * (kernel - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, padding, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True) if relu else nn.Identity(),
    )


class GhostModule(nn.Module):
    """n output maps: m intrinsic maps from the primary convolution, the rest from cheap depthwise ones."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        relu: bool,
        dilation: int = 1,
        primary_kernel: int = 1,
        ratio: int = 2,
        cheap_kernel: int = 3,
    ):
        super().__init__()
        self.out_channels = out_channels
        intrinsic = math.ceil(out_channels / ratio)
        primary_dilation = dilation if primary_kernel > 1 else 1
        cheap_dilation = 1 if primary_kernel > 1 else dilation
        self.primary_conv = _conv_bn(in_channels, intrinsic, primary_kernel, dilation=primary_dilation, relu=relu)
        self.cheap_operation = _conv_bn(
            intrinsic, intrinsic * (ratio - 1), cheap_kernel, dilation=cheap_dilation, groups=intrinsic, relu=relu
        )

    def forward(self, x):
        intrinsic = self.primary_conv(x)
        return torch.cat([intrinsic, self.cheap_operation(intrinsic)], dim=1)[:, : self.out_channels]


class SqueezeExcite(nn.Module):
    """Channel attention with a hard-sigmoid gate, as GhostNet uses it."""

    def __init__(self, channels: int, ratio: float):
        super().__init__()
        reduced = _make_divisible(channels * ratio)
        self.conv_reduce = nn.Conv2d(channels, reduced, 1)
        self.act1 = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(reduced, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x):
        weights = self.conv_expand(self.act1(self.conv_reduce(x.mean((2, 3), keepdim=True))))
        return x * self.gate(weights)


class GhostBottleneck(nn.Module):
    def __init__(
        self,
        in_channels: int,
        kernel: int,
        expansion: int,
        out_channels: int,
        se_ratio: float,
        stride: int,
        dilation: int = 1,
        primary_kernel: int = 1,
    ):
        super().__init__()
        self.ghost1 = GhostModule(in_channels, expansion, relu=True, dilation=dilation, primary_kernel=primary_kernel)
        if stride > 1:
            self.conv_dw = nn.Conv2d(
                expansion, expansion, kernel, stride, (kernel - 1) // 2, groups=expansion, bias=False
            )
            self.bn_dw = nn.BatchNorm2d(expansion)
        else:
            self.conv_dw = self.bn_dw = None
        self.se = SqueezeExcite(expansion, se_ratio) if se_ratio > 0 else None
        self.ghost2 = GhostModule(expansion, out_channels, relu=False, dilation=dilation, primary_kernel=primary_kernel)
        if in_channels == out_channels and stride == 1:
            self.shortcut = nn.Sequential()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, in_channels, kernel, stride, (kernel - 1) // 2, groups=in_channels, bias=False),
                nn.BatchNorm2d(in_channels),
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x):
        out = self.ghost1(x)
        if self.conv_dw is not None:
            out = self.bn_dw(self.conv_dw(out))
        if self.se is not None:
            out = self.se(out)
        return self.ghost2(out) + self.shortcut(x)


class HeadConv(nn.Module):
    """The final 1x1 convolution to 960 channels (timm's ConvBnAct names)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.bn1(self.conv(x)))


class GhostCNN(nn.Module):
    def __init__(self, dilation: tuple[int, int] = (5, 2), primary_kernel: int = 1):
        super().__init__()
        self.conv_stem = nn.Conv2d(3, 16, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.act1 = nn.ReLU(inplace=True)
        bottlenecks, in_channels = [], 16
        for stage, rows in enumerate(GHOSTNET_STAGES):
            rate = dilation[0] if stage < len(GHOSTNET_STAGES) - 1 else dilation[1]
            for kernel, expansion, out_channels, se_ratio, stride in rows:
                bottlenecks.append(
                    GhostBottleneck(
                        in_channels,
                        kernel,
                        expansion,
                        out_channels,
                        se_ratio,
                        stride,
                        dilation=rate,
                        primary_kernel=primary_kernel,
                    )
                )
                in_channels = out_channels
        groups, start = [], 0
        for size in TIMM_GROUPS:
            groups.append(nn.Sequential(*bottlenecks[start : start + size]))
            start += size
        groups.append(nn.Sequential(HeadConv(in_channels, HEAD_CHANNELS)))
        self.blocks = nn.Sequential(*groups)
        self.out_channels = HEAD_CHANNELS

    def forward(self, x):
        return self.blocks(self.act1(self.bn1(self.conv_stem(x))))


def _trunk_weights(state: dict) -> dict:
    """A timm ghostnet_100 checkpoint without its classifier head."""
    return {key: value for key, value in state.items() if not key.startswith(("conv_head.", "classifier."))}


def _timm_pretrained_state() -> dict:
    import timm

    try:
        return timm.create_model("ghostnet_100", pretrained=True).state_dict()
    except Exception as error:  # hub errors come in many types
        raise download_failed("ghostnet_100", error) from None


@dataclass
class GhostCNNParams:
    dilation: tuple[int, ...] = (5, 2)  # rates of stages 1-4 and of stage 5

    def __post_init__(self):
        if len(self.dilation) != 2 or min(self.dilation) < 1:
            raise ValueError(f"dilation needs two rates A,B >= 1 (stages 1-4, stage 5), got {self.dilation!r}")


@BACKBONES.register("ghostcnn", params=GhostCNNParams)
def ghostcnn(config, params: GhostCNNParams):
    net = GhostCNN(dilation=params.dilation)
    if config.weights is not None:
        load_into(net, _trunk_weights(load_state_dict_file(config.weights)), config.weights)
    elif config.pretrained:
        load_into(net, _trunk_weights(_timm_pretrained_state()), "timm ghostnet_100")
    return FeatureBackbone(net, net.out_channels)
