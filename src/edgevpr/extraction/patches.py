"""Patch descriptors pooled from the backbone's feature map, in the same forward pass as the
global descriptor (Hausler et al. 2021, Patch-NetVLAD; Huang et al. 2022, single-scale).

A patch is a p x p window of feature cells moved with stride s, so an H x W map holds
    n_P = (floor((H - p) / s) + 1) * (floor((W - p) / s) + 1)          (Huang et al. 2022, Eq. 2)
patches. Each is aggregated as the model aggregates the whole map: NetVLAD over the window
(soft-assignment and residual sums pooled per window, then normalised as the aggregator
normalises), or, for the pooling aggregators (GeM, MAC, SPoC, ...), generalized-mean pooling
over the window with the model's GeM p (3 otherwise). A model with a fully connected
projection from the aggregator's size (NetVLAD, GeM) projects its patches through it, as
Patch-NetVLAD projects its patches through the WPCA of its global descriptor; every patch is
then L2-normalised. Several sizes (Patch-NetVLAD's 2, 5, 8) give one set each.

Positions are patch centres in feature cells (x, y); ``cell_pixels`` converts them to pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from edgevpr.errors import ConfigError


@dataclass(frozen=True)
class PatchSpec:
    sizes: tuple[int, ...] = (3,)
    strides: tuple[int, ...] = (1,)

    def __post_init__(self):
        if len(self.sizes) != len(self.strides) or not self.sizes:
            raise ConfigError(f"give one patch stride per patch size, got sizes {self.sizes}, strides {self.strides}")
        if min(self.sizes) < 1 or min(self.strides) < 1:
            raise ConfigError(f"patch sizes and strides must be >= 1, got {self.sizes} and {self.strides}")

    def rule(self) -> str:
        return "patches=" + "+".join(f"{p}/{s}" for p, s in zip(self.sizes, self.strides))

    def to_dict(self) -> dict:
        return {"sizes": list(self.sizes), "strides": list(self.strides)}

    @classmethod
    def from_dict(cls, data: dict) -> PatchSpec:
        return cls(tuple(data["sizes"]), tuple(data["strides"]))


def patch_count(height: int, width: int, size: int, stride: int) -> int:
    """Eq. 2 of Huang et al. (2022)."""
    if size > min(height, width):
        return 0
    return ((height - size) // stride + 1) * ((width - size) // stride + 1)


def patch_centres(height: int, width: int, size: int, stride: int) -> np.ndarray:
    """(n_P, 2) centres (x, y) in feature cells, row by row as ``F.avg_pool2d`` orders them."""
    ys = np.arange(0, height - size + 1, stride) + (size - 1) / 2
    xs = np.arange(0, width - size + 1, stride) + (size - 1) / 2
    grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([grid_x.ravel(), grid_y.ravel()], axis=1).astype(np.float32)


def all_centres(spec: PatchSpec, height: int, width: int) -> np.ndarray:
    """The centres of every patch of ``spec`` on an ``height`` x ``width`` map, sizes in order."""
    return np.concatenate(
        [
            patch_centres(height, width, p, s)
            for p, s in zip(spec.sizes, spec.strides)
            if patch_count(height, width, p, s)
        ]
    )


def _window_sum(x: torch.Tensor, size: int, stride: int) -> torch.Tensor:
    return F.avg_pool2d(x, size, stride) * (size * size)


def _vlad_patches(aggregator, features: torch.Tensor, size: int, stride: int) -> torch.Tensor:
    """NetVLAD of every window: sum_i a_k(x_i) x_i - c_k sum_i a_k(x_i), both sums pooled."""
    x = F.normalize(features, dim=1)
    soft = F.softmax(aggregator.assign(x), dim=1)  # (B, K, H, W)
    batch, clusters, channels = x.shape[0], soft.shape[1], x.shape[1]
    weighted = (soft.unsqueeze(2) * x.unsqueeze(1)).flatten(1, 2)  # (B, K*C, H, W)
    sums = _window_sum(weighted, size, stride).view(batch, clusters, channels, -1)
    mass = _window_sum(soft, size, stride).view(batch, clusters, 1, -1)
    vlad = sums - mass * aggregator.centroids.view(1, clusters, channels, 1)
    return aggregator.normalise(vlad).transpose(1, 2)  # (B, n_P, K*C)


def _gem_patches(aggregator, features: torch.Tensor, size: int, stride: int) -> torch.Tensor:
    p = float(torch.as_tensor(getattr(aggregator, "p", 3.0)).detach())
    pooled = F.avg_pool2d(features.clamp(min=1e-6).pow(p), size, stride).pow(1.0 / p)
    return F.normalize(pooled.flatten(2), dim=1).transpose(1, 2)  # (B, n_P, C)


def is_vlad(aggregator) -> bool:
    """A NetVLAD-style aggregator (NetVLAD, CRN): soft-assignment ``assign`` and ``centroids``."""
    return hasattr(aggregator, "assign") and hasattr(aggregator, "centroids")


def patch_pooling(aggregator):
    """How a model's aggregator pools a window: NetVLAD-style by VLAD, any other by GeM."""
    return _vlad_patches if is_vlad(aggregator) else _gem_patches


class PatchModel(torch.nn.Module):
    """A VPR model's global descriptor and its patch descriptors from one backbone pass:
    ``forward(images) -> (global (B, D), patches (B, n_P, D_p))``; ``centres`` hold the
    positions of the last batch's map size."""

    def __init__(self, model, spec: PatchSpec):
        super().__init__()
        if getattr(model.backbone, "cls_token", False):
            raise ConfigError("patch descriptors need a convolutional feature map; transformer backbones have tokens")
        self.model, self.spec, self.pool = model, spec, patch_pooling(model.aggregator)
        self.map_size: tuple[int, int] | None = None

    def forward(self, images):
        features = self.model.backbone(images)
        descriptors = self.model.projection(self.model.aggregator(features))
        if self.model.pca is not None and bool(self.model.pca.fitted):
            descriptors = self.model.pca(F.normalize(descriptors, dim=-1))
        height, width = features.shape[-2:]
        if not any(patch_count(height, width, p, s) for p, s in zip(self.spec.sizes, self.spec.strides)):
            raise ConfigError(
                f"a {height}x{width} feature map holds no {max(self.spec.sizes)}x{max(self.spec.sizes)} patch; "
                f"use smaller --patch-size or larger images"
            )
        self.map_size = (int(height), int(width))
        patches = [
            self.pool(self.model.aggregator, features, p, s)
            for p, s in zip(self.spec.sizes, self.spec.strides)
            if patch_count(height, width, p, s)
        ]
        patches = torch.cat(patches, dim=1)
        if getattr(self.model.projection, "in_features", None) == patches.shape[-1]:
            patches = self.model.projection(patches)
        return F.normalize(descriptors, dim=-1), F.normalize(patches, dim=-1)

    def centres(self) -> np.ndarray:
        return all_centres(self.spec, *self.map_size)


class OnnxPatchModel:
    """An ONNX file exported with patches (``quantize --patches``): the same calls as
    ``PatchModel``, run by ONNX Runtime at whatever precision the file holds. The patch spec
    and the feature-map size are the file's, as its input contract is."""

    def __init__(self, session):
        meta = session.metadata
        self.session, self.spec = session, PatchSpec.from_dict(meta["patch_spec"])
        self.map_size = tuple(meta["patch_map_size"])

    def __call__(self, images):
        descriptors, patches = self.session.run_all(images)
        return torch.from_numpy(descriptors), torch.from_numpy(patches)

    def eval(self):
        return self

    def centres(self) -> np.ndarray:
        return all_centres(self.spec, *self.map_size)


def patch_extractor(network, spec: PatchSpec):
    """What gives a model's descriptors and patches in one pass: a ``PatchModel`` of ``spec``
    around a PyTorch model, or an ONNX file's own patch output (of the spec it was exported with)."""
    if isinstance(network, torch.nn.Module):
        return PatchModel(network, spec).eval()
    if not getattr(network, "has_patches", False):
        raise ConfigError(
            f"{getattr(network, 'path', 'the model')}: this ONNX file has no patch output; export it with "
            "`edgevpr quantize --patches` (or use the PyTorch model: --checkpoint, or a config)"
        )
    return OnnxPatchModel(network)
