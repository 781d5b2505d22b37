"""Negative mining side by side (Berton et al. 2022 Table 6) on the synthetic street: random, partial
(a cache of --cache-database database images plus the round's queries and positives) and
full (the whole database), each trained for the same --minutes from the same start. Prints
each strategy's cache cost (images encoded, seconds, bytes, per cache and per epoch) and the
resulting test Recall@1/5.

    python benchmarks/mining_strategies.py [--minutes 5] [--cache-database 100]
                                           [--out benchmarks/results/mining_strategies.json]
"""

from __future__ import annotations

import argparse
import shutil
import sys

from street_training import street_config

from edgevpr.atomic import write_json
from edgevpr.evaluate.environment import environment
from edgevpr.train.loop import train


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--cache-database", type=int, default=100)
    parser.add_argument("--root", default="/tmp/edgevpr_train_street")
    parser.add_argument("--out", default="benchmarks/results/mining_strategies.json")
    parser.add_argument("--strategies", default="random,partial,full")
    args = parser.parse_args()
    rows = []
    for strategy in args.strategies.split(","):
        run_dir = f"/tmp/edgevpr_mining_{strategy}"
        shutil.rmtree(run_dir, ignore_errors=True)
        config = street_config(
            args.root, run_dir, args.minutes, train={"miner": strategy, "cache_database": args.cache_database}
        )
        metrics = train(config)
        caches = [e["cache"] for e in metrics["history"]]
        builds = sum(c["builds"] for c in caches)
        rows.append(
            {
                "miner": strategy,
                "epochs": metrics["epochs"],
                "batches": sum(e["batches"] for e in metrics["history"]),
                "cache_builds": builds,
                "cache_images_per_build": sum(c["images"] for c in caches) / builds,
                "cache_seconds_per_build": sum(c["seconds"] for c in caches) / builds,
                "cache_seconds_share": sum(c["seconds"] for c in caches)
                / sum(e["seconds"] for e in metrics["history"]),
                "cache_max_bytes": max(c["max_bytes"] for c in caches),
                "test_recall": metrics["test"]["recall"],
                "protocol_name": metrics["test"]["protocol_name"],
            }
        )
    print(f"protocol: {rows[0]['protocol_name']}; {args.minutes:g} minutes of training each")
    print("miner    epochs batches  images/cache  s/cache  cache share  cache bytes  test R@1  test R@5")
    for r in rows:
        print(
            f"{r['miner']:<8s} {r['epochs']:>6d} {r['batches']:>7d}  {r['cache_images_per_build']:>12.0f}  "
            f"{r['cache_seconds_per_build']:>7.1f}  {100 * r['cache_seconds_share']:>10.1f}%  "
            f"{r['cache_max_bytes']:>11d}  {r['test_recall']['1']:>8.1f}  {r['test_recall']['5']:>8.1f}"
        )
    write_json(args.out, {"rows": rows, "minutes": args.minutes, "environment": environment()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
