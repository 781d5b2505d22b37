"""Acceptance of the foundation: MobileNetV2 (shared TFLite weights, TF-SAME padding,
mean = std = 0.5) + GeM p=3, short side 360, Gardens Point day_right -> night_right, +/-2 frames.
Expected Recall@1/5/10 = 52.0 / 84.0 / 94.0 (shared/weights/README.md).

    python benchmarks/gardens_point_reference.py [--shared ../shared] [--out gp_reference.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from quantization_gardens_point import model_overrides

from edgevpr.config import load_config
from edgevpr.evaluate.runner import evaluate
from edgevpr.evaluate.table import format_table

EXPECTED = {"1": 52.0, "5": 84.0, "10": 94.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    shared = Path(args.shared)
    data, descriptors = shared / "data" / "gardens_point", Path("/tmp/edgevpr_gp_reference")
    config = load_config(
        overrides={
            "model": model_overrides("mnv2_gem", shared),  # configs/mobilenetv2_gem.yaml with these weights
            "data": {
                "database": str(data / "day_right"),
                "queries": str(data / "night_right"),
                "tolerance_frames": 2,
                "resize": 360,
            },
            "eval": {"out": args.out, "save_descriptors": str(descriptors)},
        }
    )
    result = evaluate(config)
    print(f"protocol: {result['protocol_name']}")
    print(format_table([result]))
    for name, split in (("database", "day_right"), ("queries", "night_right")):
        cosine = (
            np.load(descriptors / f"{name}.npy")
            * np.load(shared / "reference" / "gardens_point_mnv2_gem360" / f"{split}.npy")
        ).sum(1)
        print(f"cosine to reference descriptors ({split}): min {cosine.min():.7f}, mean {cosine.mean():.7f}")
    ok = all(abs(result["recall"][n] - value) <= 0.5 for n, value in EXPECTED.items())
    print(f"expected R@1/5/10 {EXPECTED['1']}/{EXPECTED['5']}/{EXPECTED['10']} within 0.5: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
