"""The binary codec of an evaluation (``--descriptor-bits 1``): its rotation is fitted on the
descriptors of ``--descriptor-fit DIR`` (training or calibration images), never on the
database being evaluated, and the protocol block names that folder."""

from __future__ import annotations

from pathlib import Path

from edgevpr.config import RunConfig
from edgevpr.data.images import list_images
from edgevpr.errors import ConfigError
from edgevpr.extraction.extract import extract
from edgevpr.search.binary_codes import BinaryCodec, fit_codec


def fit_binary_codec(forward, config: RunConfig, preprocess, dim: int, database_dir: str) -> BinaryCodec:
    """A codec of ``dim`` bits (one per dimension, rounded down to whole bytes)."""
    folder = config.eval.descriptor_fit
    if not folder:
        raise ConfigError(
            "--descriptor-bits 1 needs --descriptor-fit DIR: training or calibration images to fit the "
            "binary rotation on (never the evaluated database)"
        )
    if Path(folder).resolve() == Path(database_dir).resolve():
        raise ConfigError(f"--descriptor-fit {folder} is the evaluated database; fit the rotation on other images")
    paths = list_images(folder)
    fitted = extract(
        forward,
        paths,
        preprocess,
        batch_size=config.eval.batch_size,
        workers=config.eval.workers,
        skip_bad=config.data.skip_bad_images,
        max_pixels=config.data.max_pixels,
        label="descriptor fit ",
    )
    bits = dim - dim % 8
    return fit_codec(
        fitted.descriptors, bits, config.eval.binary_rotation, seed=config.eval.seed, fitted_on=str(folder)
    )
