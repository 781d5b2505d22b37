"""CSV files of image positions with a header naming the columns: ``name,x,y[,heading]`` (a
metric frame of the user's) or ``name,lat,lon`` (WGS84 degrees, projected to UTM).

Points read together are projected into one UTM zone (that of their mean longitude), so the
distances between them stay metric even where a route crosses a zone border."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import utm

from edgevpr.errors import DatasetError


def _number(value: str, path: Path, line: int, column: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise DatasetError(f"{path}: line {line}: {column} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise DatasetError(f"{path}: line {line}: {column} is {value}, not a finite number")
    return number


def csv_rows(path: Path) -> list[list[str]]:
    """The rows of a positions CSV, or one line naming the file (missing, not text)."""
    try:
        return list(csv.reader(path.read_text().splitlines()))
    except FileNotFoundError:
        raise DatasetError(f"{path}: positions file not found") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not a text CSV") from None


def read_positions_table(path: str | Path) -> tuple[str, dict[str, list[float]]]:
    """(kind, {image file name: numbers}) with kind ``xy`` or ``latlon`` (not yet projected)."""
    path = Path(path)
    rows = csv_rows(path)
    if not rows:
        raise DatasetError(f"{path}: empty positions file")
    header = [cell.strip().lower() for cell in rows[0]]
    if header[:3] == ["name", "lat", "lon"] and len(header) == 3:
        kind = "latlon"
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
        if kind == "latlon" and not (-80 <= values[0] <= 84 and -180 <= values[1] <= 180):
            raise DatasetError(
                f"{path}: line {line}: latitude {values[0]}, longitude {values[1]} outside the UTM range"
            )
        if name in positions:
            raise DatasetError(f"{path}: line {line}: {name} appears twice")
        positions[name] = values
    if not positions:
        raise DatasetError(f"{path}: no positions below the header")
    return kind, positions


def project_to_utm(*tables: dict[str, list[float]]) -> list[dict[str, list[float]]]:
    """The lat/lon ``tables`` as [east, north], all in the zone of their joint mean longitude."""
    points = np.array([value for table in tables for value in table.values()], dtype=np.float64)
    zone = utm.latlon_to_zone_number(float(points[:, 0].mean()), float(points[:, 1].mean()))
    letter = utm.latitude_to_zone_letter(float(points[:, 0].mean()))
    east, north, _, _ = utm.from_latlon(points[:, 0], points[:, 1], force_zone_number=zone, force_zone_letter=letter)
    projected, start = [], 0
    for table in tables:
        rows = slice(start, start + len(table))
        projected.append({name: [float(e), float(n)] for name, e, n in zip(table, east[rows], north[rows])})
        start += len(table)
    return projected


def read_positions_csv(path: str | Path) -> tuple[str, dict[str, list[float]]]:
    """(kind, {image file name: position}): kind ``xy`` as written, or ``utm`` for lat/lon."""
    kind, table = read_positions_table(path)
    if kind == "latlon":
        return "utm", project_to_utm(table)[0]
    return kind, table
