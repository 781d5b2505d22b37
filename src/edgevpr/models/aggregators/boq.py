"""BoQ (Ali-bey et al. 2024, "BoQ: A Place is Worth a Bag of Learnable Queries"): the feature
map is reduced by a 3 x 3 convolution to d channels and LayerNorm-ed, then passes L blocks.
Block i refines the features with a Transformer encoder layer, X^i = Enc(X^{i-1}), and a bag
of learned queries Q^i (first self-attended and normalised, Q~ = LN(Q + SA(Q))) reads them by
cross-attention, O^i = LN(CA(Q~, X^i, X^i)). The outputs of every block are concatenated
(L x q queries of d), projected across queries by a linear layer to r rows, flattened and
L2-normalised: d x r dimensions (512 x 32 = 16384 on ResNet-50 conv4, 384 x 32 = 12288 on
DINOv2). Module names follow the authors' release so their checkpoint loads by file."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgevpr.models.params import positive
from edgevpr.models.registry import AGGREGATORS


@dataclass
class BoQParams:
    proj_channels: int = 512  # d (384 for DINOv2 in the paper)
    num_queries: int = 64  # q per block
    num_layers: int = 2  # L
    row_dim: int = 32  # r

    def __post_init__(self):
        for option in ("proj_channels", "num_queries", "num_layers", "row_dim"):
            positive(getattr(self, option), option, ">= 1")
        if self.proj_channels % 64:
            raise ValueError(
                f"proj_channels must be a multiple of 64 (one attention head per 64), got {self.proj_channels}"
            )


class BoQBlock(nn.Module):
    def __init__(self, dim: int, queries: int):
        super().__init__()
        heads = dim // 64
        self.encoder = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=4 * dim, batch_first=True, dropout=0.0)
        self.queries = nn.Parameter(torch.randn(1, queries, dim))
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_q = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, x):
        x = self.encoder(x)
        q = self.queries.expand(x.shape[0], -1, -1)
        q = self.norm_q(q + self.self_attn(q, q, q, need_weights=False)[0])
        out = self.cross_attn(q, x, x, need_weights=False)[0]
        return x, self.norm_out(out)


class BoQ(nn.Module):
    def __init__(self, in_channels: int, params: BoQParams):
        super().__init__()
        dim = params.proj_channels
        self.proj_c = nn.Conv2d(in_channels, dim, kernel_size=3, padding=1)
        self.norm_input = nn.LayerNorm(dim)
        self.boqs = nn.ModuleList([BoQBlock(dim, params.num_queries) for _ in range(params.num_layers)])
        self.fc = nn.Linear(params.num_layers * params.num_queries, params.row_dim)
        self.out_dim = dim * params.row_dim

    def forward(self, features):
        x = self.norm_input(self.proj_c(features).flatten(2).transpose(1, 2))
        outputs = []
        for block in self.boqs:
            x, out = block(x)
            outputs.append(out)
        rows = self.fc(torch.cat(outputs, dim=1).transpose(1, 2))
        return F.normalize(rows.flatten(1), dim=-1)


@AGGREGATORS.register("boq", params=BoQParams)
def build(in_channels, params: BoQParams):
    return BoQ(in_channels, params)
