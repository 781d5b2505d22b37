"""faiss indexes named by factory strings ("Flat", "IVF256,Flat", "HNSW32", ...).

Descriptors are L2-normalised, so inner product equals cosine similarity.
"""

from __future__ import annotations

import faiss
import numpy as np

from edgevpr.errors import ConfigError


def build_index(database: np.ndarray, spec: str = "Flat", metric: str = "ip"):
    metrics = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}
    if metric not in metrics:
        raise ConfigError(f"unknown metric {metric!r}; use ip or l2")
    database = np.ascontiguousarray(database, dtype=np.float32)
    try:
        index = faiss.index_factory(database.shape[1], spec, metrics[metric])
    except RuntimeError as error:
        raise ConfigError(f"faiss cannot build index {spec!r}: {str(error).strip().splitlines()[-1]}") from None
    if not index.is_trained:
        index.train(database)
    index.add(database)
    return index


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (scores, database indices) per query; k is capped at the database size."""
    k = min(k, index.ntotal)
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
