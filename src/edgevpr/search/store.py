"""Saving and loading a ``SearchIndex`` as one unit.

The path given (``--out map.faiss``) holds a small JSON manifest: format, spec, metric,
dimension, entry count, search parameters, and the names of the parts of this version: the
faiss file and, for re-ranking, the full vectors (``.npy``, memory-mapped on load). The parts
are written under fresh names first and the manifest renamed into place last
(``atomic.commit``), so a kill at any moment leaves the previous index or the new one, never
a mix; parts of older versions are removed after the commit.

Files of format 1 (a raw faiss file with a ``.json`` sidecar and ``.vectors.npy``) still load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import faiss
import numpy as np

from edgevpr.atomic import commit, part_path, writing
from edgevpr.errors import ConfigError
from edgevpr.search.binary_codes import BinaryCodec
from edgevpr.search.index import IndexSpec, SearchIndex, set_params

FORMAT = "edgevpr-index/2"
LEGACY_FORMAT = "edgevpr-index/1"


def sidecar(path: Path) -> Path:
    """Format 1: the JSON beside the raw faiss file."""
    return path.with_name(path.name + ".json")


def save_index(index: SearchIndex, path: str | Path) -> None:
    path = Path(path)
    faiss_part = part_path(path, ".faiss")
    codec_part = part_path(path, ".codec.npz") if index.codec is not None else None
    vectors_part = part_path(path, ".vectors.npy") if index.spec.rerank else None
    parts = [part for part in (faiss_part, codec_part, vectors_part) if part is not None]
    with writing(parts, path):  # a failed write (a full disk) leaves no part behind
        if index.codec is not None:
            faiss.write_index_binary(index.index, str(faiss_part))
            index.codec.save(codec_part)
        else:
            faiss.write_index(index.index, str(faiss_part))
        if vectors_part is not None and not _link_npy(index.vectors, vectors_part):
            dtype = np.float16 if index.vectors.dtype == np.float16 else np.float32
            with open(vectors_part, "wb") as handle:
                np.save(handle, np.asarray(index.vectors, dtype=dtype))
    manifest = {
        "format": FORMAT,
        "spec": str(index.spec),
        "metric": index.metric,
        "dim": index.dim,
        "ntotal": index.ntotal,
        "params": index.params,
        "faiss": faiss_part.name,
        "vectors": vectors_part.name if vectors_part else None,
        "codec": codec_part.name if codec_part else None,
    }
    commit(path, manifest, parts)
    sidecar(path).unlink(missing_ok=True)  # a format-1 sidecar of an index this one replaced


class DiskRows:
    """The rows of a 2-D ``.npy`` read on demand with ``pread``: only the rows asked for are
    read, and nothing stays mapped into the process (a memory map's touched pages count as
    resident memory, and read-ahead touches far more than the rows re-ranking needs)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with open(self.path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(handle)
            self.offset = handle.tell()
        if len(shape) != 2 or fortran or dtype.hasobject:
            raise ValueError(f"expected a C-ordered 2-D numeric array, got shape {shape}")
        self.shape, self.dtype = tuple(shape), dtype
        self.row_bytes = shape[1] * dtype.itemsize
        self.fd = os.open(self.path, os.O_RDONLY)

    @property
    def ndim(self) -> int:
        return 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        rows = np.atleast_1d(np.asarray(rows)).ravel()
        out = np.empty((len(rows), self.shape[1]), dtype=self.dtype)
        for j, i in enumerate(rows):
            out[j] = np.frombuffer(os.pread(self.fd, self.row_bytes, self.offset + int(i) * self.row_bytes), self.dtype)
        return out

    def __array__(self, dtype=None, copy=None):
        whole = np.load(self.path, mmap_mode="r")
        return np.asarray(whole, dtype=dtype)

    def __del__(self):
        try:
            os.close(self.fd)
        except (OSError, AttributeError):
            pass


def _link_npy(vectors, target: Path) -> bool:
    """Hard-link the ``.npy`` that ``vectors`` memory-maps whole (a map of millions of vectors
    is not copied again); False when they are not such a map or the file system refuses."""
    if isinstance(vectors, DiskRows):
        try:
            os.link(vectors.path, target)
            return True
        except OSError:
            return False
    filename = getattr(vectors, "filename", None)
    if not isinstance(vectors, np.memmap) or not filename or vectors.dtype not in (np.float16, np.float32):
        return False
    try:
        with open(filename, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(handle)
            header = handle.tell()
        if (shape, fortran, dtype) != (vectors.shape, False, vectors.dtype) or vectors.offset != header:
            return False
        os.link(filename, target)
        return True
    except (OSError, ValueError, TypeError):
        return False


def _manifest(path: Path) -> tuple[dict, Path]:
    """The index's manifest and the faiss file it names (format 2, or format 1's sidecar)."""
    with open(path, "rb") as handle:
        head = handle.read(1)
    where = path
    if head != b"{":  # format 1: the path is the faiss file itself
        where = sidecar(path)
        if not where.is_file():
            raise ConfigError(f"{path}: no {where.name} beside it; build the index with `edgevpr index build`")
    try:
        meta = json.loads(where.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{where}: not an index manifest ({error.__class__.__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") not in (FORMAT, LEGACY_FORMAT):
        raise ConfigError(f"{where}: unknown index format {meta.get('format') if isinstance(meta, dict) else meta!r}")
    missing = [k for k in ("spec", "metric", "dim", "ntotal", "params") if k not in meta]
    if missing:
        raise ConfigError(f"{where}: index manifest lacks {', '.join(missing)}")
    return meta, (path.with_name(meta["faiss"]) if meta["format"] == FORMAT else path)


def load_index(path: str | Path, dim: int | None = None, metric: str | None = None) -> SearchIndex:
    """Load and check against the descriptors' dimension and metric, naming any mismatch."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: index file not found")
    meta, faiss_file = _manifest(path)
    if dim is not None and meta["dim"] != dim:
        raise ConfigError(f"{path}: index has dimension {meta['dim']}, descriptors have {dim}")
    if metric is not None and meta["metric"] != metric:
        raise ConfigError(f"{path}: index was built for metric {meta['metric']}, descriptors use {metric}")
    if not faiss_file.is_file():
        raise ConfigError(f"{path}: its faiss file {faiss_file.name} is missing")
    spec = IndexSpec.parse(meta["spec"])
    codec = None
    if spec.binary:
        codec_path = path.with_name(meta.get("codec") or "")
        if not meta.get("codec") or not codec_path.is_file():
            raise ConfigError(f"{path}: its binary codec {meta.get('codec')} is missing")
        codec = BinaryCodec.load(codec_path)
    try:
        raw = (faiss.read_index_binary if spec.binary else faiss.read_index)(str(faiss_file))
    except RuntimeError as error:
        raise ConfigError(f"{faiss_file}: not a readable faiss index ({str(error).strip().splitlines()[-1]})") from None
    if (codec.dim if codec else raw.d) != meta["dim"] or raw.ntotal != meta["ntotal"]:
        raise ConfigError(f"{path}: the faiss file {faiss_file.name} does not match the manifest (d, ntotal)")
    if codec is not None and codec.bits != raw.d:
        raise ConfigError(f"{path}: the codec gives {codec.bits}-bit codes, the binary index holds {raw.d} bits")
    vectors = None
    if spec.rerank:
        vectors_path = path.with_name(meta["vectors"] or "")
        if not meta["vectors"] or not vectors_path.is_file():
            raise ConfigError(f"{path}: its re-ranking vectors {meta['vectors']} are missing")
        try:
            vectors = DiskRows(vectors_path)
        except ValueError as error:
            raise ConfigError(f"{vectors_path}: not a .npy of vectors ({error})") from None
        if vectors.shape != (raw.ntotal, meta["dim"]):
            raise ConfigError(
                f"{path}: re-ranking vectors have shape {vectors.shape}, expected {(raw.ntotal, meta['dim'])}"
            )
    index = SearchIndex(raw, spec, meta["metric"], vectors=vectors, codec=codec)
    set_params(index, meta["params"])
    return index
