"""Matching time of exact search, and the descriptor size that fits a device (Grainge et al. 2024).

Exact search compares a query with each of the N map descriptors of D dimensions, so its
time is modelled as tau_r(N, D) = N * (k1 * D + k2): k1 is the time per descriptor dimension
(per map image) and k2 the time per map image beyond the arithmetic (scoring, selection).
With extraction time tau_e, the budgets read
  Eq. 11 (memory):  N * D * b <= M   (b bytes per element, 4 for float32)
  Eq. 12 (latency): tau_e + N * (k1 * D + k2) <= T
so the largest descriptor that fits is min(M / (N b), ((T - tau_e) / N - k2) / k1).

Maps that fit in the CPU caches are searched faster per element than maps streamed from
memory, so k1 and k2 are fitted (least squares on milliseconds) on maps larger than
``CACHE_BYTES``: the model is for the maps where matching time matters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

STANDARD_DIMS = (32, 64, 128, 256, 512, 1024, 2048, 4096)
CACHE_BYTES = 64e6


@dataclass(frozen=True)
class MatchingCostModel:
    k1_ms: float  # ms per dimension per map image
    k2_ms: float  # ms per map image
    source: str = ""
    contended: bool = False  # measured while other processes kept the machine busy (timing.MachineLoad)

    def matching_ms(self, num_images: int, dim: int) -> float:
        return num_images * (self.k1_ms * dim + self.k2_ms)

    def max_dim_for_latency(self, latency_ms: float, extraction_ms: float, num_images: int) -> float:
        """Eq. 12 solved for D (may be negative: then nothing fits)."""
        return ((latency_ms - extraction_ms) / num_images - self.k2_ms) / self.k1_ms

    def to_dict(self) -> dict:
        return asdict(self)


def max_dim_for_memory(memory_bytes: float, num_images: int, bytes_per_element: float = 4) -> float:
    """Eq. 11 solved for D (``bytes_per_element`` = bits / 8: 4, 2, 1 or 1/8)."""
    return memory_bytes / (num_images * bytes_per_element)


def fit_cost_model(measurements: list[dict], source: str = "", bits: int = 32) -> MatchingCostModel:
    """Least squares of ms = k1 * (N D) + k2 * N over rows {n, d, ms}, on the rows whose map
    (``bits`` per element) exceeds the caches when there are at least two of them."""
    large = [m for m in measurements if m["n"] * m["d"] * bits / 8 >= CACHE_BYTES]
    rows = large if len(large) >= 2 else measurements
    n = np.array([m["n"] for m in rows], dtype=np.float64)
    d = np.array([m["d"] for m in rows], dtype=np.float64)
    ms = np.array([m["ms"] for m in rows], dtype=np.float64)
    (k1, k2), *_ = np.linalg.lstsq(np.stack([n * d, n], axis=1), ms, rcond=None)
    if k1 <= 0:
        raise ValueError("matching time does not grow with the dimension in these measurements")
    return MatchingCostModel(float(k1), float(max(k2, 0.0)), source)


def measure_exact_matching(sizes, dims, queries: int = 20, seed: int = 0, bits: int = 32, log=None) -> list[dict]:
    """Median single-query exhaustive search time for each (N, D), on random unit vectors
    stored at ``bits`` per dimension (``search.descriptor_bits``: float, fp16, int8 or binary
    codes compared by Hamming distance, the query binarised as part of the search). ``log``
    hears of each map before it is timed."""
    from edgevpr.search.binary_codes import fit_codec
    from edgevpr.search.descriptor_bits import storage_spec
    from edgevpr.search.index import build_index
    from edgevpr.search.timing import time_matching

    rng = np.random.default_rng(seed)
    rows = []
    cells = [(d, n) for d in dims for n in sizes]
    for number, (d, n) in enumerate(cells, 1):
        if log:
            log(f"timing exact search at {bits} bits: map {number}/{len(cells)} (N = {n:,}, D = {d})")
        database = rng.standard_normal((n, d), dtype=np.float32)
        database /= np.linalg.norm(database, axis=1, keepdims=True)
        probe = database[:queries] + 0.01
        spec = storage_spec("Flat", bits)
        codec = fit_codec(database[: max(d, 256)], d, "random", seed=seed) if spec.binary else None
        timing = time_matching(build_index(database, spec, codec=codec), probe, 20, max_queries=queries)
        rows.append({"n": n, "d": d, "ms": timing["median_ms"], "bits": bits})
        del database
    return rows
