"""Frame-aligned traversals (Gardens Point, Nordland, SPED): image i of the database and
image i of the queries show the same place."""

from __future__ import annotations

import numpy as np

from edgevpr.errors import DatasetError


def positives_within_frames(num_database: int, num_queries: int, tolerance: int) -> list[np.ndarray]:
    """Query i's positives are database frames j with |i - j| <= tolerance."""
    if tolerance < 0:
        raise DatasetError(f"frame tolerance must be >= 0, got {tolerance}")
    return [
        np.arange(max(0, i - tolerance), min(num_database, i + tolerance + 1), dtype=np.int64)
        for i in range(num_queries)
    ]
