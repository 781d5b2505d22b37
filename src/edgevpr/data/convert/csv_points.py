"""A generic dataset: ``SRC/database/`` and ``SRC/queries/`` image folders with
``SRC/database.csv`` and ``SRC/queries.csv`` of ``name,x,y`` (metres in a frame of the user's)
or ``name,lat,lon`` (WGS84, projected to one UTM zone for both files). The result is the
folder format, the position in every name, positives within ``threshold_m``."""

from __future__ import annotations

from pathlib import Path

from edgevpr.data.convert.folder_names import utm_name
from edgevpr.data.convert.writer import DatasetWriter
from edgevpr.data.folder_format import DEFAULT_THRESHOLD_M
from edgevpr.data.images import list_images
from edgevpr.data.positions_csv import project_to_utm, read_positions_table
from edgevpr.errors import DatasetError


def convert_csv(
    source: Path,
    destination: Path,
    database_csv: str | None = None,
    queries_csv: str | None = None,
    threshold_m: float = DEFAULT_THRESHOLD_M,
    link: str = "auto",
) -> dict:
    files = {
        "database": Path(database_csv) if database_csv else source / "database.csv",
        "queries": Path(queries_csv) if queries_csv else source / "queries.csv",
    }
    kinds, tables = zip(*(read_positions_table(files[split]) for split in ("database", "queries")))
    if kinds[0] != kinds[1]:
        raise DatasetError(f"{files['queries']}: gives {kinds[1]} positions, {files['database']} gives {kinds[0]}")
    if kinds[0] == "latlon":
        tables = project_to_utm(*tables)
    with DatasetWriter(destination, "csv", source, link) as out:
        for split, table in zip(("database", "queries"), tables):
            images = {path.name: path for path in list_images(source / split)}
            missing = [name for name in table if name not in images]
            if missing:
                raise DatasetError(
                    f"{files[split]}: lists {missing[0]}, not in {source / split} ({len(missing)} missing)"
                )
            unlisted = [name for name in images if name not in table]
            if unlisted:
                raise DatasetError(f"{files[split]}: no position for {unlisted[0]} ({len(unlisted)} images unlisted)")
            out.add_all(
                split, [(images[name], utm_name(x, y, name, Path(name).suffix)) for name, (x, y, *_) in table.items()]
            )
        return out.finish(rule={"threshold_m": threshold_m}, options={"positions": kinds[0]})
