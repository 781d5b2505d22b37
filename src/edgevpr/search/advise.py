"""``edgevpr advise``: the descriptor size and index for a memory, latency and map-size budget."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from edgevpr.atomic import read_json
from edgevpr.errors import ConfigError
from edgevpr.search.cost_model import (
    STANDARD_DIMS,
    MatchingCostModel,
    fit_cost_model,
    max_dim_for_memory,
    measure_exact_matching,
)
from edgevpr.timing import MachineLoad


def load_scaling(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: scaling file not found (write one with benchmarks/search_scaling.py)")
    data = read_json(path, "scaling file", ("exact",))
    return data


def quick_cost_model(bits: int = 32, log=None) -> MatchingCostModel:
    """k1, k2 measured here and now on a small grid (a few seconds on a quiet machine), at
    ``bits`` per dimension, flagged ``contended`` when other processes kept the machine busy."""
    with MachineLoad() as load:
        rows = measure_exact_matching(sizes=(100_000, 300_000), dims=(256, 512, 1024), queries=10, bits=bits, log=log)
    model = fit_cost_model(
        rows, source=f"measured now at {bits} bits, N in {{100k, 300k}}, D in {{256, 512, 1024}}", bits=bits
    )
    return dataclasses.replace(model, contended=load.others_busy())


def cost_model_for(scaling: dict | None, bits: int, log=None) -> MatchingCostModel:
    """From the scaling file's rows at ``bits`` (``exact`` holds float32's), else measured now."""
    rows = (scaling or {}).get("exact") if bits == 32 else (scaling or {}).get("exact_bits", {}).get(str(bits))
    if rows:
        return fit_cost_model(rows, source=(scaling or {}).get("source", "scaling file"), bits=bits)
    return quick_cost_model(bits, log)


def bits_row(
    model: MatchingCostModel, bits: int, memory_bytes: float, latency_ms: float, map_size: int, extraction_ms: float
) -> dict:
    """Eq. 11 and 12 at ``bits`` per dimension: the largest standard D and what it costs."""
    d_memory = max_dim_for_memory(memory_bytes, map_size, bits / 8)
    d_latency = model.max_dim_for_latency(latency_ms, extraction_ms, map_size)
    fitting = [d for d in STANDARD_DIMS if d <= min(d_memory, d_latency)]
    row = {"bits": bits, "max_dim_memory": d_memory, "max_dim_latency": d_latency, "cost_model": model.to_dict()}
    if fitting:
        dim = fitting[-1]
        matching = model.matching_ms(map_size, dim)
        row |= {
            "dim": dim,
            "database_bytes": map_size * dim * bits / 8,
            "matching_ms": matching,
            "total_ms": extraction_ms + matching,
        }
    return row


def advise(
    memory_bytes: float,
    latency_ms: float,
    map_size: int,
    extraction_ms: float = 0.0,
    scaling: dict | None = None,
    descriptor_bits: tuple[int, ...] = (32,),
    log=None,
) -> dict:
    """``descriptor_bits``: the bit widths to consider besides float32 (``by_bits`` in the
    answer); ``log`` hears of each timing that runs now (without ``scaling``)."""
    if min(memory_bytes, latency_ms, map_size) <= 0:
        raise ConfigError("--memory, --latency-ms and --map-size must be positive")
    unknown = [b for b in descriptor_bits if b not in (32, 16, 8, 1)]
    if unknown:
        raise ConfigError(f"--descriptor-bits takes 32, 16, 8 and 1, got {unknown[0]}")
    model = cost_model_for(scaling, 32, log)
    d_memory = max_dim_for_memory(memory_bytes, map_size)
    d_latency = model.max_dim_for_latency(latency_ms, extraction_ms, map_size)
    limit = min(d_memory, d_latency)
    fitting = [d for d in STANDARD_DIMS if d <= limit]
    answer = {
        "budget": {
            "memory_bytes": memory_bytes,
            "latency_ms": latency_ms,
            "map_size": map_size,
            "extraction_ms": extraction_ms,
        },
        "cost_model": model.to_dict(),
        "eq11_max_dim_memory": d_memory,
        "eq12_max_dim_latency": d_latency,
        "binding": "memory" if d_memory <= d_latency else "latency",
        "by_bits": [
            bits_row(
                model if bits == 32 else cost_model_for(scaling, bits, log),
                bits,
                memory_bytes,
                latency_ms,
                map_size,
                extraction_ms,
            )
            for bits in sorted(set(descriptor_bits) | {32}, reverse=True)
        ],
    }
    if fitting:
        dim = fitting[-1]
        answer["exact"] = {
            "dim": dim,
            "database_bytes": map_size * dim * 4,
            "matching_ms": model.matching_ms(map_size, dim),
            "total_ms": extraction_ms + model.matching_ms(map_size, dim),
        }
        return answer
    answer["exact"] = None
    answer["ann"] = _ann_choice(scaling, memory_bytes, latency_ms - extraction_ms, map_size)
    return answer


def _ann_choice(scaling: dict | None, memory_bytes: float, matching_budget_ms: float, map_size: int) -> dict | None:
    """The measured ANN index with the best recall whose memory and time, scaled linearly to
    the map size (a conservative rule for inverted files), fit the budget."""
    rows = (scaling or {}).get("ann", [])
    if not rows:
        return {
            "found": False,
            "reason": "exact search does not fit, and no ANN measurements were given (--scaling FILE)",
        }
    candidates = []
    for row in rows:
        scale = map_size / row["n"]
        memory = row["memory_bytes"] * scale
        matching = row["matching_ms"] * scale
        if memory <= memory_bytes and matching <= matching_budget_ms:
            candidates.append(row | {"expected_memory_bytes": memory, "expected_matching_ms": matching})
    if not candidates:
        return {"found": False, "reason": "no measured index fits the budget at this map size"}
    best = max(candidates, key=lambda r: (r["nn_recall"], -r["expected_matching_ms"]))
    return {"found": True, **best, "recall_cost_points": 100.0 * (1.0 - best["nn_recall"])}


def format_advice(answer: dict) -> str:
    budget, model = answer["budget"], answer["cost_model"]
    lines = [
        f"budget: {budget['memory_bytes'] / 1e6:.1f} MB, {budget['latency_ms']:.1f} ms, "
        f"map of {budget['map_size']} images, "
        f"extraction {budget['extraction_ms']:.1f} ms",
        f"exact search cost model: k1 = {model['k1_ms'] * 1e6:.3f} ns per dimension per image, "
        f"k2 = {model['k2_ms'] * 1e6:.3f} ns per image ({model['source']})",
        *(
            [
                "warning: timed on a busy machine, so k1 and k2 are likely too high and the advice too cautious; "
                "measure on a quiet machine or give --scaling FILE (benchmarks/search_scaling.py)"
            ]
            if any(row["cost_model"].get("contended") for row in answer["by_bits"])
            else []
        ),
        f"Eq. 11 (memory) allows D <= {math.floor(answer['eq11_max_dim_memory'])}; "
        f"Eq. 12 (latency) allows D <= {max(math.floor(answer['eq12_max_dim_latency']), 0)}; "
        f"binding: {answer['binding']}",
    ]
    for row in answer["by_bits"]:
        if row["bits"] == 32:
            continue
        lines.append(
            f"at {row['bits']} bits per dimension: D = {row['dim']}, {row['database_bytes'] / 1e6:.1f} MB, "
            f"matching {row['matching_ms']:.2f} ms"
            if "dim" in row
            else f"at {row['bits']} bits per dimension: no D >= 32 fits"
        )
    exact = answer["exact"]
    if exact:
        lines.append(
            f"use D = {exact['dim']} with exact search: {exact['database_bytes'] / 1e6:.1f} MB, "
            f"matching {exact['matching_ms']:.2f} ms, total {exact['total_ms']:.2f} ms"
        )
        return "\n".join(lines)
    lines.append("exact search cannot meet the budget at any D >= 32")
    ann = answer["ann"]
    if ann and ann.get("found"):
        lines.append(
            f"use index {ann['index']} (D = {ann['d']}): about {ann['expected_memory_bytes'] / 1e6:.1f} MB, "
            f"{ann['expected_matching_ms']:.2f} ms per query; it finds the exact nearest neighbour for "
            f"{100 * ann['nn_recall']:.1f} % of queries (recall cost about {ann['recall_cost_points']:.1f} points)"
        )
    else:
        lines.append(f"no index fits: {ann['reason'] if ann else 'no ANN data'}")
    return "\n".join(lines)
