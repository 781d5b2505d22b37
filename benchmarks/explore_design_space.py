"""Grainge et al. 2024's study in small on Gardens Point (sweeps/design_space_gardens_point.yaml): run the sweep
into a store (finished cells are skipped on a re-run), write the HTML report, print the
Pareto fronts, the design-rule checks and recommendations for three device budgets.

    python benchmarks/explore_design_space.py [--store benchmarks/results/design_space.db]
                                         [--report benchmarks/results/design_space_report.html]
"""

from __future__ import annotations

import argparse
import sys

from edgevpr.explore.pareto import AXES, fronts
from edgevpr.explore.recommend import format_recommendation, recommend
from edgevpr.explore.report import write_report
from edgevpr.explore.rules import check_all
from edgevpr.explore.store import Store
from edgevpr.explore.sweep import run_sweep
from edgevpr.explore.sweep_file import load_sweep
from edgevpr.search.advise import load_scaling
from edgevpr.search.cost_model import fit_cost_model

BUDGETS = [  # (memory bytes, latency ms, map size): a microcontroller-class board, a phone, a robot PC
    (8e6, 60.0, 1_000),
    (64e6, 100.0, 20_000),
    (1e9, 500.0, 1_000_000),
]


def name(row: dict) -> str:
    return f"{row['backbone']}+{row['aggregator']} D={row['descriptor_dim']} {row['precision']}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", default="sweeps/design_space_gardens_point.yaml")
    parser.add_argument("--store", default="benchmarks/results/design_space.db")
    parser.add_argument("--report", default="benchmarks/results/design_space_report.html")
    parser.add_argument("--map-size", type=int, default=100_000)
    parser.add_argument("--scaling", default="benchmarks/results/search_scaling.json")
    args = parser.parse_args()
    store = Store(args.store)
    run_sweep(load_sweep(args.sweep), store)
    rows = store.rows()
    print(f"{len(rows)} runs in {args.store} (integrity: {store.integrity()})")
    print(f"{'run':<36s} {'R@1':>5s} {'R@5':>5s} {'model MB':>9s} {'extract ms':>10s}")
    for row in sorted(rows, key=lambda r: -r["recall_1"]):
        print(
            f"{name(row):<36s} {row['recall_1']:5.1f} {row['recall_5']:5.1f} {row['model_bytes'] / 1e6:9.2f} "
            f"{row['extraction_ms']:10.1f}"
        )
    for axis, front in fronts(rows, args.map_size).items():
        print(
            f"Pareto front, Recall@1 vs {AXES[axis][0]} (N = {args.map_size}): "
            + "; ".join(f"{name(r)} ({r['recall_1']:.1f}, {r['cost']:.4g})" for r in front)
        )
    for rule in check_all(rows):
        detail = (
            f" ({rule['pairs']} pairs, mean R@1 difference {rule['mean_recall1_difference']:+.1f})"
            if rule["pairs"]
            else ""
        )
        print(f"rule: {rule['claim']}: {rule['verdict']}{detail}")
    measured = load_scaling(args.scaling)
    cost_model = fit_cost_model(measured["exact"], source=args.scaling)
    print(
        f"exact matching time from {args.scaling}: k1 = {cost_model.k1_ms * 1e6:.3f} ns, "
        f"k2 = {cost_model.k2_ms * 1e6:.1f} ns"
    )
    for memory, latency, map_size in BUDGETS:
        print(format_recommendation(recommend(rows, memory, latency, map_size, cost_model=cost_model)))
    print(f"report: {write_report(store, args.report, args.map_size)}")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
