"""What ``edgevpr index build`` and ``edgevpr index search`` do, as plain functions."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgevpr.atomic import check_output, write_npy
from edgevpr.errors import ConfigError
from edgevpr.evaluate.recall import recall_at_n
from edgevpr.search.binary_codes import fit_codec
from edgevpr.search.descriptor_bits import storage_spec
from edgevpr.search.descriptors import load_descriptor_set
from edgevpr.search.index import build_index, check_fits
from edgevpr.search.store import load_index, save_index
from edgevpr.search.timing import time_matching


def build_from_folder(
    descriptors: str,
    spec: str,
    out: str,
    metric: str | None = None,
    params: str | None = None,
    descriptor_bits: int = 32,
    fit_descriptors: str | None = None,
    rotation: str = "itq",
    int8_scale: str = "dimension",
) -> dict:
    """``fit_descriptors``: a descriptor folder (its ``database.npy``) to fit a binary codec
    on, never the one indexed."""
    check_output(out, "--out")
    parsed = storage_spec(spec, descriptor_bits, int8_scale)
    data = load_descriptor_set(descriptors)
    check_fits(parsed, len(data.database), where=f"{descriptors}/database.npy")
    codec = None
    if parsed.binary:
        if not fit_descriptors:
            raise ConfigError(f"index {parsed} holds binary codes: give --fit-descriptors DIR to fit the rotation on")
        if Path(fit_descriptors).resolve() == Path(descriptors).resolve():
            raise ConfigError(f"--fit-descriptors {fit_descriptors} is the indexed folder; fit on other descriptors")
        fit = load_descriptor_set(fit_descriptors).database
        dim = data.database.shape[1]
        codec = fit_codec(fit, dim - dim % 8, rotation, fitted_on=str(fit_descriptors))
    start = time.perf_counter()
    index = build_index(data.database, parsed, metric or data.metric, params, codec=codec)
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
