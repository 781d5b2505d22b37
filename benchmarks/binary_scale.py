"""A map of N = 10,000,000 entries on this 2-core, 24 GB machine: binary codes in memory,
fp16 vectors on disk for re-ranking, searched one query at a time.

Gardens Point, MobileNetV2 + GeM (1280-D): the 200 day_right descriptors are the real map
entries, padded with distractors drawn from a Gaussian fitted to them (benchmarks/distractors.py,
as benchmarks/search_gardens_point.py does at 1M); queries day_left (+/-2 frames). The codes
are ITQ (Gong and Lazebnik 2011) on the top --bits principal directions, fitted on IE Tower
descriptors (never on Gardens Point): 1280 bits per entry would need 1.6 GB for the codes alone,
so the 1.5 GB goal takes --bits 512 (64 bytes per entry). The index is BIVF (Hamming k-means
lists) with Rerank K: the shortlist is re-scored with the fp16 vectors memory-mapped from disk.

Exact float search at 10M would need 51 GB of vectors, so it is computed while the map is
drawn: each chunk of 100k entries is scored against every query and a running top-10 kept; the
same running top-10 after the first 1M entries is exact search at 1M. Search is timed in a
fresh process that loads the saved index, so its resident memory is what a robot would hold.

    python benchmarks/binary_scale.py [--n 10000000] [--bits 512] [--lists 4096]
        [--work /tmp/edgevpr-scale] [--out benchmarks/results/binary_scale.json]
    python benchmarks/binary_scale.py --search-only   # time a saved index again
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from compact_descriptors import descriptors_of
from distractors import DistractorModel

from edgevpr.atomic import write_json
from edgevpr.data.sequences import positives_within_frames
from edgevpr.evaluate.environment import environment
from edgevpr.evaluate.recall import first_positive_ranks, recall_from_ranks
from edgevpr.evaluate.significance import paired_recall_difference
from edgevpr.search.binary_codes import fit_codec
from edgevpr.search.index import IndexSpec, SearchIndex, set_params
from edgevpr.search.store import save_index

CHUNK = 100_000
FIT_FOLDERS = ("train/database", "train/queries", "val/database", "val/queries")


def running_top(scores: np.ndarray, ids: np.ndarray, best_s: np.ndarray, best_i: np.ndarray, k: int = 10):
    """Merge a chunk's scores into the running top-k (best first)."""
    s = np.concatenate([best_s, scores], axis=1)
    i = np.concatenate([best_i, np.broadcast_to(ids, scores.shape)], axis=1)
    keep = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, keep, axis=1), np.take_along_axis(i, keep, axis=1)


def build(args, real: np.ndarray, queries: np.ndarray, fit: np.ndarray, work: Path) -> dict:
    import faiss

    start = time.perf_counter()
    codec = fit_codec(fit, args.bits, "itq", fitted_on="ie_tower train+val")
    model = DistractorModel.fit(real)
    vectors = np.lib.format.open_memmap(
        work / "vectors.npy", mode="w+", dtype=np.float16, shape=(args.n, real.shape[1])
    )
    codes = np.empty((args.n, args.bits // 8), dtype=np.uint8)
    best_s = np.full((len(queries), 10), -np.inf, dtype=np.float32)
    best_i = np.full((len(queries), 10), -1, dtype=np.int64)
    exact_1m = None
    for index, begin in enumerate(range(0, args.n, CHUNK)):
        rows = min(CHUNK, args.n - begin)
        block = model.chunk(index, rows, args.seed)
        if begin == 0:
            block[: len(real)] = real  # the real entries are the first rows
        vectors[begin : begin + rows] = block
        codes[begin : begin + rows] = codec.encode(block)
        best_s, best_i = running_top(queries @ block.T, np.arange(begin, begin + rows), best_s, best_i)
        if begin + rows == min(1_000_000, args.n):
            exact_1m = best_i.copy()
        if index % 10 == 0:
            print(f"drawn {begin + rows:,} of {args.n:,} entries, {time.perf_counter() - start:.0f} s", flush=True)
    vectors.flush()
    drawn = time.perf_counter() - start
    ivf = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(args.bits), args.bits, args.lists)
    sample = codes[
        np.sort(np.random.default_rng(args.seed).choice(args.n, size=min(args.n, 64 * args.lists), replace=False))
    ]
    ivf.train(sample)
    trained = time.perf_counter() - start
    for begin in range(0, args.n, 1_000_000):
        ivf.add(codes[begin : begin + 1_000_000])
    del codes
    added = time.perf_counter() - start
    index = SearchIndex(ivf, IndexSpec(f"BIVF{args.lists}", args.rerank), "ip", codec=codec)
    index.vectors = np.load(work / "vectors.npy", mmap_mode="r")
    set_params(index, f"nprobe={args.nprobe[0]}")
    save_index(index, work / "map.faiss")
    total = time.perf_counter() - start
    np.save(work / "exact_10.npy", best_i)
    np.save(work / "exact_1m_10.npy", exact_1m)
    files = [p for p in work.iterdir() if p.name.startswith("map.faiss")]
    return {
        "n": args.n,
        "bits": args.bits,
        "lists": args.lists,
        "rerank": args.rerank,
        "seconds": {"draw_encode_exact": drawn, "train": trained - drawn, "add": added - trained, "total": total},
        "disk_bytes": {p.name.split(".")[-1] if p.name != "map.faiss" else "manifest": p.stat().st_size for p in files},
        "peak_rss_build_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--bits", type=int, default=512)
    parser.add_argument("--lists", type=int, default=4096)
    parser.add_argument("--rerank", type=int, default=1000)
    parser.add_argument("--nprobe", default="32,64,128")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="/tmp/edgevpr-scale")
    parser.add_argument("--cache", default="/tmp/edgevpr-compact", help="Descriptor cache of compact_descriptors.py.")
    parser.add_argument("--search-only", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/binary_scale.json")
    args = parser.parse_args()
    args.nprobe = [int(n) for n in args.nprobe.split(",")]
    shared, work = Path(args.shared), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    gp, tower = shared / "data" / "gardens_point", shared / "data" / "ie_tower"
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    found = descriptors_of(
        "mnv2_gem", shared, [gp / "day_right", gp / "day_left"] + [tower / f for f in FIT_FOLDERS], cache
    )
    real, queries = found[str(gp / "day_right")], found[str(gp / "day_left")]
    fit = np.concatenate([found[str(tower / f)] for f in FIT_FOLDERS])
    np.save(work / "queries.npy", queries)
    report = json.loads(Path(args.out).read_text()) if args.search_only and Path(args.out).is_file() else {}
    if not args.search_only:
        report = {"environment": environment(), "build": build(args, real, queries, fit, work)}
        write_json(args.out, report)
    child = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("binary_scale_search.py")),
            str(work),
            str(work / "queries.npy"),
            ",".join(map(str, args.nprobe)),
        ],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ | {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")},
    )
    measured = json.loads(child.stdout.strip().splitlines()[-1])
    positives = positives_within_frames(len(real), len(queries), 2)
    exact = {name: np.load(work / f"{name}.npy") for name in ("exact_10", "exact_1m_10")}
    exact_ranks = {name: first_positive_ranks(ids, positives) for name, ids in exact.items()}
    summary = {
        "exact_10m": recall_from_ranks(exact_ranks["exact_10"], (1, 5, 10)),
        "exact_1m": recall_from_ranks(exact_ranks["exact_1m_10"], (1, 5, 10)),
        "runs": [],
    }
    for run in measured.pop("runs"):
        ranked = np.array(run.pop("ranked"))
        ranks = first_positive_ranks(ranked, positives)
        run |= {
            "recall": recall_from_ranks(ranks, (1, 5, 10)),
            "vs_exact_10m": paired_recall_difference(exact_ranks["exact_10"], ranks, 1),
            "vs_exact_1m": paired_recall_difference(exact_ranks["exact_1m_10"], ranks, 1),
            "top1_equals_exact_10m": float(np.mean(ranked[:, 0] == exact["exact_10"][:, 0])),
        }
        summary["runs"].append(run)
    report["search"] = measured | summary
    write_json(args.out, report)
    build_info = report.get("build", {})
    spec = f"BIVF{build_info.get('lists')},Rerank{build_info.get('rerank')}"
    print(f"N = {build_info.get('n', 0):,}, {build_info.get('bits')} bits, {spec}")
    print(f"build: {build_info.get('seconds')}; on disk: {build_info.get('disk_bytes')}")
    print(f"exact float R@1 at 10M {summary['exact_10m']['1']:.1f}, at 1M {summary['exact_1m']['1']:.1f}")
    print(
        f"load {measured['load_s']:.1f} s; RSS after load {measured['rss_after_load'] / 1e9:.2f} GB, after search "
        f"{measured['rss_after_search'] / 1e9:.2f} GB, peak {measured['peak_rss'] / 1e9:.2f} GB"
    )
    for run in summary["runs"]:
        c = run["vs_exact_10m"]
        print(
            f"nprobe {run['nprobe']:>3} {run['pass']:<26} R@1 {run['recall']['1']:5.1f} R@5 {run['recall']['5']:5.1f} "
            f"median {run['median_ms']:6.2f} ms p90 {run['p90_ms']:6.2f} ms; vs exact 10M {c['difference']:+.1f} "
            f"(+{c['gained']}/-{c['lost']}, p {c['mcnemar_p']:.2f}); "
            f"top-1 = exact {100 * run['top1_equals_exact_10m']:.0f} %"
        )


if __name__ == "__main__":
    main()
