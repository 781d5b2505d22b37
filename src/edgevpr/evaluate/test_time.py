"""Test-time methods for queries, after Berton et al. 2022's study of them: the query image
(resized by the input contract) is described from crops, and the crops' answers combined.

- ``single``: the whole image, as everywhere else.
- ``central_crop``: the central square (side = the short side).
- ``five_crops``: the four corner squares and the central one; their descriptors are averaged
  (and L2-normalised again) into one.
- ``nearest_crop``: each of the five crops is searched; a database image's score is its best
  over the crops, and the merged list keeps each image once, best first.
- ``maj_voting``: each crop's top-1 casts a vote; images are ordered by votes, then by their
  best score over the crops (Berton et al.'s ``top1`` voting).

The query extraction cost grows with the crops: the cost block gives ``query_extraction_ms``
(the crops of one query as one batch) beside the database's ``extraction_ms``, and a search
per crop multiplies ``matching_ms``."""

from __future__ import annotations

import numpy as np
import torch

from edgevpr.data.images import load_rgb
from edgevpr.errors import ConfigError
from edgevpr.progress import Progress

METHODS = ("single", "central_crop", "five_crops", "nearest_crop", "maj_voting")
CROPS = {"single": 1, "central_crop": 1, "five_crops": 5, "nearest_crop": 5, "maj_voting": 5}


def crops_of(image: torch.Tensor, method: str) -> torch.Tensor:
    """(C, 3, s, s) squares of a (3, H, W) image for ``method`` (``single``: the image itself)."""
    if method == "single":
        return image[None]
    _, height, width = image.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    centre = image[:, top : top + side, left : left + side]
    if method == "central_crop":
        return centre[None]
    corners = [
        image[:, :side, :side],
        image[:, :side, width - side :],
        image[:, height - side :, :side],
        image[:, height - side :, width - side :],
    ]
    return torch.stack([*corners, centre])


def crop_descriptors(forward, paths, contract, method: str, max_pixels: int) -> np.ndarray:
    """(Q, C, D) descriptors of every query's crops."""
    if method not in METHODS:
        raise ConfigError(f"unknown test method {method!r}; use one of {', '.join(METHODS)}")
    rows = []
    with Progress(len(paths), f"queries ({method})", "img") as progress, torch.inference_mode():
        for path in paths:
            out = forward(crops_of(contract(load_rgb(path, max_pixels)), method))
            rows.append(out.float().numpy() if torch.is_tensor(out) else np.asarray(out, dtype=np.float32))
            progress.update(1)
    return np.stack(rows)


def _normalised(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def search_with_crops(index, crops: np.ndarray, method: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, predictions), each (Q, k), from the crops' descriptors (Q, C, D)."""
    queries, count, dim = crops.shape
    if method in ("single", "central_crop"):
        return index.search(crops[:, 0], k)
    if method == "five_crops":
        return index.search(_normalised(crops.mean(axis=1)).astype(np.float32), k)
    scores, ids = index.search(crops.reshape(queries * count, dim), k)
    scores, ids = scores.reshape(queries, count, -1), ids.reshape(queries, count, -1)
    out_scores = np.full((queries, k), -np.inf, dtype=np.float32)
    out_ids = np.full((queries, k), -1, dtype=np.int64)
    for q in range(queries):
        best: dict[int, float] = {}
        for c in range(count):
            for score, i in zip(scores[q, c], ids[q, c]):
                if i >= 0 and score > best.get(int(i), -np.inf):
                    best[int(i)] = float(score)
        if method == "nearest_crop":
            order = sorted(best, key=lambda i: -best[i])
        else:  # maj_voting: the crops' top-1 votes, then the best score
            votes = {}
            for c in range(count):
                if ids[q, c, 0] >= 0:
                    votes[int(ids[q, c, 0])] = votes.get(int(ids[q, c, 0]), 0) + 1
            order = sorted(best, key=lambda i: (-votes.get(i, 0), -best[i]))
        chosen = order[:k]
        out_ids[q, : len(chosen)] = chosen
        out_scores[q, : len(chosen)] = [best[i] for i in chosen]
    return out_scores, out_ids
