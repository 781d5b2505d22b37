"""Where each map image was taken: UTM from folder-format names, the frame index of a
sequence, or a CSV of ``name,x,y[,heading]`` or ``name,lat,lon`` (converted to UTM).

A position is a list of numbers: ``[east, north]`` (kind ``utm``), ``[x, y]`` or ``[x, y,
heading]`` (kind ``xy``, the CSV's own frame), or ``[frame]`` (kind ``frame``)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from edgevpr.data.folder_format import has_utm_names, parse_utm
from edgevpr.errors import DatasetError

KINDS = ("utm", "xy", "frame")


def _number(value: str, path: Path, line: int, column: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise DatasetError(f"{path}: line {line}: {column} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise DatasetError(f"{path}: line {line}: {column} is {value}, not a finite number")
    return number


def read_positions_csv(path: str | Path) -> tuple[str, dict[str, list[float]]]:
    """(kind, {image file name: position}) from a CSV with a header naming its columns:
    ``name,x,y[,heading]`` or ``name,lat,lon``."""
    path = Path(path)
    try:
        rows = list(csv.reader(path.read_text().splitlines()))
    except FileNotFoundError:
        raise DatasetError(f"{path}: positions file not found") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not a text CSV") from None
    if not rows:
        raise DatasetError(f"{path}: empty positions file")
    header = [cell.strip().lower() for cell in rows[0]]
    if header[:3] == ["name", "lat", "lon"]:
        kind = "utm"
    elif header[:3] == ["name", "x", "y"] and header[3:] in ([], ["heading"]):
        kind = "xy"
    else:
        raise DatasetError(f"{path}: the header must be name,x,y[,heading] or name,lat,lon; got {','.join(header)}")
    positions: dict[str, list[float]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) != len(header):
            raise DatasetError(f"{path}: line {line} has {len(row)} fields, the header has {len(header)}")
        name = Path(row[0].strip()).name
        values = [_number(value.strip(), path, line, column) for value, column in zip(row[1:], header[1:])]
        if kind == "utm":
            lat, lon = values
            if not (-80 <= lat <= 84 and -180 <= lon <= 180):
                raise DatasetError(f"{path}: line {line}: latitude {lat}, longitude {lon} outside the UTM range")
            import utm

            east, north, _, _ = utm.from_latlon(lat, lon)
            values = [float(east), float(north)]
        if name in positions:
            raise DatasetError(f"{path}: line {line}: {name} appears twice")
        positions[name] = values
    return kind, positions


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
