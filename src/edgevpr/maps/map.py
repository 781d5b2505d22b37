"""A map: a model, its input contract, the descriptors of the map's images, a faiss index over
them, the images' names and positions, built once and then localized against.

Every version of a map is a set of parts (``map.json.vTOKEN.*``) named by ``map.json``, which
is written last (``atomic.commit``): building or adding to a map and being killed at any
moment leaves the previous map usable."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import faiss
import numpy as np
import torch
from PIL import Image

import edgevpr
from edgevpr.atomic import commit, part_path, writing
from edgevpr.config import DEFAULT_MAX_PIXELS, RunConfig
from edgevpr.data.images import list_images, load_rgb
from edgevpr.errors import ConfigError, DatasetError
from edgevpr.extraction.binary_codec import fit_binary_codec
from edgevpr.extraction.extract import extract
from edgevpr.extraction.patch_codec import PatchCodec
from edgevpr.extraction.patches import PatchSpec
from edgevpr.maps.known import calibrate_min_score
from edgevpr.maps.manifest import FORMAT, manifest_path, mapped_part, read_manifest
from edgevpr.maps.model_file import KINDS, load_model, save_torch_model, sha256_of
from edgevpr.maps.patches import MapPatches, compact, extract_patches, load_patches, query_patches
from edgevpr.maps.positions import distance, positions_for
from edgevpr.models.describer import Describer
from edgevpr.models.initialise import initialise_aggregator
from edgevpr.models.resolve import contract_of, resolve_config
from edgevpr.rerank.stage import rerank_one
from edgevpr.search.binary_codes import BinaryCodec
from edgevpr.search.descriptor_bits import storage_spec, stored_bits
from edgevpr.search.index import IndexSpec, SearchIndex, build_index, check_fits, set_params, shard_set
from edgevpr.search.sequence import DEFAULT_VELOCITIES, sequence_scores_for, sequence_similarity


@dataclass
class ModelSource:
    """Where ``map build`` takes its model: an ONNX file, a checkpoint, or a run config to build."""

    onnx: str | None = None
    checkpoint: str | None = None
    config: RunConfig | None = None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _protocol(model: Describer, images: str) -> dict:
    name = ":".join([Path(images).name or "map", model.contract.rule(), model.name()])
    return {
        "name": name,
        "precision": model.precision,
        "runtime": model.runtime,
        "resize": model.contract.rule(),
        **(model.int8 or {}),
    }


class Map:
    """A loaded map (``Map.load``), or one being built (``Map.build``)."""

    def __init__(
        self,
        folder: Path,
        manifest: dict,
        model: Describer,
        descriptors: np.ndarray,
        index: SearchIndex,
        names: list[str],
        positions: list,
        sources: list[str],
        patches: MapPatches | None = None,
    ):
        self.folder, self.manifest, self.model = folder, manifest, model
        self.descriptors, self.index = descriptors, index
        self.names, self.positions, self.sources = names, positions, sources
        self.patches = patches  # for a second stage (maps.patches)
        self._sets: list | None = None  # one PatchSet per map image, made once for the re-rankers' caches
        self._prepared: set[int] = set()  # the re-rankers already given them (Reranker.prepare)

    def _patch_sets(self, reranker) -> list:
        """Every map image's patches, handed to ``reranker.prepare`` once (the matcher encodes
        them then, so a query costs only its own work), as eval's second stage does."""
        if self._sets is None:
            self._sets = self.patches.sets(range(len(self.names)))
        if id(reranker) not in self._prepared:
            reranker.prepare(self._sets)
            self._prepared.add(id(reranker))
        return self._sets

    # -- building ----------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        source: ModelSource,
        images: str | Path,
        out: str | Path,
        positions: str | None = None,
        index: str = "Flat",
        params: str | None = None,
        threads: int | None = None,
        batch_size: int = 16,
        max_pixels: int | None = None,
        log=None,
        descriptor_bits: int = 32,
        descriptor_fit: str | None = None,
        binary_rotation: str = "itq",
        int8_scale: str = "dimension",
        patches: PatchSpec | None = None,
        patch_dim: int | None = None,
        patch_bits: int = 16,
        ray: str | None = None,
        shards: int = 1,
    ) -> Map:
        """Extract every image of ``images`` with the model of ``source``, index the descriptors
        and write the map folder ``out`` (which must not hold a map already). With
        ``descriptor_bits`` 1 the binary rotation is fitted on the images of ``descriptor_fit``;
        with ``shards`` N the index is N parts searched together (``search.index``)."""
        out = Path(out)
        if manifest_path(out).exists():
            raise ConfigError(f"{out}: already holds a map; add images with `edgevpr map add`, or choose another --out")
        if out.exists() and not out.is_dir():
            raise ConfigError(f"{out}: exists and is not a folder")
        spec = storage_spec(index, descriptor_bits, int8_scale)
        paths = list_images(images)
        check_fits(spec, len(paths), where=f"{images}")
        if spec.binary and not descriptor_fit:
            raise ConfigError(
                f"index {spec} holds binary codes: give --descriptor-fit DIR (images other than the map's)"
            )
        kind, place = positions_for(paths, positions)
        out.mkdir(parents=True, exist_ok=True)
        model_part = part_path(manifest_path(out), ".onnx" if source.onnx else ".pt")
        config = None
        if source.onnx or source.checkpoint:
            given = Path(source.onnx or source.checkpoint)
            if not given.is_file():
                raise ConfigError(f"{given}: model file not found")
            model_kind = "onnx" if source.onnx else "checkpoint"
            load_model(given, model_kind, threads)  # refused here, naming the user's file, before any copy
            model_part.write_bytes(given.read_bytes())
            model = load_model(model_part, model_kind, threads, str(out))
        else:
            config = resolve_config(source.config or RunConfig())
            model = cls._built_model(config, paths, model_part, threads, max_pixels)
        descriptors, size, stored = cls._extract(model, paths, batch_size, max_pixels, log, ray, model_part, patches)
        codec = None
        limit = max_pixels or DEFAULT_MAX_PIXELS
        if spec.binary:  # as eval fits it (extraction.binary_codec)
            seed = config.eval.seed if config else 0
            codec = fit_binary_codec(
                model,
                model.contract,
                descriptor_fit,
                descriptors.shape[1],
                binary_rotation,
                seed,
                images,
                batch_size=batch_size,
                max_pixels=limit,
            )
        if stored is not None:  # compact patches: the codec is fitted on the map's own patches
            stored = compact(stored, patch_dim, patch_bits)
        return cls._commit(
            out,
            model,
            model_part,
            descriptors,
            spec,
            params,
            [p.name for p in paths],
            place,
            kind,
            [str(images)] * len(paths),
            created=_now(),
            images_label=str(images),
            image_size=size,
            codec=codec,
            patches=stored,
            shards=shards,
            fill=cls._filler(ray, shards, log),
        )

    @staticmethod
    def _filler(ray: str | None, shards: int, log):
        """With ``ray`` and more than one shard, the index shards are filled on the cluster
        (``maps.ray_index``); otherwise in this process (None)."""
        if not ray or shards < 2:
            return None
        from edgevpr.maps.ray_index import ray_filler

        return ray_filler(ray, log)

    @staticmethod
    def _built_model(config: RunConfig, paths, model_part: Path, threads, max_pixels) -> Describer:
        """A model built from a config: clusters initialised and PCA fitted on the map's images,
        saved as a checkpoint part, then loaded as every map loads its model."""
        from edgevpr.models import build_model

        model = build_model(config.model, seed=config.eval.seed).eval()
        contract = contract_of(config)
        limit = max_pixels or config.data.max_pixels
        initialise_aggregator(model, paths, contract, config.eval.seed, limit)
        if model.pca is not None and not bool(model.pca.fitted):
            model.pca.fit(extract(model, paths, contract, max_pixels=limit, label="fitting PCA").descriptors)
        save_torch_model(model, config.to_dict(), contract, model_part)
        return load_model(model_part, "checkpoint", threads)

    @staticmethod
    def _extract(
        model: Describer,
        paths,
        batch_size: int,
        max_pixels: int | None,
        log,
        ray=None,
        model_part=None,
        patches: PatchSpec | None = None,
        codec: PatchCodec | None = None,
    ) -> tuple[np.ndarray, list, MapPatches | None]:
        """The images' descriptors, the most common image size after resizing and, with
        ``patches``, their patch descriptors from the same pass; with ``ray`` (an address, or
        "local") the descriptors come from a Ray cluster's workers, the patches from here."""
        if model.fixed_size and model.contract.size is None:
            raise ConfigError(f"the model takes {model.fixed_size} images only and its contract names no size")
        limit = max_pixels or DEFAULT_MAX_PIXELS
        if patches is not None and not ray:
            descriptors, size, stored = extract_patches(model, paths, patches, batch_size, limit, codec)
            if log:
                log(f"extracted {len(paths)} images -> {descriptors.shape[1]}-D descriptors and their patches")
            return descriptors, size, stored
        stored = extract_patches(model, paths, patches, batch_size, limit, codec)[2] if patches is not None else None
        if ray:
            from edgevpr.maps.ray_extract import extract_on_ray

            kind = "onnx" if model_part.suffix == ".onnx" else "checkpoint"
            descriptors, size = extract_on_ray(model_part, kind, paths, batch_size, limit, ray, log)
            if log:
                log(f"extracted {len(paths)} images -> {descriptors.shape[1]}-D descriptors on Ray")
            return descriptors, size, stored
        extraction = extract(
            model,
            paths,
            model.contract,
            batch_size=batch_size,
            max_pixels=limit,
            label="map images",
        )
        if log:
            log(f"extracted {len(paths)} images -> {extraction.descriptors.shape[1]}-D descriptors")
        return extraction.descriptors, list(extraction.sizes.most_common(1)[0][0]), None

    @classmethod
    def _commit(
        cls,
        out: Path,
        model: Describer,
        model_part: Path,
        descriptors: np.ndarray,
        spec: IndexSpec,
        params: str | None,
        names: list[str],
        positions: list,
        kind: str,
        sources: list[str],
        created: str,
        images_label: str,
        image_size: list,
        previous: dict | None = None,
        codec: BinaryCodec | None = None,
        patches: MapPatches | None = None,
        shards: int = 1,
        fill=None,
    ) -> Map:
        manifest_file = manifest_path(out)
        descriptors = np.ascontiguousarray(descriptors, dtype=np.float32)
        if not np.isfinite(descriptors).all():
            raise DatasetError(f"{out}: the model gave NaN or infinite descriptors; check the model and its contract")
        vectors_part = part_path(manifest_file, ".npy")
        index_part = part_path(manifest_file, ".faiss")
        images_part = part_path(manifest_file, ".images.json")
        parts = [model_part, vectors_part, index_part]
        # this version's own parts go if a write fails (a full disk is one line); add's model part is the old one
        written = parts[previous is not None :] + [images_part]

        def new_part(suffix: str) -> Path:
            parts.append(part_path(manifest_file, suffix))
            written.append(parts[-1])
            return parts[-1]

        with writing(written, manifest_file):
            with open(vectors_part, "wb") as handle:
                np.save(handle, descriptors)
            vectors = np.load(vectors_part, mmap_mode="r")
            index = build_index(vectors, spec, params=params, codec=codec, shards=shards, fill=fill)
            index.vectors = vectors if spec.rerank else None
            write = faiss.write_index_binary if codec is not None else faiss.write_index
            shard_info = None
            if index.shards:  # one file per shard; the first is the index part
                shard_files = [index_part] + [new_part(".faiss") for _ in index.shards[1:]]
                for part, shard in zip(shard_files, index.shards):
                    write(shard, str(part))
                shard_info = [
                    {"file": f.name, "count": int(shard.ntotal), "bytes": f.stat().st_size}
                    for f, shard in zip(shard_files, index.shards)
                ]
            else:
                write(index.index, str(index_part))
            if codec is not None:
                codec.save(new_part(".codec.npz"))
            patch_info = None
            if patches is not None:
                patch_part = new_part(".patches.npy")
                with open(patch_part, "wb") as handle:
                    np.save(handle, patches.stored())
                codec_file = None
                if patches.codec is not None:
                    codec_file = new_part(".patch-codec.npz")
                    patches.codec.save(codec_file)
                patch_info = patches.info(patch_part.name, codec_file.name if codec_file else None)
            images_part.write_text(json.dumps({"names": names, "positions": positions, "sources": sources}))
            known = calibrate_min_score(index, descriptors, positions, kind, sources)
            manifest = {
                "format": FORMAT,
                "edgevpr_version": edgevpr.__version__,
                "created": created,
                "updated": _now(),
                "model": {
                    "file": model_part.name,
                    "kind": model.kind,
                    "sha256": sha256_of(model_part),
                    "precision": model.precision,
                    "runtime": model.runtime,
                },
                "contract": model.contract.to_dict(),
                "descriptors": {
                    "file": vectors_part.name,
                    "count": len(descriptors),
                    "dim": int(descriptors.shape[1]),
                    "dtype": "float32",
                    "metric": "ip",
                },
                "index": {
                    "file": index_part.name,
                    "spec": str(spec),
                    "params": index.params,
                    "codec": next((p.name for p in parts if p.name.endswith(".codec.npz")), None),
                    "descriptor_bits": stored_bits(spec),
                    "shards": shard_info,  # None: one index file
                },
                "images": {"file": images_part.name, "folders": sorted(set(sources))},
                "positions": {"kind": kind},
                "known": known,
                "image_size": image_size,  # the most common (H, W) after resizing: what `map info` times
                "protocol": _protocol(model, images_label) if previous is None else previous["protocol"],
                "patches": patch_info,
            }
            commit(manifest_file, manifest, parts + [images_part])
        loaded = load_patches(out, patch_info, len(descriptors), str(manifest_file))
        return cls(out, manifest, model, vectors, index, names, positions, sources, loaded)

    def add(
        self,
        images: str | Path,
        positions: str | None = None,
        batch_size: int = 16,
        max_pixels: int | None = None,
        log=None,
        ray: str | None = None,
    ) -> Map:
        """A new version of this map with the images of ``images`` appended (same model and
        contract); the index is rebuilt over every descriptor. Returns the new map."""
        paths = list_images(images)
        kind, place = positions_for(paths, positions, first_frame=len(self.names))
        if kind != self.manifest["positions"]["kind"]:
            held = self.manifest["positions"]["kind"]
            raise ConfigError(f"{images}: positions of kind {kind}, the map {self.folder} holds {held}")
        duplicate = sorted(set(self.names) & {p.name for p in paths})
        if duplicate and kind != "frame":
            raise ConfigError(f"{images}: {duplicate[0]} is in the map already ({len(duplicate)} names repeat)")
        model_part = self.folder / self.manifest["model"]["file"]
        spec, codec = (self.patches.spec, self.patches.codec) if self.patches is not None else (None, None)
        new, _, added = self._extract(self.model, paths, batch_size, max_pixels, log, ray, model_part, spec, codec)
        descriptors = np.concatenate([np.asarray(self.descriptors), new])
        codec = self.index.codec  # the rotation stays the one fitted when the map was built
        patches = None
        if added is not None:  # the same patch spec for the new images
            if added.array.shape[1:] != self.patches.array.shape[1:]:
                raise ConfigError(
                    f"{images}: images give {added.array.shape[1]} patches, the map holds "
                    f"{self.patches.array.shape[1]} per image; use images of the map's size"
                )
            stacked = np.concatenate([np.asarray(self.patches.array), added.array])
            patches = MapPatches(
                stacked, self.patches.spec, self.patches.centres, self.patches.extent, self.patches.codec
            )
        spec = IndexSpec.parse(self.manifest["index"]["spec"])
        check_fits(spec, len(descriptors), where=str(self.folder))
        model_part = self.folder / self.manifest["model"]["file"]
        shards = len(self.manifest["index"].get("shards") or [None])  # an added map keeps its shard count
        return self._commit(
            self.folder,
            self.model,
            model_part,
            descriptors,
            spec,
            self.manifest["index"]["params"],
            self.names + [p.name for p in paths],
            self.positions + place,
            kind,
            self.sources + [str(images)] * len(paths),
            self.manifest["created"],
            str(images),
            self.manifest["image_size"],
            previous=self.manifest,
            codec=codec,
            patches=patches,
            shards=shards,
            fill=self._filler(ray, shards, log),
        )

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: str | Path, threads: int | None = None) -> Map:
        """A map folder, checked part by part: every problem is one line naming the file."""
        folder = Path(folder)
        manifest = read_manifest(folder)
        where = str(manifest_path(folder))
        model_file = folder / manifest["model"]["file"]
        if manifest["model"]["kind"] not in KINDS:
            raise ConfigError(f"{where}: unknown model kind {manifest['model']['kind']!r}")
        if not model_file.is_file():
            raise ConfigError(f"{where}: its model file {model_file.name} is missing")
        if sha256_of(model_file) != manifest["model"]["sha256"]:
            raise ConfigError(f"{model_file}: not the model this map was built with (SHA-256 differs)")
        model = load_model(model_file, manifest["model"]["kind"], threads, where)
        if model.contract.to_dict() != manifest["contract"]:
            raise ConfigError(f"{model_file}: its input contract differs from the one the map was built with")
        shape = (manifest["descriptors"]["count"], manifest["descriptors"]["dim"])
        descriptors = cls._array(folder / manifest["descriptors"]["file"], shape, where)
        index = cls._index(folder / manifest["index"]["file"], manifest, shape, where)
        spec = IndexSpec.parse(manifest["index"]["spec"])
        index.vectors = descriptors if spec.rerank else None
        images = cls._images(folder / manifest["images"]["file"], shape[0], where)
        patches = load_patches(folder, manifest.get("patches"), shape[0], where)
        return cls(
            folder,
            manifest,
            model,
            descriptors,
            index,
            images["names"],
            images["positions"],
            images.get("sources", []),
            patches,
        )

    @staticmethod
    def _array(path: Path, shape: tuple[int, int], where: str) -> np.ndarray:
        return mapped_part(path, shape, "descriptors", where)

    @staticmethod
    def _index(path: Path, manifest: dict, shape: tuple[int, int], where: str) -> SearchIndex:
        if not path.is_file():
            raise ConfigError(f"{where}: its index file {path.name} is missing")
        spec = IndexSpec.parse(manifest["index"]["spec"])
        codec = None
        if spec.binary:
            codec_file = path.with_name(manifest["index"].get("codec") or "")
            if not manifest["index"].get("codec") or not codec_file.is_file():
                raise ConfigError(f"{where}: its binary codec {manifest['index'].get('codec')} is missing")
            codec = BinaryCodec.load(codec_file)
        files = [path.with_name(shard["file"]) for shard in manifest["index"].get("shards") or []] or [path]
        parts = []
        for file in files:
            if not file.is_file():
                raise ConfigError(f"{where}: its index file {file.name} is missing")
            try:
                parts.append((faiss.read_index_binary if spec.binary else faiss.read_index)(str(file)))
            except RuntimeError:
                raise ConfigError(f"{file}: not a readable faiss index") from None
        raw = parts[0] if len(parts) == 1 else shard_set(parts, spec.binary)
        dim = codec.dim if codec is not None else raw.d
        if (raw.ntotal, dim) != shape:
            raise ConfigError(f"{path}: index of {raw.ntotal} x {dim}, the manifest says {shape[0]} x {shape[1]}")
        shards = parts if len(parts) > 1 else None
        index = SearchIndex(raw, spec, manifest["descriptors"]["metric"], codec=codec, shards=shards)
        set_params(index, manifest["index"]["params"])
        return index

    @staticmethod
    def _images(path: Path, count: int, where: str) -> dict:
        try:
            images = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{where}: its image list {path.name} is missing") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ConfigError(f"{path}: not valid JSON") from None
        sizes = (len(images.get("names", [])), len(images.get("positions", []))) if isinstance(images, dict) else ()
        if sizes != (count, count):
            raise ConfigError(f"{path}: needs {count} names and positions, as the manifest says")
        return images

    # -- using -------------------------------------------------------------------------------
    def expected_latency(self, runs: int = 20) -> dict:
        """Median milliseconds of extraction (on an image of the map's usual size) and of one
        search, measured now on this machine."""
        from edgevpr.timing import time_extraction

        image = torch.zeros(1, 3, *self.manifest["image_size"])
        probe = np.asarray(self.descriptors[:1], dtype=np.float32)
        extraction = time_extraction(lambda: self.model(image), runs)
        search = time_extraction(lambda: self.index.search(probe, 5), runs)
        return {
            "image_size": self.manifest["image_size"],
            "extract_ms": extraction["median_ms"],
            "search_ms": search["median_ms"],
            "total_ms": extraction["median_ms"] + search["median_ms"],
        }

    def info(self) -> dict:
        """What the map holds and its bytes on disk and in memory."""
        sections = ("model", "descriptors", "index", "images") + (("patches",) if self.manifest.get("patches") else ())
        files = {section: self.folder / self.manifest[section]["file"] for section in sections}
        shards = self.manifest["index"].get("shards")
        return {
            "folder": str(self.folder),
            "images": len(self.names),
            "positions": self.manifest["positions"]["kind"],
            "model": self.manifest["model"],
            "contract": self.manifest["contract"],
            "descriptor_dim": self.manifest["descriptors"]["dim"],
            "index": self.manifest["index"],
            "known": self.manifest["known"],
            "protocol": self.manifest["protocol"],
            "bytes": {name: path.stat().st_size for name, path in files.items()}
            | ({"index": sum(shard["bytes"] for shard in shards)} if shards else {}),
            "index_shards": shards,
            "index_memory_bytes": sum(self.index.footprint()),  # as eval's search.memory_bytes
            "created": self.manifest["created"],
            "updated": self.manifest["updated"],
        }

    @staticmethod
    def picture(image) -> Image.Image:
        """A path, a PIL image, or an H x W x 3 uint8 array, as an RGB PIL image."""
        if isinstance(image, (str, Path)):
            return load_rgb(image)
        if isinstance(image, Image.Image):
            return image.convert("RGB")
        array = np.asarray(image)
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
            raise ConfigError(f"an image array must be H x W x 3 uint8 RGB, got {array.shape} {array.dtype}")
        return Image.fromarray(array)

    def describe(self, image) -> tuple[np.ndarray, dict]:
        """The descriptor of one image (a path, a PIL image, or an H x W x 3 uint8 array) and the
        decode and extraction milliseconds."""
        start = time.perf_counter()
        tensor = self.model.contract(self.picture(image))[None]
        decoded = time.perf_counter()
        descriptor = self.model.describe(tensor)[0]
        extracted = time.perf_counter()
        return descriptor, {"decode": 1000 * (decoded - start), "extract": 1000 * (extracted - decoded)}

    def matches(self, scores: np.ndarray, ids: np.ndarray, top_k: int) -> list[dict]:
        return [
            {"name": self.names[i], "position": self.positions[i], "score": float(s)}
            for s, i in zip(scores[:top_k], ids[:top_k])
            if i >= 0
        ]

    def localize(
        self,
        image,
        top_k: int = 5,
        min_score: float | None = None,
        name: str | None = None,
        reranker=None,
        rerank_k: int = 100,
    ) -> dict:
        """One frame against the map: its top-k entries (names, positions, scores), whether the
        place is known (best global score >= ``min_score``, by default the map's calibrated one)
        and the milliseconds of each stage. A ``reranker`` (``rerank``) re-orders the best
        ``rerank_k`` entries by their patches, pooled in the same pass as the global descriptor;
        the re-ordered entries' scores are then the re-ranker's."""
        if reranker is None:
            start = time.perf_counter()
            descriptor, ms = self.describe(image)
            return self._searched(image, name, descriptor, ms, start, top_k, min_score)
        if self.patches is None:
            raise ConfigError(f"{self.folder}: the map holds no patch descriptors; build it with --patches to re-rank")
        start = time.perf_counter()
        tensor = self.model.contract(self.picture(image))[None]
        decoded = time.perf_counter()
        descriptor, query = query_patches(self.model, self.patches.spec, tensor)
        query = self.patches.query(query)
        ms = {"decode": 1000 * (decoded - start), "extract": 1000 * (time.perf_counter() - decoded)}
        searched = time.perf_counter()
        scores, ids = self.index.search(descriptor[None], max(top_k, rerank_k))
        ms["search"] = 1000 * (time.perf_counter() - searched)
        threshold = self.manifest["known"]["min_score"] if min_score is None else min_score
        known = bool(len(scores[0]) and scores[0][0] >= threshold)
        reranked = time.perf_counter()
        found, reordered = rerank_one(reranker, query, ids[0][:rerank_k], self._patch_sets(reranker))
        ids = np.concatenate([reordered, ids[0][len(reordered) :]])
        scores = np.concatenate([found, scores[0][len(reordered) :]])
        ms["rerank"] = 1000 * (time.perf_counter() - reranked)
        ms["total"] = 1000 * (time.perf_counter() - start)
        return self._answer(name or _name_of(image), scores, ids, top_k, min_score, ms) | {"known": known}

    def _searched(self, image, name, descriptor, ms, start, top_k, min_score) -> dict:
        searched = time.perf_counter()
        scores, ids = self.index.search(descriptor[None], top_k)
        ms["search"] = 1000 * (time.perf_counter() - searched)
        ms["rerank"] = 0.0
        ms["total"] = 1000 * (time.perf_counter() - start)
        return self._answer(name or _name_of(image), scores[0], ids[0], top_k, min_score, ms)

    def _answer(self, name: str, scores, ids, top_k: int, min_score: float | None, ms: dict) -> dict:
        threshold = self.manifest["known"]["min_score"] if min_score is None else min_score
        matches = self.matches(scores, ids, top_k)
        return {
            "query": name,
            "matches": matches,
            "known": bool(matches and matches[0]["score"] >= threshold),
            "ms": {key: round(value, 3) for key, value in ms.items()},
        }

    def distance(self, a: int, position: list[float]) -> float:
        return distance(self.manifest["positions"]["kind"], self.positions[a], position)


EXACT_SEQUENCE_ENTRIES = 200_000  # maps up to this size are sequence-matched over every entry, as eval does


class Localizer:
    """Frames one by one, as a robot sees them: each frame's matches come from sequence
    matching over the last ``length`` frames (SeqSLAM-style, ``search.sequence``). On maps of
    up to ``EXACT_SEQUENCE_ENTRIES`` entries every entry is scored, with the function and the
    numbers ``eval --sequence`` uses (a rolling window of the frames' similarity rows), so a
    stream is localized as it was measured; on larger maps only the index's ``candidates``
    best entries are re-scored. ``length`` 1 is single-frame localization, searched as
    ``Map.localize`` searches."""

    def __init__(
        self,
        map_: Map,
        length: int = 1,
        top_k: int = 5,
        candidates: int = 50,
        min_score: float | None = None,
        velocities: tuple[float, ...] = DEFAULT_VELOCITIES,
        enhance: int = 0,
    ):
        if length < 1:
            raise ConfigError(f"--sequence must be >= 1, got {length}")
        if enhance > 1 and len(map_.names) > EXACT_SEQUENCE_ENTRIES:
            raise ConfigError(
                f"--sequence-enhance needs every map entry scored: maps of up to {EXACT_SEQUENCE_ENTRIES}"
            )
        self.enhance = enhance
        self.map, self.length, self.top_k, self.min_score, self.velocities = map_, length, top_k, min_score, velocities
        self.candidates = max(candidates, top_k)
        self.exact = len(map_.names) <= EXACT_SEQUENCE_ENTRIES
        self.history: list[np.ndarray] = []  # the last frames' descriptors (candidate mode)
        self.rows: list[np.ndarray] = []  # the last frames' similarity to every map entry (exact mode)

    def __call__(self, image, name: str | None = None) -> dict:
        start = time.perf_counter()
        descriptor, ms = self.map.describe(image)
        self.history = (self.history + [descriptor])[-self.length :]
        searched = time.perf_counter()
        # single frames search exactly as Map.localize (and eval) do: a re-scored shortlist
        # (",RerankK", binary codes) depends on how many entries are asked for
        wanted = self.candidates if self.length > 1 else self.top_k
        scores, ids = self.map.index.search(descriptor[None], wanted)
        scores, ids = scores[0], ids[0]
        ms["search"] = 1000 * (time.perf_counter() - searched)
        if self.length > 1:
            matched = time.perf_counter()
            scores, ids = self._sequence(descriptor, scores, ids)
            if len(self.history) > 1:  # the first frame of a stream is a single-frame answer
                ms["sequence"] = 1000 * (time.perf_counter() - matched)
        ms["rerank"] = 0.0
        ms["total"] = 1000 * (time.perf_counter() - start)
        return self.map._answer(name or _name_of(image), scores, ids, self.top_k, self.min_score, ms)

    def _sequence(self, descriptor: np.ndarray, scores: np.ndarray, ids: np.ndarray):
        if self.exact:
            row = np.asarray(self.map.descriptors, dtype=np.float32) @ descriptor.astype(np.float32)
            self.rows = (self.rows + [row])[-self.length :]
            sequence = sequence_similarity(np.stack(self.rows), self.length, self.velocities, self.enhance)[-1]
            order = np.argsort(-sequence, kind="stable")[: self.candidates]
            return sequence[order], order
        if len(self.history) == 1:
            return scores, ids
        valid = ids >= 0
        sequence = sequence_scores_for(
            np.stack(self.history), self.map.descriptors, ids[valid], self.length, self.velocities
        )
        order = np.argsort(-sequence, kind="stable")
        return sequence[order], ids[valid][order]


def _name_of(image) -> str:
    return Path(image).name if isinstance(image, (str, Path)) else "frame"
