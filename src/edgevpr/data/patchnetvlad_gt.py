"""Patch-NetVLAD ground truth (Hausler et al. 2021): a ``.npz`` with ``utmQ`` (Q x 2),
``utmDb`` (N x 2) and ``posDistThr`` (metres); a database image is a positive of a query
within that distance, as Patch-NetVLAD's ``PlaceDataset.get_positives`` computes it.

The image names live in separate lists in Patch-NetVLAD; here the rows follow the sorted
images of ``--database`` and ``--queries``. Where the file carries name lists too (``qImages``
and ``dbImages``, or ``qImage`` and ``dbImage`` as NetVLAD's dbStruct names them), they must
end with the same file names in the same order. The file is read without pickles."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgevpr.data.folder_format import positives_within_radius
from edgevpr.errors import DatasetError

NAME_KEYS = (("dbImages", "qImages"), ("dbImage", "qImage"))


def _names_match(listed, paths: list[Path]) -> int | None:
    """Index of the first listed name that is not the file at that position, else None."""
    for index, (name, path) in enumerate(zip(listed, paths)):
        if Path(str(name)).name != path.name:
            return index
    return None


def load_patchnetvlad_ground_truth(
    path: str | Path, database_paths: list[Path], query_paths: list[Path]
) -> tuple[list[np.ndarray], float]:
    """Positives per query and the threshold in metres."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: ground-truth file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            contents = {key: data[key] for key in data.files}
    except (ValueError, OSError) as error:  # a pickled array, a truncated or foreign file
        raise DatasetError(f"{path}: not a Patch-NetVLAD ground-truth .npz ({error})") from None
    missing = [key for key in ("utmQ", "utmDb", "posDistThr") if key not in contents]
    if missing:
        raise DatasetError(
            f"{path}: a Patch-NetVLAD ground truth needs utmQ, utmDb and posDistThr; missing {', '.join(missing)}"
        )
    utm_q, utm_db = np.asarray(contents["utmQ"], float), np.asarray(contents["utmDb"], float)
    threshold = float(np.asarray(contents["posDistThr"]).ravel()[0])
    for key, array, paths in (("utmDb", utm_db, database_paths), ("utmQ", utm_q, query_paths)):
        if array.ndim != 2 or array.shape[1] != 2:
            raise DatasetError(f"{path}: {key} must be N x 2 (easting, northing), got shape {array.shape}")
        if len(array) != len(paths):
            raise DatasetError(f"{path}: {key} has {len(array)} rows, the folder has {len(paths)} images")
        if not np.isfinite(array).all():
            raise DatasetError(f"{path}: {key} holds NaN or infinite coordinates")
    if not np.isfinite(threshold) or threshold <= 0:
        raise DatasetError(f"{path}: posDistThr must be a positive distance, got {threshold}")
    for db_key, q_key in NAME_KEYS:
        if db_key in contents and q_key in contents:
            for key, paths in ((db_key, database_paths), (q_key, query_paths)):
                bad = _names_match(contents[key], paths)
                if bad is not None:
                    raise DatasetError(
                        f"{path}: {key}[{bad}] is {Path(str(contents[key][bad])).name}, the folder's "
                        f"image {bad} is {paths[bad].name}"
                    )
    return positives_within_radius(utm_db, utm_q, threshold), threshold
