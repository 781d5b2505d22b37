"""The VG-benchmark folder format: ``ROOT/{database,queries}/**/@utm_east@utm_north@...@.jpg``.

A query's positives are the database images within a radius in metres (default 25), found by
a radius search over UTM coordinates, as in the benchmark's reference code.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from sklearn.neighbors import NearestNeighbors

from edgevpr.errors import DatasetError

DEFAULT_THRESHOLD_M = 25.0


def parse_utm(path: str | Path) -> tuple[float, float]:
    """UTM (east, north) from a name such as ``@500010.00@4000020.00@33@T@...@.jpg``."""
    fields = Path(path).name.split("@")
    if len(fields) < 3:
        raise DatasetError(f"{path}: file name has no '@utm_east@utm_north@' fields")
    try:
        east, north = float(fields[1]), float(fields[2])
    except ValueError:
        raise DatasetError(f"{path}: UTM fields {fields[1]!r}, {fields[2]!r} are not numbers") from None
    if not (math.isfinite(east) and math.isfinite(north)):
        raise DatasetError(f"{path}: UTM fields {fields[1]!r}, {fields[2]!r} are not finite numbers")
    return east, north


def has_utm_names(paths: list[Path]) -> bool:
    """Whether the names carry '@east@north@' fields (whose values ``parse_utm`` then checks)."""
    return bool(paths) and len(Path(paths[0]).name.split("@")) >= 3


def utm_array(paths: list[Path]) -> np.ndarray:
    return np.array([parse_utm(p) for p in paths], dtype=np.float64).reshape(-1, 2)


def positives_within_radius(database_utm: np.ndarray, query_utm: np.ndarray, threshold_m: float) -> list[np.ndarray]:
    """For each query, sorted indices of database points within ``threshold_m`` metres."""
    if threshold_m <= 0:
        raise DatasetError(f"threshold must be positive, got {threshold_m} m")
    knn = NearestNeighbors(n_jobs=1).fit(database_utm)
    found = knn.radius_neighbors(query_utm, radius=threshold_m, return_distance=False)
    return [np.sort(indices).astype(np.int64) for indices in found]
