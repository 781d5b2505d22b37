"""Training checkpoints: one file holding the resolved run config, the model weights and,
for resuming, the optimiser and loop state. Written atomically."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from edgevpr.atomic import atomic_path
from edgevpr.config import ModelConfig, RunConfig, apply_overrides
from edgevpr.errors import ConfigError
from edgevpr.models.weights import torch_file

FORMAT = "edgevpr-checkpoint-1"


def save_checkpoint(path: str | Path, payload: dict) -> None:
    with atomic_path(path) as temporary:
        torch.save({"format": FORMAT, **payload}, temporary)


def read_checkpoint(path: str | Path) -> dict:
    payload = torch_file(path, "checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "model" not in payload:
        raise ConfigError(f"{path}: not an edgevpr training checkpoint (expected format {FORMAT})")
    return payload


def run_config_of(payload: dict, where: str) -> RunConfig:
    try:
        return apply_overrides(RunConfig(), payload["config"], where=where)
    except KeyError:
        raise ConfigError(f"{where}: checkpoint has no config") from None


def architecture_of(payload: dict, path: str | Path) -> ModelConfig:
    """The model section a checkpoint was trained with; its weights come from the checkpoint."""
    stored = run_config_of(payload, str(path)).model
    return dataclasses.replace(stored, weights=None, pretrained=False, checkpoint=str(path), onnx=None)
