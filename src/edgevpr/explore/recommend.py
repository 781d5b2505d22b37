"""``edgevpr recommend``: the stored configuration with the best recall that fits a device
budget (memory for model plus map, latency for extraction plus matching, at a map size), the
runner-up, and, when nothing fits, which constraint binds and by how much."""

from __future__ import annotations

import json

from edgevpr.errors import ConfigError
from edgevpr.explore.pareto import device_bytes_at, total_ms_at


def timed_on_busy_machine(row: dict) -> bool:
    """Whether a stored run's latency was measured while other work kept the machine busy."""
    return bool(json.loads(row.get("cost_json") or "{}").get("timing", {}).get("contended"))


def _describe(row: dict, map_size: int, cost_model=None) -> dict:
    return {
        "key": row["key"],
        "backbone": row["backbone"],
        "aggregator": row["aggregator"],
        "descriptor_dim": row["descriptor_dim"],
        "descriptor_bits": row.get("descriptor_bits") or 32,
        "precision": row["precision"],
        "runtime": row["runtime"],
        "index": row["index_spec"],
        "rerank_ms": row.get("rerank_ms") or 0.0,
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
            "timed_on_busy_machine": timed_on_busy_machine(row),
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
    # the run nearest to fitting both: the smallest worst ratio of need to budget
    closest = min(described, key=lambda d: max(d["memory_bytes"] / memory_bytes, d["latency_ms"] / latency_ms))
    if not binding:  # each constraint alone can be met, but no run meets both
        binding.append(
            {
                "constraint": "memory and latency together",
                "closest": closest,
                "over_by_memory": max(0.0, closest["memory_bytes"] - memory_bytes),
                "over_by_latency": max(0.0, closest["latency_ms"] - latency_ms),
            }
        )
    return {
        "budget": budget,
        "fits": False,
        "binding": binding,
        "considered": len(described),
        "suggestions": suggestions(closest, memory_bytes, latency_ms, map_size),
    }


def suggestions(run: dict, memory_bytes: float, latency_ms: float, map_size: int) -> list[dict]:
    """What would make the closest run fit, with the numbers of ``edgevpr advise``: Eq. 11 (the
    largest descriptor the memory left after the model allows at each width) for memory, and the
    run's own measured split of extraction and matching for latency."""
    from edgevpr.search.cost_model import STANDARD_DIMS, max_dim_for_memory

    found = []
    model_bytes = run["evidence"]["model_bytes"]
    bits = run["descriptor_bits"]
    map_bytes = max(0.0, run["memory_bytes"] - model_bytes)
    if run["memory_bytes"] > memory_bytes:
        left = memory_bytes - model_bytes
        for width in (w for w in (16, 8, 1) if w < bits):
            needed = model_bytes + map_bytes * width / bits
            eq11 = max_dim_for_memory(left, map_size, width / 8) if left > 0 else 0.0
            if needed <= memory_bytes:
                found.append(
                    {
                        "change": f"--descriptor-bits {width}",
                        "memory_bytes": needed,
                        "why": f"compact descriptors: the map at {width} bits per dimension",
                        "eq11_max_dim": eq11,
                    }
                )
                break
        else:
            eq11 = max_dim_for_memory(left, map_size, 1 / 8) if left > 0 else 0.0
            fitting = [d for d in STANDARD_DIMS if d <= eq11]
            found.append(
                {
                    "change": f"a smaller descriptor: D <= {fitting[-1]} at 1 bit" if fitting else "a smaller map",
                    "why": f"Eq. 11: {max(left, 0) / 1e6:.2f} MB left after the model holds at most D = "
                    f"{int(eq11)} at 1 bit per dimension for {map_size} images",
                    "eq11_max_dim": eq11,
                }
            )
        if model_bytes > memory_bytes and run["precision"] == "fp32":
            found.append(
                {"change": "--precision int8", "memory_bytes": model_bytes / 4, "why": "the model alone is too large"}
            )
    if run["latency_ms"] > latency_ms:
        extraction = run["evidence"]["extraction_ms"]
        matching = run["latency_ms"] - extraction - run["rerank_ms"]
        if extraction >= latency_ms and run["precision"] == "fp32":
            found.append(
                {
                    "change": "--precision int8",
                    "why": f"extraction alone takes {extraction:.1f} ms: an int8 file runs on ONNX Runtime's "
                    "integer kernels (quantize, then sweep it to measure)",
                }
            )
        elif extraction < latency_ms and matching > latency_ms - extraction - run["rerank_ms"]:
            share = (latency_ms - extraction - run["rerank_ms"]) / matching if matching > 0 else 0.0
            found.append(
                {
                    "change": "an approximate index (IVF, HNSW) or --descriptor-bits 1",
                    "why": f"matching {map_size} images takes {matching:.1f} ms, {100 * max(share, 0):.0f} % of it "
                    f"fits after {extraction:.1f} ms of extraction (edgevpr advise --scaling FILE names an index)",
                }
            )
    return found


def _megabytes(value: float) -> str:
    return f"{value / 1e6:.2f} MB"


def _name(d: dict) -> str:
    dim = (
        d["descriptor_dim"] if d.get("descriptor_bits", 32) == 32 else f"{d['descriptor_dim']}x{d['descriptor_bits']}b"
    )
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
                + (
                    " [timed on a busy machine: latency likely inflated]"
                    if d["evidence"]["timed_on_busy_machine"]
                    else ""
                )
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
    for s in answer.get("suggestions", []):
        memory = f" -> {_megabytes(s['memory_bytes'])}" if "memory_bytes" in s else ""
        lines.append(f"try {s['change']}{memory}: {s['why']}")
    return "\n".join(lines)


OUTPUTS = ("out", "save_descriptors", "gallery", "pr_curve", "repeat")  # where a run wrote, not what it was
RUN_SECTIONS = ("search", "rerank")  # settings of what ran, beside eval's


def recipe_of(row: dict) -> dict:
    """A stored run as a YAML recipe that `eval --config`, `quantize --config` and `map build
    --config` accept: its resolved model and data sections (the model is rebuilt from them
    deterministically), every search, re-ranking and sequence setting of its eval section
    (index, search parameters, descriptor bits and codec, re-ranker, K, matcher, patches,
    sequence length), and, for a quantized run, the quantize section it was deployed with."""
    config = json.loads(row["config_json"])
    cell = json.loads(row.get("cell_json") or "{}")
    if config["model"].get("onnx"):
        raise ConfigError(
            f"store row {row['key']}: its config names the temporary file {config['model']['onnx']} instead of "
            "the model it was quantized from (a store written before edgevpr kept recipes); run the sweep again"
        )
    recipe = {
        "model": {k: v for k, v in config["model"].items() if k not in ("onnx", "checkpoint")},
        "data": config["data"],
        "eval": {k: v for k, v in config["eval"].items() if k not in OUTPUTS},
    } | {section: config[section] for section in RUN_SECTIONS if section in config}
    precision = cell.get("precision") or config.get("quantize", {}).get("precision") or "fp32"
    if precision != "fp32":
        recipe["quantize"] = {**config.get("quantize", {}), "precision": precision, **cell.get("quantize", {})}
    return recipe


def write_recipe(row: dict, path, answer: dict) -> None:
    """``recipe_of(row)`` to ``path``, headed by what it was recommended for."""
    import yaml

    from edgevpr.atomic import atomic_path

    best, budget, recipe = answer["best"], answer["budget"], recipe_of(row)
    rebuild = (
        "edgevpr quantize --config THIS --out model.onnx, then edgevpr eval --onnx model.onnx"
        if "quantize" in recipe
        else "edgevpr eval --config THIS"
    )
    head = (
        f"# edgevpr recommend: {_name(best)} (store row {row['key']}), R@1 {best['recall']['1']:.1f} under\n"
        f"# {row['protocol_name']}\n# for {_megabytes(budget['memory_bytes'])} and {budget['latency_ms']:g} ms "
        f"at a map of {budget['map_size']} images. {rebuild} reproduces it.\n"
    )
    with atomic_path(path) as tmp:
        tmp.write_text(head + yaml.safe_dump(recipe, sort_keys=False))
