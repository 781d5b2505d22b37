"""A VPR model: backbone -> aggregator -> optional FC projection -> L2 normalisation."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

import edgevpr.models.aggregators  # noqa: F401  (fills the registries)
import edgevpr.models.backbones  # noqa: F401
from edgevpr.config import ModelConfig
from edgevpr.errors import ConfigError
from edgevpr.models.params import build_component
from edgevpr.models.pca import PCAProjection
from edgevpr.models.registry import AGGREGATORS, BACKBONES
from edgevpr.models.releases import release_of
from edgevpr.models.tf_same import apply_tf_same_padding
from edgevpr.models.weights import load_into


class VPRModel(nn.Module):
    """backbone -> aggregator -> [FC to ``dim``] -> [PCA / PCA-whitening to ``pca``] -> L2."""

    def __init__(
        self,
        backbone: nn.Module,
        aggregator: nn.Module,
        dim: int | None = None,
        pca: int | None = None,
        whiten: bool = False,
    ):
        super().__init__()
        self.backbone = backbone
        self.aggregator = aggregator
        self.projection = nn.Linear(aggregator.out_dim, dim) if dim else nn.Identity()
        before_pca = dim or aggregator.out_dim
        self.pca = PCAProjection(before_pca, pca, whiten) if pca else None
        self.descriptor_dim = pca or before_pca

    def forward(self, images):
        descriptors = self.projection(self.aggregator(self.backbone(images)))
        if self.pca is not None and bool(self.pca.fitted):
            descriptors = F.normalize(descriptors, dim=-1)
            descriptors = self.pca(descriptors)
        return F.normalize(descriptors, dim=-1)


def build_model(config: ModelConfig, seed: int | None = None) -> VPRModel:
    """Build from registered names; the aggregator's input size comes from the backbone.
    ``seed`` seeds the weights that are not loaded (a run's ``eval.seed``): every path that
    builds a run's model (eval, quantize, map build) builds the same one.

    With ``checkpoint`` the architecture and the trained weights come from that file."""
    if seed is not None:
        torch.manual_seed(seed)
    if config.checkpoint:
        from edgevpr.models.checkpoint import read_checkpoint

        return model_from_checkpoint(read_checkpoint(config.checkpoint), config.checkpoint)
    return _build(config).eval()


def model_from_checkpoint(payload: dict, path: str) -> VPRModel:
    """The trained model held by an already read checkpoint."""
    from edgevpr.models.checkpoint import architecture_of

    model = _build(architecture_of(payload, path))
    load_into(model, payload["model"], path)
    return model.eval()


def _build(config: ModelConfig) -> VPRModel:
    from edgevpr.models.resolve import resolve_model

    config, _ = resolve_model(config)
    if config.dim is not None and config.dim <= 0:
        raise ConfigError(f"--dim must be positive, got {config.dim}")
    if config.pca is not None and config.pca <= 0:
        raise ConfigError(f"--pca must be positive, got {config.pca}")
    if config.whiten and config.pca is None:
        raise ConfigError("--whiten needs --pca D")
    release = release_of(config.weights)  # a published checkpoint of the whole model (models.releases)
    built_with = dataclasses.replace(config, weights=None, pretrained=False) if release else config
    backbone = build_component(BACKBONES, config.backbone, config.backbone_params, "model.backbone.params", built_with)
    if config.tf_same_padding:
        apply_tf_same_padding(backbone)
    if config.aggregator == "cls" and not getattr(backbone, "cls_token", False):
        raise ConfigError(f"aggregator 'cls' needs a backbone with a class token; {config.backbone!r} has none")
    aggregator = build_component(
        AGGREGATORS, config.aggregator, config.aggregator_params, "model.aggregator.params", backbone.out_channels
    )
    if getattr(aggregator, "needs_token", False):
        if not hasattr(backbone, "return_token"):
            raise ConfigError(f"aggregator {config.aggregator!r} reads a class token; {config.backbone!r} has none")
        backbone.return_token = True
    model = VPRModel(backbone, aggregator, config.dim, config.pca, config.whiten)
    if release is not None:
        release.load_into(model, config.weights)
    return model
