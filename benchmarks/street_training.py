"""The training setup shared by the synthetic-street training benchmarks."""

from __future__ import annotations

from edgevpr.config import RunConfig, load_config
from edgevpr.data.synthetic import SyntheticSpec, generate_synthetic

STREET = SyntheticSpec(train_places=600, val_places=150)


def street_config(
    root: str,
    run_dir: str,
    minutes: float,
    train: dict | None = None,
    backbone: str = "efficientnet_lite0",
    resize_factor: float = 0.5,
) -> RunConfig:
    """EfficientNet-Lite0 (ImageNet) + GeM, partial mining, Adam 3e-4, first 4 stages frozen."""
    generate_synthetic(root, STREET)
    settings = {
        "dataset": root,
        "miner": "partial",
        "cache_database": 300,
        "refresh_every": 250,
        "negatives": 5,
        "queries_per_epoch": 500,
        "epochs": 100,
        "patience": 3,
        "lr": 3e-4,
        "freeze_stages": 4,
        "brightness": 0.3,
        "contrast": 0.3,
        "saturation": 0.3,
        "max_minutes": minutes,
        "run_dir": run_dir,
        "seed": 0,
    }
    return load_config(
        overrides={
            "model": {
                "backbone": backbone,
                "aggregator": "gem",
                "pretrained": True,
            },  # the pretrained config brings mean/std
            "data": {"dataset": root, "resize_factor": resize_factor},
            "train": settings | (train or {}),
            "eval": {"latency_runs": 20},
        }
    )


def untrained(config: RunConfig) -> RunConfig:
    """The same network and test protocol, before training."""
    plain = config.to_dict()
    return load_config(overrides={"model": plain["model"], "data": plain["data"], "eval": {"latency_runs": 20}})
