"""``map.json``: what a map holds, written last so that it names one whole version.

{"format": "edgevpr-map/1", "edgevpr_version", "created", "updated",
 "model": {"file", "kind": onnx | checkpoint, "sha256", "precision", "runtime"},
 "contract": the input contract (edgevpr.contract),
 "descriptors": {"file", "count", "dim", "dtype", "metric"},
 "index": {"file", "spec", "params", "codec", "descriptor_bits"},
 "images": {"file"}  (a JSON of names, positions and the folders they came from),
 "positions": {"kind": utm | xy | frame},
 "known": {"min_score", "rule"}, "image_size": [H, W],
 "protocol": {"name", "precision", "runtime", "resize", "int8_layout"?, "int8_kernels"?},
 "patches": null, or {"file", "spec", "count", "per_image", "dim", "dtype", "centres", "extent"}}
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgevpr.errors import ConfigError

FORMAT = "edgevpr-map/1"
NAME = "map.json"
REQUIRED = {
    "model": ("file", "kind", "sha256"),
    "contract": (),
    "descriptors": ("file", "count", "dim", "dtype", "metric"),
    "index": ("file", "spec", "params"),
    "images": ("file",),
    "positions": ("kind",),
    "known": ("min_score", "rule"),
    "protocol": ("name",),
}


def manifest_path(folder: str | Path) -> Path:
    return Path(folder) / NAME


def read_manifest(folder: str | Path) -> dict:
    """The manifest of a map folder, checked for its format and fields, or a one-line error."""
    path = manifest_path(folder)
    if not Path(folder).is_dir():
        raise ConfigError(f"{folder}: map folder not found")
    if not path.is_file():
        raise ConfigError(f"{path}: not found; build the map with `edgevpr map build`")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid JSON ({error.__class__.__name__})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ConfigError(f"{path}: not an edgevpr map manifest (format {found!r}, expected {FORMAT})")
    for section, keys in REQUIRED.items():
        value = manifest.get(section)
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: missing section {section!r}")
        missing = [key for key in keys if key not in value]
        if missing:
            raise ConfigError(f"{path}: section {section!r} lacks {', '.join(missing)}")
    return manifest


def mapped_part(path: Path, shape: tuple[int, ...], what: str, where: str) -> np.ndarray:
    """A ``.npy`` part of a map, memory-mapped, checked against the shape the manifest gives."""
    if not path.is_file():
        raise ConfigError(f"{where}: its {what} file {path.name} is missing")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as error:
        raise ConfigError(f"{path}: not a .npy of {what} ({error})") from None
    if array.shape != tuple(shape):
        raise ConfigError(f"{path}: {what} of shape {array.shape}, the manifest says {' x '.join(map(str, shape))}")
    return array
