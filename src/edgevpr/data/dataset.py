"""A place-recognition test set: database images, query images and each query's positives."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgevpr.config import DataConfig
from edgevpr.data.descriptor import DESCRIPTOR, positive_rule, read_descriptor
from edgevpr.data.folder_format import (
    DEFAULT_THRESHOLD_M,
    has_utm_names,
    positives_within_radius,
    utm_array,
)
from edgevpr.data.images import list_images
from edgevpr.data.patchnetvlad_gt import load_patchnetvlad_ground_truth
from edgevpr.data.positives_file import is_positives_file, read_positives
from edgevpr.data.protocols import RULES, check_dataset, find_protocol
from edgevpr.data.recordings import image_folder, is_recording
from edgevpr.data.sequences import positives_within_frames
from edgevpr.data.vprbench import load_vprbench_ground_truth
from edgevpr.errors import ConfigError, DatasetError


@dataclass
class VPRDataset:
    name: str
    root: str
    database_dir: str
    queries_dir: str
    database_paths: list[Path]
    query_paths: list[Path]
    positives: list[np.ndarray]  # per query, sorted database indices
    positive_rule: str  # e.g. "meters<=25", "frames<=2", "ground_truth=FILE"
    skipped: list[str] = field(default_factory=list)
    registered: dict | None = None  # the protocol it was checked against: name, version

    def subset(self, database_keep: np.ndarray, query_keep: np.ndarray, skipped: list[str]) -> "VPRDataset":
        """Drop database and query images (e.g. undecodable ones) and renumber the positives."""
        new_index = np.full(len(self.database_paths), -1, dtype=np.int64)
        new_index[database_keep] = np.arange(len(database_keep))
        positives = []
        for q in query_keep:
            mapped = new_index[self.positives[q]]
            positives.append(mapped[mapped >= 0])
        return replace(
            self,
            database_paths=[self.database_paths[i] for i in database_keep],
            query_paths=[self.query_paths[i] for i in query_keep],
            positives=positives,
            skipped=self.skipped + list(skipped),
        )

    def protocol(self) -> dict:
        return {
            "dataset": self.name,
            "root": self.root,
            "database": self.database_dir,
            "queries": self.queries_dir,
            "num_database": len(self.database_paths),
            "num_queries": len(self.query_paths),
            "positives": self.positive_rule,
            "queries_without_positives": int(sum(len(p) == 0 for p in self.positives)),
            "skipped_images": list(self.skipped),
        } | ({"registered_protocol": self.registered} if self.registered else {})


def frame_range(frames, available: int, where: str) -> tuple[int, int]:
    """Validate an inclusive (first, last) frame range against ``available`` frames."""
    if len(frames) != 2 or not 0 <= frames[0] <= frames[1]:
        raise ConfigError(f"frames must be FIRST,LAST with 0 <= FIRST <= LAST, got {','.join(map(str, frames))}")
    if frames[1] >= available:
        raise DatasetError(f"{where}: frames {frames[0]}-{frames[1]} asked for, but only {available} frames exist")
    return int(frames[0]), int(frames[1])


def _folders(config: DataConfig) -> tuple[Path, Path, Path, str]:
    if config.dataset and (config.database or config.queries):
        raise ConfigError("give either --dataset ROOT or --database DIR --queries DIR, not both")
    if config.dataset:
        root = Path(config.dataset)
        if not root.is_dir():
            raise DatasetError(f"{root}: dataset folder not found")
        descriptor = read_descriptor(root) or {"database": "database", "queries": "queries"}
        return root, root / descriptor["database"], root / descriptor["queries"], root.name
    if not (config.database and config.queries):
        raise ConfigError("no dataset: give --dataset ROOT, or both --database DIR and --queries DIR")
    database, queries = Path(config.database), Path(config.queries)
    if is_recording(database) or is_recording(queries):  # frames written once as folders (data.recordings)
        name = f"{database.stem}+{queries.stem}"
        database, queries = image_folder(database, config, _log), image_folder(queries, config, _log)
        return Path(os.path.commonpath([database.resolve(), queries.resolve()])), database, queries, name
    root = Path(os.path.commonpath([database.resolve(), queries.resolve()]))
    return root, database, queries, root.name or "dataset"


def _log(message: str) -> None:
    print(message, file=sys.stderr)


def check_descriptor_counts(descriptor: dict, root: Path, num_database: int, num_queries: int) -> None:
    for what, found in (("database", num_database), ("queries", num_queries)):
        expected = descriptor.get(f"num_{what}")
        if expected is not None and expected != found:
            raise DatasetError(
                f"{root / DESCRIPTOR}: lists {expected} {what} images, {root / descriptor[what]} holds {found}"
            )


def load_dataset(config: DataConfig) -> VPRDataset:
    if config.protocol:
        return _load_protocol(config)
    root, database_dir, queries_dir, name = _folders(config)
    chosen = [opt for opt in ("tolerance_frames", "threshold_m", "ground_truth") if getattr(config, opt) is not None]
    descriptor = read_descriptor(root) if config.dataset else None
    if descriptor and not chosen:  # a converted dataset carries its positive rule (data.descriptor)
        config = replace(config, **positive_rule(descriptor, root))
    if len(chosen) > 1:
        raise ConfigError(f"choose one positive rule, got {', '.join('--' + c.replace('_', '-') for c in chosen)}")
    database_paths, query_paths = list_images(database_dir), list_images(queries_dir)
    if descriptor:
        check_descriptor_counts(descriptor, root, len(database_paths), len(query_paths))
    if config.tolerance_frames is not None and config.frames is None and len(database_paths) != len(query_paths):
        raise DatasetError(
            f"{queries_dir}: frame-aligned folders must hold as many images, but {database_dir} has "
            f"{len(database_paths)} and {queries_dir} has {len(query_paths)}; give --frames FIRST,LAST to use those "
            f"frames of both"
        )
    if config.frames is not None:
        if config.tolerance_frames is None:
            raise ConfigError("--frames selects frames of frame-aligned folders; give --tolerance-frames too")
        first, last = frame_range(config.frames, min(len(database_paths), len(query_paths)), str(queries_dir))
        database_paths, query_paths = database_paths[first : last + 1], query_paths[first : last + 1]

    if config.ground_truth is not None and is_positives_file(config.ground_truth):
        positives = read_positives(config.ground_truth, len(database_paths), len(query_paths))
        rule = f"ground_truth={Path(config.ground_truth).name}"
    elif config.ground_truth is not None and str(config.ground_truth).endswith(".npz"):
        positives, threshold = load_patchnetvlad_ground_truth(config.ground_truth, database_paths, query_paths)
        rule = f"meters<={threshold:g},ground_truth={Path(config.ground_truth).name}"
    elif config.ground_truth is not None:
        positives = load_vprbench_ground_truth(config.ground_truth, len(database_paths), len(query_paths))
        rule = f"ground_truth={Path(config.ground_truth).name}"
    elif config.tolerance_frames is not None:
        positives = positives_within_frames(len(database_paths), len(query_paths), config.tolerance_frames)
        rule = f"frames<={config.tolerance_frames}"
        if config.frames is not None:
            rule += f",frames={first}-{last}"
    else:
        threshold = DEFAULT_THRESHOLD_M if config.threshold_m is None else config.threshold_m
        for paths in (database_paths, query_paths):
            if not has_utm_names(paths):
                raise DatasetError(
                    f"{paths[0]}: no '@utm_east@utm_north@' in the file name, so positives are unknown; "
                    f"for frame-aligned folders give --tolerance-frames N, or give --ground-truth FILE"
                )
        positives = positives_within_radius(utm_array(database_paths), utm_array(query_paths), threshold)
        rule = f"meters<={threshold:g}"

    return VPRDataset(
        name=name,
        root=str(root),
        database_dir=str(database_dir),
        queries_dir=str(queries_dir),
        database_paths=database_paths,
        query_paths=query_paths,
        positives=positives,
        positive_rule=rule,
    )


def _load_protocol(config: DataConfig) -> VPRDataset:
    """The dataset of a registered protocol under ``data_root``, checked against its counts and
    fingerprint; its name is the protocol's, so results group by it."""
    protocol = find_protocol(config.protocol)
    given = [
        f"--{name.replace('_', '-')}"
        for name in ("dataset", "database", "queries", *RULES)
        if getattr(config, name) is not None
    ]
    if given:
        raise ConfigError(f"--protocol {protocol.name} fixes the folders and positives; drop {', '.join(given)}")
    if not config.data_root:
        raise ConfigError(f"--protocol {protocol.name} needs --data-root DIR (the folder holding {protocol.database})")
    folders = replace(config, protocol=None, **protocol.data_overrides(config.data_root))
    for folder in (folders.database, folders.queries):
        if not Path(folder).is_dir():
            raise DatasetError(f"{folder}: not found; protocol {protocol.name} expects it under --data-root")
    dataset = load_dataset(folders)
    check_dataset(
        protocol, Path(dataset.database_dir), dataset.database_paths, Path(dataset.queries_dir), dataset.query_paths
    )
    return replace(dataset, name=protocol.name, registered={"name": protocol.name, "version": protocol.version})
