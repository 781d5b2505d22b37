"""Frames of a recording: the common type, the options, and the dispatch by file kind."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from PIL import Image

from edgevpr.errors import ConfigError, DatasetError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")
BAG_SUFFIXES = (".bag", ".mcap", ".db3")


@dataclass
class RecordingOptions:
    topic: str | None = None  # bags: the sensor_msgs/Image or CompressedImage topic
    every: int | None = None  # keep every N-th frame
    fps: float | None = None  # or keep frames at most this often (recording time)
    positions_topic: str | None = None  # bags: sensor_msgs/NavSatFix (-> UTM) or nav_msgs/Odometry (x, y, yaw)
    positions_csv: str | None = None  # or a CSV with a header timestamp,x,y[,heading] (seconds, metres)
    max_time_gap: float = 0.5  # seconds between a frame and the position matched to it
    without_position: str = "skip"  # frames with no position within the gap: skip (counted) | refuse

    def check(self) -> None:
        if self.every is not None and self.fps is not None:
            raise ConfigError("give --every N or --fps F, not both")
        if self.every is not None and self.every < 1:
            raise ConfigError(f"--every must be >= 1, got {self.every}")
        if self.fps is not None and not self.fps > 0:
            raise ConfigError(f"--fps must be > 0, got {self.fps}")
        if not self.max_time_gap > 0:
            raise ConfigError(f"--max-time-gap must be > 0 seconds, got {self.max_time_gap}")
        if self.positions_topic and self.positions_csv:
            raise ConfigError("give --positions-topic or --positions-csv, not both")
        if self.without_position not in ("skip", "refuse"):
            raise ConfigError(f"--without-position must be skip or refuse, got {self.without_position!r}")

    @property
    def has_positions(self) -> bool:
        return bool(self.positions_topic or self.positions_csv)


@dataclass
class Frame:
    timestamp: float  # seconds (the message's header stamp, or the video's presentation time)
    image: Image.Image  # RGB
    position: list[float] | None = None  # [x, y] or [x, y, heading] in metres (UTM for NavSatFix)
    zone: str | None = None  # UTM zone "33T" for NavSatFix positions

    @property
    def name(self) -> str:
        """A file name that sorts by time and, with a position, carries it as the folder
        format's ``@east@north@`` fields."""
        stamp = f"{round(self.timestamp * 1e9):020d}"
        if self.position is None:
            return f"{stamp}.png"
        zone = self.zone or "xy"
        return f"{stamp}@{self.position[0]:.2f}@{self.position[1]:.2f}@{zone}@.png"


def is_bag(path: str | Path) -> bool:
    path = Path(path)
    return path.suffix.lower() in BAG_SUFFIXES or (path.is_dir() and (path / "metadata.yaml").is_file())


def is_recording(path: str | Path) -> bool:
    """A video file or a bag (ROS 1 ``.bag``, a ROS 2 bag folder, ``.mcap``, ``.db3``)."""
    path = Path(path)
    return path.suffix.lower() in VIDEO_SUFFIXES or is_bag(path)


def sampled(frames: Iterator[Frame], options: RecordingOptions) -> Iterator[Frame]:
    """Every ``every``-th frame, or frames at most ``fps`` per second of recording time."""
    next_time = None
    for number, frame in enumerate(frames):
        if options.every is not None and number % options.every:
            continue
        if options.fps is not None:
            if next_time is not None and frame.timestamp < next_time - 1e-9:
                continue
            next_time = frame.timestamp + 1.0 / options.fps
        yield frame


def open_frames(
    path: str | Path, options: RecordingOptions | None = None, report: dict | None = None
) -> Iterator[Frame]:
    """The recording's frames in time order, sub-sampled, with positions when a source is given.
    ``report`` (a dict) receives the counts: frames read, kept, without a position."""
    from edgevpr.data.recordings.timed_positions import TimedPositions, with_positions

    options = options or RecordingOptions()
    options.check()
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: recording not found")
    if is_bag(path):
        from edgevpr.data.recordings.bag import bag_frames

        frames = bag_frames(path, options.topic)
    elif path.suffix.lower() in VIDEO_SUFFIXES:
        from edgevpr.data.recordings.video import video_frames

        if options.topic or options.positions_topic:
            raise ConfigError(f"{path}: a video has no topics; --topic and --positions-topic are for bags")
        frames = video_frames(path)
    else:
        raise DatasetError(f"{path}: not a recording edgevpr reads (video: {', '.join(VIDEO_SUFFIXES)}; bags)")
    frames = sampled(frames, options)
    if options.has_positions:
        positions = TimedPositions.read(path, options)
        frames = with_positions(frames, positions, options, path, report)
    return frames
