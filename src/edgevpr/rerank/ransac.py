"""Patch-NetVLAD's geometric verification (Hausler et al. 2021): mutual nearest neighbours,
then RANSAC; the score is the inlier count over the number of query patches.

Hypotheses are drawn as a batch and solved together: a homography from 4 correspondences by the
normalised DLT (Hartley and Zisserman 2004, Alg. 4.2), or a fundamental matrix from 8 by the
normalised 8-point algorithm (Alg. 11.1, rank 2 enforced), scored by transfer error or Sampson
distance. The inlier threshold is Patch-NetVLAD's 1.5 patch strides (in feature cells)."""

from __future__ import annotations

import numpy as np

from edgevpr.rerank.mutual import mutual_matches
from edgevpr.rerank.registry import RERANKERS, PatchSet, Reranker

HYPOTHESES = 256
THRESHOLD_STRIDES = 1.5


def _normalise(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points moved to their centroid and scaled to mean distance sqrt(2), and that transform."""
    centre = points.mean(axis=-2, keepdims=True)
    spread = np.linalg.norm(points - centre, axis=-1).mean(axis=-1)[..., None, None] + 1e-9
    scale = np.sqrt(2) / spread
    t = np.zeros(points.shape[:-2] + (3, 3))
    t[..., 0, 0] = t[..., 1, 1] = scale[..., 0, 0]
    t[..., :2, 2] = -scale[..., 0, :] * centre[..., 0, :]
    t[..., 2, 2] = 1.0
    return (points - centre) * scale, t


def homographies(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(T, 3, 3) homographies mapping src to dst, from (T, 4, 2) correspondences."""
    s, ts = _normalise(src)
    d, td = _normalise(dst)
    x, y, u, v = s[..., 0], s[..., 1], d[..., 0], d[..., 1]
    zero, one = np.zeros_like(x), np.ones_like(x)
    rows_a = np.stack([-x, -y, -one, zero, zero, zero, u * x, u * y, u], axis=-1)
    rows_b = np.stack([zero, zero, zero, -x, -y, -one, v * x, v * y, v], axis=-1)
    a = np.concatenate([rows_a, rows_b], axis=-2)  # (T, 8, 9)
    h = null_vector(a).reshape(-1, 3, 3)
    return np.linalg.inv(td) @ h @ ts


def null_vector(a: np.ndarray) -> np.ndarray:
    """The unit x minimising ||A x|| for each A of a batch: the eigenvector of A^T A with the
    smallest eigenvalue (the last right singular vector, found faster)."""
    return np.linalg.eigh(np.swapaxes(a, -1, -2) @ a)[1][..., :, 0]


def transfer_errors(h: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(T, M) distances between H src and dst."""
    points = np.concatenate([src, np.ones((len(src), 1))], axis=1).T  # (3, M)
    mapped = h @ points  # (T, 3, M)
    with np.errstate(divide="ignore", invalid="ignore"):
        x, y = mapped[:, 0] / mapped[:, 2], mapped[:, 1] / mapped[:, 2]
    error = np.hypot(x - dst[:, 0], y - dst[:, 1])
    return np.where(np.isfinite(error), error, np.inf)


def fundamentals(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(T, 3, 3) fundamental matrices (dst^T F src = 0) from (T, 8, 2) correspondences."""
    s, ts = _normalise(src)
    d, td = _normalise(dst)
    x, y, u, v = s[..., 0], s[..., 1], d[..., 0], d[..., 1]
    a = np.stack([u * x, u * y, u, v * x, v * y, v, x, y, np.ones_like(x)], axis=-1)  # (T, 8, 9)
    f = null_vector(a).reshape(-1, 3, 3)
    uu, ss, vv = np.linalg.svd(f)
    ss[..., 2] = 0.0  # rank 2
    f = uu @ (ss[..., :, None] * vv)
    return np.swapaxes(td, -1, -2) @ f @ ts


def sampson_distances(f: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(T, M) first-order geometric (Sampson) distances of the correspondences to each F."""
    p = np.concatenate([src, np.ones((len(src), 1))], axis=1).T  # (3, M)
    q = np.concatenate([dst, np.ones((len(dst), 1))], axis=1).T
    fp = f @ p  # (T, 3, M)
    ftq = np.swapaxes(f, -1, -2) @ q
    numerator = (q[None] * fp).sum(axis=1) ** 2
    denominator = fp[:, 0] ** 2 + fp[:, 1] ** 2 + ftq[:, 0] ** 2 + ftq[:, 1] ** 2 + 1e-12
    return np.sqrt(numerator / denominator)


def inlier_mask(src: np.ndarray, dst: np.ndarray, model: str, threshold: float, seed: int = 0) -> np.ndarray:
    """The largest consensus set of ``HYPOTHESES`` minimal samples (4 or 8 correspondences), as
    a boolean mask over the correspondences (all False when there are too few)."""
    minimal = 4 if model == "homography" else 8
    count = len(src)
    if count < minimal:
        return np.zeros(count, dtype=bool)
    rng = np.random.default_rng(seed)
    samples = np.argsort(rng.random((HYPOTHESES, count)), axis=1)[:, :minimal]
    src, dst = src.astype(np.float64), dst.astype(np.float64)
    with np.errstate(all="ignore"):
        if model == "homography":
            errors = transfer_errors(homographies(src[samples], dst[samples]), src, dst)
        else:
            errors = sampson_distances(fundamentals(src[samples], dst[samples]), src, dst)
    inliers = errors < threshold
    return inliers[inliers.sum(axis=1).argmax()]


def ransac_inliers(src: np.ndarray, dst: np.ndarray, model: str, threshold: float, seed: int = 0) -> int:
    return int(inlier_mask(src, dst, model, threshold, seed).sum())


class RansacReranker(Reranker):
    model = "homography"

    def score(self, query: PatchSet, candidates: list[PatchSet]) -> np.ndarray:
        scores = np.zeros(len(candidates), dtype=np.float32)
        threshold = THRESHOLD_STRIDES * query.stride
        for k, candidate in enumerate(candidates):
            q, d = mutual_matches(query.patches, candidate.patches)
            inliers = ransac_inliers(candidate.positions[d], query.positions[q], self.model, threshold, seed=k)
            scores[k] = inliers / len(query.patches)
        return scores

    def describe(self) -> dict:
        return {"geometry": self.model, "hypotheses": HYPOTHESES, "threshold_strides": THRESHOLD_STRIDES}


class FundamentalRansacReranker(RansacReranker):
    model = "fundamental"


RERANKERS.register("ransac")(RansacReranker)
RERANKERS.register("ransac_fundamental")(FundamentalRansacReranker)
