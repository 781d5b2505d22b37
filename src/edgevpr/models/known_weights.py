"""Weights that carry their input contract, as timm's pretrained configs carry mean, std and
input size: a weight file known by its SHA-256, or a backbone's library ImageNet weights.

``--weights ../shared/weights/mobilenet_v2_imagenet_tflite.pth`` alone then brings TF-SAME
padding and mean = std = 0.5, without which that file's recall collapses (its TFLite origin was
trained that way; ``../shared/weights/README.md``)."""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

# sha256 of the file -> what it needs (mean, std and padding are the contract's fields)
KNOWN_FILES = {
    "d8ba5c6a31c5e51d43767414faca8803d58aa74982e03656f3e1295e3f43db1e": {
        "name": "mobilenet_v2_imagenet_tflite",
        "backbone": "mobilenetv2",
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
        "tf_same_padding": True,
    },
    "46cef2797f0b28d31f544df5ff4f9c74e78b3a4fafbe1d961e72968545fd1688": {
        "name": "efficientnet_lite0_imagenet",
        "backbone": "efficientnet_lite0",
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
    },
}
# backbone -> the timm model whose pretrained config gives the contract of --pretrained
TIMM_PRETRAINED = {
    "efficientnet_lite0": "tf_efficientnet_lite0",
    "vit": "vit_small_patch16_224",
    "ghostcnn": "ghostnet_100",
}


@lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime: float) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return _sha256(str(path), stat.st_size, stat.st_mtime)


def known_file(path: str | Path) -> dict | None:
    """What a known weight file needs (name, backbone, contract fields, sha256), or None."""
    sha = file_sha256(path)
    entry = KNOWN_FILES.get(sha) if sha else None
    return None if entry is None else entry | {"sha256": sha}


def pretrained_contract(backbone: str) -> dict | None:
    """mean and std of a backbone's --pretrained weights where they are not ImageNet's."""
    name = TIMM_PRETRAINED.get(backbone)
    if name is None:
        return None
    import timm

    config = timm.models.get_pretrained_cfg(name)
    return {"name": f"timm {name}", "mean": tuple(config.mean), "std": tuple(config.std)}
