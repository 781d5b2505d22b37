"""Synthetic map entries that look like real descriptors: a Gaussian fitted to them (mean,
principal directions with their variances, and an isotropic residual), L2-normalised. Drawn
in chunks from per-chunk seeds, so a chunk can be drawn again without keeping the map."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class DistractorModel:
    mean: np.ndarray
    scales: np.ndarray
    directions: np.ndarray
    residual: float

    @classmethod
    def fit(cls, real: np.ndarray) -> "DistractorModel":
        mean = real.mean(axis=0)
        centred = real - mean
        _, singular, directions = np.linalg.svd(centred, full_matrices=False)
        scales = singular / np.sqrt(len(real) - 1)
        residual = np.sqrt(max(centred.var(axis=0).sum() - (scales**2).sum(), 0.0) / real.shape[1] + 1e-6)
        return cls(mean.astype(np.float32), scales.astype(np.float32), directions.astype(np.float32), float(residual))

    def draw(self, rows: int, rng) -> np.ndarray:
        z = rng.standard_normal((rows, len(self.scales))).astype(np.float32) * self.scales
        block = self.mean + z @ self.directions
        block += self.residual * rng.standard_normal((rows, len(self.mean)), dtype=np.float32)
        return block / np.linalg.norm(block, axis=1, keepdims=True)

    def chunk(self, index: int, rows: int, seed: int = 0) -> np.ndarray:
        """Chunk ``index`` of a map drawn chunk by chunk: the same rows whenever it is drawn."""
        return self.draw(rows, np.random.default_rng([seed, index]))


def distractors(real: np.ndarray, count: int, rng, chunk: int = 100_000) -> np.ndarray:
    """``count`` entries drawn from the model fitted to ``real``."""
    model = DistractorModel.fit(real)
    out = np.empty((count, real.shape[1]), dtype=np.float32)
    for start in range(0, count, chunk):
        out[start : start + min(chunk, count - start)] = model.draw(min(chunk, count - start), rng)
    return out
