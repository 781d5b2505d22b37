"""Command-line options shared by sub-commands, and their mapping onto the run config.

Options default to None so that only what the user typed overrides the YAML config and the
dataclass defaults.
"""

from __future__ import annotations

import functools

import click



def _size(value: str | None):
    if value is None:
        return None
    try:
        height, width = (int(part) for part in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected HxW such as 480x640, got {value!r}") from None
    return (height, width)


# (option flags, config section, config key, click keyword arguments)
MODEL_OPTIONS = [
    ("--backbone", "model", "backbone", dict(help="Registered backbone name (see `edgevpr list`).")),
    ("--aggregator", "model", "aggregator", dict(help="Registered aggregator name.")),
    ("--dim", "model", "dim", dict(type=int, help="FC projection to D dimensions (default: none).")),
    ("--weights", "model", "weights", dict(type=click.Path(), help="Local state dict in the library's layout.")),
    ("--pretrained/--no-pretrained", "model", "pretrained", dict(default=None, help="Library ImageNet weights.")),
    ("--tf-same-padding/--no-tf-same-padding", "model", "tf_same_padding",
     dict(default=None, help="TensorFlow 'SAME' padding on stride-2 convolutions.")),
    ("--mean", "model", "mean", dict(help="Input mean R,G,B on [0,1] (default ImageNet).")),
    ("--std", "model", "std", dict(help="Input std R,G,B (default ImageNet).")),
    ("--gem-p", "model", "gem_p", dict(type=float, help="GeM initial p (default 3).")),
    ("--clusters", "model", "clusters", dict(type=int, help="NetVLAD clusters K (default 64).")),
    ("--pca", "model", "pca", dict(type=int, help="PCA to D dimensions, fitted on database descriptors.")),
    ("--whiten/--no-whiten", "model", "whiten", dict(default=None, help="PCA-whitening (with --pca).")),
    ("--deploy/--no-deploy", "model", "deploy",
     dict(default=None, help="Re-parameterized inference form (repvgg_lite).")),
    ("--onnx", "model", "onnx", dict(type=click.Path(), help="Evaluate this exported ONNX file with ONNX Runtime.")),
]
DATA_OPTIONS = [
    ("--dataset", "data", "dataset", dict(type=click.Path(), help="ROOT with database/ and queries/.")),
    ("--database", "data", "database", dict(type=click.Path(), help="Database image folder.")),
    ("--queries", "data", "queries", dict(type=click.Path(), help="Query image folder.")),
    ("--tolerance-frames", "data", "tolerance_frames", dict(type=int, help="Frame-aligned: positives within N frames.")),
    ("--threshold-m", "data", "threshold_m", dict(type=float, help="UTM names: positives within M metres (default 25).")),
    ("--ground-truth", "data", "ground_truth", dict(type=click.Path(), help="VPR-Bench ground_truth_new.npy.")),
    ("--resize", "data", "resize", dict(type=int, help="Resize the short side to this many pixels.")),
    ("--size", "data", "size", dict(callback=lambda ctx, param, value: _size(value), help="Resize to HxW.")),
    ("--skip-bad-images/--no-skip-bad-images", "data", "skip_bad_images",
     dict(default=None, help="Skip undecodable images and count them, instead of failing.")),
    ("--max-pixels", "data", "max_pixels", dict(type=int, help="Refuse larger images as decompression bombs.")),
]
EVAL_OPTIONS = [
    ("--out", "eval", "out", dict(type=click.Path(), help="Write the result JSON here.")),
    ("--save-descriptors", "eval", "save_descriptors", dict(type=click.Path(), help="Write descriptors and ground truth here.")),
    ("--gallery", "eval", "gallery", dict(type=click.Path(), help="Write a PNG of queries and their top-k.")),
    ("--batch-size", "eval", "batch_size", dict(type=int, help="Images per forward pass (default 16).")),
    ("--workers", "eval", "workers", dict(type=int, help="Image decoding processes (default 0).")),
    ("--threads", "eval", "threads", dict(type=int, help="Torch threads (default: torch's choice).")),
    ("--latency-runs", "eval", "latency_runs", dict(type=int, help="Timed runs for latency (at least 20).")),
    ("--seed", "eval", "seed", dict(type=int, help="Random seed (default 0).")),
    ("--index", "eval", "index", dict(help="faiss factory string, e.g. IVF1024,PQ64,Rerank100 (default Flat).")),
    ("--search-params", "eval", "search_params", dict(help="faiss search parameters, e.g. nprobe=32.")),
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


def user_errors(function):
    """Turn expected errors into a one-line message and exit status 2."""
    from edgevpr.errors import EdgeVPRError

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except EdgeVPRError as error:
            raise click.ClickException(str(error)) from None

    return wrapper

