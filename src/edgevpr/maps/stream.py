"""A stream of frames localized one by one: image files, or a recording's frames
(``data.recordings``) with their timestamps and, when known, their true positions.

Each answer is handed to ``emit`` as soon as its frame is answered (the CLI writes and flushes
one JSON line), so a stream can be followed, piped or tailed. With ``realtime`` the frames are
replayed at the recording's own rate: the stream waits for a frame that is early and drops one
that is due more than a frame interval ago while the localizer was busy, counting it."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from edgevpr.maps.positions import distance


@dataclass
class StreamFrame:
    image: object  # a path, a PIL image or an H x W x 3 array
    name: str
    timestamp: float | None = None  # seconds of the recording
    position: list[float] | None = None  # the frame's true position, when the recording has one


def recording_frames(frames: Iterable) -> Iterator[StreamFrame]:
    """``data.recordings.Frame`` s as stream frames."""
    for frame in frames:
        yield StreamFrame(frame.image, frame.name, frame.timestamp, frame.position)


def _with_truth(answer: dict, frame: StreamFrame, kind: str) -> dict:
    if frame.timestamp is not None:
        answer["timestamp"] = round(frame.timestamp, 6)
    if frame.position is not None and kind != "frame" and answer["matches"]:
        answer["position"] = frame.position
        answer["error_m"] = round(distance(kind, answer["matches"][0]["position"], frame.position), 3)
    return answer


def percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    p50, p90, p99 = np.percentile(np.asarray(values), [50, 90, 99])
    return {"p50_ms": round(float(p50), 3), "p90_ms": round(float(p90), 3), "p99_ms": round(float(p99), 3)}


def localize_stream(
    localize: Callable[[object, str], dict],
    frames: Iterable[StreamFrame],
    emit: Callable[[dict], None],
    positions_kind: str,
    realtime: bool = False,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
    observe: Callable[[dict, StreamFrame], None] | None = None,
) -> dict:
    """Localize ``frames`` in order, ``emit`` each answer (and hand it with its frame to
    ``observe``: the report); returns the stream's summary: frames answered and dropped,
    achieved Hz, and per-frame total milliseconds p50/p90/p99."""
    answered, dropped, totals = 0, 0, []
    start = clock()
    first_stamp = None
    interval = 0.0  # the recording's last frame interval, for realtime's drop rule
    previous_stamp = None
    for frame in frames:
        if realtime and frame.timestamp is not None:
            first_stamp = frame.timestamp if first_stamp is None else first_stamp
            if previous_stamp is not None:
                interval = max(frame.timestamp - previous_stamp, 0.0)
            previous_stamp = frame.timestamp
            due = start + (frame.timestamp - first_stamp)
            late = clock() - due
            if late < 0:
                sleep(-late)
            elif answered and late > interval:  # the next frame is due already: skip this one
                dropped += 1
                continue
        answer = localize(frame.image, frame.name)
        answer = _with_truth(answer, frame, positions_kind)
        emit(answer)
        if observe is not None:
            observe(answer, frame)
        totals.append(answer["ms"]["total"])
        answered += 1
    seconds = clock() - start
    summary = {"frames": answered, "dropped": dropped, "seconds": round(seconds, 3)}
    summary["hz"] = round(answered / seconds, 2) if seconds > 0 else math.inf
    return summary | percentiles(totals)
