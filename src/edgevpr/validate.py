"""Every numeric field of the run config has its range, checked before any work starts, with
one line naming the field: ``load_config`` calls ``check_config`` on what it built.

The table below is the single place the ranges live; the CLI's own numbers that are not config
fields (budgets of recommend and advise, index search's k) use ``check_number``."""

from __future__ import annotations

import math

from edgevpr.errors import ConfigError

POSITIVE = ("> 0", lambda v: v > 0)
NON_NEGATIVE = (">= 0", lambda v: v >= 0)
AT_LEAST_ONE = (">= 1", lambda v: v >= 1)
FRACTION = ("in [0, 1]", lambda v: 0 <= v <= 1)
OPEN_FRACTION = ("in (0, 1]", lambda v: 0 < v <= 1)

# section -> field -> (rule, test); tuples are checked element by element
RANGES = {
    "model": {
        "dim": AT_LEAST_ONE,
        "pca": AT_LEAST_ONE,
        "std": POSITIVE,
    },
    "data": {
        "tolerance_frames": NON_NEGATIVE,
        "threshold_m": POSITIVE,
        "resize": AT_LEAST_ONE,
        "resize_factor": ("in (0, 4]", lambda v: 0 < v <= 4),
        "size": AT_LEAST_ONE,
        "max_pixels": AT_LEAST_ONE,
        "every": AT_LEAST_ONE,
        "fps": POSITIVE,
        "max_time_gap": POSITIVE,
        "frames": NON_NEGATIVE,
    },
    "eval": {
        "recall_at": AT_LEAST_ONE,
        "batch_size": AT_LEAST_ONE,
        "workers": NON_NEGATIVE,
        "threads": AT_LEAST_ONE,
        "latency_runs": (">= 5 (latency is a median; 20 or more for numbers you report)", lambda v: v >= 5),
        "sequence": AT_LEAST_ONE,
        "sequence_enhance": NON_NEGATIVE,
        "repeat": AT_LEAST_ONE,
    },
    "search": {
        "descriptor_bits": ("one of 32, 16, 8, 1", lambda v: v in (32, 16, 8, 1)),
    },
    "rerank": {
        "k": AT_LEAST_ONE,
        "patch_size": AT_LEAST_ONE,
        "patch_stride": AT_LEAST_ONE,
        "patch_dim": AT_LEAST_ONE,
        "patch_bits": ("one of 16, 8", lambda v: v in (16, 8)),
    },
    "train": {
        "tolerance_frames": NON_NEGATIVE,
        "negative_frames": NON_NEGATIVE,
        "positive_m": POSITIVE,
        "negative_m": POSITIVE,
        "margin": NON_NEGATIVE,
        "binary_weight": NON_NEGATIVE,
        "batch_triplets": AT_LEAST_ONE,
        "negatives": AT_LEAST_ONE,
        "cache_database": AT_LEAST_ONE,
        "refresh_every": AT_LEAST_ONE,
        "places_per_batch": AT_LEAST_ONE,
        "images_per_place": (">= 2", lambda v: v >= 2),
        "lr": POSITIVE,
        "momentum": ("in [0, 1)", lambda v: 0 <= v < 1),
        "weight_decay": NON_NEGATIVE,
        "epochs": AT_LEAST_ONE,
        "queries_per_epoch": AT_LEAST_ONE,
        "patience": AT_LEAST_ONE,
        "max_minutes": POSITIVE,
        "brightness": FRACTION,
        "contrast": FRACTION,
        "saturation": FRACTION,
        "crop_scale": OPEN_FRACTION,
        "freeze_stages": NON_NEGATIVE,
        "nproc": AT_LEAST_ONE,
        "nnodes": AT_LEAST_ONE,
        "frames": NON_NEGATIVE,
    },
    "val": {},  # as data, below
    "quantize": {
        "calib_count": AT_LEAST_ONE,
        "calib_seed": NON_NEGATIVE,
        "percentile": ("in (0, 100]", lambda v: 0 < v <= 100),
        "keep_float": NON_NEGATIVE,
    },
    "precision_search": {
        "budget": ("in [4, 16]", lambda v: 4 <= v <= 16),
        "fitness_images": AT_LEAST_ONE,
        "population": (">= 2", lambda v: v >= 2),
        "sample": (">= 2", lambda v: v >= 2),
        "mutation": FRACTION,
        "steps": AT_LEAST_ONE,
        "time_limit_s": POSITIVE,
    },
}
RANGES["val"] = RANGES["data"]


def check_number(value, where: str, rule: tuple[str, callable]) -> None:
    """One line naming ``where`` when ``value`` is not finite or breaks ``rule``."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number, got {value}")
    text, test = rule
    if not test(value):
        raise ConfigError(f"{where} must be {text}, got {value}")


def check_config(config) -> None:
    """Every field of ``RANGES`` that is set, and the few rules that span fields."""
    for section, fields in RANGES.items():
        values = getattr(config, section)
        for name, rule in fields.items():
            value = getattr(values, name)
            if value is None:
                continue
            for item in value if isinstance(value, tuple) else (value,):
                check_number(item, f"{section}.{name}", rule)
    for section in ("model",):
        for name in ("mean",):
            value = getattr(config.model, name)
            if value is not None and not all(math.isfinite(v) for v in value):
                raise ConfigError(f"{section}.{name} must be finite numbers, got {value}")
    for section in ("data", "val"):
        data = getattr(config, section)
        if data.size is not None:
            if len(data.size) != 2:
                raise ConfigError(f"{section}.size must be HxW, got {data.size}")
            if data.size[0] * data.size[1] > data.max_pixels:
                raise ConfigError(
                    f"{section}.size {data.size[0]}x{data.size[1]} exceeds max_pixels ({data.max_pixels})"
                )
        if data.resize is not None and data.resize**2 > data.max_pixels:
            raise ConfigError(
                f"{section}.resize {data.resize} makes images of more than max_pixels ({data.max_pixels})"
            )
        if data.frames is not None and (len(data.frames) != 2 or data.frames[0] > data.frames[1]):
            raise ConfigError(f"{section}.frames must be FIRST,LAST with FIRST <= LAST, got {data.frames}")
    search = config.precision_search
    if search.sample > search.population:
        raise ConfigError(f"precision_search.sample ({search.sample}) exceeds population ({search.population})")
    if config.train.negative_m < config.train.positive_m:
        raise ConfigError(
            f"train.negative_m ({config.train.negative_m}) must be >= train.positive_m ({config.train.positive_m})"
        )
