"""Quantization acceptance on Gardens Point (database day_right, queries night_right, +/-2
frames), calibration on day_left images: every precision side by side for MobileNetV2 + GeM,
MobileNetV2 + MAC and EfficientNet-Lite0 + GeM, then int8 ONNX Runtime against PyTorch eager
fp32 extraction at 480x640, same thread count (all cores, then 1), same run.

    python benchmarks/quantization_gardens_point.py [--models mnv2_gem,mnv2_mac,lite0_gem] [--calib-count 50]
        [--keep-float 4] [--keep-float-only | --int4-only | --speed-only] [--speed-threads 2,1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

import edgevpr.research  # noqa: F401  (registers the sensitivity ranking --keep-float uses)
from edgevpr.atomic import write_json
from edgevpr.config import QuantizeConfig, load_config
from edgevpr.evaluate.cost import torch_runner
from edgevpr.evaluate.environment import environment
from edgevpr.evaluate.precisions import (
    DEFAULT_VARIANTS,
    compare_precisions,
    format_rows,
)
from edgevpr.models import build_model
from edgevpr.quantize.pipeline import quantize_model
from edgevpr.runtime.onnx_model import OnnxModel
from edgevpr.timing import time_interleaved

SHARED = Path(__file__).resolve().parents[2] / "shared"
RECIPES = Path(__file__).resolve().parents[1] / "configs"


def model_overrides(name: str, shared: Path) -> dict:
    """The model section of a recipe in configs/ (mnv2_gem, mnv2_mac: configs/mobilenetv2_gem.yaml;
    lite0_gem: configs/efficientnet_lite0_gem.yaml), its aggregator and shared weights set here.
    The weight files bring their input contract (edgevpr.models.known_weights)."""
    recipe = RECIPES / ("mobilenetv2_gem.yaml" if name.startswith("mnv2") else "efficientnet_lite0_gem.yaml")
    model = load_config(recipe).model
    weights = shared / "weights" / Path(model.weights).name
    return {"backbone": model.backbone, "aggregator": name.split("_")[1], "weights": str(weights)}


def speed_at_480x640(
    config, calib: str, calib_count: int, calibration: str, thread_counts: list[int], repeats: int = 5
) -> dict:
    """ORT int8 (cpu target) against PyTorch eager fp32, both at batch 1, 480x640, for each thread
    count (the same for both). Timed in alternating rounds, ``repeats`` times: this VM's speed
    drifts, and PyTorch's fp32 time drifts more than ORT's int8, so one ratio is reported with
    its spread. The first thread count's entry is the headline; each count's is under ``by_threads``."""
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "int8.onnx")
        config.data.size, config.data.resize = (480, 640), None
        quantize_model(config, QuantizeConfig("int8", "cpu", calibration, calib, calib_count), path)
        model = build_model(config.model).eval()
        images = np.zeros((1, 3, 480, 640), dtype=np.float32)
        by_threads = {}
        for threads in thread_counts:
            torch.set_num_threads(threads)
            ort_model = OnnxModel(path, threads=threads)
            runners = {"ort": lambda: ort_model(images), "torch": torch_runner(model, (1, 3, 480, 640))}
            timings = [time_interleaved(runners, rounds=2) for _ in range(repeats)]
            ort_ms = [t["ort"]["median_ms"] for t in timings]
            torch_ms = [t["torch"]["median_ms"] for t in timings]
            ratios = [a / b for a, b in zip(torch_ms, ort_ms)]
            by_threads[str(threads)] = {
                "threads": threads,
                "torch_fp32_ms": float(np.median(torch_ms)),
                "ort_int8_ms": float(np.median(ort_ms)),
                "speedup": float(np.median(ratios)),
                "speedups": ratios,
                "torch_fp32_ms_each": torch_ms,
                "ort_int8_ms_each": ort_ms,
            }
        torch.set_num_threads(thread_counts[0])
    return by_threads[str(thread_counts[0])] | {"by_threads": by_threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(SHARED))
    parser.add_argument("--models", default="mnv2_gem,mnv2_mac,lite0_gem")
    parser.add_argument("--calib-count", type=int, default=50)
    parser.add_argument("--speed-calibration", default="percentile")
    parser.add_argument(
        "--speed-threads",
        default=f"{torch.get_num_threads()},1",
        help="thread counts of the 480x640 speed comparison; the first is the headline",
    )
    parser.add_argument(
        "--keep-float",
        type=int,
        default=4,
        help="also int8 cpu with this many of the most sensitive layers in float (0: no such rows)",
    )
    parser.add_argument("--speed-only", action="store_true", help="only re-measure the 480x640 speed; keep the tables")
    parser.add_argument(
        "--keep-float-only",
        action="store_true",
        help="only re-run fp32 and the --keep-float rows; keep the other rows and the speed",
    )
    parser.add_argument(
        "--int4-only", action="store_true", help="only re-run fp32 and the int4 rows; keep the other rows and the speed"
    )
    parser.add_argument("--out", default="benchmarks/results/quantization_gardens_point.json")
    args = parser.parse_args()
    shared = Path(args.shared)
    threads = list(dict.fromkeys(int(t) for t in args.speed_threads.split(",")))  # "1,1" on a 1-core machine
    data = shared / "data" / "gardens_point"
    calib = str(data / "day_left")
    previous = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    report = {
        "source": "benchmarks/quantization_gardens_point.py",
        "environment": environment(),
        "models": previous.get("models", {}),
    }  # models not re-run keep their tables
    for name in args.models.split(","):
        config = load_config(
            overrides={
                "model": model_overrides(name, shared),
                "data": {
                    "database": str(data / "day_right"),
                    "queries": str(data / "night_right"),
                    "tolerance_frames": 2,
                    "resize": 360,
                },
            }
        )
        entry = report["models"].setdefault(name, {"checks": {}})  # a model with no table yet gets its speed alone

        def measured_speed():  # every measurement joins the model's list of runs
            speed = speed_at_480x640(config, calib, args.calib_count, args.speed_calibration, threads)
            entry["speed_480x640_runs"] = _with_this_run(entry.get("speed_480x640_runs", []), speed)
            return speed

        if args.speed_only:
            speed = measured_speed()
            entry["speed_480x640"] = speed
            entry["checks"] |= _speed_checks(speed)
            _print_speed(name, speed)
            for t in speed["by_threads"]:
                print(
                    f"{name}, {t} threads, speedup of every run kept: "
                    + ", ".join(
                        f"{run[f'{t}_threads']['speedup']:.1f}x"
                        for run in entry["speed_480x640_runs"]
                        if f"{t}_threads" in run
                    )
                )
            write_json(args.out, report)
            continue
        keep_float_variants = (
            [("int8", "cpu", c, args.keep_float) for c in ("minmax", "percentile")] if args.keep_float else []
        )
        if args.keep_float_only or args.int4_only:
            variants = keep_float_variants if args.keep_float_only else [v for v in DEFAULT_VARIANTS if v[0] == "int4"]
            fresh = compare_precisions(config, calib, args.calib_count, variants, log=lambda m: None)
            rerun = {(r["precision"], r["target"], r["calibration"], bool(r.get("keep_float"))) for r in fresh[1:]}
            rows = fresh[:1] + [
                r
                for r in entry.get("rows", [])[1:]
                if (r["precision"], r["target"], r["calibration"], bool(r.get("keep_float"))) not in rerun
            ]
            rows += fresh[1:]
            speed = entry.get("speed_480x640") or measured_speed()
        else:
            rows = compare_precisions(
                config, calib, args.calib_count, DEFAULT_VARIANTS + keep_float_variants, log=lambda m: None
            )
            speed = measured_speed()
        fp32 = rows[0]
        checks = _speed_checks(speed)
        for label, kept in (("int8_cpu", False), ("int8_cpu_keep_float", True)):
            candidates = [
                r
                for r in rows
                if r["precision"] == "int8" and r["target"] == "cpu" and bool(r.get("keep_float")) == kept
            ]
            if not candidates:
                continue
            best = max(candidates, key=lambda r: r["recall"]["1"] + r["recall"]["5"])
            checks |= {
                f"{label}_r1_loss": fp32["recall"]["1"] - best["recall"]["1"],
                f"{label}_r5_loss": fp32["recall"]["5"] - best["recall"]["5"],
                f"{label}_calibration": best["calibration"],
                f"{label}_size_ratio": fp32["model_bytes"] / best["model_bytes"],
            }
        entry.update(rows=rows, speed_480x640=speed, checks=checks)
        print(f"\n== {name}: {rows[0]['protocol_name']}, calibration {args.calib_count} day_left images")
        print(format_rows(rows))
        _print_speed(name, speed)
        for label in ("int8_cpu", "int8_cpu_keep_float"):
            if f"{label}_r1_loss" in checks:
                print(
                    f"best {label} ({checks[f'{label}_calibration']}): R@1 loss {checks[f'{label}_r1_loss']:+.1f}, "
                    f"R@5 loss {checks[f'{label}_r5_loss']:+.1f}, {checks[f'{label}_size_ratio']:.2f}x smaller"
                )
        write_json(args.out, report)
    print(f"written: {args.out}")


def _with_this_run(runs: list[dict], speed: dict) -> list[dict]:
    """Every run's speedups, kept: this VM's PyTorch time drifts by up to 2x between runs minutes
    apart, so one run's ratio says little without the others."""
    this = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **{
            f"{t}_threads": {
                "speedup": s["speedup"],
                "torch_fp32_ms": s["torch_fp32_ms"],
                "ort_int8_ms": s["ort_int8_ms"],
            }
            for t, s in speed.get("by_threads", {}).items()
        },
    }
    return runs + [this]


def _speed_checks(speed: dict) -> dict:
    checks = {"speedup_480x640": speed["speedup"]}
    return checks | {f"speedup_480x640_{t}_threads": s["speedup"] for t, s in speed.get("by_threads", {}).items()}


def _print_speed(name: str, speed: dict) -> None:
    for each in speed.get("by_threads", {"": speed}).values():
        print(
            f"{name} 480x640, {each['threads']} threads: PyTorch eager fp32 {each['torch_fp32_ms']:.1f} ms, "
            f"ORT int8 cpu {each['ort_int8_ms']:.1f} ms: {each['speedup']:.1f}x (median of "
            f"{len(each['speedups'])}; {min(each['speedups']):.1f}x to {max(each['speedups']):.1f}x)"
        )


if __name__ == "__main__":
    main()
