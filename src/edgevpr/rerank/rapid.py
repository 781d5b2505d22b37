"""Patch-NetVLAD's rapid spatial scoring (Hausler et al. 2021, Eq. 7-8): for the mutual
nearest neighbours, the displacement d_i between matched patch indices; its deviation from the
mean displacement, anchored to the largest patch index and squared so that outliers cost most:
    s = (1 / n_P) sum_i (x_max - |d_x,i - mean d_x|)^2 + (y_max - |d_y,i - mean d_y|)^2."""

from __future__ import annotations

import numpy as np

from edgevpr.rerank.mutual import mutual_matches
from edgevpr.rerank.registry import RERANKERS, PatchSet, Reranker


def grid_indices(positions: np.ndarray, stride: int) -> np.ndarray:
    """Patch centres (feature cells) as patch-grid indices."""
    return (positions - positions.min(axis=0)) / stride


@RERANKERS.register("rapid")
class RapidReranker(Reranker):
    def score(self, query: PatchSet, candidates: list[PatchSet]) -> np.ndarray:
        scores = np.zeros(len(candidates), dtype=np.float32)
        q_index = grid_indices(query.positions, query.stride)
        x_max, y_max = q_index.max(axis=0)
        for k, candidate in enumerate(candidates):
            q, d = mutual_matches(query.patches, candidate.patches)
            if len(q) == 0:
                continue
            displacement = grid_indices(candidate.positions, candidate.stride)[d] - q_index[q]
            deviation = np.abs(displacement - displacement.mean(axis=0))
            spatial = (x_max - deviation[:, 0]) ** 2 + (y_max - deviation[:, 1]) ** 2
            scores[k] = spatial.sum() / len(query.patches)
        return scores
