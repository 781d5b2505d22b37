"""The second stage: the first stage's top-K candidates of each query re-ordered by a
re-ranker; the candidates beyond K keep their order. A row stays a permutation of the first
stage's: nothing is dropped or repeated."""

from __future__ import annotations

import time

import numpy as np

from edgevpr.progress import Progress
from edgevpr.rerank.registry import PatchSet, Reranker


def rerank_predictions(
    reranker: Reranker,
    predictions: np.ndarray,
    queries: list[PatchSet],
    database: list[PatchSet],
    k: int,
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """(scores of the re-ordered top-K, -inf beyond; predictions; milliseconds per query)."""
    reranker.prepare(database)
    scores = np.full(predictions.shape, -np.inf, dtype=np.float32)
    reordered = predictions.copy()
    times = []
    with Progress(len(queries), "re-ranking", "query") as bar:
        for q, query in enumerate(queries):
            candidates = predictions[q, :k]
            candidates = candidates[candidates >= 0]
            start = time.perf_counter()
            found = np.asarray(reranker.score(query, [database[i] for i in candidates]), dtype=np.float32)
            order = np.argsort(-found, kind="stable")
            times.append(1000 * (time.perf_counter() - start))
            reordered[q, : len(candidates)] = candidates[order]
            scores[q, : len(candidates)] = found[order]
            bar.update()
    return scores, reordered, times
