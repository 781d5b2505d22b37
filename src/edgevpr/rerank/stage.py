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
            start = time.perf_counter()
            found, ids = rerank_one(reranker, query, predictions[q, :k], database)
            times.append(1000 * (time.perf_counter() - start))
            reordered[q, : len(ids)] = ids
            scores[q, : len(ids)] = found
            bar.update()
    return scores, reordered, times


def rerank_one(reranker: Reranker, query: PatchSet, candidates: np.ndarray, database) -> tuple[np.ndarray, np.ndarray]:
    """One query's first-stage candidates (map ids, best first; -1 for none) re-ordered by the
    re-ranker: (its scores, the ids), best first, ties in first-stage order. ``database`` is
    indexable by map id and was given to ``reranker.prepare``: eval and maps both call this."""
    candidates = np.asarray(candidates)
    candidates = candidates[candidates >= 0]
    found = np.asarray(reranker.score(query, [database[i] for i in candidates]), dtype=np.float32)
    order = np.argsort(-found, kind="stable")
    return found[order], candidates[order]
