"""Cross-layer equalization (Nagel et al. 2019, section 4.1): found on the exported graph,
exact on the fp32 function, and leaving each pair's two ranges equal."""

import torch
from torch import nn

from edgevpr.config import ModelConfig
from edgevpr.models import build_model
from edgevpr.quantize.bn_fold import fold_batchnorm
from edgevpr.quantize.equalize import _ranges, equalizable_pairs, equalize
from edgevpr.quantize.onnx_export import export_onnx


def _separable_stack():
    """conv -> ReLU -> depthwise -> ReLU -> pointwise -> ReLU6 -> conv, with uneven channel
    ranges; the last pair is joined by ReLU6 and must be left alone."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 1),
        nn.ReLU6(),
        nn.Conv2d(16, 4, 1),
    ).eval()
    with torch.no_grad():
        net[0].weight[:4] *= 30.0  # four wide output channels
        net[2].weight[5:] *= 0.05
    return net


def test_equalization_leaves_the_fp32_function_unchanged():
    example = torch.rand(1, 3, 32, 40)
    resnet = build_model(ModelConfig(backbone="resnet18_conv4")).eval()
    fold_batchnorm(resnet, example)  # as quantize runs it: BatchNorm folded into the convolutions first
    for net in (_separable_stack(), resnet):
        images = torch.rand(3, 3, 32, 40) * 2 - 1
        with torch.no_grad():
            before = net(images)
        pairs = equalizable_pairs(export_onnx(net, example, {}), net, example)
        assert len(pairs) == (2 if isinstance(net, nn.Sequential) else 6)
        wide = max(max(r1.max() / r1.min(), r2.max() / r2.min()) for r1, r2 in (_ranges(*p) for p in pairs))
        assert equalize(pairs) < 1.001  # each pair's two ranges equal, channel by channel
        with torch.no_grad():
            after = net(images)
        assert torch.allclose(after, before, atol=1e-5, rtol=1e-5)
        if isinstance(net, nn.Sequential):
            assert (net[4], net[6]) not in pairs  # ReLU6 between: not homogeneous
            r1, _ = _ranges(net[0], net[2])
            assert r1.max() / r1.min() < wide  # the wide channels are narrowed
