"""Recordings as sources: a video (PyAV) and ROS 1 / ROS 2 bags (rosbags) written here from
the generated street, read frame by frame with their timestamps and NavSatFix positions, and
used as eval's database and queries, as a map's images, and as a localized stream."""

import json
import struct

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgevpr.cli import main
from edgevpr.data.folder_format import parse_utm
from edgevpr.data.images import list_images
from edgevpr.data.recordings import RecordingOptions, open_frames
from edgevpr.data.recordings.writers import write_bag, write_video
from edgevpr.errors import EdgeVPRError

pytest.importorskip("av", reason="PyAV (the test extra) reads and writes the videos")
pytest.importorskip("rosbags", reason="rosbags (the test extra) reads and writes the bags")

MODEL = ["--backbone", "squeezenet", "--aggregator", "gem", "--size", "72x96"]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEVPR_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def bags(tiny_street, tmp_path_factory):
    """The street's database as a ROS 2 bag of JPEG CompressedImages, its queries as a ROS 1
    bag of raw rgb8 Images, both with NavSatFix fixes at twice the image rate."""
    root = tmp_path_factory.mktemp("bags")
    database, queries = list_images(tiny_street / "database"), list_images(tiny_street / "queries")
    write_bag(root / "database", database, ros1=False, compressed=True)
    write_bag(root / "queries.bag", queries, ros1=True, compressed=False, start=500.0)
    return root / "database", root / "queries.bag"


def test_bag_frames_carry_their_timestamps_pixels_and_positions(tiny_street, bags):
    database_bag, queries_bag = bags
    queries = list_images(tiny_street / "queries")
    options = RecordingOptions(topic="/camera/image", positions_topic="/gps/fix")
    report = {}
    frames = list(open_frames(queries_bag, options, report))
    assert [round(f.timestamp, 6) for f in frames] == [round(500.0 + 0.1 * i, 6) for i in range(len(queries))]
    assert report == {"frames": len(queries), "kept": len(queries), "without_position": 0} | {
        "positions": 2 * len(queries) - 1,
        "source": f"{queries_bag}:/gps/fix",
    }
    for frame, path in zip(frames, queries):
        assert np.array_equal(np.asarray(frame.image), np.asarray(Image.open(path).convert("RGB")))
        assert np.allclose(frame.position, parse_utm(path), atol=0.01) and frame.zone.startswith("33")
        assert np.allclose(parse_utm(frame.name), parse_utm(path), atol=0.01)
    every_third = list(open_frames(database_bag, RecordingOptions(topic="/camera/image", every=3)))
    at_2_hz = list(open_frames(database_bag, RecordingOptions(topic="/camera/image", fps=2)))
    assert len(every_third) == 10 and [f.timestamp for f in every_third][:2] == pytest.approx([100.0, 100.3])
    assert len(at_2_hz) == 6 and np.diff([f.timestamp for f in at_2_hz]) == pytest.approx([0.5] * 5)


def test_eval_from_bags_equals_eval_from_the_folders(tiny_street, bags, tmp_path):
    database_bag, queries_bag = bags
    runner = CliRunner()
    argv = ["eval", *MODEL, "--latency-runs", "5", "--threshold-m", "25"]
    folders = runner.invoke(main, [*argv, "--dataset", str(tiny_street), "--out", str(tmp_path / "f.json")])
    assert folders.exit_code == 0, folders.output
    recorded = [*argv, "--database", str(database_bag), "--queries", str(queries_bag)]
    recorded += ["--topic", "/camera/image", "--positions-topic", "/gps/fix", "--out", str(tmp_path / "b.json")]
    from_bags = runner.invoke(main, recorded)
    assert from_bags.exit_code == 0, from_bags.output
    f, b = (json.loads((tmp_path / name).read_text()) for name in ("f.json", "b.json"))
    assert b["per_query"] == f["per_query"] and b["recall"] == f["recall"]
    assert b["protocol"]["num_queries"] == f["protocol"]["num_queries"] == 10
    again = runner.invoke(main, recorded)  # the frames are decoded once, then read from the cache
    assert again.exit_code == 0 and len(list((tmp_path / "cache" / "recordings").iterdir())) == 2


def test_map_from_a_video_localizes_a_bag_as_a_stream(tiny_street, bags, tmp_path):
    """The map's images from a lossless video (positions from a timestamp CSV); the queries
    streamed from the ROS 1 bag: each line carries the frame's timestamp, its true position
    and the error of the top-1 in metres, and equals the answer for the same image file."""
    database = list_images(tiny_street / "database")
    video = tmp_path / "drive.avi"
    write_video(video, database, fps=10)
    csv = tmp_path / "positions.csv"
    rows = [f"{i / 10:.3f},{parse_utm(p)[0]:.2f},{parse_utm(p)[1]:.2f},{i * 3.0:.1f}" for i, p in enumerate(database)]
    csv.write_text("timestamp,x,y,heading\n" + "\n".join(rows) + "\n")
    runner = CliRunner()
    built = runner.invoke(
        main,
        ["map", "build", *MODEL, "--images", str(video), "--positions-file", str(csv), "--out", str(tmp_path / "m")],
    )
    assert built.exit_code == 0, built.output
    manifest = json.loads((tmp_path / "m" / "map.json").read_text())
    assert manifest["descriptors"]["count"] == len(database) and manifest["positions"]["kind"] == "xy"
    streamed = tmp_path / "s.jsonl"
    argv = ["localize", str(tmp_path / "m"), "--bag", str(bags[1]), "--topic", "/camera/image"]
    result = runner.invoke(main, [*argv, "--positions-topic", "/gps/fix", "--jsonl", str(streamed)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in streamed.read_text().splitlines()]
    queries = list_images(tiny_street / "queries")
    assert [line["timestamp"] for line in lines] == pytest.approx([500.0 + 0.1 * i for i in range(len(queries))])
    files = runner.invoke(main, ["localize", str(tmp_path / "m"), "--images", str(tiny_street / "queries")])
    by_file = [json.loads(line) for line in files.output.splitlines()]
    for line, answer, path in zip(lines, by_file, queries):
        assert [m["name"] for m in line["matches"]] == [m["name"] for m in answer["matches"]]
        assert line["position"] == pytest.approx(list(parse_utm(path)), abs=0.01)
        top = line["matches"][0]["position"]
        assert line["error_m"] == pytest.approx(
            np.hypot(top[0] - line["position"][0], top[1] - line["position"][1]), abs=1e-3
        )
    assert lines[0]["matches"][0]["position"][2] in [i * 3.0 for i in range(len(database))]  # headings kept


def test_realtime_replay_reports_rate_and_drops(tiny_street, tmp_path):
    from edgevpr.maps.stream import StreamFrame, localize_stream

    now = {"t": 0.0}

    def slow(image, name):  # 0.25 s per frame against frames 0.1 s apart
        now["t"] += 0.25
        return {"query": name, "matches": [], "ms": {"total": 250.0}}

    frames = [StreamFrame(None, f"f{i}", 0.1 * i) for i in range(20)]
    answers = []
    summary = localize_stream(slow, frames, answers.append, "utm", True, lambda: now["t"], lambda s: None)
    assert summary["frames"] + summary["dropped"] == 20 and summary["dropped"] >= 10
    assert summary["hz"] == pytest.approx(summary["frames"] / summary["seconds"]) and summary["hz"] <= 4.01
    kept = [int(a["query"][1:]) for a in answers]
    assert kept == sorted(kept) and kept[0] == 0


def test_mp4_video_frames_are_named_by_their_time(tiny_street, tmp_path):
    video = tmp_path / "dash.mp4"
    write_video(video, list_images(tiny_street / "database")[:12], fps=10, codec="mpeg4")
    out = tmp_path / "frames"
    result = CliRunner().invoke(main, ["convert", "video", str(video), str(out), "--every", "2"])
    assert result.exit_code == 0, result.output
    names = [p.name for p in list_images(out)]
    assert names == [f"{round(i * 0.1 * 1e9):020d}.png" for i in range(0, 12, 2)]


def _truncated(source, target, keep: float):
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * keep)])
    return target


def test_bad_recordings_are_one_line_naming_the_file(tiny_street, bags, tmp_path):
    database_bag, queries_bag = bags
    images = list_images(tiny_street / "queries")[:3]
    odd = tmp_path / "odd.bag"
    write_bag(odd, images, ros1=True, compressed=False, gps_topic=None, encoding="bgr8")
    cases = {
        "no such topic": (
            queries_bag,
            RecordingOptions(topic="/nope"),
            "no topic /nope; it holds /camera/image, /gps/fix",
        ),
        "no topic given": (
            queries_bag,
            RecordingOptions(),
            "give --topic for the images; this bag's images topics: /camera/image",
        ),
        "wrong message type": (
            queries_bag,
            RecordingOptions(topic="/gps/fix"),
            "topic /gps/fix carries sensor_msgs/msg/NavSatFix",
        ),
        "positions without overlap": (
            queries_bag,
            RecordingOptions(topic="/camera/image", positions_csv=str(_csv(tmp_path, 0.0))),
            "no frame has a position within 0.5 s",
        ),
        "truncated bag": (
            _truncated(queries_bag, tmp_path / "cut.bag", 0.5),
            RecordingOptions(topic="/camera/image"),
            "cut.bag",
        ),
        "truncated video": (_video_cut(tiny_street, tmp_path), RecordingOptions(), "cut.avi"),
        "not a bag": (_not_a_bag(tmp_path), RecordingOptions(topic="/camera/image"), "not a bag rosbags can read"),
    }
    for name, (path, options, message) in cases.items():
        with pytest.raises(EdgeVPRError) as caught:
            list(open_frames(path, options))
        text = str(caught.value)
        assert message in text and "\n" not in text and str(path.name) in text, (name, text)
    assert [f.image.getpixel((0, 0)) for f in open_frames(odd, RecordingOptions(topic="/camera/image"))] == [
        Image.open(p).convert("RGB").getpixel((0, 0)) for p in images
    ]
    _unsupported_encoding(tmp_path, images)


def test_frames_without_a_position_are_counted_or_refused(bags, tmp_path):
    """Positions cover the first half of the queries' times only: skipping counts the rest,
    refusing names the first frame without one."""
    covered = tmp_path / "half.csv"
    covered.write_text("timestamp,x,y\n" + "".join(f"{500.0 + 0.1 * i:.3f},{i},0\n" for i in range(5)))
    report = {}
    options = RecordingOptions(topic="/camera/image", positions_csv=str(covered), max_time_gap=0.05)
    kept = list(open_frames(bags[1], options, report))
    assert len(kept) == 5 and report["without_position"] == 5 and report["frames"] == 10
    options.without_position = "refuse"
    with pytest.raises(EdgeVPRError, match=r"frame at 500.500 s has no position within 0.05 s"):
        list(open_frames(bags[1], options))
    argv = ["convert", "bag", str(bags[1]), str(tmp_path / "frames"), "--topic", "/camera/image"]
    argv += ["--positions-file", str(covered), "--max-time-gap", "0.05", "--without-position", "refuse"]
    refused = CliRunner().invoke(main, argv)
    assert refused.exit_code == 1 and "has no position within 0.05 s" in refused.output.strip().splitlines()[-1]
    assert not (tmp_path / "frames").exists()  # nothing half-written


def _csv(tmp_path, start: float):
    path = tmp_path / "far.csv"
    path.write_text("timestamp,x,y\n" + "".join(f"{start + i},{i},0\n" for i in range(5)))
    return path


def _video_cut(tiny_street, tmp_path):
    video = tmp_path / "whole.avi"
    write_video(video, list_images(tiny_street / "database")[:10])
    return _truncated(video, tmp_path / "cut.avi", 0.02)


def _not_a_bag(tmp_path):
    path = tmp_path / "junk.bag"
    path.write_bytes(b"#ROSBAG V2.0\n" + struct.pack("<i", 7) + b"garbage" * 20)
    return path


def _unsupported_encoding(tmp_path, images):
    from edgevpr.data.recordings.bag import decode_image
    from edgevpr.data.recordings.writers import _typestore, image_message

    types = _typestore(False).types
    message, _ = image_message(types, images[0], 1.0, False, False)
    message.encoding = "16UC1"
    with pytest.raises(EdgeVPRError, match="unsupported image encoding '16UC1'"):
        decode_image(message, "sensor_msgs/msg/Image", "x.bag: /camera/image message 0")


def test_training_pairs_and_odometry_positions_from_recordings(tiny_street, bags, tmp_path):
    """Training reads bags as it reads folders (the same positives); an Odometry topic gives
    x, y and yaw positions; a ROS 2 bag in MCAP storage reads as one in SQLite does."""
    from edgevpr.config import DataConfig, TrainConfig
    from edgevpr.data.train_sets import load_triplet_set

    folders = load_triplet_set(
        TrainConfig(database=str(tiny_street / "database"), queries=(str(tiny_street / "queries"),))
    )
    recording = DataConfig(topic="/camera/image", positions_topic="/gps/fix")
    from_bags = load_triplet_set(TrainConfig(database=str(bags[0]), queries=(str(bags[1]),)), recording)
    assert [p.tolist() for p in from_bags.positives] == [p.tolist() for p in folders.positives]
    assert len(from_bags.database_paths) == len(folders.database_paths)

    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    types = store.types
    images = list_images(tiny_street / "queries")[:4]
    path = tmp_path / "odometry_mcap"
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        camera = writer.add_connection("/cam", "sensor_msgs/msg/CompressedImage", typestore=store)
        odometry = writer.add_connection("/odom", "nav_msgs/msg/Odometry", typestore=store)
        for i, image in enumerate(images):
            stamp = types["builtin_interfaces/msg/Time"](sec=10 + i, nanosec=0)
            header = types["std_msgs/msg/Header"](stamp=stamp, frame_id="base")
            data = np.frombuffer(image.read_bytes(), dtype=np.uint8)
            message = types["sensor_msgs/msg/CompressedImage"](header=header, format="jpeg", data=data)
            writer.write(
                camera, (10 + i) * 10**9, bytes(store.serialize_cdr(message, "sensor_msgs/msg/CompressedImage"))
            )
            yaw = np.radians(30.0 * i)
            pose = types["geometry_msgs/msg/Pose"](
                position=types["geometry_msgs/msg/Point"](x=2.0 * i, y=-1.0 * i, z=0.0),
                orientation=types["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=np.sin(yaw / 2), w=np.cos(yaw / 2)),
            )
            covariance = np.zeros(36)
            odom = types["nav_msgs/msg/Odometry"](
                header=header,
                child_frame_id="base",
                pose=types["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=covariance),
                twist=types["geometry_msgs/msg/TwistWithCovariance"](
                    twist=types["geometry_msgs/msg/Twist"](
                        linear=types["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
                        angular=types["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
                    ),
                    covariance=covariance,
                ),
            )
            writer.write(odometry, (10 + i) * 10**9 + 5, bytes(store.serialize_cdr(odom, "nav_msgs/msg/Odometry")))
    frames = list(open_frames(path, RecordingOptions(topic="/cam", positions_topic="/odom")))
    assert np.allclose([f.position for f in frames], [[2.0 * i, -1.0 * i, 30.0 * i] for i in range(4)])
    assert frames[2].zone is None and "@4.00@-2.00@xy@" in frames[2].name
