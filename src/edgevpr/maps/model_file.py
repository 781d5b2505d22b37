"""The model a map holds: an ONNX file (any precision) or an edgevpr checkpoint, loaded as
the deployed model (``models.describer.Describer``) that ``eval`` runs too."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from edgevpr.contract import InputContract
from edgevpr.errors import ConfigError
from edgevpr.models.checkpoint import save_checkpoint
from edgevpr.models.describer import Describer

KINDS = {"onnx": ".onnx", "checkpoint": ".pt"}


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_torch_model(model: torch.nn.Module, config_dict: dict, contract: InputContract, target: Path) -> None:
    """A built (and initialised) model as an edgevpr checkpoint, so that the map can rebuild it."""
    save_checkpoint(
        target,
        {
            "config": config_dict,
            "contract": contract.to_dict(),
            "model": model.state_dict(),
            "state": {"written_by": "edgevpr map build"},
        },
    )


def load_model(path: Path, kind: str, threads: int | None = None, where: str = "") -> Describer:
    """The model file of a map; ``where`` names the map in errors."""
    if not path.is_file():
        raise ConfigError(f"{where or path}: its model file {path.name} is missing")
    if kind == "onnx":
        return Describer.onnx(path, threads)
    if kind == "checkpoint":
        return Describer.checkpoint(path, threads)
    raise ConfigError(f"{where or path}: unknown model kind {kind!r}; use one of {', '.join(KINDS)}")
