"""Params, FLOPs, model bytes and CPU extraction latency at 480x640 for every registered
backbone x aggregator pair (batch 1, the machine's torch threads), printed as one table.

    python benchmarks/architectures_table.py [--backbones a,b] [--aggregators x,y] [--runs 20] [--out FILE]
"""

from __future__ import annotations

import argparse

import torch

import edgevpr.models  # noqa: F401  (fills the registries)
from edgevpr.atomic import write_json
from edgevpr.config import ModelConfig
from edgevpr.errors import ConfigError
from edgevpr.evaluate.cost import (
    count_flops,
    count_params,
    serialized_bytes,
    time_torch_extraction,
)
from edgevpr.evaluate.environment import environment
from edgevpr.models import build_model
from edgevpr.models.registry import AGGREGATORS, BACKBONES

ALIASES = {"mobilenet_v2", "squeezenet1_1", "resnet18", "resnet50", "resnet101", "r-mac"}
SIZE = (480, 640)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", default=",".join(n for n in BACKBONES.names() if n not in ALIASES))
    parser.add_argument("--aggregators", default=",".join(n for n in AGGREGATORS.names() if n not in ALIASES))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", default="benchmarks/results/architectures_table.json")
    args = parser.parse_args()
    rows = []
    print(f"{'backbone':<18} {'aggregator':<10} {'dim':>6} {'params M':>9} {'GFLOPs':>8} {'model MB':>9} {'extract ms':>11}")
    for backbone in args.backbones.split(","):
        for aggregator in args.aggregators.split(","):
            try:
                model = build_model(ModelConfig(backbone=backbone, aggregator=aggregator, clusters=64,
                                                deploy=backbone == "repvgg_lite")).eval()
            except ConfigError as error:  # e.g. cls on a backbone without a class token
                print(f"{backbone:<18} {aggregator:<10} skipped: {error}")
                continue
            shape = (1, 3, *SIZE)
            row = {"backbone": backbone, "aggregator": aggregator, "dim": model.descriptor_dim,
                   "params": count_params(model), "flops": count_flops(model, shape),
                   "model_bytes": serialized_bytes(model),
                   "extraction_ms": time_torch_extraction(model, shape, args.runs)["median_ms"],
                   "threads": torch.get_num_threads()}
            rows.append(row)
            print(f"{backbone:<18} {aggregator:<10} {row['dim']:>6} {row['params'] / 1e6:9.2f} {row['flops'] / 1e9:8.2f} "
                  f"{row['model_bytes'] / 1e6:9.2f} {row['extraction_ms']:11.1f}", flush=True)
            write_json(args.out, {"environment": environment(), "input_size": list(SIZE), "rows": rows})


if __name__ == "__main__":
    main()
