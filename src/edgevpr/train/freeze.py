"""Freezing leading backbone stages, and frozen BatchNorm.

A backbone's stages are the children of its feature stack in order (torchvision's
``features``/ResNet layers, timm's stem and blocks). Frozen BatchNorm keeps running
statistics and affine parameters fixed and normalises with the stored statistics, which a
model whose BN was folded into its convolutions (identity statistics) needs.
"""

from __future__ import annotations

from torch import nn

from edgevpr.errors import ConfigError


def backbone_stages(backbone: nn.Module) -> list[nn.Module]:
    body = getattr(backbone, "body", backbone)
    net = getattr(body, "net", None)
    if net is not None and hasattr(net, "blocks"):  # timm: stem, then one stage per block group
        stem = [m for name, m in net.named_children() if name in ("conv_stem", "bn1")]
        return stem + list(net.blocks.children())
    stages = list(body.children())
    while len(stages) == 1 and list(stages[0].children()):
        stages = list(stages[0].children())
    return stages


def freeze_stages(backbone: nn.Module, count: int) -> int:
    """Stop gradients through the first ``count`` stages; return how many parameters froze."""
    stages = backbone_stages(backbone)
    if not 0 <= count <= len(stages):
        raise ConfigError(f"train.freeze_stages must be in 0..{len(stages)} for this backbone, got {count}")
    frozen = 0
    for stage in stages[:count]:
        for parameter in stage.parameters():
            parameter.requires_grad_(False)
            frozen += parameter.numel()
    return frozen


def batch_norms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def freeze_batch_norm(model: nn.Module) -> int:
    for norm in batch_norms(model):
        for parameter in norm.parameters():
            parameter.requires_grad_(False)
    return len(batch_norms(model))


def set_training(model: nn.Module, frozen_bn: bool) -> None:
    """Train mode, with BatchNorm layers left in eval mode when they are frozen."""
    model.train()
    if frozen_bn:
        for norm in batch_norms(model):
            norm.eval()
