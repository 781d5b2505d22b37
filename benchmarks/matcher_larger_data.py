"""The attention matcher (Huang et al. 2022) trained on all the labelled training data here, one
honest attempt: Gardens Point frames 0-99 (database day_right; queries night_right and
day_left, +/-2 frames), IE Tower's train split (its UTM rule) and a synthetic street's train
split, each at short side 360, against the same matcher trained on Gardens Point alone
(``rerank_gardens_point.py``) and the untrained matcher with the similarity prior. Test: Gardens
Point frames 100-199, day_right -> night_right, unseen places, K = 20; R@1 / R@5 paired against
the untrained matcher and the first stage (gained / lost, McNemar p).

    python benchmarks/matcher_larger_data.py [--minutes 12] [--street-places 300] [--gardens-point-only]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from quantization_gardens_point import model_overrides
from rerank_gardens_point import SPEC, matcher_folder, test_split
from rerank_gardens_point import train as train_gardens_point

from edgevpr.atomic import write_json
from edgevpr.config import load_config
from edgevpr.data.sequences import positives_within_frames
from edgevpr.data.synthetic import SyntheticSpec, generate_synthetic
from edgevpr.evaluate.environment import environment
from edgevpr.evaluate.recall import first_positive_ranks, recall_from_ranks
from edgevpr.evaluate.significance import paired_recall_difference
from edgevpr.rerank import make_reranker, rerank_predictions
from edgevpr.rerank.matcher import AttentionMatcher
from edgevpr.rerank.matcher_file import save_matcher
from edgevpr.search.index import build_index
from edgevpr.train.matcher_training import train_matcher

HERE = Path(__file__).resolve().parent
K = 20


def training_configs(shared: Path, work: Path, street_places: int):
    """Gardens Point's training frames (the first set) and the further sets."""
    gp, tower = shared / "data" / "gardens_point", shared / "data" / "ie_tower"
    model = model_overrides("mnv2_gem", shared)
    street = work / "street"
    if not (street / "train").is_dir():
        spec = SyntheticSpec(seed=11, num_places=street_places, train_places=street_places, val_places=0)
        generate_synthetic(street, spec)
    first = {
        "database": str(gp / "day_right"),
        "queries": [str(gp / "night_right"), str(gp / "day_left")],
        "frames": [0, 99],
        "tolerance_frames": 2,
        "negative_frames": 10,
    }
    sets = [first, {"dataset": str(tower)}, {"dataset": str(street)}]
    return [load_config(overrides={"model": model, "data": {"resize": 360}, "train": t}) for t in sets]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(HERE.parent.parent / "shared"))
    parser.add_argument("--work", default="/tmp/edgevpr-rerank")
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--street-places", type=int, default=300)
    parser.add_argument(
        "--gardens-point-only",
        action="store_true",
        help="Also train (or reuse from --work) the matcher on Gardens Point alone, as rerank_gardens_point.py does.",
    )
    parser.add_argument("--out", default=str(HERE / "results" / "matcher_larger_data.json"))
    args = parser.parse_args()
    shared, work = Path(args.shared), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    configs = training_configs(shared, work, args.street_places)
    larger = train_matcher(
        configs[0],
        SPEC,
        work / "matcher_prior_w1_larger",
        ranking_weight=1.0,
        prior=True,
        epochs=40,
        max_minutes=args.minutes,
        batch_pairs=8,
        also=tuple(configs[1:]),
    )
    gardens_point_only = work / matcher_folder(1.0, True) / "matcher.npz"
    if args.gardens_point_only and not gardens_point_only.is_file():
        train_gardens_point(shared, work, 1.0, args.minutes, True)
    data = test_split(shared, work)
    (db, db_sets), (q, q_sets) = data["day_right"], data["night_right"]
    positives = positives_within_frames(len(db), len(q), 2)
    _, first = build_index(db, "Flat").search(q, K)
    untrained = work / "matcher_untrained" / "matcher.npz"
    untrained.parent.mkdir(exist_ok=True)
    save_matcher(AttentionMatcher(db_sets[0].patches.shape[1], prior=True), untrained, {"patch_spec": SPEC.to_dict()})
    ranks = {"first stage": first_positive_ranks(first, positives)}
    timings = {}
    matchers = [("untrained, prior", untrained), ("trained on all sets", Path(larger["matcher"]))]
    if gardens_point_only.is_file():
        matchers.insert(1, ("trained on Gardens Point", gardens_point_only))
    for label, matcher in matchers:
        start = time.perf_counter()
        _, reordered, times = rerank_predictions(make_reranker("attention", str(matcher)), first, q_sets, db_sets, K)
        ranks[label] = first_positive_ranks(reordered, positives)
        timings[label] = {"ms": float(np.median(times)), "seconds": time.perf_counter() - start}
    rows = []
    for label, found in ranks.items():
        row = {"matcher": label, "k": K, "recall": recall_from_ranks(found, (1, 5, 10))} | timings.get(label, {})
        if label != "first stage":
            row["r1_vs_first"] = paired_recall_difference(ranks["first stage"], found, 1)
            row["r1_vs_untrained"] = paired_recall_difference(ranks["untrained, prior"], found, 1)
            row["r5_vs_untrained"] = paired_recall_difference(ranks["untrained, prior"], found, 5)
        rows.append(row)
        cells = ""
        if "r1_vs_untrained" in row:
            c, u = row["r1_vs_first"], row["r1_vs_untrained"]
            cells = (
                f"  vs first stage +{c['gained']}/-{c['lost']} (p {c['mcnemar_p']:.2f}); "
                f"vs untrained +{u['gained']}/-{u['lost']} (p {u['mcnemar_p']:.2f})"
            )
        print(f"{label:<26} R@1 {row['recall']['1']:5.1f} R@5 {row['recall']['5']:5.1f}{cells}", flush=True)
    summary = {k: v for k, v in larger.items() if k != "history"} | {"epochs": len(larger["history"])}
    write_json(args.out, {"environment": environment(), "trained": summary, "rows": rows, "k": K})


if __name__ == "__main__":
    main()
