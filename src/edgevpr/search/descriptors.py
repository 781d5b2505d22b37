"""A descriptor folder as ``edgevpr eval --save-descriptors`` writes it: ``database.npy``,
``queries.npy``, ``descriptors.json`` (dimension, metric) and ``ground_truth.json``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevpr.atomic import read_json, write_json, write_npy
from edgevpr.errors import DatasetError


@dataclass
class DescriptorSet:
    database: np.ndarray
    queries: np.ndarray | None
    metric: str
    positives: list[np.ndarray] | None  # None when the folder has no ground truth


def save_descriptor_set(folder, database, queries, metric: str = "ip", ground_truth: dict | None = None) -> None:
    folder = Path(folder)
    write_npy(folder / "database.npy", database)
    if queries is not None:
        write_npy(folder / "queries.npy", queries)
    write_json(
        folder / "descriptors.json", {"dim": int(database.shape[1]), "metric": metric, "normalized": metric == "ip"}
    )
    if ground_truth is not None:
        write_json(folder / "ground_truth.json", ground_truth)


def _array(path: Path) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as error:
        raise DatasetError(f"{path}: not a .npy array ({error})") from None
    if array.ndim != 2:
        raise DatasetError(f"{path}: expected a (N, D) array, got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise DatasetError(f"{path}: holds no descriptors (shape {array.shape})")
    if not np.issubdtype(array.dtype, np.floating):
        raise DatasetError(f"{path}: descriptors must be floating point, got {array.dtype}")
    bad = np.flatnonzero(~np.isfinite(np.asarray(array)).all(axis=1))
    if bad.size:
        raise DatasetError(f"{path}: row {bad[0]} holds NaN or infinite values ({bad.size} rows)")
    return array


def _positives(rows, count: int, path: Path) -> list[np.ndarray]:
    if not isinstance(rows, list):
        raise DatasetError(f"{path}: positives must be a list of lists of database indices")
    positives = []
    for number, row in enumerate(rows):
        if not isinstance(row, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in row):
            raise DatasetError(f"{path}: row {number} of positives is not a list of integers")
        if row and not 0 <= min(row) <= max(row) < count:
            raise DatasetError(f"{path}: row {number} names database index {max(row)}, the database has {count}")
        positives.append(np.asarray(row, dtype=np.int64))
    return positives


def load_descriptor_set(folder: str | Path, need_queries: bool = False) -> DescriptorSet:
    folder = Path(folder)
    if not (folder / "database.npy").is_file():
        raise DatasetError(f"{folder}: no database.npy (write one with `edgevpr eval --save-descriptors`)")
    database = _array(folder / "database.npy")
    queries = _array(folder / "queries.npy") if (folder / "queries.npy").is_file() else None
    if need_queries and queries is None:
        raise DatasetError(f"{folder}: no queries.npy to search with")
    if queries is not None and queries.shape[1] != database.shape[1]:
        raise DatasetError(f"{folder}: queries have dimension {queries.shape[1]}, database {database.shape[1]}")
    meta_path = folder / "descriptors.json"
    metric = read_json(meta_path, "descriptor set description").get("metric", "ip") if meta_path.is_file() else "ip"
    if metric not in ("ip", "l2"):
        raise DatasetError(f"{meta_path}: unknown metric {metric!r}; use ip or l2")
    positives = None
    if (folder / "ground_truth.json").is_file():
        truth = read_json(folder / "ground_truth.json", "ground-truth file", ("positives",))
        positives = _positives(truth["positives"], len(database), folder / "ground_truth.json")
        if queries is not None and len(positives) != len(queries):
            raise DatasetError(
                f"{folder / 'ground_truth.json'}: positives of {len(positives)} queries, queries.npy has {len(queries)}"
            )
    return DescriptorSet(
        np.asarray(database, dtype=np.float32),
        None if queries is None else np.asarray(queries, dtype=np.float32),
        metric,
        positives,
    )
