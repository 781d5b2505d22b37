"""Repeated runs of anything stochastic, summarised as mean and standard deviation over seeds,
as Berton et al. (2022) report their benchmark (each number a mean over runs, with its spread).

A repeat changes only the seed (``eval.seed``; ``quantize.calib_seed`` where calibration images
are sampled), so the spread measures the randomness of aggregator initialisation, random
weights, index training samples and calibration samples, never a change of protocol."""

from __future__ import annotations

import numpy as np

SUMMARISED_METRICS = ("auc_pr", "recall_at_100_precision", "extended_precision")


def spread(values: list[float]) -> dict:
    """Mean, sample standard deviation (ddof 1; 0 for one run) and the values themselves."""
    array = np.asarray(values, dtype=np.float64)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return {"mean": float(array.mean()), "std": std, "values": [float(v) for v in array]}


def summarise_runs(results: list[dict], seeds: list[int]) -> dict:
    """The ``repeats`` block of a result: recall at every N and the scalar PR metrics, each as
    mean/std/values over ``results`` (one per seed, same protocol)."""
    names = {r["protocol_name"] for r in results}
    if len(names) != 1:
        raise ValueError(f"repeated runs must share one protocol, got {sorted(names)}")
    block = {
        "runs": len(results),
        "seeds": list(seeds),
        "recall": {n: spread([r["recall"][n] for r in results]) for n in results[0]["recall"]},
    }
    metrics = results[0].get("metrics") or {}
    block["metrics"] = {
        name: spread([r["metrics"][name] for r in results])
        for name in SUMMARISED_METRICS
        if isinstance(metrics.get(name), (int, float))
    }
    return block


def format_repeats(block: dict) -> str:
    """One line per quantity: ``R@1 51.50 +/- 0.00 over 3 runs (seeds 0,1,2)``."""
    seeds = ",".join(map(str, block["seeds"]))
    lines = [f"{block['runs']} runs, seeds {seeds}: mean +/- standard deviation"]
    for n, s in block["recall"].items():
        lines.append(f"  R@{n:<4} {s['mean']:6.2f} +/- {s['std']:.2f}")
    for name, s in block["metrics"].items():
        lines.append(f"  {name:<24} {s['mean']:.4f} +/- {s['std']:.4f}")
    return "\n".join(lines)
