"""Video files decoded with PyAV (FFmpeg), frame by frame."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from edgevpr.data.recordings.frames import Frame
from edgevpr.errors import DatasetError


def video_frames(path: Path) -> Iterator[Frame]:
    """RGB frames with their presentation time in seconds. A file that cannot be opened, or
    that breaks off mid-stream, is one line naming it (frames before the break were yielded)."""
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as error:
        raise DatasetError(f"{path}: not a video PyAV can open ({error.__class__.__name__})") from None
    with container:
        if not container.streams.video:
            raise DatasetError(f"{path}: holds no video stream")
        stream = container.streams.video[0]
        number = 0
        try:
            for decoded in container.decode(stream):
                seconds = decoded.time if decoded.time is not None else number / float(stream.average_rate or 1)
                yield Frame(float(seconds), decoded.to_image().convert("RGB"))
                number += 1
        except av.error.FFmpegError as error:
            raise DatasetError(
                f"{path}: the video breaks off after {number} frames ({error.__class__.__name__})"
            ) from None
        if number == 0:
            raise DatasetError(f"{path}: no frame could be decoded (truncated or empty video?)")
