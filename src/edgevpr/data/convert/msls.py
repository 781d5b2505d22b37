"""Mapillary Street-Level Sequences (Warburg et al. 2020): ``SRC/train_val/<city>/{query,
database}/`` with ``images/<key>.jpg``, ``postprocessed.csv`` (key, easting, northing, ...),
``raw.csv`` (key, lon, lat, ..., pano) and ``subtask_index.csv`` (all, s2w, w2s, ...).

``subset="official"`` follows the MSLS evaluation code (image to image, subtask ``all``): the
rows marked in ``subtask_index.csv``'s ``all`` column, panoramas removed, and only queries with
a database image within ``threshold_m`` (25 m) of their own city. For the validation cities
(cph, sf) this is the 740-query set that most papers call MSLS-val (Ali-bey et al. 2022 ship
it as msls_val); registered as ``msls/val/official``. ``subset="all"`` keeps every image (the
~11k queries some papers report instead). Positives are searched within each city and kept as
a positives file; names carry the UTM position."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from edgevpr.data.convert.folder_names import utm_name
from edgevpr.data.convert.writer import DatasetWriter
from edgevpr.data.folder_format import positives_within_radius
from edgevpr.errors import DatasetError

VAL_CITIES = ("cph", "sf")
SUBSETS = ("official", "all")


def _rows(path: Path, columns: tuple[str, ...]) -> list[dict]:
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        raise DatasetError(f"{path}: not found (an MSLS city folder has it)") from None
    missing = [c for c in columns if rows and c not in rows[0]]
    if not rows or missing:
        raise DatasetError(f"{path}: expected columns {', '.join(columns)}; missing {', '.join(missing) or 'rows'}")
    return rows


def _true(value: str) -> bool:
    return value.strip().lower() in ("true", "1")


def city_images(folder: Path, subset: str) -> tuple[list[str], np.ndarray]:
    """(keys, UTM) of one city's query or database images in the subset."""
    data = _rows(folder / "postprocessed.csv", ("key", "easting", "northing"))
    keep = np.ones(len(data), dtype=bool)
    if subset == "official":
        raw = _rows(folder / "raw.csv", ("key", "pano"))
        tasks = _rows(folder / "subtask_index.csv", ("all",))
        if not len(raw) == len(tasks) == len(data):
            raise DatasetError(f"{folder}: postprocessed.csv, raw.csv and subtask_index.csv differ in length")
        keep = np.array([_true(t["all"]) and not _true(r["pano"]) for t, r in zip(tasks, raw)], dtype=bool)
    keys = [row["key"] for row, kept in zip(data, keep) if kept]
    try:
        position = np.array([[float(r["easting"]), float(r["northing"])] for r, k in zip(data, keep) if k])
    except ValueError:
        raise DatasetError(f"{folder / 'postprocessed.csv'}: easting/northing must be numbers") from None
    return keys, position.reshape(-1, 2)


def convert_msls(
    source: Path,
    destination: Path,
    cities: tuple[str, ...] = VAL_CITIES,
    subset: str = "official",
    threshold_m: float = 25.0,
    link: str = "auto",
) -> dict:
    if subset not in SUBSETS:
        raise DatasetError(f"unknown MSLS subset {subset!r}; use one of {', '.join(SUBSETS)}")
    base = source / "train_val" if (source / "train_val").is_dir() else source
    items = {"database": [], "queries": []}
    positives: dict[str, list[str]] = {}
    for city in cities:
        if not (base / city).is_dir():
            raise DatasetError(f"{base / city}: MSLS city folder not found")
        split_data = {}
        for split, folder in (("database", "database"), ("queries", "query")):
            keys, position = city_images(base / city / folder, subset)
            names = [utm_name(e, n, f"{city}_{key}", ".jpg") for key, (e, n) in zip(keys, position)]
            split_data[split] = (keys, position, names, base / city / folder / "images")
        db_keys, db_position, db_names, db_folder = split_data["database"]
        q_keys, q_position, q_names, q_folder = split_data["queries"]
        found = positives_within_radius(db_position, q_position, threshold_m) if len(db_keys) else []
        items["database"] += [(db_folder / f"{key}.jpg", name) for key, name in zip(db_keys, db_names)]
        for key, name, rows in zip(q_keys, q_names, found):
            if subset == "official" and len(rows) == 0:
                continue  # the evaluation code drops queries without a positive
            items["queries"].append((q_folder / f"{key}.jpg", name))
            positives[name] = [db_names[i] for i in rows]
    with DatasetWriter(destination, "msls", source, link) as out:
        for split, pairs in items.items():
            out.add_all(split, pairs)
        options = {"cities": list(cities), "subset": subset, "threshold_m": threshold_m}
        return out.finish(positives=positives, options=options)
