"""Recall@N: the percentage of queries with at least one positive among the top N retrieved
(queries with no positive in the database count as failures, as in the VG benchmark)."""

from __future__ import annotations

import numpy as np

NO_POSITIVE = -1  # the rank of a query none of whose retrieved items is a positive


def first_positive_ranks(predictions: np.ndarray, positives: list[np.ndarray]) -> np.ndarray:
    """Each query's rank (0-based) of its first positive among ``predictions``, or ``NO_POSITIVE``."""
    if len(predictions) != len(positives):
        raise ValueError(f"{len(predictions)} prediction rows for {len(positives)} queries")
    if len(positives) == 0:
        raise ValueError("no queries to evaluate")
    ranks = np.full(len(positives), NO_POSITIVE, dtype=np.int64)
    for q, (ranked, relevant) in enumerate(zip(predictions, positives)):
        hits = np.flatnonzero(np.isin(ranked, relevant))
        if hits.size:
            ranks[q] = hits[0]
    return ranks


def hits_at(ranks: np.ndarray, n: int) -> np.ndarray:
    """Whether each query has a positive among its top ``n``."""
    ranks = np.asarray(ranks)
    return (ranks != NO_POSITIVE) & (ranks < n)


def recall_from_ranks(ranks: np.ndarray, ns=(1, 5, 10, 20)) -> dict[str, float]:
    """Percent of queries with a positive in the top n, rounded to 1e-4 (no 14.000000000000002)."""
    return {str(n): round(float(100.0 * np.mean(hits_at(ranks, n))), 4) for n in ns}


def recall_at_n(predictions: np.ndarray, positives: list[np.ndarray], ns=(1, 5, 10, 20)) -> dict[str, float]:
    return recall_from_ranks(first_positive_ranks(predictions, positives), ns)
