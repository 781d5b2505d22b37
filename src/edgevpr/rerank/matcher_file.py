"""A trained matcher on disk: its weights as arrays, its configuration and the patch extraction
it was trained on, in one ``.npz`` read with ``allow_pickle=False`` (no pickle is ever loaded)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import torch

from edgevpr.atomic import atomic_path
from edgevpr.errors import ConfigError
from edgevpr.rerank.matcher import AttentionMatcher

FORMAT = "edgevpr-matcher/1"


def save_matcher(matcher: AttentionMatcher, path: str | Path, info: dict) -> None:
    """``info``: the patch spec, the model the patches come from, the training data and result."""
    arrays = {f"w/{name}": value.detach().cpu().numpy() for name, value in matcher.state_dict().items()}
    meta = {"format": FORMAT, "config": matcher.config, **info}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, __meta__=np.array(json.dumps(meta)), **arrays)


def load_matcher(path: str | Path) -> tuple[AttentionMatcher, dict]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: matcher file not found")
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(str(archive["__meta__"]))
            state = {key[2:]: torch.from_numpy(archive[key]) for key in archive.files if key.startswith("w/")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise ConfigError(f"{path}: not a matcher file ({error.__class__.__name__})") from None
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    matcher = AttentionMatcher(**meta["config"])
    try:
        matcher.load_state_dict(state)
    except RuntimeError as error:
        raise ConfigError(
            f"{path}: weights do not fit the matcher it describes ({str(error).splitlines()[0]})"
        ) from None
    return matcher.eval(), meta
