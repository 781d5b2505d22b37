"""Compact patch descriptors for the second stage: PCA to D dimensions (fitted on the patches
of Gardens Point day_right frames 0-99, other images than the test's) and fp16 or int8
storage (``extraction.patch_codec``), against full 1280-D fp16 patches, on the test split of
``rerank_gardens_point.py`` (frames 100-199, day_right -> night_right, MobileNetV2 + GeM first
stage, K = 20): R@1 of ``ransac`` and ``rapid``, paired against full patches, bytes per map
image and re-ranking ms per query. Then the speed goal at K = 100: ``ransac`` on full patches
against ``rapid`` on 128-D int8 patches, in 3 interleaved rounds (median ms per query).

    python benchmarks/compact_patches.py [--speed-only] [--out benchmarks/results/compact_patches.json]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from quantization_gardens_point import model_overrides
from rerank_gardens_point import SPEC, test_split

from edgevpr.atomic import write_json
from edgevpr.config import load_config
from edgevpr.data.images import list_images
from edgevpr.data.sequences import positives_within_frames
from edgevpr.evaluate.environment import environment
from edgevpr.evaluate.recall import first_positive_ranks
from edgevpr.evaluate.significance import paired_recall_difference
from edgevpr.extraction.extract import extract
from edgevpr.extraction.patch_codec import PatchCodec
from edgevpr.extraction.patches import PatchModel
from edgevpr.models import build_model
from edgevpr.models.resolve import contract_of, resolve_config
from edgevpr.rerank import PatchSet, make_reranker, rerank_predictions
from edgevpr.search.index import build_index, search

HERE = Path(__file__).resolve().parent
CODECS = [(None, 16), (256, 16), (256, 8), (128, 16), (128, 8), (64, 16), (64, 8)]


def fit_patches(shared: Path, work: Path) -> np.ndarray:
    cache = work / "fit_patches.npy"
    if not cache.is_file():
        config = resolve_config(
            load_config(overrides={"model": model_overrides("mnv2_gem", shared), "data": {"resize": 360}})
        )
        model = PatchModel(build_model(config.model).eval(), SPEC)
        paths = list_images(shared / "data" / "gardens_point" / "day_right")[:100]
        np.save(cache, extract(model, paths, contract_of(config), batch_size=8, label="fit ").patches)
    return np.load(cache)


def coded(sets: list[PatchSet], codec: PatchCodec, stored: bool) -> list[PatchSet]:
    def convert(patches):
        return codec.decode(codec.encode(patches)) if stored else codec.project(patches)

    return [PatchSet(convert(s.patches), s.positions, s.stride, s.extent) for s in sets]


def speed_at_k100(shared: Path, work: Path, data, positives, fit, rounds: int = 3) -> dict:
    """``ransac`` on full patches against ``rapid`` on 128-D int8 patches, K = 100, interleaved."""
    (db, db_sets), (queries, query_sets) = data["day_right"], data["night_right"]
    _, predictions = search(build_index(db, "Flat"), queries, 100)
    codec = PatchCodec.fit(fit, 128, 8)
    runs = {
        "ransac_full": ("ransac", db_sets, query_sets),
        "rapid_128_int8": ("rapid", coded(db_sets, codec, True), coded(query_sets, codec, False)),
    }
    times, ranks = {name: [] for name in runs}, {}
    for _ in range(rounds):
        for name, (reranker, database, query) in runs.items():
            start = time.perf_counter()
            _, order, _ = rerank_predictions(make_reranker(reranker), predictions, query, database, 100)
            times[name].append(1000 * (time.perf_counter() - start) / len(queries))
            ranks[name] = first_positive_ranks(order, positives)
    out = {
        name: {"r1": round(100.0 * float(np.mean(ranks[name] == 0)), 1), "ms_per_query": round(float(np.median(t)), 1)}
        for name, t in times.items()
    }
    out["rapid_vs_ransac"] = paired_recall_difference(ranks["ransac_full"], ranks["rapid_128_int8"])
    out["speedup"] = round(out["ransac_full"]["ms_per_query"] / out["rapid_128_int8"]["ms_per_query"], 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(HERE.parent.parent / "shared"))
    parser.add_argument("--work", default="/tmp/edgevpr-rerank-work")
    parser.add_argument("--out", default=str(HERE / "results" / "compact_patches.json"))
    parser.add_argument("--speed-only", action="store_true", help="Only the K = 100 speed comparison (kept rows).")
    args = parser.parse_args()
    shared, work = Path(args.shared), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = test_split(shared, work)
    (db, db_sets), (queries, query_sets) = data["day_right"], data["night_right"]
    positives = positives_within_frames(len(db), len(queries), 2)
    _, predictions = search(build_index(db, "Flat"), queries, 20)
    fit = fit_patches(shared, work)
    if args.speed_only:
        import json

        previous = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
        speed = speed_at_k100(shared, work, data, positives, fit)
        print(speed, flush=True)
        write_json(args.out, previous | {"k100": speed, "environment": environment()})
        return
    rows, full = [], {}
    for dim, bits in CODECS:
        codec = PatchCodec.fit(fit, dim, bits)
        database, query = coded(db_sets, codec, stored=True), coded(query_sets, codec, stored=False)
        row = {"dim": codec.dim, "bits": bits, "bytes_per_image": codec.bytes_per_patch() * db_sets[0].patches.shape[0]}
        for name in ("ransac", "rapid"):
            start = time.perf_counter()
            _, order, _ = rerank_predictions(make_reranker(name), predictions, query, database, 20)
            ms = 1000 * (time.perf_counter() - start) / len(queries)
            ranks = first_positive_ranks(order, positives)
            full.setdefault(name, ranks)
            row[name] = {
                "r1": round(100.0 * float(np.mean(ranks == 0)), 1),
                "ms_per_query": round(ms, 1),
                "vs_full": paired_recall_difference(full[name], ranks),
            }
        rows.append(row)
        summary = {k: row[k]["r1"] for k in ("ransac", "rapid")}
        print(f"dim {row['dim']} bits {bits}: {row['bytes_per_image']} bytes, R@1 {summary}", flush=True)
    first = first_positive_ranks(predictions, positives)
    write_json(
        args.out,
        {"first_stage_r1": round(100.0 * float(np.mean(first == 0)), 1), "rows": rows} | {"environment": environment()},
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
