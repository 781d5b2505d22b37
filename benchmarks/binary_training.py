"""Training-aware binarisation, measured: does fine-tuning with the triplet loss on
straight-through sign codes (`train.binary_weight`, train/losses.py) keep more binary recall
than binarising a model trained without it?

Recipe: benchmarks/train_gardens_point.py (MobileNetV2 + GeM, places 0-79 train, 80-99
validation, 100-199 test day_right -> night_right, +/-2 frames), trained twice for the same
steps (--epochs of --queries queries), with binary weight 0 and --weight; each run's last
model is compared (best.pt is chosen on float validation recall, which could hide the
term's effect, and on these 20 validation places it often keeps the starting model). Each
model (and the starting one) is then tested with float descriptors and with two 1-bit codes:
the sign of the centred descriptor (1280 bits, what the loss trains) and ITQ on the top 256
principal directions (32 bytes; Gong and Lazebnik 2011). Means and rotations are fitted on
every fourth IE Tower train/val image (342 indoor images), never on Gardens Point. Changes
are paired, query by query.

    python benchmarks/binary_training.py [--epochs 2] [--queries 80] [--weight 1]
        [--out benchmarks/results/binary_training.json]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from train_gardens_point import gardens_point_config

from edgevpr.atomic import write_json
from edgevpr.data.images import list_images
from edgevpr.data.sequences import positives_within_frames
from edgevpr.evaluate.environment import environment
from edgevpr.evaluate.recall import first_positive_ranks, recall_from_ranks
from edgevpr.evaluate.significance import paired_recall_difference
from edgevpr.extraction.extract import extract
from edgevpr.models import build_model
from edgevpr.models.checkpoint import read_checkpoint
from edgevpr.models.model import model_from_checkpoint
from edgevpr.models.resolve import adopt_stored_contract, contract_of, resolve_config
from edgevpr.search.binary_codes import fit_codec
from edgevpr.search.index import build_index
from edgevpr.train.loop import train

TEST = (100, 199)
FIT_FOLDERS = ("train/database", "train/queries", "val/database", "val/queries")


def descriptors(config, shared: Path, checkpoint: Path | None = None) -> dict[str, np.ndarray]:
    """Test database, test queries and the fit images, described by ``config``'s model, or by
    the trained ``checkpoint`` under the contract it stores."""
    if checkpoint is None:
        config = resolve_config(config)
        model = build_model(config.model).eval()
    else:
        payload = read_checkpoint(checkpoint)
        model = model_from_checkpoint(payload, str(checkpoint))
        config = adopt_stored_contract(resolve_config(config), payload, str(checkpoint))
    contract = contract_of(config)
    gp = shared / "data" / "gardens_point"
    sets = {name: list_images(gp / name)[TEST[0] : TEST[1] + 1] for name in ("day_right", "night_right")}
    tower = shared / "data" / "ie_tower"
    sets["fit"] = [p for folder in FIT_FOLDERS for p in list_images(tower / folder)][::4]
    return {name: extract(model, paths, contract, label=f"{name} ").descriptors for name, paths in sets.items()}


def sign_ranks(found: dict, positives) -> np.ndarray:
    """Ranks under sign(x - mean) codes compared by Hamming distance (= -inner product of +/-1)."""
    mean = found["fit"].mean(axis=0)
    db, q = np.sign(found["day_right"] - mean), np.sign(found["night_right"] - mean)
    return first_positive_ranks(np.argsort(-(q @ db.T), axis=1, kind="stable")[:, :10], positives)


def ranks_of(found: dict, positives) -> dict[str, np.ndarray]:
    db, q = found["day_right"], found["night_right"]
    itq = fit_codec(found["fit"], 256, "itq", fitted_on="IE Tower train/val, every fourth image")
    return {
        "float": first_positive_ranks(build_index(db, "Flat").search(q, 10)[1], positives),
        "sign 1280 bits": sign_ranks(found, positives),
        "ITQ 256 bits": first_positive_ranks(build_index(db, "BFlat", codec=itq).search(q, 10)[1], positives),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--queries", type=int, default=80, help="Training queries per epoch.")
    parser.add_argument("--weight", type=float, default=1.0)
    parser.add_argument("--work", default="/tmp/edgevpr-binary-training")
    parser.add_argument("--out", default="benchmarks/results/binary_training.json")
    args = parser.parse_args()
    shared, work = Path(args.shared), Path(args.work)
    positives = positives_within_frames(TEST[1] - TEST[0] + 1, TEST[1] - TEST[0] + 1, 2)
    schedule = {"epochs": args.epochs, "queries_per_epoch": args.queries, "patience": args.epochs}
    start_config = gardens_point_config(shared, None, str(work / "unused"))
    models = {"start": ranks_of(descriptors(start_config, shared), positives)}
    runs = {}
    for weight in (0.0, args.weight):
        run_dir = work / f"w{weight:g}"
        shutil.rmtree(run_dir, ignore_errors=True)
        metrics = train(gardens_point_config(shared, None, str(run_dir), schedule | {"binary_weight": weight}))
        runs[f"binary_weight={weight:g}"] = {k: metrics.get(k) for k in ("best_epoch", "finished", "history")}
        found = descriptors(start_config, shared, run_dir / "last.pt")
        models[f"binary_weight={weight:g}"] = ranks_of(found, positives)
    plain, aware = models["binary_weight=0"], models[f"binary_weight={args.weight:g}"]
    rows = []
    print(f"{'model':<22} {'codes':<16} {'R@1':>5} {'R@5':>5}  R@1 vs binary_weight=0 (+q/-q, p, 95% CI)")
    for model, table in models.items():
        for codes, ranks in table.items():
            change = paired_recall_difference(plain[codes], ranks, 1) if model != "binary_weight=0" else None
            recall = recall_from_ranks(ranks, (1, 5, 10))
            rows.append({"model": model, "codes": codes, "recall": recall, "r1_vs_plain": change})
            text = (
                "-"
                if change is None
                else (
                    f"{change['difference']:+.1f} (+{change['gained']}/-{change['lost']}, p {change['mcnemar_p']:.2f}, "
                    f"{change['ci95'][0]:+.1f}..{change['ci95'][1]:+.1f})"
                )
            )
            print(f"{model:<22} {codes:<16} {recall['1']:5.1f} {recall['5']:5.1f}  {text}", flush=True)
    kept = paired_recall_difference(plain["sign 1280 bits"], aware["sign 1280 bits"], 1)
    print(f"binary R@1 change from the loss (sign codes): {kept['difference']:+.1f}, p {kept['mcnemar_p']:.2f}")
    write_json(args.out, {"environment": environment(), "schedule": schedule, "rows": rows, "runs": runs})


if __name__ == "__main__":
    main()
