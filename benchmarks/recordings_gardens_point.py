"""Gardens Point as a robot's recordings: day_right and night_right written into two ROS 2
bags (JPEG CompressedImage at 10 Hz, NavSatFix at 20 Hz placing frame i at i metres along a
straight route), then

1. ``eval`` from the bags with radius positives of 2.5 m (the +/-2 frame tolerance in metres)
   against ``eval`` from the folders (MobileNetV2 + GeM, configs/mobilenetv2_gem.yaml): the
   same R@1/5/10 and every query's rank;
2. sequence R@1 at L = 1, 5, 10, 20 on the bags' descriptors, paired against L = 1;
3. the int8 file (calibrated on day_left) as a map of the day bag, the night bag localized
   with ``--realtime`` at its 10 fps: achieved Hz, frames dropped, per-frame p50/p90/p99;
4. memory over a stream 10x longer than the map (the night frames ten times over, 2,000
   frames, sequence length 10): resident memory after 200 and after 2,000 frames.

    python benchmarks/recordings_gardens_point.py [--out benchmarks/results/recordings_gardens_point.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from quantization_gardens_point import model_overrides

import edgevpr
from edgevpr.atomic import write_json
from edgevpr.data.images import list_images
from edgevpr.data.recordings import RecordingOptions, open_frames
from edgevpr.data.recordings.writers import write_bag
from edgevpr.evaluate.environment import environment
from edgevpr.evaluate.recall import first_positive_ranks
from edgevpr.evaluate.significance import paired_recall_difference
from edgevpr.search.descriptors import load_descriptor_set
from edgevpr.search.sequence import sequence_similarity

HERE = Path(__file__).resolve().parent
EAST, NORTH = 500_000.0, 4_000_000.0


def route(count: int) -> list[tuple[float, float]]:
    return [(EAST + i, NORTH) for i in range(count)]


def evaluate(model: dict, data: dict, folder: Path | None = None) -> dict:
    config = edgevpr.load_config(
        overrides={
            "model": model,
            "data": data | {"resize": 360},
            "eval": {"latency_runs": 5} | ({"save_descriptors": str(folder)} if folder else {}),
        }
    )
    return edgevpr.evaluate_model(config)


def resident_mb() -> float:
    text = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024


def sequences(folder: Path) -> dict:
    found = load_descriptor_set(folder, need_queries=True)
    # frame i of each bag is at i metres: positives within 2.5 m are the +/-2 frames
    similarity = found.queries @ found.database.T
    single = None
    table = {}
    for length in (1, 5, 10, 20):
        order = np.argsort(-sequence_similarity(similarity, length), axis=1, kind="stable")[:, :10]
        ranks = first_positive_ranks(order, found.positives)
        single = ranks if single is None else single
        table[str(length)] = {"r1": round(100.0 * float(np.mean(ranks == 0)), 1)}
        if length > 1:
            table[str(length)]["vs_single"] = paired_recall_difference(single, ranks)
    return table


def realtime(shared: Path, work: Path, day: Path, night: Path) -> dict:
    onnx = work / "int8.onnx"
    config = edgevpr.load_config(overrides={"model": model_overrides("mnv2_gem", shared), "data": {"resize": 360}})
    config.quantize.calib = str(shared / "data" / "gardens_point" / "day_left")
    edgevpr.quantize_model(config, out=str(onnx))
    cli = [sys.executable, "-m", "edgevpr.cli"]
    topic = ["--topic", "/camera/image", "--positions-topic", "/gps/fix"]
    build = [*cli, "map", "build", "--onnx", str(onnx), "--images", str(day), *topic, "--out", str(work / "map")]
    subprocess.run(build, check=True, capture_output=True)
    localize = [*cli, "localize", str(work / "map"), "--bag", str(night), *topic, "--realtime", "--threads", "2"]
    finished = subprocess.run(
        [*localize, "--jsonl", str(work / "live.jsonl")], check=True, capture_output=True, text=True
    )
    summary = finished.stderr.strip().splitlines()[-1]
    answers = [json.loads(line) for line in (work / "live.jsonl").read_text().splitlines()]
    within = np.mean([a["error_m"] <= 2.5 for a in answers])
    return {"summary": summary, "answered": len(answers), "top1_within_2.5m": round(100 * float(within), 1)}


def long_stream(work: Path, night_images: list[Path]) -> dict:
    long_bag = work / "night_x10"
    write_bag(long_bag, night_images * 10, ros1=False, compressed=True, gps_topic=None)
    localizer = edgevpr.Localizer(edgevpr.Map.load(work / "map"), length=10)
    memory = {}
    for number, frame in enumerate(open_frames(long_bag, RecordingOptions(topic="/camera/image")), start=1):
        localizer(frame.image, frame.name)
        if number in (200, 1000, 2000):
            memory[str(number)] = round(resident_mb(), 1)
    return {"frames": 10 * len(night_images), "resident_mb_after": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(HERE.parent.parent / "shared"))
    parser.add_argument("--out", default=str(HERE / "results" / "recordings_gardens_point.json"))
    args = parser.parse_args()
    shared = Path(args.shared)
    gp = shared / "data" / "gardens_point"
    model = model_overrides("mnv2_gem", shared)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        os.environ["EDGEVPR_CACHE"] = str(work / "cache")
        day_images, night_images = list_images(gp / "day_right"), list_images(gp / "night_right")
        day, night = work / "day_right", work / "night_right"
        for bag, images in ((day, day_images), (night, night_images)):
            write_bag(bag, images, ros1=False, compressed=True, positions=route(len(images)))
        print("bags written", flush=True)
        folders = evaluate(
            model, {"database": str(gp / "day_right"), "queries": str(gp / "night_right"), "tolerance_frames": 2}
        )
        recorded = {"database": str(day), "queries": str(night), "topic": "/camera/image"}
        recorded |= {"positions_topic": "/gps/fix", "threshold_m": 2.5}
        bags = evaluate(model, recorded, work / "descriptors")
        same = bags["per_query"]["first_positive_rank"] == folders["per_query"]["first_positive_rank"]
        results = {
            "eval_folders": {k: folders["recall"][k] for k in ("1", "5", "10")},
            "eval_bags": {k: bags["recall"][k] for k in ("1", "5", "10")},
            "every_query_the_same": same,
            "bag_protocol": bags["protocol_name"],
        }
        print(json.dumps(results), flush=True)
        results["sequences"] = sequences(work / "descriptors")
        print(json.dumps(results["sequences"]), flush=True)
        results["realtime"] = realtime(shared, work, day, night)
        print(json.dumps(results["realtime"]), flush=True)
        results["long_stream"] = long_stream(work, night_images)
        print(json.dumps(results["long_stream"]), flush=True)
    write_json(args.out, results | {"environment": environment()})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
