"""TensorFlow 'SAME' padding for stride-2 convolutions.

TensorFlow pads a stride-s, kernel-k convolution of an input of size n by
``total = max((ceil(n / s) - 1) * s + k - n, 0)`` per spatial side, ``total // 2`` before and
the rest after; PyTorch pads symmetrically. Weights trained in TensorFlow (the MobileNetV2
file in shared/weights) only reproduce their function with TensorFlow's padding.

That is ONNX's ``auto_pad="SAME_UPPER"`` (output ``ceil(n / s)``, the odd pixel at the end), so
the ONNX export is one Conv that pads itself at any input size: no Pad node, which on a
quantized graph copies every stride-2 block's input once more, and a dynamic-size model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.onnx import symbolic_helper


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    effective = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def conv2d_same(x, weight, bias, stride, dilation, groups):
    top, bottom = same_padding(int(x.shape[-2]), weight.shape[-2], stride[0], dilation[0])
    left, right = same_padding(int(x.shape[-1]), weight.shape[-1], stride[1], dilation[1])
    return F.conv2d(F.pad(x, (left, right, top, bottom)), weight, bias, stride, 0, dilation, groups)


@torch.library.custom_op("edgevpr::conv2d_same", mutates_args=())
def _conv2d_same_op(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: list[int],
    dilation: list[int],
    groups: int,
) -> torch.Tensor:
    return conv2d_same(x, weight, bias, stride, dilation, groups)


@symbolic_helper.parse_args("v", "v", "v", "is", "is", "i")
def _conv2d_same_onnx(g, x, weight, bias, stride, dilation, groups):
    inputs = [x, weight] if symbolic_helper._is_none(bias) else [x, weight, bias]
    return g.op(
        "Conv",
        *inputs,
        auto_pad_s="SAME_UPPER",
        strides_i=stride,
        dilations_i=dilation,
        group_i=groups,
        kernel_shape_i=symbolic_helper._get_tensor_sizes(weight)[-2:],
    )


torch.onnx.register_custom_op_symbolic("edgevpr::conv2d_same", _conv2d_same_onnx, 9)


class Conv2dSame(nn.Conv2d):
    """A Conv2d that pads its input as TensorFlow's 'SAME' does."""

    def forward(self, x):
        if torch.onnx.is_in_onnx_export():
            return torch.ops.edgevpr.conv2d_same(
                x, self.weight, self.bias, list(self.stride), list(self.dilation), self.groups
            )
        return conv2d_same(x, self.weight, self.bias, self.stride, self.dilation, self.groups)


def apply_tf_same_padding(module: nn.Module) -> int:
    """Turn every stride-2 Conv2d inside ``module`` into a ``Conv2dSame``; return how many."""
    changed = 0
    for conv in module.modules():
        if type(conv) is nn.Conv2d and max(conv.stride) > 1:
            conv.__class__ = Conv2dSame
            conv.padding = (0, 0)
            changed += 1
    return changed
