"""Command-line options shared by sub-commands, and their mapping onto the run config.

Options default to None so that only what the user typed overrides the YAML config and the
dataclass defaults.
"""

from __future__ import annotations

import errno
import functools

import click

from edgevpr.config import ORT_OPTIMIZATIONS


def _size(value: str | None):
    if value is None:
        return None
    try:
        height, width = (int(part) for part in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected HxW such as 480x640, got {value!r}") from None
    return (height, width)


def _params(value: str | None, param) -> dict | None:
    """A component's options from the command line: ``k=v,k=v`` (each value read as YAML) or a
    YAML mapping such as ``{dilation: [5, 2]}``."""
    if value is None:
        return None
    import yaml

    try:
        if value.strip().startswith("{"):
            parsed = yaml.safe_load(value)
        else:
            pairs = [part.split("=", 1) for part in value.split(",") if part.strip()]
            parsed = {key.strip(): yaml.safe_load(raw) for key, raw in pairs}
    except (ValueError, yaml.YAMLError):
        raise click.BadParameter(f"expected k=v,k=v or a YAML mapping, got {value!r}", param=param) from None
    if not isinstance(parsed, dict):
        raise click.BadParameter(f"expected k=v,k=v or a YAML mapping, got {value!r}", param=param)
    return parsed


# (option flags, config section, config key, click keyword arguments)
RECORDING_OPTIONS = [  # a video file or a bag wherever an image folder is asked for (data.recordings)
    ("--topic", "data", "topic", dict(help="Bags: the sensor_msgs/Image or CompressedImage topic.")),
    (
        "--positions-topic",
        "data",
        "positions_topic",
        dict(help="Bags: a sensor_msgs/NavSatFix (-> UTM) or nav_msgs/Odometry topic giving frame positions."),
    ),
    (
        "--positions-file",
        "data",
        "positions_file",
        dict(type=click.Path(), help="Recordings: CSV timestamp,x,y[,heading] giving frame positions."),
    ),
    ("--every", "data", "every", dict(type=int, help="Recordings: keep every N-th frame.")),
    ("--fps", "data", "fps", dict(type=float, help="Recordings: keep at most F frames per second.")),
    (
        "--max-time-gap",
        "data",
        "max_time_gap",
        dict(type=float, help="Recordings: seconds between a frame and its position (default 0.5)."),
    ),
    (
        "--without-position",
        "data",
        "without_position",
        dict(
            type=click.Choice(["skip", "refuse"]),
            help="Recordings: frames with no position within the gap are skipped and counted (default) or refused.",
        ),
    ),
]
MODEL_OPTIONS = [
    ("--backbone", "model", "backbone", dict(help="Registered backbone name (see `edgevpr list`).")),
    ("--aggregator", "model", "aggregator", dict(help="Registered aggregator name.")),
    ("--dim", "model", "dim", dict(type=int, help="FC projection to D dimensions (default: none).")),
    ("--weights", "model", "weights", dict(type=click.Path(), help="Local state dict in the library's layout.")),
    ("--pretrained/--no-pretrained", "model", "pretrained", dict(default=None, help="Library ImageNet weights.")),
    (
        "--tf-same-padding/--no-tf-same-padding",
        "model",
        "tf_same_padding",
        dict(default=None, help="TensorFlow 'SAME' padding on stride-2 convolutions."),
    ),
    ("--mean", "model", "mean", dict(help="Input mean R,G,B on [0,1] (default ImageNet).")),
    ("--std", "model", "std", dict(help="Input std R,G,B (default ImageNet).")),
    (
        "--backbone-params",
        "model",
        "backbone_params",
        dict(
            callback=lambda ctx, param, value: _params(value, param), help="The backbone's options: 'k=v,k=v' or YAML."
        ),
    ),
    (
        "--aggregator-params",
        "model",
        "aggregator_params",
        dict(
            callback=lambda ctx, param, value: _params(value, param),
            help="The aggregator's options, e.g. 'in_h=4,in_w=4'.",
        ),
    ),
    ("--gem-p", "model", "gem_p", dict(type=float, help="GeM initial p (default 3).")),
    ("--clusters", "model", "clusters", dict(type=int, help="NetVLAD clusters K (default 64).")),
    ("--pca", "model", "pca", dict(type=int, help="PCA to D dimensions, fitted on database descriptors.")),
    ("--whiten/--no-whiten", "model", "whiten", dict(default=None, help="PCA-whitening (with --pca).")),
    (
        "--dilation",
        "model",
        "dilation",
        dict(help="ghostcnn: dilation rates A,B of stages 1-4 and stage 5 (default 5,2)."),
    ),
    (
        "--deploy/--no-deploy",
        "model",
        "deploy",
        dict(default=None, help="Re-parameterized inference form (repvgg_lite)."),
    ),
    (
        "--checkpoint",
        "model",
        "checkpoint",
        dict(type=click.Path(), help="Checkpoint of `edgevpr train` (architecture and weights)."),
    ),
    ("--onnx", "model", "onnx", dict(type=click.Path(), help="Evaluate this exported ONNX file with ONNX Runtime.")),
]
DATA_OPTIONS = [
    ("--protocol", "data", "protocol", dict(help="A registered protocol (`edgevpr protocols`) or its YAML file.")),
    ("--data-root", "data", "data_root", dict(type=click.Path(), help="Folder holding the protocols' datasets.")),
    ("--dataset", "data", "dataset", dict(type=click.Path(), help="ROOT with database/ and queries/.")),
    ("--database", "data", "database", dict(type=click.Path(), help="Database image folder.")),
    ("--queries", "data", "queries", dict(type=click.Path(), help="Query image folder.")),
    (
        "--tolerance-frames",
        "data",
        "tolerance_frames",
        dict(type=int, help="Frame-aligned: positives within N frames."),
    ),
    (
        "--threshold-m",
        "data",
        "threshold_m",
        dict(type=float, help="UTM names: positives within M metres (default 25)."),
    ),
    ("--ground-truth", "data", "ground_truth", dict(type=click.Path(), help="VPR-Bench ground_truth_new.npy.")),
    ("--frames", "data", "frames", dict(help="Frame-aligned: keep frames FIRST,LAST (inclusive).")),
    ("--resize", "data", "resize", dict(type=int, help="Resize the short side to this many pixels.")),
    ("--resize-factor", "data", "resize_factor", dict(type=float, help="Scale every image by this factor.")),
    ("--size", "data", "size", dict(callback=lambda ctx, param, value: _size(value), help="Resize to HxW.")),
    (
        "--skip-bad-images/--no-skip-bad-images",
        "data",
        "skip_bad_images",
        dict(default=None, help="Skip undecodable images and count them, instead of failing."),
    ),
    ("--max-pixels", "data", "max_pixels", dict(type=int, help="Refuse larger images as decompression bombs.")),
    *RECORDING_OPTIONS,
]
EVAL_OPTIONS = [
    ("--out", "output", "out", dict(type=click.Path(), help="Write the result JSON here.")),
    (
        "--save-descriptors",
        "output",
        "save_descriptors",
        dict(type=click.Path(), help="Write descriptors and ground truth here."),
    ),
    ("--gallery", "output", "gallery", dict(type=click.Path(), help="Write a PNG of queries and their top-k.")),
    (
        "--test-method",
        "eval",
        "test_method",
        dict(
            type=click.Choice(["single", "central_crop", "five_crops", "nearest_crop", "maj_voting"]),
            help="Queries from crops (Berton et al. 2022's test-time methods; default single).",
        ),
    ),
    (
        "--pr-curve",
        "output",
        "pr_curve",
        dict(type=click.Path(), help="Write the top-1 precision-recall curve as PNG."),
    ),
    ("--batch-size", "eval", "batch_size", dict(type=int, help="Images per forward pass (default 16).")),
    ("--workers", "eval", "workers", dict(type=int, help="Image decoding processes (default 0).")),
    ("--threads", "eval", "threads", dict(type=int, help="Torch threads (default: torch's choice).")),
    (
        "--ort-optimization",
        "eval",
        "ort_optimization",
        dict(
            type=click.Choice(ORT_OPTIMIZATIONS),
            help="ONNX Runtime graph optimization for --onnx (default all; none runs a QDQ graph unfused).",
        ),
    ),
    (
        "--latency-runs",
        "eval",
        "latency_runs",
        dict(type=int, help="Timed runs for latency (>= 5; 20+ for numbers you report)."),
    ),
    ("--recall-at", "eval", "recall_at", dict(help="Recall@N for these N, e.g. 1,5,10,25 (default 1,5,10,20).")),
    (
        "--sequence",
        "eval",
        "sequence",
        dict(type=int, help="Frame-aligned queries: sequence matching over L frames (SeqSLAM-style; default 1)."),
    ),
    (
        "--sequence-enhance",
        "eval",
        "sequence_enhance",
        dict(type=int, help="--sequence: SeqSLAM's local contrast enhancement over R map entries (default 0: none)."),
    ),
    ("--seed", "eval", "seed", dict(type=int, help="Random seed (default 0).")),
    (
        "--repeat",
        "eval",
        "repeat",
        dict(type=int, help="Run R times with seeds seed..seed+R-1 and report mean and std (default 1)."),
    ),
    ("--index", "search", "index", dict(help="faiss factory string, e.g. IVF1024,PQ64,Rerank100 (default Flat).")),
    ("--search-params", "search", "params", dict(help="faiss search parameters, e.g. nprobe=32.")),
    (
        "--descriptor-bits",
        "search",
        "descriptor_bits",
        dict(type=click.Choice(["32", "16", "8", "1"]), help="Bits per dimension in the map (default 32)."),
    ),
    (
        "--int8-scale",
        "search",
        "int8_scale",
        dict(type=click.Choice(["dimension", "global"]), help="--descriptor-bits 8: scale per dimension or global."),
    ),
    (
        "--descriptor-fit",
        "search",
        "descriptor_fit",
        dict(type=click.Path(), help="--descriptor-bits 1: images to fit the binary rotation on (not the database)."),
    ),
    (
        "--binary-rotation",
        "search",
        "binary_rotation",
        dict(type=click.Choice(["itq", "random"]), help="--descriptor-bits 1: ITQ (default) or random rotation."),
    ),
    ("--rerank", "rerank", "name", dict(help="Second stage: ransac, ransac_fundamental, rapid or attention.")),
    ("--rerank-k", "rerank", "k", dict(type=int, help="First-stage candidates re-ranked (default 100).")),
    (
        "--matcher",
        "rerank",
        "matcher",
        dict(
            type=click.Path(), help="--rerank attention: a trained matcher file (default: untrained, similarity prior)."
        ),
    ),
    ("--patch-size", "rerank", "patch_size", dict(help="Patch sizes in feature cells, e.g. 3 or 2,5,8 (default 3).")),
    ("--patch-stride", "rerank", "patch_stride", dict(help="One patch stride per size (default 1).")),
    ("--patch-dim", "rerank", "patch_dim", dict(type=int, help="Compact patches: PCA to D, fitted on the database's.")),
    ("--patch-bits", "rerank", "patch_bits", dict(type=int, help="Patches stored in 16 (fp16, default) or 8 bits.")),
]

QUANTIZE_OPTIONS = [
    (
        "--precision",
        "quantize",
        "precision",
        dict(help="Deployed precision: fp32, fp16, int8, int4 or mixed (from --mixed-config); default int8."),
    ),
    (
        "--mixed-config",
        "quantize",
        "mixed_config",
        dict(type=click.Path(), help="Per-layer precisions from `edgevpr search-precision`."),
    ),
    (
        "--target",
        "quantize",
        "target",
        dict(
            type=click.Choice(["cpu", "tensorrt"]),
            help="int8: cpu (QLinearConv) or tensorrt (symmetric QDQ); default cpu.",
        ),
    ),
    (
        "--calibration",
        "quantize",
        "calibration",
        dict(
            type=click.Choice(["entropy", "minmax", "percentile", "mse", "layer-error"]),
            help="Activation range rule for int8 (default mse: each tensor's clipping that minimises its own "
            "quantization error; percentile: one percentile of |x| for every tensor; layer-error: per tensor, "
            "the rule whose range least disturbs the outputs of the layers reading it).",
        ),
    ),
    ("--calib", "quantize", "calib", dict(type=click.Path(), help="Folder of calibration images.")),
    ("--calib-count", "quantize", "calib_count", dict(type=int, help="Calibration images used (default 50).")),
    (
        "--calib-seed",
        "quantize",
        "calib_seed",
        dict(type=int, help="Draw the calibration images at random with this seed (default: the first by name)."),
    ),
    (
        "--percentile",
        "quantize",
        "percentile",
        dict(type=float, help="Percentile for --calibration percentile (default 99.999)."),
    ),
    (
        "--equalize/--no-equalize",
        "quantize",
        "equalize",
        dict(
            default=None,
            help="Cross-layer equalization of Conv-[ReLU]-Conv pairs before quantizing (exact; ReLU6 pairs are kept).",
        ),
    ),
    (
        "--patches/--no-patches",
        "quantize",
        "patches",
        dict(
            default=None,
            help="Add a patch output (--patch-size, --patch-stride) for a second stage; the file takes one size.",
        ),
    ),
    (
        "--report-layers/--no-report-layers",
        "quantize",
        "report_layers",
        dict(
            default=None,
            help="int8: list every layer with the descriptor error its int8 form alone causes, costliest first.",
        ),
    ),
    (
        "--keep-float",
        "quantize",
        "keep_float",
        dict(
            type=int,
            help="int8: leave the N layers most sensitive to int8 (measured by simulation) in float (default 0).",
        ),
    ),
    (
        "--bias-correction/--no-bias-correction",
        "quantize",
        "bias_correction",
        dict(
            default=None,
            help="Correct each bias for the mean output shift of the quantized weights (default auto: on for "
            "int8, and for int4 with --calib; off in mixed-precision searches).",
        ),
    ),
    (
        "--int4-rounding",
        "quantize",
        "int4_rounding",
        dict(
            type=click.Choice(["auto", "gptq", "nearest"]),
            help="int4 levels: GPTQ on the calibration images or nearest (default auto: gptq for --precision int4 "
            "with --calib, nearest in mixed-precision searches).",
        ),
    ),
    (
        "--int8-rounding",
        "quantize",
        "int8_rounding",
        dict(
            type=click.Choice(["nearest", "adaround"]),
            help="int8 levels: nearest, or adaround (learned up-or-down rounding per layer on the calibration "
            "images, never a larger layer error than nearest; a minute on MobileNetV2). Default nearest.",
        ),
    ),
    (
        "--int8-layout",
        "quantize",
        "int8_layout",
        dict(
            type=click.Choice(["auto", "u8s8", "u8s7", "s8s8"]),
            help="int8 --target cpu: u8s8 (full-range weights, exact on VNNI and ARM CPUs), u8s7 (7-bit weights, exact "
            "on every CPU), s8s8 (exact everywhere, slower); default auto: u8s8 where this CPU sums it exactly, "
            "else u8s7 (mixed: as the search did).",
        ),
    ),
]
SEARCH_OPTIONS = [
    ("--budget", "precision_search", "budget", dict(type=float, help="Average bit-width budget B (4 to 16).")),
    (
        "--calib-count",
        "precision_search",
        "fitness_images",
        dict(type=int, help="Calibration images L of the fitness sample (default 16)."),
    ),
    ("--population", "precision_search", "population", dict(type=int, help="Population size N (default 20).")),
    ("--sample", "precision_search", "sample", dict(type=int, help="Individuals sampled per step C (default 5).")),
    ("--mutation", "precision_search", "mutation", dict(type=float, help="Mutation probability p_m (default 0.5).")),
    ("--steps", "precision_search", "steps", dict(type=int, help="Steps G (default 200).")),
    (
        "--time-limit",
        "precision_search",
        "time_limit_s",
        dict(type=float, help="Stop the search after this many seconds."),
    ),
    (
        "--weighting",
        "precision_search",
        "weighting",
        dict(
            type=click.Choice(["plain", "params"]),
            help="Average bit-width over layers (plain, default), or weighted by parameters (what memory follows).",
        ),
    ),
    ("--seed", "precision_search", "seed", dict(type=int, help="Search seed (default 0).")),
    (
        "--warm-start/--no-warm-start",
        "precision_search",
        "warm_start",
        dict(default=None, help="Start the population with the greedy assignment and uniform int8 (default on)."),
    ),
    (
        "--fill/--no-fill",
        "precision_search",
        "fill",
        dict(default=None, help="Raise the layers that gain most per bit while budget is unused (default on)."),
    ),
]

TRAIN_OPTIONS = [
    (
        "--train-dataset",
        "train",
        "dataset",
        dict(type=click.Path(), help="ROOT with train/database and train/queries."),
    ),
    ("--train-database", "train", "database", dict(type=click.Path(), help="Training database folder.")),
    ("--train-queries", "train", "queries", dict(help="Training query folder(s), comma-separated.")),
    ("--train-places", "train", "places", dict(type=click.Path(), help="Place-grouped ROOT/<place>/*.jpg (P x K).")),
    ("--train-frames", "train", "frames", dict(help="Frame-aligned: train on frames FIRST,LAST.")),
    ("--train-tolerance-frames", "train", "tolerance_frames", dict(type=int, help="Frame-aligned positives.")),
    ("--negative-frames", "train", "negative_frames", dict(type=int, help="Frame-aligned: negatives beyond N frames.")),
    ("--positive-m", "train", "positive_m", dict(type=float, help="Best positive within M metres (default 10).")),
    ("--negative-m", "train", "negative_m", dict(type=float, help="Negatives beyond M metres (default 25).")),
    ("--loss", "train", "loss", dict(help="triplet_l2, triplet_cosine, or a pytorch-metric-learning loss.")),
    ("--margin", "train", "margin", dict(type=float, help="Loss margin (default 0.1).")),
    (
        "--binary-weight",
        "train",
        "binary_weight",
        dict(type=float, help="Add the triplet loss on sign codes times W (straight-through; default 0)."),
    ),
    ("--miner", "train", "miner", dict(help="random, full or partial; with places a pytorch-metric-learning miner.")),
    ("--batch-triplets", "train", "batch_triplets", dict(type=int, help="Triplets per batch (default 4).")),
    ("--negatives", "train", "negatives", dict(type=int, help="Negatives per triplet (default 10).")),
    ("--cache-database", "train", "cache_database", dict(type=int, help="Partial mining: database images cached.")),
    ("--refresh-every", "train", "refresh_every", dict(type=int, help="Triplets per mining cache (default 1000).")),
    ("--places-per-batch", "train", "places_per_batch", dict(type=int, help="P of P x K batches.")),
    ("--images-per-place", "train", "images_per_place", dict(type=int, help="K of P x K batches.")),
    ("--optimizer", "train", "optimizer", dict(type=click.Choice(["adam", "sgd"]), help="Default adam.")),
    ("--lr", "train", "lr", dict(type=float, help="Learning rate (default 1e-4).")),
    ("--momentum", "train", "momentum", dict(type=float, help="SGD momentum (default 0.9).")),
    ("--weight-decay", "train", "weight_decay", dict(type=float, help="Default 0 (adam), 1e-3 (sgd).")),
    ("--epochs", "train", "epochs", dict(type=int, help="Most epochs (default 30).")),
    ("--queries-per-epoch", "train", "queries_per_epoch", dict(type=int, help="Default 5000.")),
    ("--patience", "train", "patience", dict(type=int, help="Early stopping patience in epochs (default 3).")),
    ("--max-minutes", "train", "max_minutes", dict(type=float, help="Stop training after this many minutes.")),
    ("--brightness", "train", "brightness", dict(type=float, help="Colour jitter: brightness.")),
    ("--contrast", "train", "contrast", dict(type=float, help="Colour jitter: contrast.")),
    ("--saturation", "train", "saturation", dict(type=float, help="Colour jitter: saturation.")),
    ("--flip/--no-flip", "train", "flip", dict(default=None, help="Random horizontal flip of whole triplets.")),
    ("--crop-scale", "train", "crop_scale", dict(type=float, help="Random resized crop down to this area fraction.")),
    ("--freeze-stages", "train", "freeze_stages", dict(type=int, help="Leading backbone stages kept frozen.")),
    ("--frozen-bn/--no-frozen-bn", "train", "frozen_bn", dict(default=None, help="Freeze BatchNorm layers.")),
    (
        "--qat/--no-qat",
        "train",
        "qat",
        dict(
            default=None,
            help="Quantization-aware fine-tuning: weights fake-quantized on the int8 grid of --int8-layout "
            "(default auto: this CPU's) while training; quantize the checkpoint to int8 afterwards.",
        ),
    ),
    ("--run-dir", "train", "run_dir", dict(type=click.Path(), help="Run folder (default runs/train-TIME).")),
    ("--resume/--no-resume", "train", "resume", dict(default=None, help="Continue the run in --run-dir.")),
    ("--seed", "train", "seed", dict(type=int, help="Random seed (default 0).")),
    ("--distributed", "train", "distributed", dict(type=click.Choice(["none", "torchrun"]), help="Default none.")),
    ("--nproc", "train", "nproc", dict(type=int, help="Processes per node with torchrun.")),
    ("--nnodes", "train", "nnodes", dict(type=int, help="Nodes with torchrun.")),
    ("--rdzv-endpoint", "train", "rdzv_endpoint", dict(help="HOST:PORT of node 0 (several nodes).")),
    ("--val-dataset", "val", "dataset", dict(type=click.Path(), help="Validation ROOT (default TRAIN_ROOT/val).")),
    ("--val-database", "val", "database", dict(type=click.Path(), help="Validation database folder.")),
    ("--val-queries", "val", "queries", dict(type=click.Path(), help="Validation query folder.")),
    ("--val-tolerance-frames", "val", "tolerance_frames", dict(type=int, help="Validation: frame-aligned positives.")),
    ("--val-frames", "val", "frames", dict(help="Validation: frames FIRST,LAST.")),
]


def _keyword(flags: str) -> str:
    return flags.split("/")[0].lstrip("-").replace("-", "_")


def add_options(table):
    """Decorator adding a table's options to a click command."""

    def decorate(command):
        for flags, _section, _key, kwargs in reversed(table):
            command = click.option(*flags.split(" "), _keyword(flags), **({"default": None} | kwargs))(command)
        return command

    return decorate


def overrides_from(kwargs: dict, *tables) -> dict:
    """The config overrides for the options the user actually gave."""
    overrides: dict = {}
    for table in tables:
        for flags, section, key, _ in table:
            value = kwargs.get(_keyword(flags))
            if value is not None:
                overrides.setdefault(section, {})[key] = value
    return overrides


def config_from(config_file, kwargs: dict, *tables):
    from edgevpr.config import load_config

    return load_config(config_file, overrides_from(kwargs, *tables))


STORAGE_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def user_errors(function):
    """Turn expected errors into one line and exit status 1: edgevpr's own errors, and the
    storage errors of writing results (a full disk, a read-only folder), naming the file."""
    from edgevpr.errors import EdgeVPRError

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except EdgeVPRError as error:
            raise click.ClickException(str(error)) from None
        except OSError as error:
            if error.errno not in STORAGE_ERRORS:
                raise
            where = error.filename or "writing"
            raise click.ClickException(
                f"{where}: {STORAGE_ERRORS[error.errno]}; files written before are kept"
            ) from None
        except MemoryError:
            raise click.ClickException("out of memory: give a smaller --size/--resize, --batch-size or map") from None

    return wrapper
