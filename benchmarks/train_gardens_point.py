"""Training acceptance on Gardens Point with a place-disjoint split.

Train: places (frames) 0-79 of database day_right with queries night_right and day_left;
validation (early stopping): places 80-99, day_right -> night_right. Places 100-199 are never
seen in training: test on them, day_right -> night_right, +/-2 frames. Start: ImageNet
MobileNetV2 from ../shared/weights (TF-SAME padding, mean = std = 0.5, BN folded, so frozen BN)
+ GeM, short side 360. Prints test Recall@1/5 before and after training.

    python benchmarks/train_gardens_point.py [--minutes 20] [--out benchmarks/results/train_gardens_point.json]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from quantization_gardens_point import model_overrides
from street_training import untrained
from train_synthetic import print_curve

from edgevpr.atomic import write_json
from edgevpr.config import load_config
from edgevpr.evaluate.environment import environment
from edgevpr.evaluate.runner import evaluate
from edgevpr.train.loop import train


def gardens_point_config(shared: Path, minutes: float, run_dir: str, train: dict | None = None):
    """The place-disjoint Gardens Point recipe above; ``train`` overrides train settings."""
    gp = shared / "data" / "gardens_point"
    return load_config(
        overrides={
            "model": model_overrides("mnv2_gem", shared),  # configs/mobilenetv2_gem.yaml
            "data": {
                "database": str(gp / "day_right"),
                "queries": str(gp / "night_right"),
                "tolerance_frames": 2,
                "frames": (100, 199),
                "resize": 360,
            },
            "val": {
                "database": str(gp / "day_right"),
                "queries": str(gp / "night_right"),
                "tolerance_frames": 2,
                "frames": (80, 99),
            },
            "train": {
                "database": str(gp / "day_right"),
                "queries": (str(gp / "night_right"), str(gp / "day_left")),
                "frames": (0, 79),
                "tolerance_frames": 2,
                "negative_frames": 10,
                "miner": "full",
                "negatives": 5,
                "refresh_every": 160,
                "queries_per_epoch": 160,
                "epochs": 100,
                "patience": 3,
                "lr": 1e-5,
                "frozen_bn": True,
                "freeze_stages": 8,
                "brightness": 0.2,
                "contrast": 0.2,
                "max_minutes": minutes,
                "run_dir": run_dir,
                "seed": 0,
                **(train or {}),
            },
            "eval": {"latency_runs": 20},
        }
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--run-dir", default="/tmp/edgevpr_train_gp_run")
    parser.add_argument("--out", default="benchmarks/results/train_gardens_point.json")
    args = parser.parse_args()
    shutil.rmtree(args.run_dir, ignore_errors=True)
    config = gardens_point_config(Path(args.shared), args.minutes, args.run_dir)
    before = evaluate(untrained(config), label="before training")
    print(f"test before training: {before['recall']}")
    metrics = train(config)
    after = metrics["test"]["recall"]
    print(f"protocol: {before['protocol_name']}")
    print_curve(metrics)
    print(
        f"test R@1/R@5 before {before['recall']['1']:.1f}/{before['recall']['5']:.1f}, "
        f"after {after['1']:.1f}/{after['5']:.1f} (best epoch {metrics['best_epoch']}, {metrics['finished']})"
    )
    ok = after["1"] >= before["recall"]["1"] and after["5"] >= before["recall"]["5"]
    print(f"after not lower than before: {'PASS' if ok else 'FAIL'}")
    write_json(
        args.out,
        {
            "before": before["recall"],
            "after": after,
            "metrics": metrics,
            "protocol_name": before["protocol_name"],
            "environment": environment(),
        },
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
