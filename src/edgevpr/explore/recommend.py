"""``edgevpr recommend``: the stored configuration with the best recall that fits a device
budget (memory for model plus map, latency for extraction plus matching, at a map size), the
runner-up, and, when nothing fits, which constraint binds and by how much."""

from __future__ import annotations

from edgevpr.explore.pareto import device_bytes_at, total_ms_at


def _describe(row: dict, map_size: int, cost_model=None) -> dict:
    return {
        "key": row["key"],
        "backbone": row["backbone"],
        "aggregator": row["aggregator"],
        "descriptor_dim": row["descriptor_dim"],
        "precision": row["precision"],
        "runtime": row["runtime"],
        "index": row["index_spec"],
        "image_size": row["image_size"],
        "dataset": row["dataset"],
        "protocol_name": row["protocol_name"],
        "recall": {n: row[f"recall_{n}"] for n in ("1", "5", "10")},
        "memory_bytes": device_bytes_at(row, map_size),
        "latency_ms": total_ms_at(row, map_size, cost_model),
        "evidence": {
            "model_bytes": row["model_bytes"],
            "extraction_ms": row["extraction_ms"],
            "matching_ms_measured": row["matching_ms"],
            "measured_map_size": row["num_database"],
            "database_bytes_measured": row["database_bytes"],
            "cpu": row["cpu"],
            "threads": row["threads"],
        },
    }


def recommend(
    rows: list[dict], memory_bytes: float, latency_ms: float, map_size: int, dataset: str | None = None, cost_model=None
) -> dict:
    """``cost_model``: exact-search matching time from k1, k2 (Grainge et al. 2024 Eq. 12) instead of a
    linear projection of the time measured on the evaluation map."""
    if dataset is not None:
        rows = [row for row in rows if row["dataset"] == dataset]
    budget = {
        "memory_bytes": memory_bytes,
        "latency_ms": latency_ms,
        "map_size": map_size,
        "dataset": dataset,
        "matching_model": cost_model.to_dict() if cost_model is not None else "linear from the measured map",
    }
    if not rows:
        return {
            "budget": budget,
            "fits": False,
            "reason": "no stored runs" + (f" for dataset {dataset!r}" if dataset else ""),
        }
    described = [_describe(row, map_size, cost_model) for row in rows]
    fitting = [d for d in described if d["memory_bytes"] <= memory_bytes and d["latency_ms"] <= latency_ms]
    fitting.sort(key=lambda d: (-d["recall"]["1"], -(d["recall"]["5"] or 0), d["latency_ms"], d["memory_bytes"]))
    if fitting:
        return {
            "budget": budget,
            "fits": True,
            "best": fitting[0],
            "runner_up": fitting[1] if len(fitting) > 1 else None,
            "fitting": len(fitting),
            "considered": len(described),
        }
    smallest = min(described, key=lambda d: d["memory_bytes"])
    fastest = min(described, key=lambda d: d["latency_ms"])
    binding = []
    if smallest["memory_bytes"] > memory_bytes:
        binding.append(
            {
                "constraint": "memory",
                "needed": smallest["memory_bytes"],
                "budget": memory_bytes,
                "over_by": smallest["memory_bytes"] - memory_bytes,
                "closest": smallest,
            }
        )
    if fastest["latency_ms"] > latency_ms:
        binding.append(
            {
                "constraint": "latency",
                "needed": fastest["latency_ms"],
                "budget": latency_ms,
                "over_by": fastest["latency_ms"] - latency_ms,
                "closest": fastest,
            }
        )
    if not binding:  # each constraint alone can be met, but no run meets both
        closest = min(described, key=lambda d: max(d["memory_bytes"] / memory_bytes, d["latency_ms"] / latency_ms))
        binding.append(
            {
                "constraint": "memory and latency together",
                "closest": closest,
                "over_by_memory": max(0.0, closest["memory_bytes"] - memory_bytes),
                "over_by_latency": max(0.0, closest["latency_ms"] - latency_ms),
            }
        )
    return {"budget": budget, "fits": False, "binding": binding, "considered": len(described)}


def _megabytes(value: float) -> str:
    return f"{value / 1e6:.2f} MB"


def _name(d: dict) -> str:
    dim = d["descriptor_dim"]
    return f"{d['backbone']}+{d['aggregator']} D={dim} {d['precision']} {d['index']} {d['image_size']}"


def format_recommendation(answer: dict) -> str:
    budget = answer["budget"]
    head = (
        f"budget: {_megabytes(budget['memory_bytes'])} memory, {budget['latency_ms']:g} ms, "
        f"map of {budget['map_size']} images" + (f", dataset {budget['dataset']}" if budget["dataset"] else "")
    )
    if "reason" in answer:
        return f"{head}\nnothing to recommend: {answer['reason']}"
    if answer["fits"]:
        lines = [head, f"{answer['fitting']} of {answer['considered']} stored runs fit."]
        for title, d in (("use", answer["best"]), ("runner-up", answer["runner_up"])):
            if d is None:
                continue
            lines.append(
                f"{title}: {_name(d)}: R@1 {d['recall']['1']:.1f}, R@5 {d['recall']['5']:.1f}; "
                f"{_megabytes(d['memory_bytes'])}, {d['latency_ms']:.1f} ms "
                f"(model {_megabytes(d['evidence']['model_bytes'])}, "
                f"extraction {d['evidence']['extraction_ms']:.1f} ms, "
                f"matching {d['evidence']['matching_ms_measured']:.3f} ms "
                f"at {d['evidence']['measured_map_size']} images)"
            )
        return "\n".join(lines)
    lines = [head, f"none of {answer['considered']} stored runs fits."]
    for b in answer["binding"]:
        if "needed" in b:
            unit = _megabytes if b["constraint"] == "memory" else (lambda v: f"{v:.1f} ms")
            lines.append(
                f"{b['constraint']} binds: the least any run needs is {unit(b['needed'])} "
                f"({_name(b['closest'])}), over the budget by {unit(b['over_by'])}"
            )
        else:
            lines.append(
                f"{b['constraint']} bind: closest is {_name(b['closest'])}, over by "
                f"{_megabytes(b['over_by_memory'])} and {b['over_by_latency']:.1f} ms"
            )
    return "\n".join(lines)
