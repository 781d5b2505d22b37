"""The binary codec of a run (``--descriptor-bits 1``), the one way eval and maps fit it: the
ITQ or random rotation is fitted on the descriptors of ``--descriptor-fit DIR`` (training or
calibration images), never on the images being indexed; the codec names that folder."""

from __future__ import annotations

from pathlib import Path

from edgevpr.data.images import list_images
from edgevpr.errors import ConfigError
from edgevpr.extraction.extract import extract
from edgevpr.search.binary_codes import BinaryCodec, fit_codec


def fit_binary_codec(
    forward,
    contract,
    folder: str | None,
    dim: int,
    rotation: str = "itq",
    seed: int = 0,
    indexed: str | Path | None = None,
    **extraction,
) -> BinaryCodec:
    """A codec of ``dim`` bits (one per dimension, rounded down to whole bytes) fitted on the
    images of ``folder`` described by ``forward`` under ``contract``; ``indexed`` is the folder
    being indexed, which it must not be. ``extraction``: batch size, workers and the like."""
    if not folder:
        raise ConfigError(
            "--descriptor-bits 1 needs --descriptor-fit DIR: training or calibration images to fit the "
            "binary rotation on (never the indexed images)"
        )
    if indexed is not None and Path(folder).resolve() == Path(indexed).resolve():
        raise ConfigError(f"--descriptor-fit {folder} holds the indexed images; fit the rotation on other images")
    fitted = extract(forward, list_images(folder), contract, label="descriptor fit ", **extraction)
    return fit_codec(fitted.descriptors, dim - dim % 8, rotation, seed=seed, fitted_on=str(folder))
