"""``edgevpr convert FORMAT SRC DST``: datasets in other layouts to one that ``eval --dataset
DST`` reads with its positives (``data.descriptor``). One module per format, registered here;
images are linked, not copied, where the file system allows."""

from __future__ import annotations

from pathlib import Path

from edgevpr.data.convert.csv_points import convert_csv
from edgevpr.data.convert.msls import convert_msls
from edgevpr.data.convert.nordland import convert_nordland
from edgevpr.data.convert.pitts import convert_pitts
from edgevpr.data.convert.vprbench import convert_vprbench
from edgevpr.errors import DatasetError

CONVERTERS = {
    "vprbench": convert_vprbench,
    "nordland": convert_nordland,
    "pitts": convert_pitts,
    "msls": convert_msls,
    "csv": convert_csv,
}


def convert(format_name: str, source: str | Path, destination: str | Path, **options) -> dict:
    """Convert ``source`` (a dataset in ``format_name``'s layout) into ``destination``; returns
    the descriptor written there."""
    if format_name not in CONVERTERS:
        raise DatasetError(f"unknown format {format_name!r}; use one of {', '.join(CONVERTERS)}")
    source = Path(source)
    if not source.is_dir():
        raise DatasetError(f"{source}: source dataset folder not found")
    return CONVERTERS[format_name](source, Path(destination), **options)
