"""Recall@N: the percentage of queries with at least one positive among the top N retrieved
(queries with no positive in the database count as failures, as in the VG benchmark)."""

from __future__ import annotations

import numpy as np


def recall_at_n(predictions: np.ndarray, positives: list[np.ndarray], ns=(1, 5, 10, 20)) -> dict[str, float]:
    if len(predictions) != len(positives):
        raise ValueError(f"{len(predictions)} prediction rows for {len(positives)} queries")
    if len(positives) == 0:
        raise ValueError("no queries to evaluate")
    first_hit = np.full(len(positives), np.inf)
    for q, (ranked, relevant) in enumerate(zip(predictions, positives)):
        hits = np.flatnonzero(np.isin(ranked, relevant))
        if hits.size:
            first_hit[q] = hits[0]
    return {str(n): float(100.0 * np.mean(first_hit < n)) for n in ns}
