"""Patch descriptors a map keeps for a second stage (``map build --patches``): fp16, or compact
(``--patch-dim``, ``--patch-bits``: ``extraction.patch_codec``, fitted on the map's own
patches), one row of n_P patches per map image, memory-mapped on load, with the patch spec,
their centres and the feature map's extent. A PyTorch model (a checkpoint, or one built from a
config) pools them from its feature map; an ONNX file exported with ``--patches`` gives them as
its second output, at the precision it was exported in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgevpr.extraction.extract import extract
from edgevpr.extraction.patch_codec import PatchCodec
from edgevpr.extraction.patches import PatchSpec, patch_extractor
from edgevpr.maps.manifest import mapped_part
from edgevpr.rerank.registry import PatchSet


@dataclass
class MapPatches:
    array: np.ndarray  # (N, n_P, D_p) float16, or as the codec stores them
    spec: PatchSpec
    centres: np.ndarray  # (n_P, 2)
    extent: tuple[int, int]  # feature map (width, height)
    codec: PatchCodec | None = None  # compact patches: PCA and fp16/int8 storage

    @property
    def stride(self) -> int:
        return min(self.spec.strides)

    def sets(self, ids) -> list[PatchSet]:
        decode = self.codec.decode if self.codec is not None else (lambda rows: rows)
        return [PatchSet(decode(self.array[i]), self.centres, self.stride, self.extent) for i in ids]

    def stored(self) -> np.ndarray:
        """The array as the map file holds it."""
        return np.asarray(self.array, dtype=np.float16) if self.codec is None else self.array

    def query(self, query: PatchSet) -> PatchSet:
        """A query's patches in the map's space (projected when the map's are compact)."""
        if self.codec is None:
            return query
        return PatchSet(self.codec.project(query.patches), query.positions, query.stride, query.extent)

    def bytes_per_image(self) -> int:
        return int(self.array.shape[1] * self.array.shape[2] * self.stored().dtype.itemsize)

    def info(self, file: str, codec_file: str | None = None) -> dict:
        return {
            "file": file,
            "spec": self.spec.to_dict(),
            "count": int(self.array.shape[0]),
            "per_image": int(self.array.shape[1]),
            "dim": int(self.array.shape[2]),
            "dtype": str(self.stored().dtype),
            "codec": codec_file,
            "centres": self.centres.tolist(),
            "extent": list(self.extent),
        }


def patch_model(model, spec: PatchSpec):
    """The deployed model's patch extractor (``extraction.patches.patch_extractor``)."""
    return patch_extractor(model.network, spec)


def extract_patches(
    model, paths, spec: PatchSpec, batch_size: int, max_pixels: int, codec: PatchCodec | None = None
) -> tuple[np.ndarray, list, MapPatches]:
    """The images' descriptors, their most common size after resizing, and their patches
    (encoded by ``codec`` when there is one), from one pass of each image."""
    patcher = patch_model(model, spec)
    found = extract(patcher, paths, model.contract, batch_size=batch_size, max_pixels=max_pixels, label="map images")
    height, width = patcher.map_size
    array = found.patches if codec is None else codec.encode(found.patches)
    size = list(found.sizes.most_common(1)[0][0])
    return found.descriptors, size, MapPatches(array, patcher.spec, patcher.centres(), (width, height), codec)


def compact(patches: MapPatches, dim: int | None, bits: int) -> MapPatches:
    """``patches`` (full, float) stored compactly: the codec fitted on them (the map's images)."""
    codec = PatchCodec.fit_if_compact(patches.array, dim, bits)
    if codec is None:
        return patches
    return MapPatches(codec.encode(patches.array), patches.spec, patches.centres, patches.extent, codec)


def query_patches(model, spec: PatchSpec, tensor: torch.Tensor) -> tuple[np.ndarray, PatchSet]:
    """The global descriptor and the patches of one image, from one backbone pass."""
    patcher = patch_model(model, spec)
    with torch.inference_mode():
        descriptor, patches = patcher(tensor)
    height, width = patcher.map_size
    query = PatchSet(patches[0].numpy(), patcher.centres(), min(spec.strides), (width, height))
    return descriptor[0].numpy(), query


def load_patches(folder: Path, info: dict | None, count: int, where: str) -> MapPatches | None:
    if not info:
        return None
    array = mapped_part(folder / info["file"], (count, info["per_image"], info["dim"]), "patches", where)
    codec = PatchCodec.load(folder / info["codec"], where) if info.get("codec") else None
    return MapPatches(
        array, PatchSpec.from_dict(info["spec"]), np.asarray(info["centres"], np.float32), tuple(info["extent"]), codec
    )
