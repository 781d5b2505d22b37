"""Training acceptance on the synthetic street: a train split of places disjoint from the test
places, EfficientNet-Lite0 (ImageNet, packaged weights) + GeM, at most --minutes of training on
this CPU. Prints test Recall@1/5 of the same network before and after training, and the
validation curve (one point per epoch).

    python benchmarks/train_synthetic.py [--minutes 10] [--out benchmarks/results/train_synthetic.json]
"""

from __future__ import annotations

import argparse
import shutil
import sys

from street_training import street_config, untrained

from edgevpr.atomic import write_json
from edgevpr.evaluate.environment import environment
from edgevpr.evaluate.runner import evaluate
from edgevpr.train.loop import train


def print_curve(metrics: dict) -> None:
    print("epoch  loss     val R@1  val R@5  minutes")
    start = metrics["initial_val_recall"]
    print(f"0      -        {start['1']:7.1f}  {start['5']:7.1f}  0.0")
    elapsed = 0.0
    for entry in metrics["history"]:
        elapsed += entry["seconds"] / 60
        print(
            f"{entry['epoch']:<6d} {entry['loss']:.4f}   {entry['val_recall']['1']:7.1f}  "
            f"{entry['val_recall']['5']:7.1f}  {elapsed:.1f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--root", default="/tmp/edgevpr_train_street")
    parser.add_argument("--run-dir", default="/tmp/edgevpr_train_street_run")
    parser.add_argument("--out", default="benchmarks/results/train_synthetic.json")
    args = parser.parse_args()
    shutil.rmtree(args.run_dir, ignore_errors=True)
    config = street_config(args.root, args.run_dir, args.minutes)
    before = evaluate(untrained(config), label="before training")
    print(f"test before training: {before['recall']}")
    metrics = train(config)
    after = metrics["test"]["recall"]
    gain = after["1"] - before["recall"]["1"]
    print(f"protocol: {before['protocol_name']}")
    print_curve(metrics)
    print(
        f"test R@1/R@5 before {before['recall']['1']:.1f}/{before['recall']['5']:.1f}, "
        f"after {after['1']:.1f}/{after['5']:.1f} (best epoch {metrics['best_epoch']}, {metrics['finished']})"
    )
    ok = gain >= 15.0
    print(f"Recall@1 gain {gain:+.1f} points (goal >= +15): {'PASS' if ok else 'FAIL'}")
    write_json(
        args.out,
        {
            "before": before["recall"],
            "after": after,
            "gain_recall1": gain,
            "metrics": metrics,
            "protocol_name": before["protocol_name"],
            "training_minutes_limit": args.minutes,
            "environment": environment(),
        },
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
