"""TensorFlow 'SAME' padding for stride-2 convolutions.

TensorFlow pads a stride-s, kernel-k convolution of an input of size n by
``total = max((ceil(n / s) - 1) * s + k - n, 0)`` per spatial side, ``total // 2`` before and
the rest after; PyTorch pads symmetrically. Weights trained in TensorFlow (the MobileNetV2
file in shared/weights) only reproduce their function with TensorFlow's padding.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import nn


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    effective = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """A Conv2d that pads its input as TensorFlow's 'SAME' does."""

    def forward(self, x):
        # int(): an ONNX trace records the pads as constants, so exported models are fixed-size.
        height, width = int(x.shape[-2]), int(x.shape[-1])
        top, bottom = same_padding(height, self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = same_padding(width, self.kernel_size[1], self.stride[1], self.dilation[1])
        return self._conv_forward(F.pad(x, (left, right, top, bottom)), self.weight, self.bias)


def apply_tf_same_padding(module: nn.Module) -> int:
    """Turn every stride-2 Conv2d inside ``module`` into a ``Conv2dSame``; return how many."""
    changed = 0
    for conv in module.modules():
        if type(conv) is nn.Conv2d and max(conv.stride) > 1:
            conv.__class__ = Conv2dSame
            conv.padding = (0, 0)
            changed += 1
    return changed
