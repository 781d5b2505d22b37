"""Where each map image was taken: UTM from folder-format names, the frame index of a
sequence, or a CSV of ``name,x,y[,heading]`` or ``name,lat,lon`` (``data.positions_csv``).

A position is a list of numbers: ``[east, north]`` (kind ``utm``), ``[x, y]`` or ``[x, y,
heading]`` (kind ``xy``, the CSV's own frame), or ``[frame]`` (kind ``frame``)."""

from __future__ import annotations

import math
from pathlib import Path

from edgevpr.data.folder_format import has_utm_names, parse_utm
from edgevpr.data.positions_csv import read_positions_csv
from edgevpr.errors import DatasetError

KINDS = ("utm", "xy", "frame")


def positions_for(paths: list[Path], csv_path: str | Path | None = None, first_frame: int = 0) -> tuple[str, list]:
    """(kind, one position per image): from ``csv_path`` if given (every image must be in it),
    else UTM names, else frame indices counted from ``first_frame``."""
    if csv_path is not None:
        kind, table = read_positions_csv(csv_path)
        missing = [p.name for p in paths if p.name not in table]
        if missing:
            raise DatasetError(f"{csv_path}: no position for {missing[0]} ({len(missing)} images missing)")
        return kind, [table[p.name] for p in paths]
    if has_utm_names(paths):
        return "utm", [list(parse_utm(p)) for p in paths]
    return "frame", [[float(first_frame + i)] for i in range(len(paths))]


def distance(kind: str, a: list[float], b: list[float]) -> float:
    """Metres between two positions (UTM, xy), or frames (frame)."""
    if kind == "frame":
        return abs(a[0] - b[0])
    return math.hypot(a[0] - b[0], a[1] - b[1])
