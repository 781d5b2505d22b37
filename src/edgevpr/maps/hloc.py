"""Hand a map's retrieval to hloc / COLMAP (Sarlin et al. 2019, cvg/Hierarchical-Localization):

- ``global-feats.h5``: one group per image name holding a ``global_descriptor`` dataset, the
  layout hloc's global feature extraction writes and its ``pairs_from_retrieval`` reads; names
  are relative paths, ``FOLDER/FILE`` (the map's images under their folder's name, the queries
  under theirs), as hloc names images relative to one image root;
- ``pairs.txt``: ``query_name db_name`` per line, each query's top-k map images, best first.

Both files are written under temporary names and renamed into place."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgevpr.atomic import atomic_path
from edgevpr.data.images import list_images
from edgevpr.errors import ConfigError
from edgevpr.extraction.extract import extract

FEATURES, PAIRS = "global-feats.h5", "pairs.txt"


def _write_features(path: Path, names: list[str], descriptors: np.ndarray) -> None:
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            for name, descriptor in zip(names, descriptors):
                handle.create_group(name).create_dataset("global_descriptor", data=np.asarray(descriptor, np.float32))


def export_hloc(map_, queries: str | Path, out: str | Path, top_k: int = 20, batch_size: int = 16) -> dict:
    """Write ``out/global-feats.h5`` (map and query descriptors) and ``out/pairs.txt``."""
    out, queries = Path(out), Path(queries)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    paths = list_images(queries)
    descriptors = extract(map_.model, paths, map_.model.contract, batch_size=batch_size, label="queries").descriptors
    database_names = [f"{Path(source).name}/{name}" for source, name in zip(map_.sources, map_.names)]
    query_names = [f"{queries.name}/{p.name}" for p in paths]
    if set(database_names) & set(query_names):
        raise ConfigError(f"{queries}: its images have the same names as map images ({queries.name}/...)")
    out.mkdir(parents=True, exist_ok=True)
    _write_features(
        out / FEATURES, database_names + query_names, np.concatenate([np.asarray(map_.descriptors), descriptors])
    )
    _, ids = map_.index.search(descriptors, top_k)
    lines = [f"{query} {database_names[i]}" for query, row in zip(query_names, ids) for i in row if i >= 0]
    with atomic_path(out / PAIRS) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return {
        "features": str(out / FEATURES),
        "pairs": str(out / PAIRS),
        "database": len(database_names),
        "queries": len(query_names),
        "pairs_written": len(lines),
    }
