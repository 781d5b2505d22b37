"""One typed config per run: dataclasses, loadable from YAML, overridable from the command line.

A run's resolved config is saved beside its result (``to_dict``), so every number can be
traced back to exactly what produced it.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from edgevpr.errors import ConfigError

DEFAULT_MAX_PIXELS = 89_478_485  # PIL's own decompression-bomb limit
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelConfig:
    backbone: str = "mobilenetv2"
    aggregator: str = "gem"
    dim: int | None = None  # FC projection to this size; None keeps the aggregator's size
    weights: str | None = None  # local state dict in the library's layout (torchvision / timm)
    pretrained: bool = False  # the library's own ImageNet weights (hub, or an offline package)
    # The input contract's model fields: None until resolved (models.resolve): what the weights carry if
    # edgevpr knows them, else ImageNet mean and std and symmetric padding
    tf_same_padding: bool | None = None  # TensorFlow 'SAME' padding on stride-2 convolutions
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    # The components' own options, checked by the dataclass each registers with (models.params):
    # ``backbone: {name: ghostcnn, params: {dilation: [5, 2]}}`` in YAML, as OpenVPRLab writes it
    backbone_params: dict = field(default_factory=dict)
    aggregator_params: dict = field(default_factory=dict)
    pca: int | None = None  # PCA projection to this size, fitted on database descriptors
    whiten: bool = False  # PCA-whitening (needs pca)
    onnx: str | None = None  # evaluate this exported file with ONNX Runtime instead of building a model
    checkpoint: str | None = None  # a checkpoint of `edgevpr train`: its architecture and trained weights


@dataclass
class DataConfig:
    protocol: str | None = None  # a registered protocol (`edgevpr protocols`) or its YAML file; needs data_root
    data_root: str | None = None  # the folder holding the protocols' datasets (../shared/data, say)
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
    interpolation: str = "bilinear"  # PIL resize filter: bilinear | bicubic | nearest
    skip_bad_images: bool = False  # skip and count undecodable images instead of failing
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger images are refused as decompression bombs
    # Recordings (a video file or a bag as database, queries or images: data.recordings)
    topic: str | None = None  # bags: the sensor_msgs/Image or CompressedImage topic
    positions_topic: str | None = None  # bags: sensor_msgs/NavSatFix (-> UTM) or nav_msgs/Odometry
    positions_file: str | None = None  # or a CSV timestamp,x,y[,heading] (seconds, metres)
    every: int | None = None  # keep every N-th frame
    fps: float | None = None  # or at most this many frames per second of recording time
    max_time_gap: float = 0.5  # seconds between a frame and the position matched to it
    without_position: str = "skip"  # frames with no position within the gap: skip (counted) | refuse


ORT_OPTIMIZATIONS = ("all", "extended", "basic", "none")  # ONNX Runtime graph optimization levels, most first


@dataclass
class EvalConfig:
    recall_at: tuple[int, ...] = (1, 5, 10, 20)  # every table and the JSON's recall keys ("1", "5", ...) follow it
    batch_size: int = 16
    workers: int = 0
    threads: int | None = None  # torch intra-op threads; None keeps torch's default
    ort_optimization: str = "all"  # ONNX Runtime graph optimization: all | extended | basic | none
    latency_runs: int = 30
    sequence: int = 1  # frame-aligned queries: match sequences of this many frames (SeqSLAM-style); 1 = single frames
    sequence_enhance: int = 0  # SeqSLAM's local contrast window R over map entries (search.sequence); 0 = none
    test_method: str = "single"  # queries from crops: single | central_crop | five_crops | nearest_crop | maj_voting
    seed: int = 0
    repeat: int = 1  # runs with seeds seed, seed+1, ...: the result adds their mean and spread (evaluate.repeats)


@dataclass
class SearchConfig:
    """How the map's descriptors are stored and searched (eval, map build, sweeps)."""

    index: str = "Flat"  # faiss factory string, optionally ending in ",RerankK"
    params: str | None = None  # e.g. "nprobe=32"; None = the index type's default
    descriptor_bits: int = 32  # bits per dimension in the map: 32 | 16 | 8 | 1 (search.descriptor_bits)
    int8_scale: str = "dimension"  # descriptor_bits 8: one scale per dimension, or "global"
    descriptor_fit: str | None = None  # descriptor_bits 1: images to fit the binary rotation on
    binary_rotation: str = "itq"  # descriptor_bits 1: itq (Gong and Lazebnik 2011) | random


@dataclass
class RerankConfig:
    """The second stage: a re-ranker over the first stage's top K, on patch descriptors."""

    name: str | None = None  # a registered re-ranker (ransac, rapid, attention, ...); None = no second stage
    k: int = 100  # candidates of the first stage it re-orders
    matcher: str | None = None  # attention: the file of `edgevpr train-matcher`
    patch_size: tuple[int, ...] = (3,)  # patch descriptors: window sizes in feature cells
    patch_stride: tuple[int, ...] = (1,)  # one stride per size
    patch_dim: int | None = None  # compact patches: PCA to this size, fitted on the database's patches
    patch_bits: int = 16  # patches stored in 16 (fp16) or 8 (int8) bits (extraction.patch_codec)


@dataclass
class OutputConfig:
    """Where a run writes; never part of what the run is."""

    out: str | None = None
    save_descriptors: str | None = None
    gallery: str | None = None
    pr_curve: str | None = None  # PNG of the top-1 precision-recall curve


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
    binary_weight: float = 0.0  # triplet data: weight of the same loss on sign codes (straight-through)
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
    # weights fake-quantized onto the deployed int8 grid (quantize.int8_layout, target) while training
    qat: bool = False
    # Run
    run_dir: str | None = None
    resume: bool = False
    seed: int = 0
    distributed: str = "none"  # none | torchrun
    nproc: int = 1  # processes per node with torchrun
    nnodes: int = 1
    rdzv_endpoint: str | None = None  # HOST:PORT of node 0 when nnodes > 1


@dataclass
class QuantizeConfig:
    """How ``edgevpr quantize`` deploys a model; the same section serves YAML configs, sweep
    cells and ``compare-precisions``. One default per option (docs/deployment.md)."""

    precision: str = "int8"  # fp32 | fp16 | int8 | int4 | mixed (the registered precisions: `edgevpr list`)
    target: str = "cpu"  # int8: cpu (QLinearConv) | tensorrt (symmetric QDQ, as TensorRT consumes it)
    # minmax | percentile | entropy | mse | layer-error; mse (each tensor's own least-error clipping) kept int8
    # descriptors closest to fp32 for MobileNetV2 and EfficientNet-Lite0 in both layouts (benchmarks/int8_fidelity.py)
    calibration: str = "mse"
    calib: str | None = None  # folder of calibration images (int8, mixed; int4 for GPTQ and bias correction)
    calib_count: int = 50  # calibration images used (mixed: the count the search used)
    calib_seed: int | None = None  # None: the first calib_count images by name; a seed: that many drawn at random
    percentile: float = 99.999  # of |x|, for calibration percentile
    mixed_config: str | None = None  # mixed: per-layer precisions from `edgevpr search-precision`
    keep_float: int = 0  # int8: leave this many of the most sensitive layers in float (edgevpr.research)
    # int4 and int8 layers: correct each bias for the mean output shift of its quantized weights (Nagel et al.
    # 2019). None = auto: on for --precision int4 with calibration images (R@1 8.5 -> 26.0 on MobileNetV2) and
    # for int8 (descriptor cosine to fp32 0.993 -> 0.998), off in mixed-precision searches (it cost night recall
    # at B = 6 and 8); mixed files apply what their search did
    bias_correction: bool | None = None
    # int4 levels: gptq | nearest | auto (GPTQ for --precision int4 with calibration images; nearest in
    # mixed-precision searches, where GPTQ lost at B = 8); mixed files apply what their search did
    int4_rounding: str = "auto"
    # int8 levels: nearest | adaround (learned up-or-down rounding on the calibration images, Nagel et al. 2020)
    int8_rounding: str = "nearest"
    int8_layout: str = "auto"  # cpu target: u8s8 | u8s7 | s8s8 | auto (exact on the quantizing CPU)
    report_layers: bool = False  # int8: rank every layer by the descriptor error its int8 form alone causes
    # a second output, the patch descriptors of rerank.patch_size/patch_stride (one pass for a map with a second
    # stage); the file then takes its export size only
    patches: bool = False
    # cross-layer equalization of Conv -> [ReLU] -> Conv pairs (Nagel et al. 2019; ReLU6 pairs are left as they are)
    equalize: bool = False


@dataclass
class PrecisionSearchConfig:
    """``edgevpr search-precision``: the genetic search of Grainge et al. 2024 (Algorithm 1)."""

    budget: float | None = None  # average bits per layer B
    fitness_images: int = 16  # L calibration images the fitness (Eq. 10) is computed on
    population: int = 20  # N
    sample: int = 5  # C
    mutation: float = 0.5  # p_m
    steps: int = 200  # G
    time_limit_s: float | None = None
    weighting: str = "plain"  # plain (mean over layers) | params (weighted by parameters)
    seed: int = 0
    warm_start: bool = True  # greedy and uniform int8 among the initial candidates
    fill: bool = True  # raise the layers that gain most per bit while a candidate leaves budget unused


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    rerank: RerankConfig = field(default_factory=RerankConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    val: DataConfig = field(default_factory=DataConfig)  # validation set of `edgevpr train`
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    precision_search: PrecisionSearchConfig = field(default_factory=PrecisionSearchConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Keys of the model section before components had params blocks: old key -> (component, option),
# with the value that was their default (it equals the option's default, so it carries nothing)
LEGACY_MODEL_KEYS = {
    "gem_p": ("aggregator", "p", 3.0),
    "clusters": ("aggregator", "clusters", 64),
    "dilation": ("backbone", "dilation", (5, 2)),
    "deploy": ("backbone", "deploy", False),
}


# Keys of the eval section before it split into search, rerank and output: old key -> (section, key)
LEGACY_EVAL_KEYS = {
    "index": ("search", "index"),
    "search_params": ("search", "params"),
    "descriptor_bits": ("search", "descriptor_bits"),
    "int8_scale": ("search", "int8_scale"),
    "descriptor_fit": ("search", "descriptor_fit"),
    "binary_rotation": ("search", "binary_rotation"),
    "rerank": ("rerank", "name"),
    "rerank_k": ("rerank", "k"),
    "matcher": ("rerank", "matcher"),
    "patch_size": ("rerank", "patch_size"),
    "patch_stride": ("rerank", "patch_stride"),
    "patch_dim": ("rerank", "patch_dim"),
    "patch_bits": ("rerank", "patch_bits"),
    "out": ("output", "out"),
    "save_descriptors": ("output", "save_descriptors"),
    "gallery": ("output", "gallery"),
    "pr_curve": ("output", "pr_curve"),
}


def coerce(value, hint, where: str):
    """Convert a YAML or CLI value to the field's declared type, or raise naming ``where``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        inner = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return coerce(value, inner[0], where)
    if origin is tuple:
        (element, *_rest) = typing.get_args(hint)
        if isinstance(value, str):
            value = [part for part in value.split(",") if part.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(coerce(item, element, where) for item in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            converted = hint(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}") from None
        if hint is int and isinstance(value, float) and value != converted:
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return converted
    if hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of options, got {value!r}")
        return dict(value)
    if hint is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected text, got {value!r}")
        return str(value)
    raise TypeError(f"unsupported config type {hint}")


def _component_key(section: ModelConfig, key: str, value, where: str, note) -> bool:
    """The model section's component keys: ``backbone: {name, params}`` (or a plain name) and
    the old flat option keys (``LEGACY_MODEL_KEYS``), moved into their params block. True when
    ``key`` was one of them."""
    if key in ("backbone", "aggregator") and isinstance(value, dict):
        unknown = sorted(set(value) - {"name", "params"})
        if unknown or "name" not in value:
            raise ConfigError(f"{where}.{key}: expected {{name: ..., params: {{...}}}}, got keys {sorted(value)}")
        setattr(section, key, coerce(value["name"], str, f"{where}.{key}.name"))
        setattr(section, f"{key}_params", coerce(value.get("params") or {}, dict, f"{where}.{key}.params"))
        return True
    if key not in LEGACY_MODEL_KEYS:
        return False
    component, option, old_default = LEGACY_MODEL_KEYS[key]
    if note:
        note(f"{where}.{key}: an old key; read as model.{component}.params.{option} (write it there)")
    if (tuple(value) if isinstance(value, list) else value) != old_default:
        getattr(section, f"{component}_params")[option] = value
    return True


def _update_section(section, values: dict, where: str, note=None) -> None:
    hints = typing.get_type_hints(type(section))
    known = {f.name for f in dataclasses.fields(section)}
    for key, value in values.items():
        if isinstance(section, ModelConfig) and _component_key(section, key, value, where, note):
            continue
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r}; known: {', '.join(sorted(known))}")
        setattr(section, key, coerce(value, hints[key], f"{where}.{key}"))


def apply_overrides(config: RunConfig, overrides: dict, where: str = "config", note=None) -> RunConfig:
    """Apply ``{"model": {...}, "data": {...}, "eval": {...}}`` onto ``config`` in place.
    ``note`` (a callable) hears of old keys read under their new names."""
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
        if name == "eval":
            values = _moved_eval_keys(config, values, where, note)
        _update_section(getattr(config, name), values, f"{where}: {name}", note)
    return config


def _moved_eval_keys(config: RunConfig, values: dict, where: str, note) -> dict:
    """The eval keys that now live in the search, rerank and output sections, applied there
    (with a note naming the new place); returns the rest."""
    kept = {}
    for key, value in values.items():
        if key not in LEGACY_EVAL_KEYS:
            kept[key] = value
            continue
        section, new = LEGACY_EVAL_KEYS[key]
        if note:
            note(f"{where}: eval.{key}: an old key; read as {section}.{new} (write it there)")
        _update_section(getattr(config, section), {new: value}, f"{where}: {section}", note)
    return kept


def read_yaml(path: str | Path, what: str = "config file"):
    """A YAML file's content, or a one-line error naming the file."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: a folder, not a {what}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid YAML (not UTF-8 text: a binary file?)") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error.__class__.__name__})") from None


def _note(message: str) -> None:
    print(f"Note: {message}", file=sys.stderr)


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> RunConfig:
    """Defaults, then the YAML file, then command-line overrides; every number is then checked
    against its range (``edgevpr.validate``) before anything runs."""
    from edgevpr.validate import check_config

    config = RunConfig()
    if path is not None:
        apply_overrides(config, read_yaml(path) or {}, where=str(path), note=_note)
    if overrides:
        apply_overrides(config, overrides, where="command line")
    check_config(config)
    return config
