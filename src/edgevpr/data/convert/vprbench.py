"""VPR-Bench (Zaffar et al. 2021) layout: ``SRC/ref/`` (database), ``SRC/query/`` and
``SRC/ground_truth_new.npy`` (rows of ``[query_index, [database_indices]]`` over the images in
natural order). Its ground truth is read without unpickling code (``data.vprbench``).

Where the ground truth is exactly "frame i matches frames i-k..i+k" over folders of equal
length, the result is a frame-aligned pair with ``tolerance_frames: k``; otherwise the lists are
kept as a pickle-free positives file. Either way ``eval --dataset DST`` scores each query as
``--database ref --queries query --ground-truth ground_truth_new.npy`` does."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgevpr.data.convert.writer import DatasetWriter
from edgevpr.data.images import list_images
from edgevpr.data.vprbench import load_vprbench_ground_truth
from edgevpr.errors import DatasetError

GROUND_TRUTH = "ground_truth_new.npy"


def frame_tolerance(positives: list[np.ndarray], num_database: int) -> int | None:
    """The k for which every query i's positives are exactly i-k..i+k, else None."""
    if len(positives) != num_database:
        return None
    k = max((int(np.abs(p - i).max()) for i, p in enumerate(positives) if len(p)), default=0)
    for i, p in enumerate(positives):
        expected = np.arange(max(0, i - k), min(num_database, i + k + 1))
        if len(p) != len(expected) or not np.array_equal(p, expected):
            return None
    return k


def convert_vprbench(source: Path, destination: Path, link: str = "auto") -> dict:
    for part in ("ref", "query", GROUND_TRUTH):
        if not (source / part).exists():
            raise DatasetError(f"{source / part}: not found; a VPR-Bench dataset has ref/, query/ and {GROUND_TRUTH}")
    database, queries = list_images(source / "ref"), list_images(source / "query")
    positives = load_vprbench_ground_truth(source / GROUND_TRUTH, len(database), len(queries))
    with DatasetWriter(destination, "vprbench", source, link) as out:
        names = {}
        for split, folder, paths in (("database", source / "ref", database), ("queries", source / "query", queries)):
            names[split] = [path.relative_to(folder).as_posix() for path in paths]
            out.add_all(split, list(zip(paths, names[split])))
        tolerance = frame_tolerance(positives, len(database))
        if tolerance is not None:
            return out.finish(rule={"tolerance_frames": tolerance})
        by_name = {q: [names["database"][i] for i in p] for q, p in zip(names["queries"], positives)}
        return out.finish(positives=by_name)
