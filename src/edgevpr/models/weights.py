"""Loading pretrained weights: a local state dict, or the library's own download mechanism."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from edgevpr.errors import ConfigError, EdgeVPRError


def torch_file(path: str | Path, what: str):
    """``torch.load`` of tensors and plain data only, or a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        raise ConfigError(f"{path}: not a readable {what} ({error.__class__.__name__}: {first})") from None


def load_state_dict_file(path: str | Path) -> dict:
    state = torch_file(path, "weights file")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: expected a state dict, found {type(state).__name__}")
    return state


def load_into(module: nn.Module, state: dict, source: str) -> None:
    """Strict load that names the first few missing and unexpected keys on failure."""
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches raise even when not strict
        detail = str(error).strip().splitlines()[-1].strip()
        raise ConfigError(f"{source}: weights do not fit the {module.__class__.__name__} layout ({detail})") from None
    if result.missing_keys or result.unexpected_keys:
        raise ConfigError(
            f"{source}: weights do not fit the {module.__class__.__name__} layout "
            f"(missing {len(result.missing_keys)}: {result.missing_keys[:3]}, "
            f"unexpected {len(result.unexpected_keys)}: {result.unexpected_keys[:3]})"
        )


def download_failed(what: str, error: Exception) -> EdgeVPRError:
    return EdgeVPRError(
        f"could not fetch the pretrained weights of {what} ({error.__class__.__name__}: {error}); "
        f"offline, pass a local state dict with --weights PATH"
    )


def torchvision_pretrained(builder, weights_enum, what: str) -> nn.Module:
    """``builder(weights=weights_enum)``: torchvision's own download and cache."""
    try:
        return builder(weights=weights_enum)
    except (OSError, RuntimeError) as error:  # URLError is an OSError
        raise download_failed(what, error) from None


def no_pretrained(backbone: str, why: str) -> str:
    """The one line for --pretrained on a backbone that has no weights to load."""
    return f"--pretrained: {backbone} has no pretrained weights here ({why}); pass --weights PATH or train it"
