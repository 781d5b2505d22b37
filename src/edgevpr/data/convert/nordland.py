"""Nordland-style season folders (Sunderhauf et al. 2013; the partitioned release of Olid et
al. 2018): ``SRC/<season>/**`` with one image per frame, the same frames in every season
(possibly split in sections). Two seasons become a frame-aligned pair, database and queries,
positives within ``tolerance_frames`` (1, 2 and 10 are all in use: name it with the result)."""

from __future__ import annotations

from pathlib import Path

from edgevpr.data.convert.writer import DatasetWriter
from edgevpr.data.images import list_images
from edgevpr.errors import DatasetError


def season_folder(source: Path, season: str) -> Path:
    """``SRC/season``, or the single subfolder whose name starts with it (``summer_images_test``)."""
    exact = source / season
    if exact.is_dir():
        return exact
    found = sorted(p for p in source.iterdir() if p.is_dir() and p.name.lower().startswith(season.lower()))
    if len(found) != 1:
        seasons = ", ".join(sorted(p.name for p in source.iterdir() if p.is_dir())) or "none"
        raise DatasetError(f"{source}: no single folder for season {season!r} (folders: {seasons})")
    return found[0]


def convert_nordland(
    source: Path,
    destination: Path,
    database: str = "summer",
    queries: str = "winter",
    tolerance_frames: int = 1,
    link: str = "auto",
) -> dict:
    folders = {"database": season_folder(source, database), "queries": season_folder(source, queries)}
    images = {split: list_images(folder) for split, folder in folders.items()}
    if len(images["database"]) != len(images["queries"]):
        raise DatasetError(
            f"{folders['queries']}: seasons must hold the same frames, but {folders['database'].name} has "
            f"{len(images['database'])} images and {folders['queries'].name} has {len(images['queries'])}"
        )
    for a, b in zip(images["database"], images["queries"]):
        if a.relative_to(folders["database"]).with_suffix("") != b.relative_to(folders["queries"]).with_suffix(""):
            raise DatasetError(f"{b}: frame does not line up with {a} (the seasons name their frames differently)")
    with DatasetWriter(destination, "nordland", source, link) as out:
        for split, paths in images.items():
            out.add_all(split, [(path, path.relative_to(folders[split]).as_posix()) for path in paths])
        options = {"database": folders["database"].name, "queries": folders["queries"].name}
        return out.finish(rule={"tolerance_frames": tolerance_frames}, options=options)
