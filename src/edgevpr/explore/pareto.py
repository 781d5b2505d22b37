"""Pareto fronts (higher recall, lower cost) and costs projected to a map size.

A run measured on a map of n0 images is projected to a map of N images as follows:
- database memory: bytes per map image (N0 database bytes / n0, the index's own size for
  ANN indexes) x N;
- matching time: for exact search with a matching cost model (k1, k2 measured by
  benchmarks/search_scaling.py), Grainge et al. 2024's tau_r = N (k1 D + k2); otherwise the measured
  per-query time x N / n0 (a linear scan; for ANN indexes an upper bound);
- re-ranking (a second stage): its measured time per query at its K, which does not grow
  with N, and its patch descriptors, which do (patch bytes per image x N);
- total latency = extraction + projected matching + re-ranking; device memory = model bytes +
  database + patches + the index's fixed bytes.
"""

from __future__ import annotations

from typing import Sequence


def pareto_front(costs: Sequence[float], recalls: Sequence[float]) -> list[int]:
    """Indices of the points no other point dominates (cost <= and recall >=, one strictly),
    sorted by cost. Equal points are kept once (the first)."""
    order = sorted(range(len(costs)), key=lambda i: (costs[i], -recalls[i], i))
    front, best = [], float("-inf")
    for i in order:
        if recalls[i] > best:
            front.append(i)
            best = recalls[i]
    return front


def database_bytes_at(row: dict, map_size: int) -> float:
    """Global descriptors and, for a second stage, patch descriptors, at ``map_size`` images."""
    return (row["database_bytes"] / row["num_database"] + (row.get("patch_bytes") or 0)) * map_size


def matching_ms_at(row: dict, map_size: int, cost_model=None) -> float:
    if cost_model is not None and row["index_spec"] == "Flat":
        return cost_model.matching_ms(map_size, row["descriptor_dim"])
    return row["matching_ms"] * map_size / row["num_database"]


def total_ms_at(row: dict, map_size: int, cost_model=None) -> float:
    return row["extraction_ms"] + matching_ms_at(row, map_size, cost_model) + (row.get("rerank_ms") or 0.0)


def device_bytes_at(row: dict, map_size: int) -> float:
    """Model, map descriptors at ``map_size`` and the index's fixed bytes (centroids, rotation)."""
    return row["model_bytes"] + database_bytes_at(row, map_size) + (row.get("index_fixed_bytes") or 0)


AXES = {  # name -> (label, cost of a row at a map size)
    "model_bytes": ("model bytes", lambda row, n: row["model_bytes"]),
    "extraction_ms": ("extraction ms", lambda row, n: row["extraction_ms"]),
    "total_ms": ("extraction + matching ms", total_ms_at),
    "database_bytes": ("database bytes", database_bytes_at),
}


def fronts(rows: list[dict], map_size: int, recall: str = "recall_1") -> dict[str, list[dict]]:
    """For each cost axis, the Pareto-optimal rows (with their projected cost)."""
    out = {}
    for axis, (_label, cost) in AXES.items():
        costs = [cost(row, map_size) for row in rows]
        out[axis] = [rows[i] | {"cost": costs[i]} for i in pareto_front(costs, [row[recall] for row in rows])]
    return out
