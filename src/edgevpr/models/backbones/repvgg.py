"""RepVGG-lite (Huang et al. 2022): RepVGG-A0 (Ding et al. 2021) without its last stage, 192 channels
at stride 16.

A0 has stages of [1, 2, 4, 14] blocks (the fifth, of one block, is dropped) with widths
[min(64, 64a), 64a, 128a, 256a], a = 0.75: [48, 48, 96, 192]; the first block of each stage
has stride 2. A training-time block sums three branches, 3x3 conv-BN, 1x1 conv-BN and (when
shapes allow) an identity BN, then applies ReLU. Structural re-parameterization (the paper's
Sec. 3.3) folds each BN into its branch, pads the 1x1 kernel to 3x3, writes the identity as a
3x3 kernel with a centred one per channel, and sums kernels and biases into one 3x3
convolution: the inference block is conv3x3 + ReLU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgevpr.errors import ConfigError
from edgevpr.models.backbones.base import FeatureBackbone
from edgevpr.models.registry import BACKBONES
from edgevpr.models.weights import load_into, load_state_dict_file, no_pretrained

A0_DEPTHS = (1, 2, 4, 14)
A0_WIDTHS = (48, 48, 96, 192)


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    )


def _fuse(kernel: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    std = torch.sqrt(bn.running_var + bn.eps)
    return kernel * (bn.weight / std).reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * bn.weight / std


class RepVGGBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.dense = _conv_bn(in_channels, out_channels, 3, stride)
        self.pointwise = _conv_bn(in_channels, out_channels, 1, stride)
        self.identity = nn.BatchNorm2d(in_channels) if in_channels == out_channels and stride == 1 else None
        self.fused: nn.Conv2d | None = None

    def forward(self, x):
        if self.fused is not None:
            return F.relu(self.fused(x))
        out = self.dense(x) + self.pointwise(x)
        if self.identity is not None:
            out = out + self.identity(x)
        return F.relu(out)

    @torch.no_grad()
    def equivalent_kernel(self) -> tuple[torch.Tensor, torch.Tensor]:
        k3, b3 = _fuse(self.dense[0].weight, self.dense[1])
        k1, b1 = _fuse(F.pad(self.pointwise[0].weight, (1, 1, 1, 1)), self.pointwise[1])
        kernel, bias = k3 + k1, b3 + b1
        if self.identity is not None:
            eye = torch.zeros_like(k3)
            eye[torch.arange(self.in_channels), torch.arange(self.in_channels), 1, 1] = 1.0
            ki, bi = _fuse(eye, self.identity)
            kernel, bias = kernel + ki, bias + bi
        return kernel, bias

    @torch.no_grad()
    def reparameterize(self) -> None:
        kernel, bias = self.equivalent_kernel()
        self.fused = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            3,
            self.stride,
            padding=1,
            bias=True,
            device=kernel.device,
            dtype=kernel.dtype,
        )
        self.fused.weight.copy_(kernel)
        self.fused.bias.copy_(bias)
        del self.dense, self.pointwise, self.identity
        self.identity = None


class RepVGGLite(nn.Module):
    def __init__(self, depths=A0_DEPTHS, widths=A0_WIDTHS):
        super().__init__()
        blocks, in_channels = [], 3
        for depth, width in zip(depths, widths):
            for index in range(depth):
                blocks.append(RepVGGBlock(in_channels, width, stride=2 if index == 0 else 1))
                in_channels = width
        self.blocks = nn.Sequential(*blocks)
        self.out_channels = in_channels

    def forward(self, x):
        return self.blocks(x)

    def reparameterize(self) -> "RepVGGLite":
        for block in self.blocks:
            block.reparameterize()
        return self


@dataclass
class RepVGGParams:
    deploy: bool = False  # the re-parameterized (single-branch, inference) form


@BACKBONES.register("repvgg_lite", params=RepVGGParams)
def repvgg_lite(config, params: RepVGGParams):
    net = RepVGGLite()
    if config.weights is not None:
        load_into(net, load_state_dict_file(config.weights), config.weights)
    elif config.pretrained:
        raise ConfigError(
            no_pretrained("repvgg_lite", "RepVGG-A0 ImageNet weights are on model hubs, unreachable offline")
        )
    if params.deploy:
        net.eval().reparameterize()
    return FeatureBackbone(net, net.out_channels)
