"""Writes a converted dataset: images linked (hard link, else symbolic link, else copied) into
``database/`` and ``queries/`` of a temporary folder beside the destination, the positives and
the descriptor (``data.descriptor``) beside them, then one rename; a failed or interrupted
conversion leaves no half-written destination."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from edgevpr.atomic import remove_stale_temporaries, write_json
from edgevpr.data.descriptor import DESCRIPTOR, FORMAT
from edgevpr.data.images import list_images
from edgevpr.data.positives_file import write_positives
from edgevpr.data.protocols import fingerprint
from edgevpr.errors import DatasetError
from edgevpr.progress import Progress

LINKS = ("auto", "symlink", "copy")
POSITIVES_FILE = "positives.npz"


def place_file(source: Path, target: Path, mode: str) -> str:
    """Put ``source`` at ``target`` without copying where the file system allows; returns how."""
    if mode == "auto":
        try:
            os.link(source, target)
            return "hard link"
        except OSError:
            pass
    if mode in ("auto", "symlink"):
        try:
            target.symlink_to(source.resolve())
            return "symbolic link"
        except OSError:
            if mode == "symlink":
                raise
    shutil.copy2(source, target)
    return "copy"


class DatasetWriter:
    """``with DatasetWriter(dst, "vprbench", src) as out: out.add("database", path, name); ...;
    out.finish(rule={"tolerance_frames": 1})`` (or ``positives={query name: [database names]}``)."""

    def __init__(self, destination: str | Path, source_format: str, source: str | Path, link: str = "auto"):
        if link not in LINKS:
            raise DatasetError(f"unknown link mode {link!r}; use one of {', '.join(LINKS)}")
        self.destination = Path(destination)
        if self.destination.exists() and (not self.destination.is_dir() or any(self.destination.iterdir())):
            raise DatasetError(f"{self.destination}: exists and is not empty; convert into a new folder")
        self.temporary = self.destination.parent / f".{self.destination.name}.{os.getpid()}.converting"
        self.source_format, self.source, self.link = source_format, Path(source), link
        self.placed: Counter = Counter()
        self.names: dict[str, set] = {"database": set(), "queries": set()}

    def __enter__(self) -> DatasetWriter:
        self.destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.temporary, ignore_errors=True)
        remove_stale_temporaries(self.destination, ".converting")  # conversions killed before their rename
        for split in self.names:
            (self.temporary / split).mkdir(parents=True)
        return self

    def __exit__(self, kind, *_) -> None:
        if kind is not None:
            shutil.rmtree(self.temporary, ignore_errors=True)

    def add_all(self, split: str, items: list[tuple[Path, str]]) -> None:
        """Place every (source image, name in ``split``), showing progress."""
        with Progress(len(items), f"{split}", "img") as bar:
            for source, name in items:
                self.add(split, source, name)
                bar.update()

    def add(self, split: str, source: Path, name: str) -> None:
        if not source.is_file():
            raise DatasetError(f"{source}: image listed by the {self.source_format} source is missing")
        if name in self.names[split]:
            raise DatasetError(f"{source}: two {split} images would both be named {name!r}")
        self.names[split].add(name)
        target = self.temporary / split / name
        target.parent.mkdir(parents=True, exist_ok=True)
        self.placed[place_file(source, target, self.link)] += 1

    def finish(self, rule: dict | None = None, positives: dict[str, list[str]] | None = None, options=None) -> dict:
        """Write the positives (a ``rule`` such as ``{"tolerance_frames": 1}``, or ``positives``:
        each query's name to its positive database names) and the descriptor, then move the
        folder into place."""
        database, queries = list_images(self.temporary / "database"), list_images(self.temporary / "queries")
        if positives is not None:
            row = {path.relative_to(self.temporary / "database").as_posix(): i for i, path in enumerate(database)}
            query_names = [path.relative_to(self.temporary / "queries").as_posix() for path in queries]
            missing = [name for name in query_names if name not in positives]
            if missing:
                raise DatasetError(f"{self.source}: no ground truth for query {missing[0]} ({len(missing)} missing)")
            rows = [np.array(sorted(row[name] for name in positives[q]), dtype=np.int64) for q in query_names]
            write_positives(self.temporary / POSITIVES_FILE, rows, len(database))
            rule = {"ground_truth": POSITIVES_FILE}
        descriptor = {
            "format": FORMAT,
            "version": 1,
            "database": "database",
            "queries": "queries",
            "positives": rule,
            "num_database": len(database),
            "num_queries": len(queries),
            "fingerprint": fingerprint(self.temporary / "database", database, self.temporary / "queries", queries),
            "converted_from": {
                "format": self.source_format,
                "source": str(self.source.resolve()),
                "options": options or {},
                "files": dict(self.placed),
            },
        }
        write_json(self.temporary / DESCRIPTOR, descriptor)
        if self.destination.exists():
            self.destination.rmdir()  # empty, checked at the start
        os.replace(self.temporary, self.destination)
        return descriptor
