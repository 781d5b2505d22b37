"""Two-stage retrieval on the Gardens Point test split: the first stage's top-K re-ordered by
patch re-rankers (Patch-NetVLAD's RANSAC and rapid scoring, and the trained attention matcher
of Huang et al. 2022), with recall, the paired change against the first stage, re-ranking time
per query and patch bytes per database image.

First stage: MobileNetV2 + GeM (shared weights, short side 360; 1280-D). Patches: 3 x 3 cells,
stride 1, GeM-pooled from the same feature map (12 x 20 cells -> 180 patches of 1280-D).
Matcher training: `edgevpr train-matcher` (with and without the similarity prior) on frames
0-99 (database day_right, queries night_right and day_left, +/-2 frames positive, > 10 frames
negative; validation = its last fifth), with and without the image-level ranking term. Test:
frames 100-199, day_right -> night_right, +/-2 frames; K = 20 and 100. Also: parameters and FLOPs of RepVGG-lite + the
matcher beside Huang et al.'s Table 3.

    python benchmarks/rerank_gardens_point.py [--minutes 8] [--out benchmarks/results/rerank_gardens_point.json]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from quantization_gardens_point import model_overrides

from edgevpr.atomic import write_json
from edgevpr.config import load_config
from edgevpr.data.images import list_images
from edgevpr.data.sequences import positives_within_frames
from edgevpr.evaluate.environment import environment
from edgevpr.evaluate.recall import first_positive_ranks, recall_from_ranks
from edgevpr.evaluate.significance import paired_recall_difference
from edgevpr.extraction.extract import extract
from edgevpr.extraction.patches import PatchModel, PatchSpec
from edgevpr.models import build_model
from edgevpr.models.resolve import contract_of, resolve_config
from edgevpr.rerank import PatchSet, make_reranker, rerank_predictions
from edgevpr.rerank.matcher import AttentionMatcher
from edgevpr.rerank.matcher_file import save_matcher
from edgevpr.rerank.matcher_onnx import export_matcher
from edgevpr.search.index import build_index
from edgevpr.train.matcher_training import train_matcher

SPEC = PatchSpec((3,), (1,))
TEST = (100, 199)


def test_split(shared: Path, work: Path):
    """Global descriptors and patch sets of the test frames, cached in ``work``."""
    gp = shared / "data" / "gardens_point"
    config = resolve_config(
        load_config(overrides={"model": model_overrides("mnv2_gem", shared), "data": {"resize": 360}})
    )
    model = PatchModel(build_model(config.model).eval(), SPEC)
    out = {}
    for name in ("day_right", "night_right"):
        cache = work / f"{name}.npz"
        if not cache.is_file():
            paths = list_images(gp / name)[TEST[0] : TEST[1] + 1]
            found = extract(model, paths, contract_of(config), batch_size=8, label=f"{name} ")
            np.savez(
                cache,
                descriptors=found.descriptors,
                patches=found.patches,
                centres=model.centres(),
                extent=np.array(model.map_size[::-1]),
            )
        data = np.load(cache)
        sets = [PatchSet(p, data["centres"], 1, tuple(data["extent"])) for p in data["patches"]]
        out[name] = (data["descriptors"], sets)
    return out


def train(shared: Path, work: Path, ranking_weight: float, minutes: float, prior: bool) -> dict:
    gp = shared / "data" / "gardens_point"
    config = load_config(
        overrides={
            "model": model_overrides("mnv2_gem", shared),
            "data": {"resize": 360},
            "train": {
                "database": str(gp / "day_right"),
                "queries": [str(gp / "night_right"), str(gp / "day_left")],
                "frames": [0, 99],
                "tolerance_frames": 2,
                "negative_frames": 10,
            },
        }
    )
    return train_matcher(
        config,
        SPEC,
        work / matcher_folder(ranking_weight, prior),
        ranking_weight=ranking_weight,
        prior=prior,
        epochs=40,
        max_minutes=minutes,
        batch_pairs=8,
    )


def matcher_folder(ranking_weight: float, prior: bool) -> str:
    return f"matcher_{'prior_' if prior else ''}w{ranking_weight:g}"


def table_3() -> dict:
    """RepVGG-lite + NetVLAD and the matcher: parameters and FLOPs at 480 x 640."""
    from torch.utils.flop_counter import FlopCounterMode

    from edgevpr.config import ModelConfig

    model = build_model(ModelConfig(backbone="repvgg_lite", aggregator="netvlad", pretrained=False)).eval()
    images = torch.zeros(1, 3, 480, 640)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        features = model.backbone(images)
        model.aggregator(features)
    first_flops = counter.get_total_flops()
    patches = PatchModel(model, SPEC)
    with torch.inference_mode():
        _, found = patches(images)
    count, dim = found.shape[1], found.shape[2]
    rows = {}
    for label, width, layers in (("this matcher (d=64, L=4)", 64, 4), ("SuperGlue-sized (d=256, L=9)", 256, 9)):
        matcher = AttentionMatcher(dim, width, 4 if width == 256 else 2, layers, 20)
        q = torch.zeros(1, count, dim)
        x = torch.zeros(1, count, 2)
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            matcher(q, x, q, x)
        rows[label] = {
            "params": sum(p.numel() for p in matcher.parameters()),
            "flops_per_pair": counter.get_total_flops(),
        }
    return {
        "repvgg_lite_netvlad": {"params": sum(p.numel() for p in model.parameters()), "flops": first_flops},
        "patches_per_image": count,
        "patch_dim": dim,
        "matchers": rows,
        "paper_table_3": {
            "first_stage_params": 5.3e6,
            "matcher_params": 5.1e6,
            "first_stage_flops": 8.5e9,
            "matcher_flops": 5.3e9,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    parser.add_argument("--work", default="/tmp/edgevpr-rerank")
    parser.add_argument("--minutes", type=float, default=8.0, help="Training time per matcher.")
    parser.add_argument("--out", default="benchmarks/results/rerank_gardens_point.json")
    args = parser.parse_args()
    shared, work = Path(args.shared), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    report = {"environment": environment(), "patches": SPEC.rule(), "test_frames": list(TEST), "matchers": {}}
    for prior in (True, False):
        for weight in (1.0, 0.0):
            summary = train(shared, work, weight, args.minutes, prior)
            report["matchers"][matcher_folder(weight, prior)] = summary
            print(
                f"matcher {matcher_folder(weight, prior)}: validation accuracy {summary['best_val_accuracy']:.3f} "
                f"(ransac {summary['ransac_val_accuracy']:.3f}), {len(summary['history'])} epochs",
                flush=True,
            )
    data = test_split(shared, work)
    (db, db_sets), (q, q_sets) = data["day_right"], data["night_right"]
    positives = positives_within_frames(len(db), len(q), 2)
    _, first = build_index(db, "Flat").search(q, 100)
    base_ranks = first_positive_ranks(first, positives)
    patch_bytes = db_sets[0].patches.shape[0] * db_sets[0].patches.shape[1] * 2
    rows = [{"rerank": "first stage only", "k": 0, "recall": recall_from_ranks(base_ranks, (1, 5, 10)), "ms": 0.0}]
    matcher_file = work / "matcher_prior_w1" / "matcher.npz"
    untrained = work / "matcher_untrained" / "matcher.npz"
    untrained.parent.mkdir(exist_ok=True)
    save_matcher(AttentionMatcher(db_sets[0].patches.shape[1], prior=True), untrained, {"patch_spec": SPEC.to_dict()})
    onnx_file, int8_file = work / "matcher_prior_w1.onnx", work / "matcher_prior_w1_int8.onnx"
    report["onnx_export"] = export_matcher(str(matcher_file), str(onnx_file))
    report["onnx_int8_export"] = export_matcher(str(matcher_file), str(int8_file), int8=True)
    variants = [("ransac", None), ("rapid", None), ("attention", str(untrained))]
    variants += [("attention", str(work / matcher_folder(w, p) / "matcher.npz")) for p in (True, False) for w in (1, 0)]
    variants += [("attention", str(onnx_file)), ("attention", str(int8_file))]
    for k in (20, 100):
        for name, matcher in variants:
            reranker = make_reranker(name, matcher)
            start = time.perf_counter()
            _, reordered, times = rerank_predictions(reranker, first, q_sets, db_sets, k)
            ranks = first_positive_ranks(reordered, positives)
            label = (
                name
                if matcher is None
                else f"{name} ({Path(matcher).parent.name if matcher.endswith('.npz') else Path(matcher).name})"
            )
            rows.append(
                {
                    "rerank": label,
                    "k": k,
                    "recall": recall_from_ranks(ranks, (1, 5, 10)),
                    "ms": float(np.median(times)),
                    "ms_p90": float(np.percentile(times, 90)),
                    "r1_vs_first": paired_recall_difference(base_ranks, ranks, 1),
                    "r5_vs_first": paired_recall_difference(base_ranks, ranks, 5),
                    "seconds": time.perf_counter() - start,
                }
            )
            r = rows[-1]
            c = r["r1_vs_first"]
            print(
                f"K={k:<3} {label:<28} R@1 {r['recall']['1']:5.1f} R@5 {r['recall']['5']:5.1f} "
                f"{r['ms']:8.1f} ms/query  R@1 vs first stage {c['difference']:+.1f} "
                f"(+{c['gained']}/-{c['lost']}, p {c['mcnemar_p']:.2f}, "
                f"95% CI {c['ci95'][0]:+.1f}..{c['ci95'][1]:+.1f})",
                flush=True,
            )
    report |= {"rows": rows, "patch_bytes_per_image": patch_bytes, "table_3": table_3()}
    print(f"first stage R@1 {rows[0]['recall']['1']:.1f}; patch bytes per database image {patch_bytes:,} (fp16)")
    write_json(args.out, report)


if __name__ == "__main__":
    main()
