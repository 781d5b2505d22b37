"""Mixed-precision acceptance on Gardens Point (database day_right, queries night_right,
+/-2 frames): MobileNetV2 from ../shared/weights + GeM, short side 360, calibration and the
fitness sample (L images) from day_left. For each budget B: the genetic search, the deployed
ONNX file (bytes, ORT Recall@1/5) and the simulated model's recall, against fp32. The deployed
file is also run with ONNX Runtime's graph optimizations off (`--ort-optimization none`: each
QDQ node runs as dequantize, float operator, quantize, instead of the fused integer kernels
that the simulation reproduces), and the query descriptors of the three runs are compared by cosine.
The deployed R@1 is compared with fp32's query by query (``deployed_r1_vs_fp32``: queries gained
and lost, McNemar p-value, 95 % paired bootstrap interval; 200 queries leave about +/-6 points
of doubt at B = 6, see ``edgevpr.evaluate.significance``). Then, at
--compare-budgets, the GA against random search at the same number of fitness evaluations
(3 seeds) with the greedy assignment beside them. Writes the Fig. 7 and Fig. 8 plots.

    python benchmarks/mixed_precision_gardens_point.py [--budgets 4,5,6,8,10,12,16] [--steps 200]
        [--calib-count 16] [--compare-budgets 6,8] [--seeds 3] [--bias-correction] [--weighting params]
        [--int4-rounding nearest|gptq] [--int8-layout auto|u8s8|u8s7]
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import numpy as np
from quantization_gardens_point import SHARED, model_overrides

from edgevpr import charts
from edgevpr.atomic import write_json
from edgevpr.config import QuantizeConfig, load_config
from edgevpr.evaluate.environment import environment
from edgevpr.evaluate.runner import evaluate
from edgevpr.evaluate.significance import paired_recall_difference
from edgevpr.quantize.gptq import INT4_ROUNDINGS
from edgevpr.quantize.pipeline import quantize_model
from edgevpr.research.genetic import (
    WEIGHTINGS,
    Problem,
    SearchSettings,
    genetic_search,
    greedy_by_sensitivity,
    random_search,
)
from edgevpr.research.mixed import (
    MixedOptions,
    build_simulator,
    layer_sensitivity,
    search_precision,
    search_signature,
)
from edgevpr.runtime.int8_layout import QDQ_CHOICES, resolve_layout
from edgevpr.search.descriptors import load_descriptor_set


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


def _paired(comparison: dict) -> str:
    low, high = comparison["ci95"]
    return (
        f"{comparison['gained']} queries gained, {comparison['lost']} lost, McNemar p {comparison['mcnemar_p']:.2f}, "
        f"95% CI of the change {low:+.1f} to {high:+.1f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(SHARED))
    parser.add_argument("--budgets", default="4,5,6,8,10,12,16")
    parser.add_argument("--compare-budgets", default="6,8")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--compare-steps", type=int, default=200, help="GA steps of the GA-vs-random comparison")
    parser.add_argument("--calib-count", type=int, default=16, help="L, as search-precision's default")
    parser.add_argument("--bias-correction", action="store_true", help="int4 bias correction in search and deployment")
    parser.add_argument(
        "--int4-rounding", choices=INT4_ROUNDINGS, default="nearest", help="int4 levels: nearest or GPTQ"
    )
    parser.add_argument(
        "--weighting",
        choices=WEIGHTINGS,
        default="plain",
        help="average bit-width over layers (plain) or over parameters (params)",
    )
    parser.add_argument(
        "--int8-layout",
        choices=QDQ_CHOICES,
        default="auto",
        help="int8 layers' layout (auto: exact on this CPU; u8s7 is exact on every CPU)",
    )
    parser.add_argument("--folder", default="/tmp/edgevpr_mixed_gp")
    parser.add_argument("--out", default="benchmarks/results/mixed_precision_gardens_point.json")
    args = parser.parse_args()
    shared, folder = Path(args.shared), Path(args.folder)
    gp = shared / "data" / "gardens_point"
    folder.mkdir(parents=True, exist_ok=True)
    overrides = {
        "model": model_overrides("mnv2_gem", shared),
        "data": {
            "database": str(gp / "day_right"),
            "queries": str(gp / "night_right"),
            "tolerance_frames": 2,
            "resize": 360,
        },
        "eval": {"latency_runs": 20},
    }
    calib = str(gp / "day_left")
    fp32 = evaluate(load_config(overrides=overrides))
    print(f"protocol: {fp32['protocol_name']}")
    print(f"fp32: R@1 {fp32['recall']['1']:.1f}, R@5 {fp32['recall']['5']:.1f}, {fp32['cost']['model_bytes']} bytes")
    previous = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    budgets = [float(b) for b in args.budgets.split(",") if b]
    corrected, weighting, rounding = args.bias_correction, args.weighting, args.int4_rounding
    layout = resolve_layout(args.int8_layout).name
    simulation_tag = (
        ("_biascorr" if corrected else "")
        + ("_gptq" if rounding == "gptq" else "")
        + ("" if layout == "u8s8" else f"_{layout}")
    )
    tag = simulation_tag + ("" if weighting == "plain" else f"_{weighting}")
    this_variant = (corrected, weighting, rounding, layout)

    def variant(row):  # rows of other search variants are kept as they are
        return (
            row.get("bias_correction", False),
            row.get("weighting", "plain"),
            row.get("int4_rounding", "nearest"),
            row.get("int8_layout", "u8s8"),
        )

    rows = [r for r in previous.get("rows", []) if r["budget"] not in budgets or variant(r) != this_variant]
    points = [(r["budget"], r["deployed_recall"]["1"]) for r in rows if variant(r) == this_variant]
    sensitivity_file = folder / f"sensitivity{simulation_tag}.json"  # shared by every budget and weighting

    simulator_options = MixedOptions(
        SearchSettings(8.0),
        calib,
        args.calib_count,
        bias_correction=corrected,
        int4_rounding=rounding,
        int8_layout=layout,
    )

    @functools.cache
    def simulator():  # budget-independent (the search settings play no part): built once, when first needed
        return build_simulator(load_config(overrides=overrides), simulator_options)[0]

    for budget in budgets:
        out = folder / f"mixed_B{budget:g}{tag}.json"
        config = load_config(overrides=overrides)
        options = MixedOptions(
            SearchSettings(budget, steps=args.steps, weighting=weighting),
            calib,
            args.calib_count,
            baselines=False,
            sensitivity_file=str(sensitivity_file),
            bias_correction=corrected,
            int4_rounding=rounding,
            int8_layout=layout,
        )
        found = search_precision(config, options, out, log=lambda m: None)
        onnx_file = folder / f"mixed_B{budget:g}{tag}.onnx"
        quantize_model(
            load_config(overrides=overrides),
            QuantizeConfig(precision="mixed", calib=calib, calib_count=args.calib_count, mixed_config=str(out)),
            str(onnx_file),
        )
        descriptors = {
            run: folder / f"descriptors_B{budget:g}{tag}_{run}" for run in ("deployed", "unfused", "simulated")
        }
        deployed, unfused = (
            evaluate(
                load_config(
                    overrides={
                        "model": {"onnx": str(onnx_file)},
                        "data": overrides["data"],
                        "eval": overrides["eval"]
                        | {"ort_optimization": level, "save_descriptors": str(descriptors[run])},
                    }
                )
            )
            for run, level in (("deployed", "all"), ("unfused", "none"))
        )
        simulator().set([layer["precision"] for layer in found["layers"]])
        simulated = evaluate(
            load_config(
                overrides=overrides | {"eval": overrides["eval"] | {"save_descriptors": str(descriptors["simulated"])}}
            ),
            model=simulator().model,
        )
        simulator().set(None)
        queries = {run: load_descriptor_set(path).queries for run, path in descriptors.items()}
        counts = {p: sum(layer["precision"] == p for layer in found["layers"]) for p in ("int4", "int8", "fp16")}
        row = {
            "budget": budget,
            "weighting": weighting,
            "average_bits": found["average_bits"],
            "average_bits_params": found["average_bits_params"],
            "layers": counts,
            "search_seconds": found["seconds"],
            "genetic_seconds": found["genetic_seconds"],
            "resumed": found["resumed"],
            "evaluations": found["evaluations"],
            "fitness": found["fitness"],
            "bytes": onnx_file.stat().st_size,
            "bias_correction": found["bias_correction"],
            "int4_rounding": found["int4_rounding"],
            "int8_layout": found["int8_layout"],
            "deployed_recall": deployed["recall"],
            "simulated_recall": simulated["recall"],
            "unfused_recall": unfused["recall"],
            "deployed_r1_vs_fp32": paired_recall_difference(
                fp32["per_query"]["first_positive_rank"], deployed["per_query"]["first_positive_rank"]
            ),
            "deployed_minus_simulated_r1": deployed["recall"]["1"] - simulated["recall"]["1"],
            "unfused_minus_simulated_r1": unfused["recall"]["1"] - simulated["recall"]["1"],
            "deployed_minus_unfused_r1": deployed["recall"]["1"] - unfused["recall"]["1"],
            "query_cosine": {
                f"{a}_vs_{b}": mean_cosine(queries[a], queries[b])
                for a, b in (("deployed", "simulated"), ("unfused", "simulated"), ("deployed", "unfused"))
            },
            "extraction_ms": deployed["cost"]["extraction_ms"],
        }
        rows.append(row)
        points.append((budget, deployed["recall"]["1"]))
        rows.sort(key=lambda r: (*variant(r), r["budget"]))
        write_json(
            args.out,
            previous
            | {
                "fp32": {"recall": fp32["recall"], "bytes": fp32["cost"]["model_bytes"]},
                "rows": rows,
                "protocol_name": fp32["protocol_name"],
            },
        )
        charts.bits_per_layer(
            [{"int4": 4, "int8": 8, "fp16": 16}[layer["precision"]] for layer in found["layers"]],
            f"benchmarks/results/mixed_bits_B{budget:g}{tag}.png",
            f"MobileNetV2+GeM bits per layer, B = {budget:g} ({weighting}), average {found['average_bits']:.2f}",
        )
        print(
            f"B={budget:>4g} ({weighting}, int4 {rounding}, int8 {layout})"
            f"{' (int4 bias correction)' if corrected else ''}: avg "
            f"{found['average_bits']:.2f} bits ({counts['int4']} int4, {counts['int8']} int8, "
            f"{counts['fp16']} fp16), {row['bytes']:>9d} bytes, deployed R@1 {deployed['recall']['1']:.1f} "
            f"R@5 {deployed['recall']['5']:.1f}, simulated R@1 {simulated['recall']['1']:.1f}, unfused ORT R@1 "
            f"{unfused['recall']['1']:.1f}, query cosine deployed/simulated "
            f"{row['query_cosine']['deployed_vs_simulated']:.5f}, "
            f"loss vs fp32 {fp32['recall']['1'] - deployed['recall']['1']:+.1f} "
            f"({_paired(row['deployed_r1_vs_fp32'])}), search {found['seconds']:.0f} s "
            f"{'(resumed) ' if found['resumed'] else ''}({found['evaluations']} evaluations, genetic steps "
            f"{found['genetic_seconds']:.0f} s over all runs)"
        )
    if points:
        charts.line(
            sorted(points),
            f"benchmarks/results/mixed_recall_vs_budget{tag}.png",
            f"MobileNetV2+GeM, Gardens Point night, int4 {rounding}" + (", bias correction" if corrected else ""),
            f"budget B (average bits, {weighting})",
            "Recall@1",
        )

    comparisons = []
    for budget in [float(b) for b in args.compare_budgets.split(",") if b]:
        sensitivity = layer_sensitivity(
            simulator(),
            sensitivity_file,  # measured again if of another simulation
            search_signature(load_config(overrides=overrides), simulator_options),
            print,
        )
        problem = Problem(
            sensitivity["params"], {"int4": sensitivity["int4"], "int8": sensitivity["int8"]}, budget, weighting
        )
        greedy = simulator().fitness(greedy_by_sensitivity(problem))
        ga, rs, evaluations = [], [], []
        for seed in range(args.seeds):
            _, best, state = genetic_search(
                problem,
                simulator().fitness,  # Algorithm 1 as published: random starts
                SearchSettings(
                    budget, steps=args.compare_steps, seed=seed, weighting=weighting, warm_start=False, fill=False
                ),
            )
            _, random_best, _ = random_search(problem, simulator().fitness, state.evaluations, seed)
            ga.append(best)
            rs.append(random_best)
            evaluations.append(state.evaluations)
        comparisons.append(
            {
                "budget": budget,
                "weighting": weighting,
                "int4_rounding": rounding,
                "ga": ga,
                "random": rs,
                "greedy": greedy,
                "steps": args.compare_steps,
                "evaluations_per_seed": [e for e in evaluations],
            }
        )
        print(
            f"B={budget:g}: fitness (minus descriptor MSE) GA {np.mean(ga):.5f} +/- {np.std(ga):.5f}, "
            f"random search {np.mean(rs):.5f} +/- {np.std(rs):.5f}, greedy {greedy:.5f} "
            f"({args.seeds} seeds): GA {'beats' if np.mean(ga) > np.mean(rs) else 'does not beat'} random"
        )
    write_json(
        args.out,
        previous
        | {
            "fp32": {"recall": fp32["recall"], "bytes": fp32["cost"]["model_bytes"]},
            "rows": rows,
            "comparisons": comparisons or previous.get("comparisons", []),
            "protocol_name": fp32["protocol_name"],
            "environment": environment(),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
