"""One typed config per run: dataclasses, loadable from YAML, overridable from the command line.

A run's resolved config is saved beside its result (``to_dict``), so every number can be
traced back to exactly what produced it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from edgevpr.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelConfig:
    backbone: str = "mobilenetv2"
    aggregator: str = "gem"
    dim: int | None = None  # FC projection to this size; None keeps the aggregator's size
    weights: str | None = None  # local state dict in the library's layout (torchvision / timm)
    pretrained: bool = False  # the library's own ImageNet weights (hub, or an offline package)
    tf_same_padding: bool = False  # TensorFlow 'SAME' padding on stride-2 convolutions
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    gem_p: float = 3.0
    clusters: int = 64  # NetVLAD clusters K
    pca: int | None = None  # PCA projection to this size, fitted on database descriptors
    whiten: bool = False  # PCA-whitening (needs pca)
    dilation: tuple[int, ...] = (5, 2)  # ghostcnn: dilation rate of stages 1-4 and of stage 5
    deploy: bool = False  # re-parameterized (inference) form of re-parameterizable backbones
    onnx: str | None = None  # evaluate this exported file with ONNX Runtime instead of building a model
    checkpoint: str | None = None  # a checkpoint of `edgevpr train`: its architecture and trained weights


@dataclass
class DataConfig:
    dataset: str | None = None  # ROOT with database/ and queries/ (folder format)
    database: str | None = None
    queries: str | None = None
    tolerance_frames: int | None = None  # frame-aligned sequences
    threshold_m: float | None = None  # folder format with UTM names (25 m when not given)
    ground_truth: str | None = None  # VPR-Bench ground_truth_new.npy
    frames: tuple[int, ...] | None = None  # frame-aligned: keep frames FIRST,LAST (inclusive) of both folders
    resize: int | None = None  # short side in pixels, aspect ratio kept
    resize_factor: float | None = None  # scale every image by this factor (after resize/size)
    size: tuple[int, ...] | None = None  # (H, W)
    skip_bad_images: bool = False  # skip and count undecodable images instead of failing
    max_pixels: int = 89_478_485  # larger images are refused as decompression bombs


ORT_OPTIMIZATIONS = ("all", "extended", "basic", "none")  # ONNX Runtime graph optimization levels, most first


@dataclass
class EvalConfig:
    recall_at: tuple[int, ...] = (1, 5, 10, 20)
    batch_size: int = 16
    workers: int = 0
    threads: int | None = None  # torch intra-op threads; None keeps torch's default
    ort_optimization: str = "all"  # ONNX Runtime graph optimization: all | extended | basic | none
    latency_runs: int = 30
    index: str = "Flat"  # faiss factory string, optionally ending in ",RerankK"
    search_params: str | None = None  # e.g. "nprobe=32"; None = the index type's default
    seed: int = 0
    out: str | None = None
    save_descriptors: str | None = None
    gallery: str | None = None


@dataclass
class TrainConfig:
    # Training data: folder format (ROOT/train/{database,queries}, UTM names), explicit folders
    # (UTM names or frame-aligned), or place-grouped (ROOT/<place>/*.jpg) for P x K batches.
    dataset: str | None = None
    database: str | None = None
    queries: tuple[str, ...] = ()
    places: str | None = None
    frames: tuple[int, ...] | None = None  # frame-aligned: train on frames FIRST,LAST only
    tolerance_frames: int | None = None  # frame-aligned: positives within N frames
    negative_frames: int = 10  # frame-aligned: negatives farther than N frames
    positive_m: float = 10.0  # UTM: the best positive is searched within this radius
    negative_m: float = 25.0  # UTM: negatives lie beyond this radius
    # Loss and mining
    loss: str = "triplet_l2"  # triplet_l2 | triplet_cosine | a pytorch-metric-learning loss (P x K)
    margin: float = 0.1
    miner: str = "partial"  # random | full | partial; with places: a pytorch-metric-learning miner or none
    batch_triplets: int = 4
    negatives: int = 10
    cache_database: int = 1000  # partial mining: database images in the cache (k_db)
    refresh_every: int = 1000  # triplets served by one cache; its queries are those triplets' (k_q)
    places_per_batch: int = 16  # P
    images_per_place: int = 4  # K
    # Optimisation
    optimizer: str = "adam"  # adam | sgd
    lr: float = 1e-4
    momentum: float = 0.9  # sgd
    weight_decay: float | None = None  # default: 0 for adam, 1e-3 for sgd
    epochs: int = 30
    queries_per_epoch: int = 5000
    patience: int = 3  # early stopping: epochs without a better validation Recall@5
    max_minutes: float | None = None  # stop after the epoch in which this much time has passed
    # Augmentation (Berton et al. 2022 section 4.5)
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    flip: bool = False  # horizontal flip of the whole triplet
    crop_scale: float = 1.0  # random resized crop keeping at least this fraction of the area
    # Model
    freeze_stages: int = 0  # leading backbone stages kept frozen
    frozen_bn: bool = False  # BatchNorm layers keep their statistics and affine parameters
    # Run
    run_dir: str | None = None
    resume: bool = False
    seed: int = 0
    distributed: str = "none"  # none | torchrun
    nproc: int = 1  # processes per node with torchrun
    nnodes: int = 1
    rdzv_endpoint: str | None = None  # HOST:PORT of node 0 when nnodes > 1


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    val: DataConfig = field(default_factory=DataConfig)  # validation set of `edgevpr train`

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _coerce(value, hint, where: str):
    """Convert a YAML or CLI value to the field's declared type, or raise naming ``where``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        inner = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is tuple:
        (element, *_rest) = typing.get_args(hint)
        if isinstance(value, str):
            value = [part for part in value.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(item, element, where) for item in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            converted = hint(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}") from None
        if hint is int and isinstance(value, float) and value != converted:
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return converted
    if hint is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected text, got {value!r}")
        return str(value)
    raise TypeError(f"unsupported config type {hint}")


def _update_section(section, values: dict, where: str) -> None:
    hints = typing.get_type_hints(type(section))
    known = {f.name for f in dataclasses.fields(section)}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r}; known: {', '.join(sorted(known))}")
        setattr(section, key, _coerce(value, hints[key], f"{where}.{key}"))


def apply_overrides(config: RunConfig, overrides: dict, where: str = "config") -> RunConfig:
    """Apply ``{"model": {...}, "data": {...}, "eval": {...}}`` onto ``config`` in place."""
    if not isinstance(overrides, dict):
        raise ConfigError(f"{where}: expected a mapping of sections, got {type(overrides).__name__}")
    sections = {f.name for f in dataclasses.fields(config)}
    for name, values in overrides.items():
        if name not in sections:
            raise ConfigError(f"{where}: unknown section {name!r}; known: {', '.join(sorted(sections))}")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: section {name!r} must be a mapping")
        _update_section(getattr(config, name), values, f"{where}: {name}")
    return config


def read_yaml(path: str | Path, what: str = "config file"):
    """A YAML file's content, or a one-line error naming the file."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error.__class__.__name__})") from None


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> RunConfig:
    """Defaults, then the YAML file, then command-line overrides."""
    config = RunConfig()
    if path is not None:
        apply_overrides(config, read_yaml(path) or {}, where=str(path))
    if overrides:
        apply_overrides(config, overrides, where="command line")
    return config
