"""What ``edgevpr index build`` and ``edgevpr index search`` do, as plain functions."""

from __future__ import annotations

import time

import numpy as np

from edgevpr.atomic import check_output, write_npy
from edgevpr.errors import ConfigError
from edgevpr.evaluate.recall import recall_at_n
from edgevpr.search.descriptors import load_descriptor_set
from edgevpr.search.index import IndexSpec, build_index, check_fits
from edgevpr.search.store import load_index, save_index
from edgevpr.search.timing import time_matching


def build_from_folder(
    descriptors: str, spec: str, out: str, metric: str | None = None, params: str | None = None
) -> dict:
    check_output(out, "--out")
    parsed = IndexSpec.parse(spec)
    data = load_descriptor_set(descriptors)
    check_fits(parsed, len(data.database), where=f"{descriptors}/database.npy")
    start = time.perf_counter()
    index = build_index(data.database, parsed, metric or data.metric, params)
    seconds = time.perf_counter() - start
    save_index(index, out)
    return {
        "index": str(index.spec),
        "params": index.params,
        "ntotal": index.ntotal,
        "dim": index.dim,
        "metric": index.metric,
        "build_s": seconds,
        "memory_bytes": index.memory_bytes(),
        "path": out,
    }


def search_folder(index_path: str, descriptors: str, k: int = 20, out: str | None = None) -> dict:
    if k < 1:
        raise ConfigError(f"--k must be >= 1, got {k}")
    check_output(out, "--out")
    data = load_descriptor_set(descriptors, need_queries=True)
    index = load_index(index_path, dim=data.database.shape[1], metric=data.metric)
    _, predictions = index.search(data.queries, k)
    if out:
        write_npy(out, predictions.astype(np.int64))
    report = {
        "index": str(index.spec),
        "queries": len(data.queries),
        "memory_bytes": index.memory_bytes(),
        "matching_ms": time_matching(index, data.queries, k)["median_ms"],
    }
    if data.positives is not None:
        report["recall"] = recall_at_n(predictions, data.positives, [n for n in (1, 5, 10, 20) if n <= k])
    return report
