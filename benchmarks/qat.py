"""What quantization-aware fine-tuning (``train --qat``) buys: ImageNet MobileNetV2 (the shared
TFLite weights) + GeM fine-tuned on IE Tower's train split with the same seed and budget, once
plainly and once with its weights fake-quantized on the u8s7 grid (7-bit weights, exact on every
x86 CPU: where nearest rounding loses most), then both quantized to int8 u8s7 (bias correction
on, calibrated on Gardens Point day_left) and evaluated in fp32 (PyTorch) and int8 (ONNX
Runtime) on Gardens Point night (no Gardens Point image is trained on) and IE Tower's test
split. The last epoch's weights are compared (``last.pt``), not the best validation epoch, so
both models have trained for the same steps.

    python benchmarks/qat.py [--epochs 2] [--sets gardens_point_night,ie_tower_test]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from aggregators_training import run_config
from labelled_sets import evaluation_sets

from edgevpr.atomic import write_json
from edgevpr.config import load_config
from edgevpr.evaluate.environment import environment
from edgevpr.evaluate.precisions import compare_precisions
from edgevpr.evaluate.significance import paired_recall_difference
from edgevpr.train.loop import train

HERE = Path(__file__).resolve().parent
LAYOUT = "u8s7"


def configured(shared: Path, epochs: int, run_dir: str, test: dict, qat: bool):
    config = run_config(shared, "gem", epochs, run_dir, test)
    config.train.qat = qat
    config.train.freeze_stages = 0  # every layer adapts to its grid
    config.train.lr = 1e-5
    config.quantize.int8_layout = LAYOUT
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(HERE.parent.parent / "shared"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--sets", default="gardens_point_night,ie_tower_test")
    parser.add_argument("--work", default="/tmp/edgevpr-qat")
    parser.add_argument("--out", default=str(HERE / "results" / "qat.json"))
    args = parser.parse_args()
    shared = Path(args.shared)
    tests = evaluation_sets(shared)
    calib = str(shared / "data" / "gardens_point" / "day_left")
    first = next(iter(tests.values()))
    results = {}
    for qat in (False, True):
        run_dir = str(Path(args.work) / ("qat" if qat else "plain"))
        shutil.rmtree(run_dir, ignore_errors=True)
        metrics = train(configured(shared, args.epochs, run_dir, first, qat))
        label = "qat" if qat else "plain"
        results[label] = {"finished": metrics["finished"], "epochs": args.epochs, "sets": {}}
        for name in args.sets.split(","):
            config = configured(shared, args.epochs, run_dir, tests[name], qat)
            config.model = load_config(overrides={"model": {"checkpoint": str(Path(run_dir) / "last.pt")}}).model
            rows = compare_precisions(config, calib, 50, [("int8", "cpu", "percentile")], log=lambda m: None)
            results[label]["sets"][name] = rows
            fp32, int8 = rows
            change = int8["r1_vs_fp32"]
            print(
                f"{label:<6} {name:<20} fp32 R@1/5 {fp32['recall']['1']:.1f}/{fp32['recall']['5']:.1f}  "
                f"int8 {LAYOUT} {int8['recall']['1']:.1f}/{int8['recall']['5']:.1f}  cos mean/p5/min "
                f"{int8['mean_cosine_to_fp32']:.4f}/{int8['cosine_p5_to_fp32']:.4f}/{int8['cosine_min_to_fp32']:.4f}"
                f"  +{change['gained']}/-{change['lost']} p {change['mcnemar_p']:.2g}",
                flush=True,
            )
        write_json(args.out, {"layout": LAYOUT, "results": results, "environment": environment()})
    for name in args.sets.split(","):  # int8 after QAT against int8 without it, query by query
        ranks = [results[k]["sets"][name][1]["first_positive_rank"] for k in ("plain", "qat")]
        change = paired_recall_difference(*ranks)
        results.setdefault("qat_vs_plain_int8", {})[name] = change
        print(
            f"{name}: int8 R@1 after QAT vs without: +{change['gained']}/-{change['lost']} p {change['mcnemar_p']:.2g}"
        )
    write_json(args.out, {"layout": LAYOUT, "results": results, "environment": environment()})


if __name__ == "__main__":
    main()
