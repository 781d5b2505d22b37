"""faiss indexes named by factory strings, with optional exact re-ranking of a shortlist.

A spec is a faiss ``index_factory`` string ("Flat", "IVF1024,Flat", "PQ64", "IVF1024,PQ64",
"IMI2x8,PQ64", "HNSW32"), optionally ending in ``,RerankK``: the ANN index proposes K
candidates and the full vectors, memory-mapped from disk once saved, re-score them exactly.

Descriptors are L2-normalised, so inner product ranks like cosine. faiss supports the
inverted multi-index (IMI) only with L2, which on unit vectors ranks like inner product
(||q - x||^2 = 2 - 2 q.x); such an index is built with L2 and reports inner products.

An index is trained once (on a sample, with ``max_train``) and filled in batches of
``ADD_BATCH`` rows, so a memory-mapped database is never converted whole. With ``shards`` N the
rows are split into N contiguous parts, each added to its own copy of the trained index, and
searched together (faiss ``IndexShards``: one thread per shard, ids offset by the shards before,
results merged by score): the answers of an exact index are those of one index.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field

import faiss
import numpy as np

from edgevpr.errors import ConfigError
from edgevpr.search.binary_codes import BinaryCodec, similarity

METRICS = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}
DEFAULT_PARAMS = {"IVF": "nprobe=16", "IMI": "nprobe=256", "HNSW": "efSearch=128"}
BINARY_PREFIXES = ("BFlat", "BIVF", "BHNSW")
UNIFORM_SQ8 = "SQ8uniform"  # int8 storage with one scale for all dimensions (faiss QT_8bit_uniform)
ADD_BATCH = 65536  # rows converted and added at a time


@dataclass(frozen=True)
class IndexSpec:
    factory: str  # what faiss.index_factory receives
    rerank: int = 0  # shortlist size for exact re-ranking; 0 = none

    @classmethod
    def parse(cls, text: str) -> "IndexSpec":
        parts = [part.strip() for part in text.split(",") if part.strip()]
        rerank = 0
        if parts and (match := re.fullmatch(r"Rerank(\d+)", parts[-1])):
            rerank = int(match.group(1))
            parts = parts[:-1]
            if rerank <= 0:
                raise ConfigError(f"index spec {text!r}: RerankK needs K > 0")
        if not parts:
            raise ConfigError(f"index spec {text!r} names no faiss index")
        return cls(",".join(parts), rerank)

    def __str__(self) -> str:
        return self.factory + (f",Rerank{self.rerank}" if self.rerank else "")

    @property
    def binary(self) -> bool:
        """A faiss binary index (``BFlat``, ``BIVF1024``, ``BHNSW32``): Hamming distances over
        codes of a ``search.binary_codes`` codec."""
        return self.factory.startswith(BINARY_PREFIXES)

    def faiss_metric(self, metric: str) -> int:
        if self.factory.startswith("IMI"):
            return faiss.METRIC_L2  # the only metric faiss's IMI supports
        return METRICS[metric]

    def default_params(self) -> str:
        for prefix, params in DEFAULT_PARAMS.items():
            if prefix in self.factory:
                return params
        return ""


@dataclass
class SearchIndex:
    """A faiss index plus what it needs to answer in the descriptors' metric."""

    index: faiss.Index
    spec: IndexSpec
    metric: str  # the descriptors' metric: "ip" or "l2"
    params: str = ""
    vectors: np.ndarray | None = field(default=None, repr=False)  # full vectors for re-ranking
    codec: BinaryCodec | None = field(default=None, repr=False)  # binary indexes: float -> codes
    shards: list | None = field(default=None, repr=False)  # a sharded index's parts (``index`` searches them all)

    @property
    def dim(self) -> int:
        """The dimension of the float descriptors it takes (a binary index holds codes)."""
        return self.codec.dim if self.codec is not None else self.index.d

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    def _converted(self, scores: np.ndarray) -> np.ndarray:
        """faiss L2 distances on unit vectors -> inner products, where the metric asks for ip."""
        if self.metric == "ip" and self.index.metric_type == faiss.METRIC_L2:
            return 1.0 - scores / 2.0
        return scores

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, ids), best first; k is capped at the database size."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ConfigError(f"queries have dimension {queries.shape[-1]}, the index has {self.dim}")
        k = min(k, self.ntotal)
        if self.codec is not None:
            codes = self.codec.encode(queries)
            with threads_for(len(codes)):
                distances, ids = self.index.search(codes, max(k, self.spec.rerank))
            if not self.spec.rerank:
                return similarity(distances, self.codec.bits), ids
            return rerank(self.vectors, queries, ids, k, self.metric)
        if not self.spec.rerank:
            scores, ids = self.index.search(queries, k)
            return self._converted(scores), ids
        _, shortlist = self.index.search(queries, max(k, self.spec.rerank))
        return rerank(self.vectors, queries, shortlist, k, self.metric)

    @property
    def parts(self) -> list:
        """The faiss indexes that hold the rows: the shards, or the one index."""
        return self.shards or [self.index]

    def _serialized(self, index) -> int:
        serialize = faiss.serialize_index_binary if self.codec is not None else faiss.serialize_index
        return int(serialize(index).nbytes)

    def fixed_bytes(self) -> int:
        """Bytes that do not grow with the map: trained parameters (coarse centroids, codebooks,
        scalar ranges, graph entry; one copy per shard) and a binary codec's rotation; what empty
        trained copies hold."""
        empty = (faiss.clone_binary_index if self.codec is not None else faiss.clone_index)(self.parts[0])
        empty.reset()
        return len(self.parts) * self._serialized(empty) + (self.codec.nbytes if self.codec is not None else 0)

    def footprint(self) -> tuple[int, int]:
        """(bytes that grow with the map, fixed bytes) of the searchable database, the one
        definition that eval's cost block and a map's info report: N x D x 4 for exact float
        search; else the index's size less what an empty trained copy holds (centroids,
        codebooks, scalar ranges, a binary rotation)."""
        if self.spec.factory == "Flat" and not self.spec.rerank and self.codec is None:
            return int(self.ntotal) * int(self.dim) * 4, 0
        fixed = self.fixed_bytes()
        return self.memory_bytes() - fixed, fixed

    def memory_bytes(self) -> int:
        """Bytes the index holds in memory (its serialized size, plus a binary codec's rotation);
        re-ranking vectors stay on disk."""
        held = sum(self._serialized(part) for part in self.parts)
        return held + (self.codec.nbytes if self.codec is not None else 0)


FEW_QUERIES = 16


@contextmanager
def threads_for(queries: int):
    """faiss parallelises binary search over the queries with OpenMP; for a single query the
    threads cost far more than the search (24 ms against 6 us for 200 codes, measured here with
    2 cores), so fewer than ``FEW_QUERIES`` queries run on one thread."""
    if queries >= FEW_QUERIES:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def exact_scores(vectors: np.ndarray, queries: np.ndarray, ids: np.ndarray, metric: str) -> np.ndarray:
    """Exact similarity (higher is better) of each query to its candidate rows."""
    candidates = np.asarray(vectors[ids.ravel()], dtype=np.float32).reshape(*ids.shape, -1)
    products = np.matmul(candidates, queries[:, :, None])[..., 0]  # batched BLAS, not einsum's loops
    if metric == "ip":
        return products
    return 2.0 * products - (candidates**2).sum(axis=-1) - (queries**2).sum(axis=-1, keepdims=True)


def rerank(vectors, queries: np.ndarray, shortlist: np.ndarray, k: int, metric: str):
    """Re-score a shortlist with the full vectors; the best candidate of the shortlist can only rise."""
    valid = shortlist >= 0
    safe = np.where(valid, shortlist, 0)
    order_rows = np.argsort(safe, axis=1)  # sorted row access is kinder to a memory map
    sorted_ids = np.take_along_axis(safe, order_rows, axis=1)
    scores = np.take_along_axis(
        exact_scores(vectors, queries, sorted_ids, metric), np.argsort(order_rows, axis=1), axis=1
    )
    scores = np.where(valid, scores, -np.inf)
    best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, best, axis=1), np.take_along_axis(shortlist, best, axis=1)


def build_index(
    database: np.ndarray,
    spec: str | IndexSpec = "Flat",
    metric: str = "ip",
    params: str | None = None,
    progress: bool = False,
    max_train: int | None = None,
    seed: int = 0,
    codec: BinaryCodec | None = None,
    shards: int = 1,
    fill=None,
) -> SearchIndex:
    """Train (on at most ``max_train`` random rows, if given) and fill an index, in ``shards``
    parts; a binary spec takes the ``codec`` that turns descriptors into codes. ``fill``
    (signature of ``fill_shards``) fills the shards elsewhere, such as on a Ray cluster."""
    spec = IndexSpec.parse(spec) if isinstance(spec, str) else spec
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; use ip or l2")
    if not isinstance(shards, int) or not 1 <= shards <= max(len(database), 1):
        raise ConfigError(f"--shards must be between 1 and the {len(database)} descriptors, got {shards}")
    if spec.binary:
        if codec is None:
            raise ConfigError(
                f"index {spec} holds binary codes: give --descriptor-bits 1 with the descriptors to fit "
                f"its rotation on (--descriptor-fit DIR)"
            )
        rows = codec.encode
        index = _factory(faiss.index_binary_factory, codec.bits, spec.factory)
    else:
        rows = _float_rows
        index = _factory(
            faiss.index_factory, database.shape[1], spec.factory.replace(UNIFORM_SQ8, "SQ8"), spec.faiss_metric(metric)
        )
        if UNIFORM_SQ8 in spec.factory:
            _uniform_scale(index)
        index.verbose = progress
        _skip_polysemous_training(index)
    if not index.is_trained:
        sample = database
        if max_train is not None and len(database) > max_train:
            sample = database[np.sort(np.random.default_rng(seed).choice(len(database), size=max_train, replace=False))]
        index.train(rows(sample))
    parts = (fill or fill_shards)(index, database, rows, shards, spec.binary)
    vectors = None
    if spec.rerank:
        vectors = database if isinstance(database, np.memmap) else np.ascontiguousarray(database, dtype=np.float32)
    raw = parts[0] if shards == 1 else shard_set(parts, spec.binary)
    built = SearchIndex(raw, spec, metric, vectors=vectors, codec=codec, shards=parts if shards > 1 else None)
    set_params(built, spec.default_params() if params is None else params)
    return built


def _float_rows(rows: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rows, dtype=np.float32)


def _factory(make, dim: int, factory: str, *metric):
    try:
        return make(dim, factory, *metric)
    except RuntimeError as error:
        raise ConfigError(f"faiss cannot build index {factory!r}: {str(error).strip().splitlines()[-1]}") from None


def shard_bounds(count: int, shards: int) -> list[tuple[int, int]]:
    """The contiguous [start, stop) rows of each of ``shards`` parts of ``count`` rows."""
    bounds = np.linspace(0, count, shards + 1).astype(int)
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def add_rows(index, database: np.ndarray, rows, start: int = 0, stop: int | None = None):
    """``index`` with rows [start, stop) of ``database`` added ``ADD_BATCH`` at a time (``rows``
    turns descriptors into what the index stores); returned for chaining."""
    stop = len(database) if stop is None else stop
    for first in range(start, stop, ADD_BATCH):
        index.add(rows(database[first : min(first + ADD_BATCH, stop)]))
    return index


def fill_shards(trained, database: np.ndarray, rows, shards: int, binary: bool) -> list:
    """``shards`` copies of the trained index, each holding one contiguous part of the rows,
    added ``ADD_BATCH`` rows at a time, in this process."""
    clone = faiss.clone_binary_index if binary else faiss.clone_index
    return [
        add_rows(trained if shards == 1 else clone(trained), database, rows, start, stop)
        for start, stop in shard_bounds(len(database), shards)
    ]


def shard_set(parts: list, binary: bool):
    """One searchable index over ``parts`` (searched in parallel, ids offset by the parts before)."""
    kind = faiss.IndexBinaryShards if binary else faiss.IndexShards
    combined = kind(parts[0].d, True, True)
    for part in parts:
        combined.add_shard(part)
    return combined


def _uniform_scale(index: faiss.Index) -> None:
    """int8 storage with one range for every dimension instead of one per dimension."""
    for candidate in (index, faiss.try_extract_index_ivf(index), getattr(faiss.downcast_index(index), "storage", None)):
        if candidate is not None and hasattr(faiss.downcast_index(candidate), "sq"):
            faiss.downcast_index(candidate).sq.qtype = faiss.ScalarQuantizer.QT_8bit_uniform


def _skip_polysemous_training(index: faiss.Index) -> None:
    """PQ indexes from the factory also train polysemous codes, which we never use (4x slower)."""
    for candidate in (index, faiss.try_extract_index_ivf(index)):
        if candidate is not None:
            candidate = faiss.downcast_index(candidate)
            if hasattr(candidate, "do_polysemous_training"):
                candidate.do_polysemous_training = False


def set_params(index: SearchIndex, params: str) -> None:
    if params and index.codec is not None:
        _set_binary_params(index, params)
    elif params:
        try:
            faiss.ParameterSpace().set_index_parameters(index.index, params)
        except RuntimeError as error:
            raise ConfigError(
                f"search parameters {params!r} do not fit index {index.spec}: {str(error).strip().splitlines()[-1]}"
            ) from None
    index.params = params


def _set_binary_params(index: SearchIndex, params: str) -> None:
    """``nprobe=N`` (BIVF) and ``efSearch=N`` (BHNSW): faiss's ParameterSpace takes float indexes only."""
    for raw in index.parts:
        for item in params.split(","):
            name, _, value = item.partition("=")
            target = raw if name.strip() == "nprobe" else getattr(raw, "hnsw", None)
            if not value.strip().isdigit() or target is None or not hasattr(target, name.strip()):
                raise ConfigError(f"search parameters {params!r} do not fit index {index.spec}")
            setattr(target, name.strip(), int(value))


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Search a ``SearchIndex`` (or a bare faiss index)."""
    if isinstance(index, SearchIndex):
        return index.search(queries, k)
    if isinstance(index, faiss.IndexBinary):
        return search_codes(index, queries, k)
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, index.ntotal))


def search_codes(index: faiss.IndexBinary, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """A bare binary index searched with packed codes: (similarity 1 - 2h/B, ids)."""
    codes = np.asarray(codes)
    if codes.dtype != np.uint8:
        raise ConfigError(
            f"a binary index of {index.d} bits takes packed uint8 codes, got {codes.dtype} "
            f"queries; encode float descriptors with the index's codec"
        )
    if codes.ndim != 2 or codes.shape[1] * 8 != index.d:
        raise ConfigError(f"codes of {codes.shape[-1] * 8} bits given to a binary index of {index.d} bits")
    with threads_for(len(codes)):
        distances, ids = index.search(np.ascontiguousarray(codes), min(k, index.ntotal))
    return similarity(distances, index.d), ids


def check_fits(spec: IndexSpec, count: int, where: str) -> None:
    """One line, before any work, when a map of ``count`` entries is too small to train
    ``spec`` (inverted lists need at least one training vector per list, product quantizers
    2**bits per codebook), with a spec that fits."""
    needs = []
    for match in re.finditer(r"IVF(\d+)", spec.factory):
        needs.append((int(match.group(1)), f"{match.group(1)} inverted lists"))
    for match in re.finditer(r"IMI2x(\d+)", spec.factory):
        needs.append((2 ** int(match.group(1)), f"2^{match.group(1)} cells per IMI half"))
    for match in re.finditer(r"PQ\d+(?:x(\d+))?", spec.factory):
        bits = int(match.group(1) or 8)
        needs.append((2**bits, f"{2**bits} centroids per PQ codebook"))
    short = [(need, what) for need, what in needs if count < need]
    if short:
        need, what = max(short)
        raise ConfigError(
            f"{where}: index {spec} needs at least {need} vectors to train its {what}; "
            f"the map has {count}: use {suggest_spec(count)}"
        )


def suggest_spec(count: int) -> str:
    """An index for ``count`` entries: exact search while it is small, else inverted lists of
    about 39 training vectors per list (faiss's own advice), with PQ and exact re-ranking from
    a quarter of a million entries."""
    if count < 10_000:
        return "Flat"
    lists = 2 ** int(np.log2(max(count // 39, 1)))
    lists = min(lists, 65536)
    return f"IVF{lists},Flat" if count < 250_000 else f"IVF{lists},PQ64,Rerank1000"
