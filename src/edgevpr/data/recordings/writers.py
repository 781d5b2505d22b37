"""Small real recordings written from image folders, for tests, benchmarks and trying the
recording sources out: a video with PyAV, ROS 1 and ROS 2 bags with ``rosbags`` (images as
``sensor_msgs/Image`` or ``CompressedImage``, positions as ``sensor_msgs/NavSatFix`` at twice
the image rate, from the folder format's UTM names or given positions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import utm
from PIL import Image

from edgevpr.data.folder_format import parse_utm

ZONE = (33, "T")  # the synthetic street's UTM zone


def write_video(path: Path, images: list[Path], fps: int = 10, codec: str = "rawvideo") -> None:
    """``rawvideo`` rgb24 in AVI keeps every pixel; ``mpeg4`` in MP4 is what cameras write."""
    import av

    first = Image.open(images[0])
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = first.size
        stream.pix_fmt = "rgb24" if codec == "rawvideo" else "yuv420p"
        for image in images:
            frame = av.VideoFrame.from_ndarray(np.asarray(Image.open(image).convert("RGB")), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _typestore(ros1: bool):
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE)


def _header(types, seconds: float, ros1: bool):
    stamp = types["builtin_interfaces/msg/Time"](sec=int(seconds), nanosec=round((seconds % 1) * 1e9))
    extra = {"seq": 0} if ros1 else {}
    return types["std_msgs/msg/Header"](stamp=stamp, frame_id="camera", **extra)


def image_message(types, path: Path, seconds: float, ros1: bool, compressed: bool, encoding: str = "rgb8"):
    header = _header(types, seconds, ros1)
    if compressed:
        data = np.frombuffer(Path(path).read_bytes(), dtype=np.uint8)
        return types["sensor_msgs/msg/CompressedImage"](header=header, format="jpeg", data=data), "CompressedImage"
    pixels = np.asarray(Image.open(path).convert("RGB"))
    if encoding == "bgr8":
        pixels = pixels[..., ::-1]
    height, width = pixels.shape[:2]
    message = types["sensor_msgs/msg/Image"](
        header=header,
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * 3,
        data=np.ascontiguousarray(pixels).reshape(-1),
    )
    return message, "Image"


def fix_message(types, east: float, north: float, seconds: float, ros1: bool):
    latitude, longitude = utm.to_latlon(east, north, *ZONE)
    status = types["sensor_msgs/msg/NavSatStatus"](status=0, service=1)
    return types["sensor_msgs/msg/NavSatFix"](
        header=_header(types, seconds, ros1),
        status=status,
        latitude=latitude,
        longitude=longitude,
        altitude=0.0,
        position_covariance=np.zeros(9),
        position_covariance_type=0,
    )


def write_bag(
    path: Path,
    images: list[Path],
    ros1: bool,
    compressed: bool,
    topic: str = "/camera/image",
    gps_topic: str | None = "/gps/fix",
    start: float = 100.0,
    interval: float = 0.1,
    encoding: str = "rgb8",
    positions: list[tuple[float, float]] | None = None,
) -> list[float]:
    """Frame i at ``start + i * interval``; with ``gps_topic`` a fix at each frame's time and
    one halfway to the next (twice the image rate) at the frame's UTM position (``positions``,
    or the folder format's name). Returns the frame times."""
    types = _typestore(ros1).types
    store = _typestore(ros1)
    if ros1:
        from rosbags.rosbag1 import Writer

        writer = Writer(path)
    else:
        from rosbags.rosbag2 import Writer

        writer = Writer(path, version=9)
    times = [start + i * interval for i in range(len(images))]
    kind = "CompressedImage" if compressed else "Image"
    with writer:
        camera = writer.add_connection(topic, f"sensor_msgs/msg/{kind}", typestore=store)
        gps = writer.add_connection(gps_topic, "sensor_msgs/msg/NavSatFix", typestore=store) if gps_topic else None
        serialize = store.serialize_ros1 if ros1 else store.serialize_cdr
        if gps_topic and positions is None:
            positions = [parse_utm(p) for p in images]
        for i, (image, seconds) in enumerate(zip(images, times)):
            message, kind = image_message(types, image, seconds, ros1, compressed, encoding)
            stamp_ns = round(seconds * 1e9)
            writer.write(camera, stamp_ns, bytes(serialize(message, f"sensor_msgs/msg/{kind}")))
            if gps is None:
                continue
            east, north = positions[i]
            fixes = [(seconds, east, north)]
            if i + 1 < len(images):
                after = positions[i + 1]
                fixes.append((seconds + interval / 2, (east + after[0]) / 2, (north + after[1]) / 2))
            for when, x, y in fixes:
                fix = fix_message(types, x, y, when, ros1)
                writer.write(gps, round(when * 1e9) + 1, bytes(serialize(fix, "sensor_msgs/msg/NavSatFix")))
    return times
