"""Training data: triplet sets (queries with candidate positives and excluded negatives) and
place-grouped sets (images labelled by place, for P x K batches).

Triplet sets follow Berton et al. 2022's code (after NetVLAD): a query's best positive is searched in
feature space among the database images within ``positive_m`` metres (or ``tolerance_frames``
frames); negatives are database images farther than ``negative_m`` metres (or
``negative_frames`` frames). Images in between are neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevpr.config import DataConfig, TrainConfig
from edgevpr.data.dataset import frame_range
from edgevpr.data.folder_format import has_utm_names, positives_within_radius, utm_array
from edgevpr.data.images import list_images
from edgevpr.data.recordings import image_folder
from edgevpr.data.sequences import positives_within_frames
from edgevpr.errors import ConfigError, DatasetError


@dataclass
class TripletSet:
    database_paths: list[Path]
    query_paths: list[Path]
    positives: list[np.ndarray]  # per query: database indices a best positive is chosen from
    non_negatives: list[np.ndarray]  # per query: database indices never used as negatives
    rule: str

    def trainable(self, negatives: int) -> np.ndarray:
        """Queries with at least one positive and enough negatives."""
        size = len(self.database_paths)
        keep = [
            q
            for q, (pos, near) in enumerate(zip(self.positives, self.non_negatives))
            if len(pos) and size - len(near) >= negatives
        ]
        return np.asarray(keep, dtype=np.int64)


@dataclass
class PlaceSet:
    paths: list[Path]
    labels: np.ndarray  # place index per image
    place_names: list[str]


def _query_folders(train: TrainConfig) -> tuple[Path, list[Path]]:
    if train.dataset and (train.database or train.queries):
        raise ConfigError("training data: give either train.dataset ROOT or train.database + train.queries, not both")
    if train.dataset:
        root = Path(train.dataset) / "train"
        if not root.is_dir():
            raise DatasetError(f"{root}: no train split (expected {root}/database and {root}/queries)")
        return root / "database", [root / "queries"]
    if train.database and train.queries:
        return Path(train.database), [Path(q) for q in train.queries]
    raise ConfigError(
        "no training data: give train.dataset ROOT (with train/database and train/queries), "
        "train.database and train.queries, or train.places ROOT"
    )


def _flatten(groups: list[list[np.ndarray]]) -> list[np.ndarray]:
    return [indices for group in groups for indices in group]


def load_triplet_set(train: TrainConfig, recording: DataConfig | None = None) -> TripletSet:
    """The triplet set of ``train``'s folders; a folder that is a recording (a video or a bag)
    is read with ``recording``'s options (topic, positions, sub-sampling: ``data.recordings``)."""
    database_dir, query_dirs = _query_folders(train)
    if recording is not None:
        database_dir = image_folder(database_dir, recording)
        query_dirs = [image_folder(folder, recording) for folder in query_dirs]
    database = list_images(database_dir)
    queries_by_folder = [list_images(folder) for folder in query_dirs]
    positives, non_negatives = [], []
    if train.tolerance_frames is not None:
        if train.negative_frames < train.tolerance_frames:
            raise ConfigError(
                f"train.negative_frames ({train.negative_frames}) must be >= train.tolerance_frames "
                f"({train.tolerance_frames})"
            )
        for folder, queries in zip(query_dirs, queries_by_folder):
            if len(queries) != len(database):
                raise DatasetError(
                    f"{folder}: {len(queries)} images, but the frame-aligned database "
                    f"{database_dir} has {len(database)}"
                )
        if train.frames is not None:
            first, last = frame_range(train.frames, len(database), str(database_dir))
            database = database[first : last + 1]
            queries_by_folder = [queries[first : last + 1] for queries in queries_by_folder]
        for queries in queries_by_folder:
            positives.append(positives_within_frames(len(database), len(queries), train.tolerance_frames))
            non_negatives.append(positives_within_frames(len(database), len(queries), train.negative_frames))
        rule = f"positives frames<={train.tolerance_frames}, negatives frames>{train.negative_frames}"
    else:
        if train.frames is not None:
            raise ConfigError("train.frames selects frames of frame-aligned folders; give train.tolerance_frames too")
        if train.negative_m < train.positive_m:
            raise ConfigError(f"train.negative_m ({train.negative_m}) must be >= train.positive_m ({train.positive_m})")
        for paths in [database, *queries_by_folder]:
            if not has_utm_names(paths):
                raise DatasetError(
                    f"{paths[0]}: no '@utm_east@utm_north@' in the file name; for frame-aligned "
                    f"training folders give train.tolerance_frames"
                )
        database_utm = utm_array(database)
        for queries in queries_by_folder:
            query_utm = utm_array(queries)
            positives.append(positives_within_radius(database_utm, query_utm, train.positive_m))
            non_negatives.append(positives_within_radius(database_utm, query_utm, train.negative_m))
        rule = f"positives meters<={train.positive_m:g}, negatives meters>{train.negative_m:g}"
    return TripletSet(
        database,
        [q for queries in queries_by_folder for q in queries],
        _flatten(positives),
        _flatten(non_negatives),
        rule,
    )


def load_place_set(root: str | Path, min_images: int) -> PlaceSet:
    """``ROOT/<place>/*.jpg``; places with fewer than ``min_images`` images are left out."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: place-grouped training folder not found")
    paths, labels, names = [], [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            images = list_images(folder)
        except DatasetError:
            continue
        if len(images) >= min_images:
            paths += images
            labels += [len(names)] * len(images)
            names.append(folder.name)
    if len(names) < 2:
        raise DatasetError(
            f"{root}: need at least two place folders with {min_images} or more images each, found {len(names)}"
        )
    return PlaceSet(paths, np.asarray(labels, dtype=np.int64), names)
