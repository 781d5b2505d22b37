"""The model a map holds: an ONNX file (any precision) or an edgevpr checkpoint, and the
callable that turns a batch of images into descriptors with it."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgevpr.contract import InputContract
from edgevpr.errors import ConfigError
from edgevpr.models.checkpoint import read_checkpoint, save_checkpoint
from edgevpr.models.model import model_from_checkpoint
from edgevpr.models.resolve import stored_contract
from edgevpr.runtime.onnx_model import OnnxModel

KINDS = {"onnx": ".onnx", "checkpoint": ".pt"}


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class LoadedModel:
    """A map's model ready to run: ``forward`` maps (B, 3, H, W) float32 to (B, D) descriptors."""

    kind: str
    precision: str
    runtime: str
    contract: InputContract
    forward: object
    fixed_size: tuple[int, int] | None = None
    int8: dict | None = None

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        if self.kind == "onnx":
            return self.forward(images)
        with torch.inference_mode():
            return self.forward(images).numpy()


def copy_model(source: str | Path, kind: str, target: Path) -> None:
    shutil.copyfile(source, target)


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


def load_model(path: Path, kind: str, threads: int | None = None, where: str = "") -> LoadedModel:
    """The model file of a map; ``where`` names the map in errors."""
    if not path.is_file():
        raise ConfigError(f"{where or path}: its model file {path.name} is missing")
    if kind == "onnx":
        from edgevpr.runtime.cpu import cpu_kernels
        from edgevpr.runtime.int8_layout import layout_of

        model = OnnxModel(path, threads)
        meta = model.metadata
        layout = layout_of(meta)
        precision = meta.get("precision", "fp32") + (f"-{meta['target']}" if meta.get("target") else "")
        return LoadedModel(
            "onnx",
            precision,
            "onnxruntime",
            stored_contract(meta, str(path)),
            model,
            model.fixed_size,
            {"int8_layout": layout.name, "int8_kernels": cpu_kernels().family} if layout else None,
        )
    if kind == "checkpoint":
        payload = read_checkpoint(path)
        contract = stored_contract(payload, str(path))
        model = model_from_checkpoint(payload, str(path))
        if threads:
            torch.set_num_threads(threads)
        return LoadedModel("checkpoint", "fp32", "pytorch", contract, model)
    raise ConfigError(f"{where or path}: unknown model kind {kind!r}; use one of {', '.join(KINDS)}")
