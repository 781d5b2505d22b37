"""Mutual nearest neighbours between two images' patches (Hausler et al. 2021, Sec. III-C): a
pair (i, j) is kept when j is i's nearest database patch and i is j's nearest query patch."""

from __future__ import annotations

import numpy as np


def mutual_matches(query: np.ndarray, database: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(query indices, database indices) of the mutual nearest neighbours by cosine."""
    similarity = np.asarray(query, dtype=np.float32) @ np.asarray(database, dtype=np.float32).T
    forward = similarity.argmax(axis=1)  # best database patch of each query patch
    backward = similarity.argmax(axis=0)  # best query patch of each database patch
    keep = np.flatnonzero(backward[forward] == np.arange(len(query)))
    return keep, forward[keep]
