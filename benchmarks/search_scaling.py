"""Matching time against map size and descriptor size, Grainge et al. 2024's k1 and k2, and the ANN
acceptance at N = 1,000,000, D = 1024.

1. Exact search (faiss Flat, inner product), one query at a time, for N in {1k, 10k, 100k, 1M}
   and D in {256, 512, 1024, 2048, 4096}; cells whose database exceeds --max-gb are predicted
   from the fit and marked so, not measured.
2. Fit tau_r = N (k1 D + k2) and find where matching overtakes the extraction of a
   MobileNetV2 + GeM at 480x640 measured in the same run (N x D at the crossover).
3. N = 1M, D = 1024, clustered unit vectors, queries = noisy copies of map vectors: exact search
   against IVF-PQ with exact re-ranking (full vectors memory-mapped from disk): speed-up,
   memory ratio, and the share of queries whose exact nearest neighbour is found.

    python benchmarks/search_scaling.py [--max-gb 8.5] [--out benchmarks/results/search_scaling.json]
    python benchmarks/search_scaling.py --ann-only   # re-run step 3, keep steps 1-2 of --out
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edgevpr.atomic import write_json
from edgevpr.config import ModelConfig
from edgevpr.evaluate.cost import time_torch_extraction
from edgevpr.evaluate.environment import environment
from edgevpr.models import build_model
from edgevpr.search.cost_model import fit_cost_model
from edgevpr.search.index import build_index
from edgevpr.search.store import load_index, save_index
from edgevpr.search.timing import time_matching

SIZES = (1_000, 10_000, 100_000, 1_000_000)
# the second also passes the Gardens Point distractor test (benchmarks/search_gardens_point.py)
ANN_SPECS = [
    ("IVF1024,PQ64,Rerank100", "nprobe=16"),
    ("IVF1024,PQ64,Rerank1000", "nprobe=64"),
    ("IVF1024,PQ64", "nprobe=16"),
]
DIMS = (256, 512, 1024, 2048, 4096)


def clustered(n: int, d: int, rng, clusters: int = 4096, spread: float = 0.5, chunk: int = 100_000) -> np.ndarray:
    """Unit vectors around random centres, generated in chunks to bound memory."""
    centres = rng.standard_normal((clusters, d), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, chunk):
        rows = min(chunk, n - start)
        block = centres[rng.integers(0, clusters, rows)] + rng.standard_normal((rows, d), dtype=np.float32) * (
            spread / np.sqrt(d)
        )
        out[start : start + rows] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def exact_grid(max_bytes: float, rng) -> list[dict]:
    rows = []
    for d in DIMS:
        fitting = [n for n in SIZES if n * d * 4 <= max_bytes]
        if not fitting:
            continue
        database = clustered(max(fitting), d, rng)
        for n in fitting:
            index = build_index(database[:n], "Flat")
            queries = database[: 20 if n < 1_000_000 else 8] + 0.01
            rows.append(
                {"n": n, "d": d, "ms": time_matching(index, queries, 20, max_queries=len(queries))["median_ms"]}
            )
            print(f"exact N={n:>9,} D={d:>5}: {rows[-1]['ms']:9.3f} ms/query", flush=True)
            del index
        del database
        gc.collect()
    return rows


def ann_acceptance(
    rng, specs: list[tuple[str, str]], n: int = 1_000_000, d: int = 1024, queries: int = 200
) -> tuple[dict, list[dict]]:
    database = clustered(n, d, rng)
    picked = rng.choice(n, size=queries, replace=False)
    probe = database[picked] + rng.standard_normal((queries, d), dtype=np.float32) * (0.25 / np.sqrt(d))
    probe /= np.linalg.norm(probe, axis=1, keepdims=True)
    exact = build_index(database, "Flat")
    _, truth = exact.search(probe, 1)
    exact_row = {
        "index": "Flat",
        "n": n,
        "d": d,
        "memory_bytes": n * d * 4,
        "matching_ms": time_matching(exact, probe[:30], 20, max_queries=30)["median_ms"],
        "nn_recall": 1.0,
    }
    print(
        f"exact N={n:,} D={d}: {exact_row['matching_ms']:.2f} ms/query, {exact_row['memory_bytes'] / 1e6:.0f} MB",
        flush=True,
    )
    del exact
    gc.collect()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for spec, params in specs:
            start = time.perf_counter()
            index = build_index(database, spec, params=params, max_train=100_000)
            build_s = time.perf_counter() - start
            path = Path(folder) / "ann.faiss"
            save_index(index, path)
            del index
            index = load_index(path, dim=d, metric="ip")  # re-ranking vectors now memory-mapped from disk
            _, found = index.search(probe, 1)
            row = {
                "index": str(index.spec),
                "params": index.params,
                "n": n,
                "d": d,
                "build_s": build_s,
                "memory_bytes": index.memory_bytes(),
                "matching_ms": time_matching(index, probe, 20, max_queries=len(probe))["median_ms"],
                "nn_recall": float(np.mean(found[:, 0] == truth[:, 0])),
            }
            row["speedup_vs_exact"] = exact_row["matching_ms"] / row["matching_ms"]
            row["memory_ratio_vs_exact"] = exact_row["memory_bytes"] / row["memory_bytes"]
            rows.append(row)
            print(
                f"{row['index']:<26} {row['params']:<11} build {build_s:6.1f} s  {row['matching_ms']:7.3f} ms/query "
                f"({row['speedup_vs_exact']:6.1f}x faster)  {row['memory_bytes'] / 1e6:7.1f} MB "
                f"({row['memory_ratio_vs_exact']:5.1f}x less)  exact NN found {100 * row['nn_recall']:.1f} %",
                flush=True,
            )
            del index
            gc.collect()
    return exact_row, rows


def run_ann(rng, result: dict) -> dict:
    print("\nN = 1,000,000, D = 1024: ANN with exact re-ranking against exact search", flush=True)
    exact_row, ann = ann_acceptance(rng, ANN_SPECS)
    result["ann_exact"] = exact_row
    result["ann"] = ann
    for row in ann:
        passed = row["speedup_vs_exact"] >= 50 and row["memory_ratio_vs_exact"] >= 16 and row["nn_recall"] >= 0.99
        print(
            f"acceptance (>= 50x faster, >= 16x less memory, >= 99 % exact NN): {row['index']} {row['params']}: "
            f"{'PASS' if passed else 'FAIL'}"
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-gb", type=float, default=8.5, help="Largest exact database to measure (GB).")
    parser.add_argument("--out", default="benchmarks/results/search_scaling.json")
    parser.add_argument("--skip-ann", action="store_true")
    parser.add_argument("--ann-only", action="store_true", help="Only step 3; steps 1-2 are kept from --out.")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    if args.ann_only:
        result = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
        result["environment_ann"] = environment()
        write_json(args.out, run_ann(rng, result))
        print(f"written: {args.out}")
        return

    print(f"threads: torch {torch.get_num_threads()}", flush=True)
    exact = exact_grid(args.max_gb * 1e9, rng)
    model = fit_cost_model(exact, source="benchmarks/search_scaling.py")
    print(f"\nfit tau_r = N (k1 D + k2): k1 = {model.k1_ms * 1e6:.4f} ns, k2 = {model.k2_ms * 1e6:.4f} ns")
    print(f"{'N':>10} " + " ".join(f"{'D=' + str(d):>18}" for d in DIMS))
    measured = {(r["n"], r["d"]): r["ms"] for r in exact}
    for n in SIZES:
        cells = []
        for d in DIMS:
            predicted = model.matching_ms(n, d)
            cells.append(
                f"{measured[(n, d)]:8.2f}/{predicted:8.2f}" if (n, d) in measured else f"{'(pred)':>8} {predicted:8.2f}"
            )
        print(f"{n:>10,} " + " ".join(f"{c:>18}" for c in cells))
    print("cells: measured/predicted ms per query; (pred) = not measured, beyond --max-gb")

    net = build_model(ModelConfig(backbone="mobilenetv2", aggregator="gem"))
    extraction = time_torch_extraction(net, (1, 3, 480, 640), runs=20)["median_ms"]
    crossover_nd = extraction / (model.k1_ms + model.k2_ms / 1024)  # at D = 1024
    print(
        f"\nMobileNetV2+GeM extraction at 480x640: {extraction:.1f} ms; matching overtakes it at "
        f"N x D = {crossover_nd / 1e6:.0f} M (at D = 1024, N = {crossover_nd / 1024:,.0f})"
    )

    result = {
        "source": "benchmarks/search_scaling.py",
        "environment": environment(),
        "exact": exact,
        "cost_model": model.to_dict(),
        "extraction_ms_mobilenetv2_gem_480x640": extraction,
        "crossover_n_times_d": crossover_nd,
    }
    if not args.skip_ann:
        result = run_ann(rng, result)
    write_json(args.out, result)
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
