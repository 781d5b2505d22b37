"""A recording written once into edgevpr's folder format, so that every command that takes an
image folder (eval, map build and add, train, sweeps) takes a recording too.

Frames are stored as PNG (lossless: a folder of the decoded frames describes exactly what the
recording holds) under names that sort by time and carry the position (``Frame.name``), with a
``positions.csv`` (``name,x,y[,heading]``) when positions have headings. The folder is kept in
a cache keyed by the recording's path, size, modification time and the reading options
(``$EDGEVPR_CACHE`` or ``~/.cache/edgevpr/recordings``) and written atomically: a second run
reuses it, an interrupted one leaves nothing that looks complete."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from edgevpr.data.recordings.frames import RecordingOptions, open_frames
from edgevpr.errors import DatasetError

SUMMARY = "recording.json"


def cache_root() -> Path:
    return Path(os.environ.get("EDGEVPR_CACHE") or Path.home() / ".cache" / "edgevpr") / "recordings"


def _key(path: Path, options: RecordingOptions) -> str:
    stat = path.stat()
    size = stat.st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    identity = {"path": str(path.resolve()), "size": size, "mtime_ns": stat.st_mtime_ns}
    identity |= {"options": dataclasses.asdict(options)}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def write_frames(path: Path, options: RecordingOptions, target: Path, log=None) -> dict:
    """Decode ``path`` frame by frame into ``target`` (a new folder); returns the summary."""
    report: dict = {}
    headings = []
    count = 0
    for frame in open_frames(path, options, report):
        frame.image.save(target / frame.name)
        if frame.position is not None and len(frame.position) > 2:
            headings.append((frame.name, *frame.position[:3]))
        count += 1
        if log and count % 500 == 0:
            log(f"{path}: {count} frames written")
    if count == 0:
        raise DatasetError(f"{path}: no frames to write")
    if headings:
        lines = ["name,x,y,heading"] + [f"{name},{x:.3f},{y:.3f},{h:.2f}" for name, x, y, h in headings]
        (target / "positions.csv").write_text("\n".join(lines) + "\n")
    summary = {"recording": str(path), "options": dataclasses.asdict(options), "frames_written": count}
    summary |= {key: value for key, value in report.items() if key != "kept"}
    (target / SUMMARY).write_text(json.dumps(summary, indent=1))
    return summary


def recording_folder(path: str | Path, options: RecordingOptions, out: str | Path | None = None, log=None) -> Path:
    """The folder holding ``path``'s frames: ``out`` when given (``edgevpr convert``), else the
    cache's folder for this recording and these options, written on first use."""
    path = Path(path)
    options.check()
    target = Path(out) if out is not None else cache_root() / f"{path.stem}-{_key(path, options)}"
    if out is None and (target / SUMMARY).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        summary = write_frames(path, options, temporary, log)
        if target.exists():
            shutil.rmtree(target)
        os.replace(temporary, target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    if log and summary.get("without_position"):
        log(
            f"{path}: {summary['without_position']} of {summary['frames']} frames had no position within "
            f"{options.max_time_gap} s and were skipped"
        )
    return target


def options_of(data) -> RecordingOptions:
    """The recording options of a run config's data section."""
    return RecordingOptions(
        topic=data.topic,
        every=data.every,
        fps=data.fps,
        positions_topic=data.positions_topic,
        positions_csv=data.positions_file,
        max_time_gap=data.max_time_gap,
        without_position=data.without_position,
    )


def image_folder(path: str | Path, data, log=None) -> Path:
    """``path`` itself for an image folder; for a recording, the folder of its frames."""
    from edgevpr.data.recordings.frames import is_recording

    if not is_recording(path):
        return Path(path)
    return recording_folder(path, options_of(data), log=log)
