"""Transformer backbones: ViT (timm) and CCT, a compact convolutional transformer (Hassani et
al. 2021) as Berton et al. 2022 uses them.

Both emit their tokens as a (B, C, 1, L) map: the aggregators written for feature maps
(GeM, NetVLAD, ...) pool over tokens unchanged, ``cls`` reads token 0 of backbones that have
a class token (``cls_token = True``), and ``seqpool`` attends over all tokens.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgevpr.errors import ConfigError
from edgevpr.models.registry import BACKBONES
from edgevpr.models.weights import load_into, load_state_dict_file, no_pretrained


def tokens_as_map(tokens: torch.Tensor) -> torch.Tensor:
    """(B, L, C) -> (B, C, 1, L)."""
    return tokens.transpose(1, 2).unsqueeze(2)


class ViTBackbone(nn.Module):
    cls_token = True

    def __init__(self, name: str, weights: str | None, pretrained: bool):
        super().__init__()
        import timm

        try:
            self.net = timm.create_model(
                name, pretrained=pretrained and weights is None, num_classes=0, dynamic_img_size=True
            )
        except Exception as error:  # hub errors come in many types
            raise ConfigError(
                f"cannot create {name} ({error.__class__.__name__}: {error}); "
                f"offline, pass a local state dict with --weights PATH"
            ) from None
        if weights is not None:
            load_into(self.net, load_state_dict_file(weights), weights)
        self.out_channels = self.net.num_features

    def forward(self, x):
        return tokens_as_map(self.net.forward_features(x))

    def fix_input_size(self, height: int, width: int) -> None:
        """Resample the position embeddings once for one input size (what an exported model
        needs: ONNX has no antialiased bicubic resize to do it at run time)."""
        self.net.set_input_size(img_size=(height, width))
        self.net.dynamic_img_size = False
        self.net.patch_embed.dynamic_img_size = False
        self.net.patch_embed.flatten = True  # built NHWC for dynamic sizes; fixed size wants tokens


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attention = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        return self.out((attention @ v).transpose(1, 2).reshape(b, n, c))


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: x + MHSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1, self.attention = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim))

    def forward(self, x):
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def sinusoidal_positions(length: int, dim: int, device=None) -> torch.Tensor:
    position = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


class CCT(nn.Module):
    """Convolutional tokenizer (conv k x k, ReLU, max-pool 3x3 stride 2, repeated) feeding a
    transformer encoder without class token; sinusoidal positions so any image size works.
    Defaults follow CCT-14/7x2: 384 channels, 14 layers, 6 heads, MLP ratio 3, two 7x7 convs."""

    cls_token = False

    def __init__(self, dim=384, layers=14, heads=6, mlp_ratio=3.0, conv_layers=2, kernel=7):
        super().__init__()
        tokenizer, channels = [], 3
        for index in range(conv_layers):
            out = dim if index == conv_layers - 1 else 64
            tokenizer += [
                nn.Conv2d(channels, out, kernel, stride=2, padding=kernel // 2, bias=False),
                nn.ReLU(),
                nn.MaxPool2d(3, stride=2, padding=1),
            ]
            channels = out
        self.tokenizer = nn.Sequential(*tokenizer)
        self.blocks = nn.Sequential(*[EncoderBlock(dim, heads, mlp_ratio) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.out_channels = dim

    def forward(self, x):
        tokens = self.tokenizer(x).flatten(2).transpose(1, 2)  # (B, L, C)
        tokens = tokens + sinusoidal_positions(tokens.shape[1], tokens.shape[2], tokens.device)
        return tokens_as_map(self.norm(self.blocks(tokens)))


@BACKBONES.register("vit")
def vit(config):
    return ViTBackbone("vit_small_patch16_224", config.weights, config.pretrained)


@BACKBONES.register("cct")
def cct(config):
    net = CCT()
    if config.weights is not None:
        load_into(net, load_state_dict_file(config.weights), config.weights)
    elif config.pretrained:
        raise ConfigError(no_pretrained("cct", "CCT-14/7x2 has no ImageNet weights in any library edgevpr uses"))
    return net
