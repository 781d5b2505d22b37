"""Maps and localization on this CPU.

1. Gardens Point: a map built from day_right with the int8 MobileNetV2 + GeM file (recipe
   configs/mobilenetv2_gem.yaml, calibration 50 day_left images), then every night_right
   frame localized: top-1 correctness (+/-2 frames) against `eval`'s R@1 for the same file and
   protocol, and per-frame latency (median, p90) by stage against eval's extraction + matching.
2. Sequence matching: R@1 at L = 1, 5, 10 on Gardens Point night (eval --sequence) and on the
   synthetic street (a stream through the Localizer), each with the paired change against L = 1.
3. Scale: a 1,000,000-entry map (the real day_right descriptors padded with distractors drawn
   around them, as benchmarks/search_gardens_point.py does) with the same model and
   IVF1024,PQ64,Rerank1000: build time, bytes on disk, load time and resident memory of a
   process that loads it and localizes one frame.

    python benchmarks/maps_gardens_point.py [--threads 2] [--scale 1000000 | --scale 0]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from quantization_gardens_point import RECIPES, SHARED

from edgevpr.atomic import write_json
from edgevpr.config import load_config
from edgevpr.data.synthetic import SyntheticSpec, generate_synthetic
from edgevpr.evaluate.environment import environment
from edgevpr.evaluate.runner import evaluate
from edgevpr.evaluate.significance import paired_recall_difference
from edgevpr.maps import Localizer, Map, ModelSource
from edgevpr.maps.model_file import load_model
from edgevpr.quantize.pipeline import quantize_model
from edgevpr.search.index import IndexSpec

MEMORY_PROBE = """
import json, resource, sys, time
start = time.perf_counter()
from edgevpr.maps import Map
imported = time.perf_counter()
m = Map.load(sys.argv[1], threads=int(sys.argv[3]))
loaded = time.perf_counter()
answer = m.localize(sys.argv[2])
def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
print(json.dumps({"import_s": imported - start, "load_s": loaded - imported, "rss_mb": rss_mb(),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "frame_ms": answer["ms"]}))
"""


def _ranks(answers: list[dict], tolerance: int, frame_of) -> np.ndarray:
    """Each frame's rank of its first correct match (-1: none in the answer)."""
    ranks = []
    for index, answer in enumerate(answers):
        hits = [r for r, m in enumerate(answer["matches"]) if abs(frame_of(m) - index) <= tolerance]
        ranks.append(hits[0] if hits else -1)
    return np.array(ranks)


def _stage_ms(answers: list[dict]) -> dict:
    stages = {}
    for key in answers[0]["ms"]:
        values = np.array([a["ms"][key] for a in answers])
        stages[key] = {"median": float(np.median(values)), "p90": float(np.percentile(values, 90))}
    return stages


def _interleaved_ratio(localizer, frames, image_size, rounds: int = 7, per_round: int = 20) -> dict:
    """Localize per frame without decoding against eval's extraction + matching, timed in
    alternating rounds in one process (eval's way: the deployed model on one image-sized input,
    then one search; localize's way: the next night frames, decode excluded)."""
    from edgevpr.search.index import search

    model, index = localizer.map.model, localizer.map.index
    probe = np.asarray(localizer.map.descriptors[:1], dtype=np.float32)
    ratios, evals, localizes = [], [], []
    for r in range(rounds):
        extraction = model.latency((1, 3, *image_size), per_round)["median_ms"]
        matching = float(np.median([_timed(lambda: search(index, probe, 20)) for _ in range(per_round)]))
        chosen = frames[(r * per_round) % len(frames) :][:per_round]
        answers = [localizer(frame) for frame in chosen]
        local = float(np.median([a["ms"]["total"] - a["ms"]["decode"] for a in answers]))
        evals.append(extraction + matching)
        localizes.append(local)
        ratios.append(local / (extraction + matching))
    return {
        "rounds": rounds,
        "eval_ms": float(np.median(evals)),
        "localize_without_decode_ms": float(np.median(localizes)),
        "ratio_median": float(np.median(ratios)),
        "ratios": ratios,
    }


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    return 1000 * (time.perf_counter() - start)


def gardens_point(data: Path, onnx: Path, folder: Path, threads: int) -> dict:
    config = load_config(
        overrides={
            "model": {"onnx": str(onnx)},
            "data": {"database": str(data / "day_right"), "queries": str(data / "night_right"), "tolerance_frames": 2},
            "eval": {"threads": threads, "latency_runs": 30},
        }
    )
    evaluated = evaluate(config)
    started = time.perf_counter()
    built = Map.build(ModelSource(onnx=str(onnx)), data / "day_right", folder / "gp-map", threads=threads)
    build_s = time.perf_counter() - started
    localizer = Localizer(Map.load(folder / "gp-map", threads), length=1, top_k=5)
    frames = sorted((data / "night_right").glob("*.jpg"))
    localizer(frames[0])  # warm-up
    answers = [localizer(frame) for frame in frames]
    ranks = _ranks(answers, 2, lambda match: match["position"][0])
    top1 = 100.0 * float(np.mean(ranks == 0))
    stages = _stage_ms(answers)
    eval_ms = evaluated["cost"]["extraction_ms"] + evaluated["cost"]["matching_ms"]
    interleaved = _interleaved_ratio(localizer, frames, tuple(evaluated["protocol"]["image_size"]))
    return {
        "eval_protocol": evaluated["protocol_name"],
        "map_protocol": built.manifest["protocol"]["name"],
        "eval_r1": evaluated["recall"]["1"],
        "localize_top1": top1,
        "paired": paired_recall_difference(evaluated["per_query"]["first_positive_rank"], ranks),
        "build_s": build_s,
        "stages_ms": stages,
        "eval_extraction_ms": evaluated["cost"]["extraction_ms"],
        "eval_matching_ms": evaluated["cost"]["matching_ms"],
        "total_over_eval": stages["total"]["median"] / eval_ms,
        "total_minus_decode_over_eval": (stages["total"]["median"] - stages["decode"]["median"]) / eval_ms,
        "interleaved": interleaved,
        "known_fraction": float(np.mean([a["known"] for a in answers])),
        "min_score": built.manifest["known"],
        "example": answers[10],
    }


def sequences_gardens_point(data: Path, onnx: Path, threads: int, lengths: list[int]) -> dict:
    rows = {}
    for length in lengths:
        result = evaluate(
            load_config(
                overrides={
                    "model": {"onnx": str(onnx)},
                    "data": {
                        "database": str(data / "day_right"),
                        "queries": str(data / "night_right"),
                        "tolerance_frames": 2,
                    },
                    "eval": {"threads": threads, "latency_runs": 20, "sequence": length},
                }
            )
        )
        rows[length] = {
            "recall": result["recall"],
            "ranks": result["per_query"]["first_positive_rank"],
            "protocol": result["protocol_name"],
        }
    base = rows[1]["ranks"]
    return {
        str(length): {
            "r1": row["recall"]["1"],
            "r5": row["recall"]["5"],
            "protocol": row["protocol"],
            "vs_L1": paired_recall_difference(base, row["ranks"]),
        }
        for length, row in rows.items()
    }


def sequences_street(onnx: Path, folder: Path, threads: int, lengths: list[int]) -> dict:
    """The synthetic street's queries as a stream (one near every third place, in route order)."""
    spec = SyntheticSpec()
    root = generate_synthetic(folder / "street", spec)
    street = Map.build(ModelSource(onnx=str(onnx)), root / "database", folder / "street-map", threads=threads)
    queries = sorted((root / "queries").glob("*.jpg"), key=lambda p: float(p.name.split("@")[1]))
    east = np.array([float(p.name.split("@")[1]) for p in queries])
    positions = np.array(street.positions)
    results, base = {}, None
    velocities = tuple(spec.query_every * v for v in (0.8, 0.9, 1.0, 1.1, 1.2))  # map frames per query frame
    for length in lengths:
        localizer = Localizer(street, length=length, top_k=5, velocities=velocities)
        answers = [localizer(path) for path in queries]
        ranks = []
        for path, answer, query_east in zip(queries, answers, east):
            north = float(path.name.split("@")[2])
            hits = [
                r
                for r, m in enumerate(answer["matches"])
                if np.hypot(m["position"][0] - query_east, m["position"][1] - north) <= 25.0
            ]
            ranks.append(hits[0] if hits else -1)
        ranks = np.array(ranks)
        base = ranks if base is None else base
        results[str(length)] = {
            "r1": 100.0 * float(np.mean(ranks == 0)),
            "r5": 100.0 * float(np.mean(ranks >= 0)),
            "vs_L1": paired_recall_difference(base, ranks),
            "sequence_ms": _stage_ms(answers).get("sequence"),
        }
    results["route_order"] = bool(np.all(np.diff(positions[:, 0]) > 0))
    return results


def scale(onnx: Path, gp_map: Path, folder: Path, size: int, threads: int, query: Path) -> dict:
    """A map of ``size`` entries: the real descriptors, then distractors drawn around them."""
    source = Map.load(gp_map)
    real = np.asarray(source.descriptors)
    rng = np.random.default_rng(0)
    mean, spread = real.mean(0), real.std(0)
    chunks = [real]
    while sum(len(c) for c in chunks) < size:
        count = min(100_000, size - sum(len(c) for c in chunks))
        fake = rng.standard_normal((count, real.shape[1]), dtype=np.float32) * spread + mean
        chunks.append(fake / np.linalg.norm(fake, axis=1, keepdims=True))
    descriptors = np.concatenate(chunks).astype(np.float32)
    names = source.names + [f"distractor{i:07d}" for i in range(len(descriptors) - len(real))]
    positions = source.positions + [[1e6 + i] for i in range(len(descriptors) - len(real))]
    model = load_model(gp_map / source.manifest["model"]["file"], "onnx", threads)
    out = folder / "big-map"
    out.mkdir()
    model_part = out / ("map.json.vmodel" + ".onnx")
    model_part.write_bytes((gp_map / source.manifest["model"]["file"]).read_bytes())
    started = time.perf_counter()
    Map._commit(
        out,
        model,
        model_part,
        descriptors,
        IndexSpec.parse("IVF1024,PQ64,Rerank1000"),
        "nprobe=64",
        names,
        positions,
        "frame",
        ["distractors"] * len(names),
        "now",
        "gardens_point day_right + distractors",
        source.manifest["image_size"],
    )
    build_s = time.perf_counter() - started
    del descriptors, chunks
    probe = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(out), str(query), str(threads)],
        capture_output=True,
        text=True,
        check=True,
    )
    measured = json.loads(probe.stdout.strip().splitlines()[-1])
    disk = sum(p.stat().st_size for p in out.iterdir())
    return {
        "entries": size,
        "index": "IVF1024,PQ64,Rerank1000",
        "params": "nprobe=64",
        "build_s": build_s,
        "bytes_on_disk": disk,
        **measured,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(SHARED))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lengths", default="1,5,10")
    parser.add_argument("--scale", type=int, default=1_000_000)
    parser.add_argument("--out", default="benchmarks/results/maps_gardens_point.json")
    args = parser.parse_args()
    shared = Path(args.shared)
    data = shared / "data" / "gardens_point"
    lengths = [int(n) for n in args.lengths.split(",")]
    report = {"source": "benchmarks/maps_gardens_point.py", "environment": environment()}
    with tempfile.TemporaryDirectory(prefix="edgevpr-maps-") as scratch:
        folder = Path(scratch)
        onnx = folder / "mnv2_gem_int8.onnx"
        config = load_config(
            RECIPES / "mobilenetv2_gem.yaml",
            overrides={
                "model": {"weights": str(shared / "weights" / "mobilenet_v2_imagenet_tflite.pth")},
                "quantize": {"calib": str(data / "day_left")},
            },
        )
        quantize_model(config, None, str(onnx))
        report["gardens_point"] = gp = gardens_point(data, onnx, folder, args.threads)
        print(
            f"{gp['map_protocol']}: localize top-1 {gp['localize_top1']:.1f} against eval R@1 {gp['eval_r1']:.1f} "
            f"({gp['eval_protocol']}); per frame (median / p90 ms): "
            + ", ".join(f"{k} {v['median']:.2f}/{v['p90']:.2f}" for k, v in gp["stages_ms"].items())
            + f"; eval extraction {gp['eval_extraction_ms']:.2f} + matching {gp['eval_matching_ms']:.3f} ms; "
            f"total / eval {gp['total_over_eval']:.2f}, without decoding {gp['total_minus_decode_over_eval']:.2f}; "
            f"interleaved rounds: localize without decoding {gp['interleaved']['localize_without_decode_ms']:.2f} ms "
            f"against eval {gp['interleaved']['eval_ms']:.2f} ms, ratio {gp['interleaved']['ratio_median']:.2f}; "
            f"known {100 * gp['known_fraction']:.0f} % of night frames (min score {gp['min_score']['min_score']:.3f})"
        )
        write_json(args.out, report)
        report["sequence_gardens_point"] = sequences = sequences_gardens_point(data, onnx, args.threads, lengths)
        for length, row in sequences.items():
            change = row["vs_L1"]
            print(
                f"Gardens Point night, L = {length}: R@1 {row['r1']:.1f}, R@5 {row['r5']:.1f} "
                f"(vs L = 1: {change['difference']:+.1f}, +{change['gained']}/-{change['lost']}, "
                f"p {change['mcnemar_p']:.2f}, {change['ci95'][0]:+.1f} to {change['ci95'][1]:+.1f})"
            )
        write_json(args.out, report)
        report["sequence_street"] = street = sequences_street(onnx, folder, args.threads, lengths)
        for length in lengths:
            row = street[str(length)]
            change = row["vs_L1"]
            print(
                f"synthetic street stream, L = {length}: top-1 {row['r1']:.1f}, top-5 {row['r5']:.1f} "
                f"(vs L = 1: {change['difference']:+.1f}, +{change['gained']}/-{change['lost']}, "
                f"p {change['mcnemar_p']:.2f})"
            )
        write_json(args.out, report)
        if args.scale:
            report["scale"] = big = scale(
                onnx,
                folder / "gp-map",
                folder,
                args.scale,
                args.threads,
                sorted((data / "night_right").glob("*.jpg"))[10],
            )
            print(
                f"{big['entries']:,}-entry map ({big['index']}, {big['params']}): built in {big['build_s']:.0f} s, "
                f"{big['bytes_on_disk'] / 1e9:.2f} GB on disk; a fresh process loads it in {big['load_s']:.2f} s "
                f"(imports {big['import_s']:.1f} s) and holds {big['rss_mb']:.0f} MB resident after one frame "
                f"({big['frame_ms']['total']:.1f} ms, search {big['frame_ms']['search']:.2f} ms)"
            )
    write_json(args.out, report)
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
