"""Params, FLOPs, model bytes and CPU extraction latency at 480x640 for every registered
backbone x aggregator pair (batch 1, the machine's torch threads), printed as one table, and
then the published figures beside ours.

FLOPs here are torch's count: 2 per multiply-add. Papers in this field (GhostNet, RepVGG,
CCT) print multiply-adds (MACs) and call them FLOPs, so the comparison section uses MACs.

Published figures compared (the comparison section explains each difference):
- Gong et al. 2021: Ghost-dil-NetVLAD has 99.04 % fewer FLOPs and 80.16 % fewer params than
  VGG16-NetVLAD at 640x480 (as the issue quotes it). Both readings of "dilated primary
  convolution" are measured: GhostNet's 1x1 primaries with the dilation on the cheap
  depthwise convolution (ours), and 3x3 dilated primaries.
- RepVGG-A0 (Ding et al. 2021, Table 4): 8.30 M params and 1.4 G MACs at 224x224, deployed.
  repvgg_lite drops the fifth stage (one 3x3 block 192 -> 1280) and the classifier
  (1280 -> 1000); adding those back analytically must give the paper's A0.
- ViT-S/16 (timm's vit_small_patch16_224: 22.05 M params, 4.61 G MACs at 224) and
  CCT-14/7x2 (Hassani et al. 2021, Table 2: 22.36 M params, 5.53 G MACs at 224).

    python benchmarks/architectures_table.py [--backbones a,b] [--aggregators x,y] [--runs 20] [--out FILE]
"""

from __future__ import annotations

import argparse

import torch

import edgevpr.models  # noqa: F401  (fills the registries)
from edgevpr.atomic import write_json
from edgevpr.config import ModelConfig
from edgevpr.errors import ConfigError
from edgevpr.evaluate.cost import time_torch_extraction
from edgevpr.evaluate.environment import environment
from edgevpr.models import VPRModel, build_model
from edgevpr.models.backbones.ghostcnn import GhostCNN
from edgevpr.models.registry import AGGREGATORS, BACKBONES
from edgevpr.models.size import count_flops, count_params, serialized_bytes

ALIASES = {"mobilenet_v2", "squeezenet1_1", "resnet18", "resnet50", "resnet101", "r-mac"}
SIZE = (480, 640)


def _macs(module: torch.nn.Module, size: tuple[int, int]) -> float:
    return count_flops(module.eval(), (1, 3, *size)) / 2


def _change(ours: float, baseline: float) -> float:
    return 100.0 * (ours / baseline - 1.0)


def published_comparison() -> dict:
    """Our params and MACs beside the published figures named in the module docstring."""
    out = {}
    vgg = build_model(ModelConfig(backbone="vgg16", aggregator="netvlad", aggregator_params={"clusters": 64}))
    vgg_params, vgg_macs = count_params(vgg), _macs(vgg, SIZE)
    for reading, primary_kernel in (("1x1 primary, dilated cheap op (ours)", 1), ("3x3 dilated primary", 3)):
        ghost = build_model(ModelConfig(backbone="ghostcnn", aggregator="netvlad", aggregator_params={"clusters": 64}))
        ghost.backbone.body = GhostCNN(primary_kernel=primary_kernel)
        params, macs = count_params(ghost), _macs(ghost, SIZE)
        out[f"Ghost-dil-NetVLAD, {reading}"] = {
            "params": params,
            "macs": macs,
            "params_change_pct": _change(params, vgg_params),
            "macs_change_pct": _change(macs, vgg_macs),
            "paper_params_change_pct": -80.16,
            "paper_macs_change_pct": -99.04,
        }
    out["VGG16-NetVLAD"] = {"params": vgg_params, "macs": vgg_macs}

    lite = build_model(ModelConfig(backbone="repvgg_lite", aggregator="gem", backbone_params={"deploy": True}))
    stage5_params = 192 * 1280 * 9 + 1280
    classifier_params = 1280 * 1000 + 1000
    stage5_macs = 7 * 7 * 192 * 1280 * 9  # 224 -> stride 32 = 7x7
    out["RepVGG-A0 from repvgg_lite"] = {
        "params": count_params(lite.backbone) + stage5_params + classifier_params,
        "macs": _macs(lite.backbone, (224, 224)) + stage5_macs + 1280 * 1000,
        "paper_params": 8.30e6,
        "paper_macs": 1.4e9,
    }
    for name, backbone, params, macs in (("ViT-S/16", "vit", 22.05e6, 4.61e9), ("CCT-14/7x2", "cct", 22.36e6, 5.53e9)):
        model = build_model(ModelConfig(backbone=backbone, aggregator="cls" if backbone == "vit" else "seqpool"))
        out[name] = {
            "params": count_params(model),
            "macs": _macs(model, (224, 224)),
            "paper_params": params,
            "paper_macs": macs,
        }
    return out


def print_comparison(rows: dict) -> None:
    print("\npublished figures (MACs = multiply-adds; params and MACs of whole models at the stated size)")
    for name, row in rows.items():
        line = f"{name:<48} params {row['params'] / 1e6:7.2f} M   MACs {row['macs'] / 1e9:7.3f} G"
        if "paper_params" in row:
            line += f"   paper {row['paper_params'] / 1e6:.2f} M, {row['paper_macs'] / 1e9:.2f} G"
        if "params_change_pct" in row:
            line += (
                f"   vs VGG16-NetVLAD: params {row['params_change_pct']:+.2f} % "
                f"(paper {row['paper_params_change_pct']:+.2f}), "
                f"MACs {row['macs_change_pct']:+.2f} % (paper {row['paper_macs_change_pct']:+.2f})"
            )
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", default=",".join(n for n in BACKBONES.names() if n not in ALIASES))
    parser.add_argument("--aggregators", default=",".join(n for n in AGGREGATORS.names() if n not in ALIASES))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", default="benchmarks/results/architectures_table.json")
    parser.add_argument("--only-published", action="store_true", help="Print the published-figures comparison only.")
    args = parser.parse_args()
    comparison = published_comparison()
    print_comparison(comparison)
    if args.only_published:
        return
    rows = []
    print(
        "\nextraction ms = backbone ms (timed once per backbone) + aggregator ms (aggregator and L2 on the "
        "backbone's features), medians of separate runs"
    )
    print(
        f"{'backbone':<18} {'aggregator':<10} {'dim':>6} {'params M':>9} {'GFLOPs':>8} {'model MB':>9} "
        f"{'backbone ms':>12} {'aggr. ms':>9} {'extract ms':>11}"
    )
    for backbone in args.backbones.split(","):
        base = build_model(
            ModelConfig(backbone=backbone, aggregator="gem", backbone_params={"deploy": backbone == "repvgg_lite"})
        ).eval()
        shape = (1, 3, *SIZE)
        backbone_flops = count_flops(base.backbone, shape)
        backbone_ms = time_torch_extraction(base.backbone, shape, args.runs)["median_ms"]
        with torch.inference_mode():
            features_shape = tuple(base.backbone(torch.zeros(shape)).shape)
        for aggregator in args.aggregators.split(","):
            try:
                model = build_model(
                    ModelConfig(
                        backbone=backbone,
                        aggregator=aggregator,
                        aggregator_params={"clusters": 64},
                        backbone_params={"deploy": backbone == "repvgg_lite"},
                    )
                ).eval()
            except ConfigError as error:  # e.g. cls on a backbone without a class token
                print(f"{backbone:<18} {aggregator:<10} skipped: {error}")
                continue
            head = VPRModel(torch.nn.Identity(), model.aggregator).eval()  # what runs after the backbone
            head_ms = time_torch_extraction(head, features_shape, args.runs)["median_ms"]
            row = {
                "backbone": backbone,
                "aggregator": aggregator,
                "dim": model.descriptor_dim,
                "params": count_params(model),
                "flops": backbone_flops + count_flops(head, features_shape),
                "model_bytes": serialized_bytes(model),
                "backbone_ms": backbone_ms,
                "aggregator_ms": head_ms,
                "extraction_ms": backbone_ms + head_ms,
                "feature_shape": list(features_shape),
                "threads": torch.get_num_threads(),
            }
            rows.append(row)
            print(
                f"{backbone:<18} {aggregator:<10} {row['dim']:>6} {row['params'] / 1e6:9.2f} {row['flops'] / 1e9:8.2f} "
                f"{row['model_bytes'] / 1e6:9.2f} {backbone_ms:12.1f} {head_ms:9.2f} {row['extraction_ms']:11.1f}",
                flush=True,
            )
            write_json(
                args.out,
                {
                    "environment": environment(),
                    "input_size": list(SIZE),
                    "rows": rows,
                    "published_comparison": comparison,
                },
            )


if __name__ == "__main__":
    main()
