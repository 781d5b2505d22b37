"""Sequence matching with and without SeqSLAM's local contrast enhancement (Milford and Wyeth
2012), against single frames, on frame-aligned traversals of Gardens Point.

Each case extracts MobileNetV2 + GeM descriptors (shared TFLite weights; the recipe of
configs/mobilenetv2_gem.yaml) of a database and a query traversal (+/-2 frames), then scores
R@1 of sequence matching (``edgevpr.search.sequence``) at each L, plain and with the
contrast window R, paired against each other (gained / lost, McNemar p) and against L = 1.
Cases: night (day_right -> night_right, short side 360), lateral night (day_left ->
night_right) and a low-resolution camera (day_right -> night_right at 32x64 pixels).

    python benchmarks/sequence_matching.py [--lengths 1,5,10,20] [--windows 10]
        [--out benchmarks/results/sequence_matching.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from quantization_gardens_point import model_overrides

import edgevpr
from edgevpr.atomic import write_json
from edgevpr.evaluate.environment import environment
from edgevpr.evaluate.recall import first_positive_ranks
from edgevpr.evaluate.significance import paired_recall_difference
from edgevpr.search.descriptors import load_descriptor_set
from edgevpr.search.sequence import sequence_similarity

HERE = Path(__file__).resolve().parent
CASES = {
    "night": ("day_right", "night_right", {"resize": 360}),
    "lateral_night": ("day_left", "night_right", {"resize": 360}),
    "night_32x64": ("day_right", "night_right", {"size": [32, 64]}),
}


def descriptors(shared: Path, database: str, queries: str, data: dict, folder: Path):
    root = shared / "data" / "gardens_point"
    config = edgevpr.load_config(
        overrides={
            "model": model_overrides("mnv2_gem", shared),
            "data": {"database": str(root / database), "queries": str(root / queries), "tolerance_frames": 2} | data,
            "eval": {"latency_runs": 5, "save_descriptors": str(folder)},
        }
    )
    edgevpr.evaluate_model(config)
    return load_descriptor_set(folder, need_queries=True)


def ranks(database: np.ndarray, queries: np.ndarray, positives, length: int, window: int) -> np.ndarray:
    scores = sequence_similarity(queries @ database.T, length, enhance=window)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :20]
    return first_positive_ranks(order, positives)


def r1(values: np.ndarray) -> float:
    return round(100.0 * float(np.mean((values >= 0) & (values < 1))), 1)


def run_case(name: str, shared: Path, lengths: list[int], windows: list[int]) -> dict:
    database, queries, data = CASES[name]
    with tempfile.TemporaryDirectory() as folder:
        found = descriptors(shared, database, queries, data, Path(folder))
    db, q, positives = found.database, found.queries, found.positives
    table = {}
    single = ranks(db, q, positives, 1, 0)
    for length in lengths:
        plain = ranks(db, q, positives, length, 0)
        row = {"plain_r1": r1(plain), "plain_vs_single": paired_recall_difference(single, plain)}
        for window in windows:
            enhanced = ranks(db, q, positives, length, window)
            row[f"enhanced{window}_r1"] = r1(enhanced)
            row[f"enhanced{window}_vs_plain"] = paired_recall_difference(plain, enhanced)
            row[f"enhanced{window}_vs_single"] = paired_recall_difference(single, enhanced)
        table[str(length)] = row
        print(name, f"L={length}", json.dumps({k: v for k, v in row.items() if k.endswith("r1")}), flush=True)
    return {"database": database, "queries": queries, "data": data, "queries_count": len(q), "by_length": table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(HERE.parent.parent / "shared"))
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--lengths", default="1,5,10,20")
    parser.add_argument("--windows", default="10")
    parser.add_argument("--out", default=str(HERE / "results" / "sequence_matching.json"))
    args = parser.parse_args()
    lengths = [int(v) for v in args.lengths.split(",")]
    windows = [int(v) for v in args.windows.split(",")]
    results = {name: run_case(name, Path(args.shared), lengths, windows) for name in args.cases.split(",")}
    write_json(args.out, {"cases": results, "environment": environment()})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
