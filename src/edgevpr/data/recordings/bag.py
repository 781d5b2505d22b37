"""ROS 1 bags, ROS 2 bags (SQLite or MCAP storage) and MCAP files, read with the pure-Python
``rosbags`` library: image topics (``sensor_msgs/Image``: mono8, rgb8, bgr8, rgba8, bgra8;
``sensor_msgs/CompressedImage``: JPEG, PNG) and position topics (``timed_positions``)."""

from __future__ import annotations

import io
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgevpr.data.recordings.frames import Frame
from edgevpr.errors import ConfigError, DatasetError

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CHANNELS = {"mono8": 1, "8uc1": 1, "rgb8": 3, "bgr8": 3, "8uc3": 3, "rgba8": 4, "bgra8": 4}


@contextmanager
def bag_reader(path: Path):
    """An open ``AnyReader`` of ``path``, or one line naming the file."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    try:
        reader = AnyReader([path], default_typestore=get_typestore(Stores.ROS2_HUMBLE))
        reader.open()
    except Exception as error:  # rosbags raises its own error types per storage
        raise DatasetError(f"{path}: not a bag rosbags can read ({error.__class__.__name__}: {error})") from None
    try:
        yield reader
    finally:
        reader.close()


def connections_of(reader, path: Path, topic: str | None, types: tuple[str, ...], what: str) -> list:
    """The connections of ``topic`` (of one of ``types``), or one line naming the bag, the
    topic and the topics it does hold."""
    if topic is None:
        held = sorted({c.topic for c in reader.connections if c.msgtype in types})
        raise ConfigError(f"{path}: give --topic for the {what}; this bag's {what} topics: {', '.join(held) or 'none'}")
    chosen = [c for c in reader.connections if c.topic == topic]
    if not chosen:
        held = sorted({c.topic for c in reader.connections})
        raise DatasetError(f"{path}: no topic {topic}; it holds {', '.join(held) or 'no topics'}")
    wrong = sorted({c.msgtype for c in chosen if c.msgtype not in types})
    if wrong:
        raise DatasetError(f"{path}: topic {topic} carries {wrong[0]}, not {' or '.join(types)}")
    return chosen


def stamp_seconds(message, fallback_ns: int) -> float:
    """The header stamp in seconds, or the bag's receive time when the stamp is zero."""
    header = getattr(message, "header", None)
    if header is not None and (header.stamp.sec or header.stamp.nanosec):
        return header.stamp.sec + header.stamp.nanosec * 1e-9
    return fallback_ns * 1e-9


def decode_image(message, msgtype: str, where: str) -> Image.Image:
    """An RGB image from a ``sensor_msgs`` Image or CompressedImage message."""
    if msgtype.endswith("CompressedImage"):
        try:
            return Image.open(io.BytesIO(bytes(message.data))).convert("RGB")
        except (UnidentifiedImageError, OSError):
            raise DatasetError(f"{where}: compressed image in format {message.format!r} cannot be decoded") from None
    encoding = message.encoding.lower()
    if encoding not in CHANNELS:
        raise DatasetError(
            f"{where}: unsupported image encoding {message.encoding!r}; supported: {', '.join(CHANNELS)}"
        )
    channels = CHANNELS[encoding]
    data = np.frombuffer(bytes(message.data), dtype=np.uint8)
    if message.step < message.width * channels or len(data) < message.step * message.height:
        raise DatasetError(f"{where}: image data holds {len(data)} bytes, too few for {message.height}x{message.width}")
    rows = data[: message.step * message.height].reshape(message.height, message.step)
    pixels = rows[:, : message.width * channels].reshape(message.height, message.width, channels)
    if encoding.startswith("bgr"):
        pixels = pixels[..., [2, 1, 0]]
    if channels == 1:
        return Image.fromarray(pixels[..., 0], "L").convert("RGB")
    return Image.fromarray(np.ascontiguousarray(pixels[..., :3]), "RGB")


def bag_frames(path: Path, topic: str | None) -> Iterator[Frame]:
    """The image topic's frames in time order, decoded one at a time."""
    with bag_reader(path) as reader:
        chosen = connections_of(reader, path, topic, IMAGE_TYPES, "images")
        count = 0
        try:
            for connection, timestamp, raw in reader.messages(connections=chosen):
                message = reader.deserialize(raw, connection.msgtype)
                where = f"{path}: {topic} message {count}"
                yield Frame(stamp_seconds(message, timestamp), decode_image(message, connection.msgtype, where))
                count += 1
        except (DatasetError, ConfigError):
            raise
        except Exception as error:  # a truncated chunk surfaces as the storage's own error
            raise DatasetError(
                f"{path}: {topic} breaks off after {count} messages ({error.__class__.__name__}: truncated bag?)"
            ) from None
        if count == 0:
            raise DatasetError(f"{path}: topic {topic} holds no messages")
