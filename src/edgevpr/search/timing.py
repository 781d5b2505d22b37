"""What searching a map costs: per-query matching time and the bytes of stored descriptors."""

from __future__ import annotations

import time

import numpy as np

from edgevpr.search.index import search
from edgevpr.timing import summary_ms


def time_matching(index, queries: np.ndarray, k: int, max_queries: int = 200) -> dict:
    """Per-query search time: each query searched alone, as a robot localises one frame at a time."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    count = max(20, min(max_queries, len(queries)))
    order = np.arange(count) % len(queries)
    search(index, queries[:1], k)  # warm-up
    seconds = []
    for q in order:
        start = time.perf_counter()
        search(index, queries[q : q + 1], k)
        seconds.append(time.perf_counter() - start)
    return summary_ms(seconds)


def database_bytes(num_database: int, dim: int, bytes_per_element: int = 4) -> int:
    return int(num_database) * int(dim) * int(bytes_per_element)
