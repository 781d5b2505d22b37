"""Compact descriptors on Gardens Point: recall, bytes and matching time at 32, 16, 8 and 1 bits
per dimension, against float32 query by query.

Models: MobileNetV2 + GeM and EfficientNet-Lite0 + GeM (configs/, shared weights, short side
360). Protocols: Gardens Point day_right -> night_right and day_left -> day_right, +/-2 frames,
and IE Tower's test clips (1245 database, 264 queries, 25 m). Each row: R@1,
R@5, bytes per map entry, bytes held once (trained parameters, the binary rotation), median
single-query matching time, and the paired change against fp32 (queries gained/lost, McNemar p,
95 % interval; evaluate.significance).

Binary rotations (ITQ, Gong and Lazebnik 2011; random) are fitted on the IE Tower train and val
images (1368 indoor images from clips other than the test clips), never on a database or query
set of a protocol. With 200 database images, "Rerank100" re-scores half the map: read it as
"how much float re-ranking recovers", not as an ANN setting.

    python benchmarks/compact_descriptors.py [--models mnv2_gem,lite0_gem]
        [--out benchmarks/results/compact_descriptors.json] [--work /tmp/edgevpr-compact]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from quantization_gardens_point import model_overrides

from edgevpr.atomic import write_json
from edgevpr.config import load_config
from edgevpr.data.folder_format import positives_within_radius, utm_array
from edgevpr.data.images import list_images
from edgevpr.data.sequences import positives_within_frames
from edgevpr.evaluate.environment import environment
from edgevpr.evaluate.recall import first_positive_ranks, recall_from_ranks
from edgevpr.evaluate.significance import paired_recall_difference
from edgevpr.extraction.extract import extract
from edgevpr.models import build_model
from edgevpr.models.resolve import contract_of, resolve_config
from edgevpr.search.binary_codes import fit_codec
from edgevpr.search.index import build_index
from edgevpr.search.timing import time_matching

PROTOCOLS = {"night": ("day_right", "night_right"), "lateral": ("day_left", "day_right")}
TOWER_PROTOCOL = ("database", "queries")  # IE Tower test clips, positives within 25 m of the mock UTM names
FIT_FOLDERS = ("train/database", "train/queries", "val/database", "val/queries")
# (label, index spec, rotation for binary specs)
VARIANTS = [
    ("fp32", "Flat", None),
    ("fp16", "SQfp16", None),
    ("int8 per-dim", "SQ8", None),
    ("int8 global", "SQ8uniform", None),
    ("1-bit ITQ", "BFlat", "itq"),
    ("1-bit ITQ +rerank100", "BFlat,Rerank100", "itq"),
    ("1-bit random", "BFlat", "random"),
    ("1-bit random +rerank100", "BFlat,Rerank100", "random"),
]


def descriptors_of(name: str, shared: Path, folders: list[Path], work: Path) -> dict[str, np.ndarray]:
    """Descriptors of every image folder, cached in ``work`` per model and folder."""
    config = resolve_config(load_config(overrides={"model": model_overrides(name, shared), "data": {"resize": 360}}))
    model, contract, out = None, contract_of(config), {}
    for folder in folders:
        cache = work / f"{name}__{str(folder).replace('/', '_')}.npy"
        if not cache.is_file():
            model = model or build_model(config.model).eval()
            np.save(cache, extract(model, list_images(folder), contract, label=f"{folder.name} ").descriptors)
        out[str(folder)] = np.load(cache)
    return out


def rows_for(database, queries, fit, positives) -> list[dict]:
    codecs = {method: fit_codec(fit, database.shape[1], method) for method in ("itq", "random")}
    rows, reference = [], None
    for label, spec, rotation in VARIANTS:
        index = build_index(database, spec, codec=codecs.get(rotation))
        _, ranked = index.search(queries, 10)
        ranks = first_positive_ranks(ranked, positives)
        fixed = index.fixed_bytes() if spec != "Flat" else 0
        per_entry = (database.nbytes if spec == "Flat" else index.memory_bytes() - fixed) / len(database)
        row = {
            "variant": label,
            "index": spec,
            "recall": recall_from_ranks(ranks, (1, 5, 10)),
            "bytes_per_entry": per_entry,
            "fixed_bytes": fixed,
            "matching_ms": time_matching(index, queries, 10)["median_ms"],
            "ranks": ranks.tolist(),
        }
        if reference is None:
            reference = ranks
        else:
            row["r1_vs_fp32"] = paired_recall_difference(reference, ranks, 1)
            row["r5_vs_fp32"] = paired_recall_difference(reference, ranks, 5)
        rows.append(row)
    return rows


def _change(c: dict | None) -> str:
    if c is None:
        return "-"
    low, high = c["ci95"]
    return f"{c['difference']:+5.1f} (+{c['gained']}/-{c['lost']}, p {c['mcnemar_p']:.2f}, {low:+.1f}..{high:+.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    parser.add_argument("--models", default="mnv2_gem,lite0_gem")
    parser.add_argument("--work", default="/tmp/edgevpr-compact")
    parser.add_argument("--out", default="benchmarks/results/compact_descriptors.json")
    args = parser.parse_args()
    shared, work = Path(args.shared), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    gp, tower = shared / "data" / "gardens_point", shared / "data" / "ie_tower"
    report = {"environment": environment(), "fit_on": [f"ie_tower/{f}" for f in FIT_FOLDERS], "tables": {}}
    for name in args.models.split(","):
        start = time.perf_counter()
        test = [tower / f for f in TOWER_PROTOCOL]
        folders = [gp / t for t in ("day_left", "day_right", "night_right")] + [tower / f for f in FIT_FOLDERS] + test
        found = descriptors_of(name, shared, folders, work)
        fit = np.concatenate([found[str(tower / f)] for f in FIT_FOLDERS])
        tables = [
            (
                f"Gardens Point {d} -> {q}, +/-2 frames",
                found[str(gp / d)],
                found[str(gp / q)],
                positives_within_frames(200, 200, 2),
                protocol,
                d,
                q,
            )
            for protocol, (d, q) in PROTOCOLS.items()
        ]
        tower_db, tower_q = list_images(test[0]), list_images(test[1])
        tables.append(
            (
                "IE Tower test clips, 25 m (mock UTM)",
                found[str(test[0])],
                found[str(test[1])],
                positives_within_radius(utm_array(tower_db), utm_array(tower_q), 25.0),
                "ie_tower",
                "database",
                "queries",
            )
        )
        for title, db, q, positives, protocol, database, queries in tables:
            rows = rows_for(db, q, fit, positives)
            report["tables"][f"{name}/{protocol}"] = {"database": database, "queries": queries, "rows": rows}
            print(f"\n== {name}, {title} ({len(fit)} fit images from other IE Tower clips)")
            print(
                f"{'variant':<24} {'R@1':>5} {'R@5':>5} {'B/entry':>8} {'fixed KB':>8} {'match ms':>8}  "
                f"{'R@1 vs fp32 (+q/-q, p, 95% CI)':<40} R@5 vs fp32"
            )
            for r in rows:
                print(
                    f"{r['variant']:<24} {r['recall']['1']:5.1f} {r['recall']['5']:5.1f} {r['bytes_per_entry']:8.1f} "
                    f"{r['fixed_bytes'] / 1e3:8.1f} {r['matching_ms']:8.3f}  {_change(r.get('r1_vs_fp32')):<40} "
                    f"{_change(r.get('r5_vs_fp32'))}",
                    flush=True,
                )
        print(f"({name}: {time.perf_counter() - start:.0f} s)")
        write_json(args.out, report)


if __name__ == "__main__":
    main()
