"""int8 layouts (``edgevpr.runtime.int8_layout``) on this CPU and on an emulated AVX2 CPU:
recall, fidelity and speed.

MobileNetV2 + GeM (shared weights, short side 360) on Gardens Point day_right -> night_right,
+/-2 frames; calibration on 50 day_left images, ``quantize``'s defaults (bias correction, mse
ranges). For each layout:
- R@1/5/10 and the paired change against fp32 PyTorch (queries gained and lost, McNemar p,
  95 % interval), mean and lowest cosine of the descriptors to fp32's;
- with ``--emulate CPU`` (default ``EPYC-Rome``: AVX2, no AVX-512, no VNNI) and qemu-user
  installed (``apt install qemu-user``): the same evaluation under ``qemu-x86_64 -cpu CPU``,
  whose CPUID shows ONNX Runtime that CPU, so that MLAS runs its AVX2 kernels. Recall only
  (emulated time means nothing), and whether the descriptors equal this machine's bit for bit.
  Slow: about 25 minutes per layout on 2 cores;
- speed at 480x640 and at the evaluated size (360x640): PyTorch eager fp32, ONNX Runtime fp32
  and each int8 layout, median of interleaved rounds, at each ``--speed-threads`` count.

    python benchmarks/int8_layouts.py [--emulate EPYC-Rome | --emulate none] [--emulate-layouts u8s8,u8s7]
        [--speed-threads 2,1] [--speed-only | --no-speed]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from quantization_gardens_point import SHARED, model_overrides
from runtime_speed import compare_runtimes, format_speed

from edgevpr.atomic import write_json
from edgevpr.config import QuantizeConfig, load_config
from edgevpr.evaluate.environment import environment
from edgevpr.evaluate.runner import evaluate
from edgevpr.evaluate.significance import paired_recall_difference
from edgevpr.models import build_model
from edgevpr.quantize.pipeline import quantize_model

LAYOUTS = ("u8s8", "u8s7", "s8s8")


def _evaluate(config, folder: Path) -> tuple[dict, np.ndarray]:
    config.output.save_descriptors, config.output.out = str(folder), None
    result = evaluate(config)
    return result, _descriptors(folder)


EMULATED_FLAGS = {"EPYC-Rome": "sse4_2 avx avx2 fma", "Haswell": "sse4_2 avx avx2 fma"}


def _descriptors(folder: Path) -> np.ndarray:
    return np.concatenate([np.load(folder / "database.npy"), np.load(folder / "queries.npy")])


def _emulated(cpu: str, onnx: Path, data: Path, folder: Path, threads: int) -> tuple[dict, np.ndarray]:
    out = folder / "result.json"
    command = [
        "qemu-x86_64",
        "-cpu",
        cpu,
        sys.executable,
        "-m",
        "edgevpr.cli",
        "eval",
        "--onnx",
        str(onnx),
        "--database",
        str(data / "day_right"),
        "--queries",
        str(data / "night_right"),
        "--tolerance-frames",
        "2",
        "--latency-runs",
        "20",
        "--threads",
        str(threads),
        "--out",
        str(out),
        "--save-descriptors",
        str(folder),
    ]
    # qemu-user shows the host's /proc/cpuinfo: name the emulated CPU's flags for edgevpr
    flags = EMULATED_FLAGS.get(cpu, "")
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "EDGEVPR_CPU_FLAGS": flags})
    if done.returncode:
        raise SystemExit(f"emulated evaluation failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.read_text()), _descriptors(folder)


def _row(result: dict, descriptors: np.ndarray, reference: dict, reference_descriptors: np.ndarray) -> dict:
    ranks, base = result["per_query"]["first_positive_rank"], reference["per_query"]["first_positive_rank"]
    cosines = np.sum(descriptors * reference_descriptors, axis=1)
    return {
        "recall": {k: result["recall"][k] for k in ("1", "5", "10")},
        "protocol_name": result["protocol_name"],
        "int8_kernels": result["environment"]["int8_kernels"],
        "r1_vs_fp32": paired_recall_difference(base, ranks, 1),
        "r5_vs_fp32": paired_recall_difference(base, ranks, 5),
        "mean_cosine_to_fp32": float(cosines.mean()),
        "cosine_p5_to_fp32": float(np.percentile(cosines, 5)),
        "min_cosine_to_fp32": float(cosines.min()),
        "model_bytes": result["cost"]["model_bytes"],
    }


def _print_row(name: str, row: dict) -> None:
    def change(c):
        return (
            f"{c['difference']:+.1f} (+{c['gained']}/-{c['lost']}, p {c['mcnemar_p']:.2f}, "
            f"{c['ci95'][0]:+.1f} to {c['ci95'][1]:+.1f})"
        )

    r = row["recall"]
    print(
        f"{name:<22} R@1/5/10 {r['1']:5.1f} {r['5']:5.1f} {r['10']:5.1f}  R@1 {change(row['r1_vs_fp32'])}  "
        f"R@5 {change(row['r5_vs_fp32'])}  cosine mean {row['mean_cosine_to_fp32']:.4f} "
        f"p5 {row['cosine_p5_to_fp32']:.4f} min {row['min_cosine_to_fp32']:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(SHARED))
    parser.add_argument("--model", default="mnv2_gem")
    parser.add_argument("--calib-count", type=int, default=50)
    parser.add_argument("--emulate", default="EPYC-Rome", help="qemu CPU model without VNNI, or 'none'")
    parser.add_argument("--emulate-layouts", default="u8s8,u8s7")
    parser.add_argument("--speed-threads", default=f"{torch.get_num_threads()},1")
    parser.add_argument("--speed-only", action="store_true", help="only measure speed; keep the recall rows")
    parser.add_argument("--no-speed", action="store_true", help="only the recall rows; keep the speed rows")
    parser.add_argument("--out", default="benchmarks/results/int8_layouts.json")
    args = parser.parse_args()
    shared, threads = Path(args.shared), list(dict.fromkeys(int(t) for t in args.speed_threads.split(",")))
    data = shared / "data" / "gardens_point"
    previous = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    report = {
        "source": "benchmarks/int8_layouts.py",
        "environment": environment(),
        "rows": previous.get("rows", {}),
        "emulated_rows": previous.get("emulated_rows", {}),
        "speed": previous.get("speed", []),
    }
    config = load_config(
        overrides={
            "model": model_overrides(args.model, shared),
            "data": {
                "database": str(data / "day_right"),
                "queries": str(data / "night_right"),
                "tolerance_frames": 2,
                "resize": 360,
            },
        }
    )
    with tempfile.TemporaryDirectory(prefix="edgevpr-layouts-") as scratch:
        folder = Path(scratch)
        files = {}
        for layout in ("fp32", *LAYOUTS):
            files[layout] = folder / f"{layout}.onnx"
            options = QuantizeConfig(
                precision="int8" if layout != "fp32" else "fp32",
                calib=str(data / "day_left"),
                calib_count=args.calib_count,
                int8_layout=layout if layout != "fp32" else "auto",
            )
            quantize_model(load_config(overrides=config.to_dict()), options, str(files[layout]))
        if not args.speed_only:
            reference, reference_descriptors = _evaluate(load_config(overrides=config.to_dict()), folder / "torch")
            print(
                f"protocol {reference['protocol_name']}; fp32 R@1/5/10 "
                + " ".join(f"{reference['recall'][k]:.1f}" for k in ("1", "5", "10"))
            )
            native = {}
            for layout in LAYOUTS:
                deployed = load_config(overrides=config.to_dict())
                deployed.model.onnx, deployed.data.resize = str(files[layout]), None
                result, native[layout] = _evaluate(deployed, folder / layout)
                report["rows"][layout] = _row(result, native[layout], reference, reference_descriptors)
                _print_row(f"{layout} ({report['rows'][layout]['int8_kernels']})", report["rows"][layout])
            if args.emulate != "none" and shutil.which("qemu-x86_64"):
                for layout in args.emulate_layouts.split(","):
                    result, descriptors = _emulated(
                        args.emulate, files[layout], data, folder / f"emulated_{layout}", threads[0]
                    )
                    row = _row(result, descriptors, reference, reference_descriptors) | {
                        "cpu_model": args.emulate,
                        "equal_to_native": bool(np.array_equal(descriptors, native[layout])),
                        "max_abs_difference_to_native": float(np.abs(descriptors - native[layout]).max()),
                    }
                    report["emulated_rows"][layout] = row
                    _print_row(f"{layout} ({row['int8_kernels']}, emulated)", row)
                    print(
                        f"{'':<22} equal to this machine's descriptors: {row['equal_to_native']} "
                        f"(max difference {row['max_abs_difference_to_native']:.2g})"
                    )
            elif args.emulate != "none":
                print("qemu-x86_64 not found (apt install qemu-user): no emulated rows")
            write_json(args.out, report)
        if args.no_speed:
            print(f"written: {args.out}")
            return
        model = build_model(load_config(overrides=config.to_dict()).model)
        report["speed"] = []
        for size in ((480, 640), (360, 640)):
            for count in threads:
                speed = compare_runtimes(
                    model, {"ort_fp32": str(files["fp32"]), **{f"ort_{k}": str(files[k]) for k in LAYOUTS}}, size, count
                )
                report["speed"].append(speed)
                print(format_speed(speed))
    write_json(args.out, report)
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
