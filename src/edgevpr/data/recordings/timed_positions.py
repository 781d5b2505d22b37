"""Positions of a recording's frames: from a bag topic (``sensor_msgs/NavSatFix`` projected to
UTM, or ``nav_msgs/Odometry`` x, y and yaw) or a CSV ``timestamp,x,y[,heading]``, matched to
each frame by the nearest timestamp within ``max_time_gap`` seconds. Frames without one are
counted and skipped, or refused; never dropped without a word."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import utm

from edgevpr.data.positions_csv import csv_rows
from edgevpr.data.recordings.frames import Frame, RecordingOptions
from edgevpr.errors import DatasetError

POSITION_TYPES = ("sensor_msgs/msg/NavSatFix", "nav_msgs/msg/Odometry")


def yaw_degrees(q) -> float:
    """Heading about z of a unit quaternion (x, y, z, w), in degrees."""
    return math.degrees(math.atan2(2 * (q.w * q.z + q.x * q.y), 1 - 2 * (q.y * q.y + q.z * q.z)))


@dataclass
class TimedPositions:
    times: np.ndarray  # (N,) seconds, increasing
    values: np.ndarray  # (N, 2) or (N, 3): x, y[, heading degrees]
    zone: str | None  # the UTM zone of NavSatFix positions ("33T"); None for a metric frame of the user's
    source: str

    @classmethod
    def read(cls, recording: Path, options: RecordingOptions) -> TimedPositions:
        if options.positions_csv:
            return cls.from_csv(Path(options.positions_csv))
        return cls.from_topic(recording, options.positions_topic)

    @classmethod
    def from_csv(cls, path: Path) -> TimedPositions:
        rows = csv_rows(path)
        header = [cell.strip().lower() for cell in rows[0]] if rows else []
        if header not in (["timestamp", "x", "y"], ["timestamp", "x", "y", "heading"]):
            raise DatasetError(
                f"{path}: the header must be timestamp,x,y[,heading]; got {','.join(header) or 'nothing'}"
            )
        table = []
        for line, row in enumerate(rows[1:], start=2):
            if not "".join(row).strip():
                continue
            try:
                numbers = [float(cell) for cell in row]
            except ValueError:
                raise DatasetError(f"{path}: line {line}: {','.join(row)!r} is not numbers") from None
            if len(numbers) != len(header) or not all(math.isfinite(v) for v in numbers):
                raise DatasetError(f"{path}: line {line}: expected {len(header)} finite numbers")
            table.append(numbers)
        if not table:
            raise DatasetError(f"{path}: no positions")
        array = np.array(table, dtype=np.float64)
        return cls._sorted(array[:, 0], array[:, 1:], None, str(path))

    @classmethod
    def from_topic(cls, path: Path, topic: str) -> TimedPositions:
        from edgevpr.data.recordings.bag import bag_reader, connections_of, stamp_seconds

        times, values, zone_number, zone = [], [], None, None
        with bag_reader(path) as reader:
            chosen = connections_of(reader, path, topic, POSITION_TYPES, "positions")
            for connection, timestamp, raw in reader.messages(connections=chosen):
                message = reader.deserialize(raw, connection.msgtype)
                if connection.msgtype.endswith("NavSatFix"):
                    if message.status.status < 0 or not (
                        math.isfinite(message.latitude) and math.isfinite(message.longitude)
                    ):
                        continue  # no fix
                    east, north, number, letter = utm.from_latlon(
                        message.latitude, message.longitude, force_zone_number=zone_number
                    )
                    zone_number, zone = number, zone or f"{number}{letter}"
                    values.append([east, north])
                else:
                    pose = message.pose.pose
                    values.append([pose.position.x, pose.position.y, yaw_degrees(pose.orientation)])
                times.append(stamp_seconds(message, timestamp))
        if not times:
            raise DatasetError(f"{path}: topic {topic} holds no usable positions (no fix?)")
        return cls._sorted(np.array(times), np.array(values, dtype=np.float64), zone, f"{path}:{topic}")

    @classmethod
    def _sorted(cls, times, values, zone, source) -> TimedPositions:
        order = np.argsort(times, kind="stable")
        return cls(np.asarray(times)[order], values[order], zone, source)

    def nearest(self, t: float) -> tuple[int, float]:
        """Index of the position nearest in time to ``t`` and the gap in seconds."""
        right = int(np.searchsorted(self.times, t))
        best = min((i for i in (right - 1, right) if 0 <= i < len(self.times)), key=lambda i: abs(self.times[i] - t))
        return best, abs(float(self.times[best]) - t)

    def span(self) -> str:
        return f"{self.times[0]:.3f}-{self.times[-1]:.3f} s"


def with_positions(
    frames: Iterator[Frame], positions: TimedPositions, options: RecordingOptions, path: Path, report: dict | None
) -> Iterator[Frame]:
    """``frames`` with their positions; those without one within the gap are skipped and
    counted in ``report["without_position"]``, or refused (``options.without_position``)."""
    report = {} if report is None else report
    report.update(frames=0, kept=0, without_position=0, positions=len(positions.times), source=positions.source)
    first = last = None
    for frame in frames:
        report["frames"] += 1
        first = frame.timestamp if first is None else first
        last = frame.timestamp
        index, gap = positions.nearest(frame.timestamp)
        if gap > options.max_time_gap:
            if options.without_position == "refuse":
                raise DatasetError(
                    f"{path}: frame at {frame.timestamp:.3f} s has no position within {options.max_time_gap} s "
                    f"in {positions.source} (nearest {gap:.3f} s away)"
                )
            report["without_position"] += 1
            continue
        frame.position = positions.values[index].tolist()
        frame.zone = positions.zone
        report["kept"] += 1
        yield frame
    if report["frames"] and not report["kept"]:
        raise DatasetError(
            f"{path}: no frame has a position within {options.max_time_gap} s: frames span "
            f"{first:.3f}-{last:.3f} s, {positions.source} spans {positions.span()}"
        )
