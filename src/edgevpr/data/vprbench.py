"""VPR-Bench ground truth: ``ground_truth_new.npy``, an object array of
``[query_index, [database_indices]]`` rows.

Such a file is a pickle, and unpickling runs code. It is read with an unpickler that can
build nothing but numpy arrays, dtypes and scalars; the contents must then be integers,
lists and integer arrays, or the file is refused.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from edgevpr.errors import DatasetError

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}")


def _read_npy(path: Path):
    with open(path, "rb") as handle:
        try:
            version = npy_format.read_magic(handle)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"unsupported .npy version {version}")
            read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            shape, fortran, dtype = read_header(handle)
        except (ValueError, OSError) as error:
            raise DatasetError(f"{path}: not a .npy file ({error})") from None
        if not dtype.hasobject:
            values = np.fromfile(handle, dtype=dtype)
            if values.size != int(np.prod(shape)):
                raise DatasetError(f"{path}: truncated .npy file ({values.size} of {int(np.prod(shape))} values)")
            return values.reshape(shape, order="F" if fortran else "C")
        try:
            return _ArrayOnlyUnpickler(io.BytesIO(handle.read())).load()
        except Exception as error:  # any unpickling failure means an unusable file
            raise DatasetError(
                f"{path}: ground truth may hold only integers, lists and integer arrays; it was refused ({error})"
            ) from None


def _as_index_list(value, path: Path, row: int) -> list[int]:
    array = np.asarray(value) if not isinstance(value, np.ndarray) else value
    if array.dtype == object:
        items = [int(v) if isinstance(v, (int, np.integer)) else None for v in array.ravel()]
        if any(item is None for item in items):
            raise DatasetError(f"{path}: row {row}: database indices must be integers")
        return items
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise DatasetError(f"{path}: row {row}: database indices must be integers, got {array.dtype}")
    return [int(v) for v in array.ravel()]


def load_vprbench_ground_truth(path: str | Path, num_database: int, num_queries: int) -> list[np.ndarray]:
    """Positives per query, validated against the folder sizes."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: ground-truth file not found")
    rows = _read_npy(path)
    if not isinstance(rows, (np.ndarray, list)) or len(rows) == 0:
        raise DatasetError(f"{path}: expected rows of [query_index, [database_indices]]")
    positives: list[np.ndarray | None] = [None] * num_queries
    for number, row in enumerate(rows):
        if np.ndim(row) == 0 or len(row) != 2 or not isinstance(row[0], (int, np.integer)):
            raise DatasetError(f"{path}: row {number} is not [query_index, [database_indices]]")
        query = int(row[0])
        if not 0 <= query < num_queries:
            raise DatasetError(f"{path}: row {number}: query index {query} outside 0..{num_queries - 1}")
        indices = _as_index_list(row[1], path, number)
        bad = [i for i in indices if not 0 <= i < num_database]
        if bad:
            raise DatasetError(f"{path}: row {number}: database index {bad[0]} outside 0..{num_database - 1}")
        positives[query] = np.array(sorted(set(indices)), dtype=np.int64)
    missing = [i for i, p in enumerate(positives) if p is None]
    if missing:
        raise DatasetError(f"{path}: no ground-truth row for query {missing[0]} ({len(missing)} missing)")
    return positives  # type: ignore[return-value]
