"""Saving and loading a ``SearchIndex``: the faiss file, a JSON sidecar naming its spec,
metric and dimension, and for re-ranking the full vectors as a ``.npy`` memory-mapped on load.

Every file is written to a temporary name and renamed, so an interrupted write leaves the
previous index whole.
"""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np

from edgevpr.atomic import atomic_path, write_json, write_npy
from edgevpr.errors import ConfigError
from edgevpr.search.index import IndexSpec, SearchIndex, set_params

FORMAT = "edgevpr-index/1"


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def vectors_file(path: Path) -> Path:
    return path.with_name(path.name + ".vectors.npy")


def save_index(index: SearchIndex, path: str | Path) -> None:
    path = Path(path)
    if index.spec.rerank:
        write_npy(vectors_file(path), np.asarray(index.vectors, dtype=np.float32))
    with atomic_path(path) as tmp:
        faiss.write_index(index.index, str(tmp))
    write_json(
        sidecar(path),
        {
            "format": FORMAT,
            "spec": str(index.spec),
            "metric": index.metric,
            "dim": index.dim,
            "ntotal": index.ntotal,
            "params": index.params,
            "vectors": vectors_file(path).name if index.spec.rerank else None,
        },
    )


def load_index(path: str | Path, dim: int | None = None, metric: str | None = None) -> SearchIndex:
    """Load and check against the descriptors' dimension and metric, naming any mismatch."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: index file not found")
    if not sidecar(path).is_file():
        raise ConfigError(f"{path}: no {sidecar(path).name} beside it; build the index with `edgevpr index build`")
    meta = json.loads(sidecar(path).read_text())
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{sidecar(path)}: unknown format {meta.get('format')!r}")
    if dim is not None and meta["dim"] != dim:
        raise ConfigError(f"{path}: index has dimension {meta['dim']}, descriptors have {dim}")
    if metric is not None and meta["metric"] != metric:
        raise ConfigError(f"{path}: index was built for metric {meta['metric']}, descriptors use {metric}")
    try:
        raw = faiss.read_index(str(path))
    except RuntimeError as error:
        raise ConfigError(f"{path}: not a readable faiss index ({str(error).strip().splitlines()[-1]})") from None
    if raw.d != meta["dim"] or raw.ntotal != meta["ntotal"]:
        raise ConfigError(f"{path}: index does not match its sidecar {sidecar(path).name} (d, ntotal)")
    vectors = None
    spec = IndexSpec.parse(meta["spec"])
    if spec.rerank:
        vectors = np.load(path.with_name(meta["vectors"]), mmap_mode="r")
        if vectors.shape != (raw.ntotal, raw.d):
            raise ConfigError(f"{path}: re-ranking vectors have shape {vectors.shape}, expected {(raw.ntotal, raw.d)}")
    index = SearchIndex(raw, spec, meta["metric"], vectors=vectors)
    set_params(index, meta["params"])
    return index
