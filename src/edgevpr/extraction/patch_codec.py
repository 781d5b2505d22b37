"""Compact patch descriptors for the second stage: PCA to ``dim`` dimensions (fitted on patches
of other images than the queries) and storage in ``bits`` 16 (fp16) or 8 (int8 with one scale
per dimension), as the global descriptors have. A map image's 180 MobileNetV2 patches take
460,800 bytes in fp16 at 1280-D, 23,040 bytes at 128-D int8.

Projection: p' = normalise(W (p - mu)) with W the top principal directions of the fit sample
(Patch-NetVLAD reduces its patches by PCA-whitening the same way, Hausler et al. 2021, section
3.3); rows are L2-normalised again after projection, so the re-rankers' cosine similarities
stay cosines. int8: q = round(p' / s) clipped to [-127, 127] with s the dimension's largest
absolute value in the fit sample / 127; decoded as q s. Map patches are stored encoded, query
patches are only projected (asymmetric, as the 8-bit global descriptors are)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevpr.errors import ConfigError

FIT_ROWS = 200_000  # patches the PCA is fitted on, at most (a seeded sample)


@dataclass
class PatchCodec:
    mean: np.ndarray  # (D,)
    components: np.ndarray  # (d, D)
    bits: int  # 32 | 16 | 8
    scale: np.ndarray | None = None  # (d,), int8 only

    @classmethod
    def fit(cls, patches: np.ndarray, dim: int | None, bits: int, seed: int = 0) -> PatchCodec:
        """``patches`` (..., D) of the fit images; ``dim`` None keeps every dimension (no PCA)."""
        if bits not in (32, 16, 8):
            raise ConfigError(f"--patch-bits must be 32, 16 or 8, got {bits}")
        rows = np.asarray(patches, dtype=np.float32).reshape(-1, patches.shape[-1])
        if len(rows) > FIT_ROWS:
            rows = rows[np.sort(np.random.default_rng(seed).choice(len(rows), FIT_ROWS, replace=False))]
        full = rows.shape[1]
        if dim is None or dim >= full:
            mean, components = np.zeros(full, np.float32), np.eye(full, dtype=np.float32)
        else:
            if dim < 1 or dim > len(rows):
                raise ConfigError(f"--patch-dim {dim}: PCA needs 1 <= dim <= {min(full, len(rows))} fit patches")
            mean = rows.mean(axis=0)
            _, _, vt = np.linalg.svd(rows - mean, full_matrices=False)
            components = vt[:dim].astype(np.float32)
        codec = cls(mean.astype(np.float32), components, bits)
        if bits == 8:
            projected = codec.project(rows)
            codec.scale = np.maximum(np.abs(projected).max(axis=0), 1e-8).astype(np.float32) / 127.0
        return codec

    @classmethod
    def fit_if_compact(cls, patches: np.ndarray, dim: int | None, bits: int) -> PatchCodec | None:
        """The codec of ``--patch-dim``/``--patch-bits`` fitted on ``patches``, or None for the
        default (full fp16 patches, stored as they are): eval and maps decide it here alike."""
        return None if dim is None and bits == 16 else cls.fit(patches, dim, bits)

    @property
    def dim(self) -> int:
        return int(self.components.shape[0])

    def bytes_per_patch(self) -> int:
        return self.dim * self.bits // 8

    def project(self, patches: np.ndarray) -> np.ndarray:
        """(..., D) -> (..., d) float32, rows L2-normalised."""
        patches = np.asarray(patches, dtype=np.float32)
        projected = (patches - self.mean) @ self.components.T
        return projected / np.maximum(np.linalg.norm(projected, axis=-1, keepdims=True), 1e-12)

    def encode(self, patches: np.ndarray) -> np.ndarray:
        projected = self.project(patches)
        if self.bits == 8:
            return np.clip(np.rint(projected / self.scale), -127, 127).astype(np.int8)
        return projected.astype(np.float16 if self.bits == 16 else np.float32)

    def decode(self, stored: np.ndarray) -> np.ndarray:
        if self.bits == 8:
            return np.asarray(stored, dtype=np.float32) * self.scale
        return np.asarray(stored, dtype=np.float32)

    def describe(self) -> dict:
        return {
            "dim": self.dim,
            "bits": self.bits,
            "pca": self.dim < len(self.mean),
            "bytes_per_patch": self.bytes_per_patch(),
        }

    def save(self, path: str | Path) -> None:
        arrays = {"mean": self.mean, "components": self.components, "bits": np.array(self.bits)}
        if self.scale is not None:
            arrays["scale"] = self.scale
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)

    @classmethod
    def load(cls, path: str | Path, where: str) -> PatchCodec:
        try:
            with np.load(path, allow_pickle=False) as data:
                scale = data["scale"] if "scale" in data.files else None
                return cls(data["mean"], data["components"], int(data["bits"]), scale)
        except (OSError, KeyError, ValueError) as error:
            raise ConfigError(
                f"{where}: patch codec {Path(path).name} unreadable ({error.__class__.__name__})"
            ) from None
