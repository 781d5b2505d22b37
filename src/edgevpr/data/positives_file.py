"""A pickle-free ground-truth file: each query's positive database indices, stored as one
``.npz`` of ``offsets`` (Q + 1) and ``indices`` (compressed sparse rows), read with
``allow_pickle=False``. The converters write it where positives are neither frame offsets nor
UTM radii (VPR-Bench lists, MSLS per city)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from edgevpr.atomic import atomic_path
from edgevpr.errors import DatasetError

KEYS = ("offsets", "indices", "num_database")


def is_positives_file(path: str | Path) -> bool:
    """Whether ``path`` is an ``.npz`` written by ``write_positives`` (not Patch-NetVLAD's)."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return False
    if not isinstance(loaded, np.lib.npyio.NpzFile):  # a plain .npy array (VPR-Bench's rows)
        return False
    with loaded as archive:
        return all(key in archive.files for key in KEYS)


def write_positives(path: str | Path, positives: list[np.ndarray], num_database: int) -> None:
    lengths = np.array([len(p) for p in positives], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    indices = np.concatenate([np.asarray(p, dtype=np.int64) for p in positives]) if positives else np.zeros(0, np.int64)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, offsets=offsets, indices=indices, num_database=np.int64(num_database))


def read_positives(path: str | Path, num_database: int, num_queries: int) -> list[np.ndarray]:
    """Positives per query, checked against the folder sizes."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            offsets, indices = archive["offsets"], archive["indices"]
            stored = int(archive["num_database"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise DatasetError(f"{path}: not a positives file of offsets and indices ({error})") from None
    if stored != num_database:
        raise DatasetError(f"{path}: written for {stored} database images, the folder has {num_database}")
    if len(offsets) != num_queries + 1:
        raise DatasetError(f"{path}: holds {len(offsets) - 1} queries, the folder has {num_queries}")
    if offsets[0] != 0 or np.any(np.diff(offsets) < 0) or offsets[-1] != len(indices):
        raise DatasetError(f"{path}: offsets are not increasing from 0 to the number of indices")
    if len(indices) and (indices.min() < 0 or indices.max() >= num_database):
        raise DatasetError(f"{path}: a database index lies outside 0..{num_database - 1}")
    return [np.unique(indices[offsets[q] : offsets[q + 1]]).astype(np.int64) for q in range(num_queries)]
