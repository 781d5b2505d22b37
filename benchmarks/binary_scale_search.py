"""The search half of benchmarks/binary_scale.py, in a fresh process with nothing but numpy,
faiss and edgevpr's search package imported: load the saved index, search each query alone,
print one JSON line (times, the ranked lists, resident memory after load and after search).

    python benchmarks/binary_scale_search.py WORK QUERIES.npy NPROBES
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from edgevpr.search.index import set_params
from edgevpr.search.store import load_index


def rss_bytes() -> dict:
    status = Path("/proc/self/status").read_text().splitlines()
    fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in status if line.startswith(("VmRSS", "VmHWM"))}
    return {"rss": fields["VmRSS"], "peak": fields["VmHWM"]}


def search_child(work: str, queries_file: str, nprobes: str) -> None:
    """Runs in a fresh process: load the index, search each query alone, report JSON."""
    queries = np.load(queries_file)
    before = rss_bytes()
    start = time.perf_counter()
    index = load_index(Path(work) / "map.faiss")
    loaded = time.perf_counter() - start
    after_load = rss_bytes()
    out = {"load_s": loaded, "rss_before_load": before["rss"], "rss_after_load": after_load["rss"], "runs": []}
    for nprobe in (int(n) for n in nprobes.split(",")):
        set_params(index, f"nprobe={nprobe}")
        for label in ("first pass (cold vectors)", "second pass"):
            times, ranked = [], []
            for q in queries:
                t = time.perf_counter()
                _, ids = index.search(q[None], 10)
                times.append(1000 * (time.perf_counter() - t))
                ranked.append(ids[0])
            out["runs"].append(
                {
                    "nprobe": nprobe,
                    "pass": label,
                    "median_ms": float(np.median(times)),
                    "p90_ms": float(np.percentile(times, 90)),
                    "ranked": np.array(ranked).tolist(),
                }
            )
    out["rss_after_search"] = rss_bytes()["rss"]
    out["peak_rss"] = rss_bytes()["peak"]
    print(json.dumps(out))


if __name__ == "__main__":
    search_child(*sys.argv[1:4])
