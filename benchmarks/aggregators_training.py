"""The aggregators of the field side by side, each trained briefly with the same backbone and
budget (epochs, not minutes: the same work under any machine load): ImageNet MobileNetV2 (the
shared TFLite weights) + GeM, NetVLAD, MixVPR (Ali-bey et al. 2023) and BoQ (Ali-bey et al.
2024), trained on IE Tower's train split (validation on its val split; best.pt is the best
validation epoch, the untrained start included), then evaluated in fp32 (PyTorch) and int8 (ONNX
Runtime, calibrated on Gardens Point day_left) on Gardens Point day_right -> night_right (all 200
places, +/-2 frames: no Gardens Point image is trained on) and IE Tower's test split.

Every model sees 288 x 384 images (MixVPR's mixers are sized for one map: 9 x 12 cells at
stride 32). Descriptor sizes are kept close: GeM 1280, NetVLAD 16 clusters (20480), MixVPR
1024 (256 channels x 4 rows), BoQ 1024 (128 channels x 8 rows). SALAD is not in the table: it
reads a ViT's class token, and no DINOv2 weights can be had here; a ViT trained from scratch in
minutes on two cores would measure nothing.

    python benchmarks/aggregators_training.py [--epochs 1] [--aggregators gem,netvlad,mixvpr,boq]
        [--eval-only] [--sets gardens_point_night,ie_tower_test]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from labelled_sets import evaluation_sets
from quantization_gardens_point import model_overrides

from edgevpr.atomic import write_json
from edgevpr.config import load_config
from edgevpr.evaluate.environment import environment
from edgevpr.evaluate.precisions import compare_precisions
from edgevpr.train.loop import train

SIZE = (288, 384)
AGGREGATORS = {
    "gem": {},
    "netvlad": {"clusters": 16},
    "mixvpr": {"in_h": 9, "in_w": 12, "out_channels": 256, "out_rows": 4},
    "boq": {"proj_channels": 128, "row_dim": 8},
}


def run_config(shared: Path, aggregator: str, epochs: int, run_dir: str, test: dict):
    """The model, IE Tower training and one test set (``test``: the data section)."""
    tower = shared / "data" / "ie_tower"
    model = model_overrides("mnv2_gem", shared) | {
        "aggregator": {"name": aggregator, "params": AGGREGATORS[aggregator]}
    }
    return load_config(
        overrides={
            "model": model,
            "data": {"size": list(SIZE)} | test,
            "train": {
                "dataset": str(tower),
                "miner": "full",
                "negatives": 5,
                "refresh_every": 108,
                "queries_per_epoch": 108,
                "epochs": epochs,
                "patience": epochs,
                "lr": 1e-4,
                "frozen_bn": True,
                "freeze_stages": 8,
                "brightness": 0.2,
                "contrast": 0.2,
                "run_dir": run_dir,
                "seed": 0,
            },
            "eval": {"latency_runs": 10},
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    parser.add_argument("--epochs", type=int, default=1, help="The same budget for each: epochs of 108 queries.")
    parser.add_argument("--aggregators", default=",".join(AGGREGATORS))
    parser.add_argument("--work", default="/tmp/edgevpr-aggregators-training")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "aggregators_training.json"))
    parser.add_argument("--eval-only", action="store_true", help="Evaluate the checkpoints --work holds; no training.")
    parser.add_argument("--sets", default="gardens_point_night,ie_tower_test")
    args = parser.parse_args()
    shared = Path(args.shared)
    gp = shared / "data" / "gardens_point"
    tests = evaluation_sets(shared)
    calib = str(gp / "day_left")
    variants = [("int8", "cpu", "percentile")]  # the fp32 PyTorch row comes first anyway
    results = {}
    for aggregator in args.aggregators.split(","):
        run_dir = str(Path(args.work) / aggregator)
        first = next(iter(tests.values()))
        if args.eval_only:
            metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
            metrics = train(run_config(shared, aggregator, args.epochs, run_dir, first))
        checkpoint = str(Path(run_dir) / "best.pt")
        entry = {"best_epoch": metrics["best_epoch"], "finished": metrics["finished"], "sets": {}}
        for name, test in tests.items():
            if name not in args.sets.split(","):
                continue
            config = run_config(shared, aggregator, args.epochs, run_dir, test)
            config.model = load_config(overrides={"model": {"checkpoint": checkpoint}}).model
            rows = compare_precisions(config, calib, 50, variants, log=lambda message: None)
            entry["sets"][name] = rows
            fp32, int8 = rows
            change = int8["r1_vs_fp32"]
            print(
                f"{aggregator:<8} {name:<20} fp32 R@1/5 {fp32['recall']['1']:.1f}/{fp32['recall']['5']:.1f}  "
                f"int8 {int8['recall']['1']:.1f}/{int8['recall']['5']:.1f}  cos mean/p5 "
                f"{int8['mean_cosine_to_fp32']:.3f}/{int8['cosine_p5_to_fp32']:.3f}  "
                f"+{change['gained']}/-{change['lost']} p {change['mcnemar_p']:.2g}  "
                f"(best epoch {metrics['best_epoch']}, {metrics['finished']})",
                flush=True,
            )
        results[aggregator] = entry
        write_json(
            args.out, {"size": list(SIZE), "epochs": args.epochs, "results": results, "environment": environment()}
        )


if __name__ == "__main__":
    main()
