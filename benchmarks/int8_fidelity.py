"""int8 fidelity to fp32, with and without bias correction of the int8 weights (Nagel et al.
2019, section 4.2), with AdaRound's learned rounding (Nagel et al. 2020), per-tensor MSE
activation ranges or ranges chosen per tensor by the error at the layers reading it on top:
descriptor cosine to fp32 (mean, 5th percentile, minimum over every database and query image)
and R@1 / R@5 paired against fp32, for MobileNetV2 + GeM and EfficientNet-Lite0 + GeM (shared
ImageNet weights), in both int8 layouts: u8s8 (exact on VNNI) and u8s7 (7-bit weights, what
``auto`` picks on an AVX2-only CPU; ONNX Runtime runs it exactly here too, so this machine
measures the AVX2 file's arithmetic). Calibration: 50 Gardens Point day_left images;
evaluation on Gardens Point day_right -> night_right (+/-2 frames), day_right -> day_left
(``gardens_point_lateral``) and IE Tower's test split at short side 360, no retuning per set.

    python benchmarks/int8_fidelity.py [--models mnv2_gem,lite0_gem] [--layouts u8s8,u8s7]
        [--sets gardens_point_night,gardens_point_lateral,ie_tower_test]
        [--variants plain,biascorr,adaround,mse,adaround_mse,layer_error]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from labelled_sets import evaluation_sets
from quantization_gardens_point import model_overrides

from edgevpr.atomic import write_json
from edgevpr.config import load_config
from edgevpr.evaluate.environment import environment
from edgevpr.evaluate.precisions import compare_precisions

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(HERE.parent.parent / "shared"))
    parser.add_argument("--models", default="mnv2_gem,lite0_gem")
    parser.add_argument("--layouts", default="u8s8,u8s7")
    parser.add_argument("--sets", default="gardens_point_night,ie_tower_test")
    parser.add_argument("--variants", default="plain,biascorr,adaround")
    parser.add_argument("--out", default=str(HERE / "results" / "int8_fidelity.json"))
    args = parser.parse_args()
    shared = Path(args.shared)
    gp = shared / "data" / "gardens_point"
    sets = evaluation_sets(shared)
    known = {
        "plain": ("int8", "cpu", "percentile", 0, False, "nearest"),
        "biascorr": ("int8", "cpu", "percentile", 0, True, "nearest"),
        "adaround": ("int8", "cpu", "percentile", 0, True, "adaround"),
        "mse": ("int8", "cpu", "mse", 0, True, "nearest"),
        "adaround_mse": ("int8", "cpu", "mse", 0, True, "adaround"),
        "layer_error": ("int8", "cpu", "layer-error", 0, True, "nearest"),
    }
    variants = [known[name] for name in args.variants.split(",")]
    results = {}
    for model in args.models.split(","):
        for layout in args.layouts.split(","):
            for name in args.sets.split(","):
                data = sets[name]
                config = load_config(
                    overrides={
                        "model": model_overrides(model, shared),
                        "data": data | {"resize": 360},
                        "quantize": {"int8_layout": layout},
                        "eval": {"latency_runs": 10},
                    }
                )
                rows = compare_precisions(config, str(gp / "day_left"), 50, variants, log=lambda m: None)
                results[f"{model} {layout} {name}"] = rows
                fp32 = rows[0]["recall"]
                for row in rows[1:]:
                    change = row["r1_vs_fp32"]
                    print(
                        f"{model:<10} {layout} {name:<20} bias corr {'on ' if row['bias_correction'] else 'off'} "
                        f"rounding {row['int8_rounding']:<8} ranges {row['calibration']:<10} "
                        f"cos mean/p5/min {row['mean_cosine_to_fp32']:.4f}/{row['cosine_p5_to_fp32']:.4f}/"
                        f"{row['cosine_min_to_fp32']:.4f}  R@1/5 {row['recall']['1']:.1f}/{row['recall']['5']:.1f} "
                        f"(fp32 {fp32['1']:.1f}/{fp32['5']:.1f}; +{change['gained']}/-{change['lost']} "
                        f"p {change['mcnemar_p']:.2g})",
                        flush=True,
                    )
                write_json(args.out, {"results": results, "environment": environment()})


if __name__ == "__main__":
    main()
