"""Fold BatchNorm into the convolution before it (Grainge et al. 2024 Eq. 7-9).

In eval mode BN computes y = gamma (x - mu) / sqrt(var + eps) + beta. With x = W * z + b
from the convolution, the pair equals one convolution with
    W' = W * gamma / sqrt(var + eps)                      (per output channel)
    b' = (b - mu) * gamma / sqrt(var + eps) + beta.
Pairs are found by running the model once: a BN whose input is exactly the output tensor of
the convolution that ran just before it is folded, and replaced by its activation (timm's
BatchNormAct2d) or by an identity.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1.0 / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
    new_bias = (bias - bn.running_mean) * scale + shift
    if conv.bias is None:
        conv.bias = nn.Parameter(new_bias)
    else:
        conv.bias.copy_(new_bias)


def _replacement(bn: nn.Module) -> nn.Module:
    """What stays of a folded BN: timm's BatchNormAct2d keeps its dropout and activation."""
    act, drop = getattr(bn, "act", None), getattr(bn, "drop", None)
    kept = [m for m in (drop, act) if isinstance(m, nn.Module) and not isinstance(m, nn.Identity)]
    return nn.Sequential(*kept) if kept else nn.Identity()


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)


@torch.no_grad()
def fold_batchnorm(model: nn.Module, example: torch.Tensor) -> int:
    """Fold every conv -> BN pair of ``model`` (in place, eval mode); return how many."""
    model.eval()
    names = {module: name for name, module in model.named_modules()}
    last_conv: dict = {}
    pairs: list[tuple[str, str]] = []

    def after_conv(module, inputs, output):
        last_conv["module"], last_conv["output"] = module, output

    def before_bn(module, inputs):
        if last_conv.get("output") is inputs[0] and module.num_features == last_conv["module"].out_channels:
            pairs.append((names[last_conv["module"]], names[module]))
        last_conv.clear()

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(after_conv))
        elif isinstance(module, nn.BatchNorm2d):
            handles.append(module.register_forward_pre_hook(before_bn))
    try:
        model(example)
    finally:
        for handle in handles:
            handle.remove()
    for conv_name, bn_name in pairs:
        bn = model.get_submodule(bn_name)
        fold_conv_bn(model.get_submodule(conv_name), bn)
        _set_submodule(model, bn_name, _replacement(bn))
    return len(pairs)
