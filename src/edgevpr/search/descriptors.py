"""A descriptor folder as ``edgevpr eval --save-descriptors`` writes it: ``database.npy``,
``queries.npy``, ``descriptors.json`` (dimension, metric) and ``ground_truth.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevpr.atomic import write_json, write_npy
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
    return array


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
    metric = json.loads(meta_path.read_text()).get("metric", "ip") if meta_path.is_file() else "ip"
    positives = None
    if (folder / "ground_truth.json").is_file():
        positives = [
            np.asarray(p, dtype=np.int64) for p in json.loads((folder / "ground_truth.json").read_text())["positives"]
        ]
    return DescriptorSet(
        np.asarray(database, dtype=np.float32),
        None if queries is None else np.asarray(queries, dtype=np.float32),
        metric,
        positives,
    )
