"""The fully int8 second stage against the float one: MobileNetV2 + GeM (shared TFLite weights)
quantized to int8 with a patch output (``quantize --patches``, calibrated on Gardens Point
day_left), its patches stored compact (PCA to 128, int8), re-ranked by ``rapid`` and ``ransac``;
beside the float pipeline (PyTorch fp32, full fp16 patches) and the first stage alone. K = 20.

Sets: Gardens Point day_right -> night_right on the unseen places of ``rerank_gardens_point.py``
(frames 100-199, +/-2 frames), and IE Tower's test split. Every change is paired per query
(gained / lost, McNemar p).

    python benchmarks/int8_second_stage.py [--sets gardens_point_night_unseen,ie_tower_test] [--out FILE]

A set's rows replace its earlier rows in --out; other sets' rows are kept.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from quantization_gardens_point import model_overrides

from edgevpr.atomic import write_json
from edgevpr.config import QuantizeConfig, load_config
from edgevpr.evaluate.environment import environment
from edgevpr.evaluate.runner import evaluate
from edgevpr.evaluate.significance import paired_recall_difference
from edgevpr.quantize.pipeline import quantize_model

HERE = Path(__file__).resolve().parent
K = 20


def sets(shared: Path) -> dict:
    gp, tower = shared / "data" / "gardens_point", shared / "data" / "ie_tower"
    night = {"database": str(gp / "day_right"), "queries": str(gp / "night_right"), "tolerance_frames": 2}
    return {
        "gardens_point_night_unseen": (night | {"frames": (100, 199)}, (360, 480)),
        "ie_tower_test": ({"dataset": str(tower)}, (360, 480)),  # its 120 x 160 images, aspect kept
    }


def run(shared: Path, data: dict, size, model: dict, rerank: dict | None) -> dict:
    overrides = {"model": model, "data": data | {"size": list(size)}, "eval": {"latency_runs": 10}}
    if rerank:
        overrides["rerank"] = {"k": K, "patch_size": [3], "patch_stride": [1]} | rerank
    return evaluate(load_config(overrides=overrides), label=f"{model.get('onnx', 'pytorch')} {rerank}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(HERE.parent.parent / "shared"))
    parser.add_argument("--work", default="/tmp/edgevpr-int8-second-stage")
    parser.add_argument("--out", default=str(HERE / "results" / "int8_second_stage.json"))
    parser.add_argument("--sets", default="gardens_point_night_unseen,ie_tower_test")
    args = parser.parse_args()
    shared, work = Path(args.shared), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    calib = str(shared / "data" / "gardens_point" / "day_left")
    float_model = model_overrides("mnv2_gem", shared)
    results = json.loads(Path(args.out).read_text())["results"] if Path(args.out).is_file() else {}
    for name, (data, size) in sets(shared).items():
        if name not in args.sets.split(","):
            continue
        onnx = work / f"int8_patches_{size[0]}x{size[1]}.onnx"
        if not onnx.is_file():
            config = load_config(overrides={"model": float_model, "data": {"size": list(size)}})
            config.rerank.patch_size, config.rerank.patch_stride = (3,), (1,)
            quantize_model(config, QuantizeConfig("int8", "cpu", calib=calib, calib_count=50, patches=True), str(onnx))
        int8_model = {"onnx": str(onnx)}
        compact = {"patch_dim": 128, "patch_bits": 8}
        rows = {"first stage (fp32)": run(shared, data, size, float_model, None)}
        rows["first stage (int8 file)"] = run(shared, data, size, int8_model, None)
        for reranker in ("rapid", "ransac"):
            rows[f"{reranker}, fp32, full patches"] = run(shared, data, size, float_model, {"name": reranker})
            rows[f"{reranker}, int8 file, 128-D int8 patches"] = run(
                shared, data, size, int8_model, {"name": reranker} | compact
            )
        ranks = {row: result["per_query"]["first_positive_rank"] for row, result in rows.items()}
        table = {}
        for row, result in rows.items():
            reranker = row.split(",")[0]
            entry = {
                "recall": result["recall"],
                "patch_bytes": result["cost"].get("patch_bytes"),
                "rerank_ms": result["cost"].get("rerank_ms"),
                "vs_first_stage": paired_recall_difference(ranks["first stage (fp32)"], ranks[row]),
            }
            if "int8 file" in row and not row.startswith("first"):
                entry["vs_float_second_stage"] = paired_recall_difference(
                    ranks[f"{reranker}, fp32, full patches"], ranks[row]
                )
            table[row] = entry
            change = entry["vs_first_stage"]
            line = f"{name:<28} {row:<40} R@1/5 {result['recall']['1']:5.1f}/{result['recall']['5']:5.1f}"
            line += f"  vs first stage +{change['gained']}/-{change['lost']} p {change['mcnemar_p']:.2g}"
            if "vs_float_second_stage" in entry:
                other = entry["vs_float_second_stage"]
                line += f"  vs float 2nd stage +{other['gained']}/-{other['lost']} p {other['mcnemar_p']:.2g}"
            print(line, flush=True)
        results[name] = table
        write_json(args.out, {"k": K, "results": results, "environment": environment()})


if __name__ == "__main__":
    main()
