"""The calibration images of a quantization: preprocessed, re-iterable, one at a time, all of
the export size."""

from __future__ import annotations

import itertools

import numpy as np
import torch

from edgevpr.data.images import list_images
from edgevpr.errors import ConfigError
from edgevpr.extraction.extract import iterate_images


class CalibrationImages:
    """``count`` images of ``folder`` through ``contract``: the first by name, or, given a
    ``seed``, drawn at random without replacement (kept in name order). ``size`` (when set) is
    the only size they may have after resizing."""

    def __init__(self, folder: str, count: int, contract, max_pixels: int, seed: int | None = None):
        paths = list_images(folder)
        if seed is not None and count < len(paths):
            chosen = np.random.default_rng(seed).choice(len(paths), size=count, replace=False)
            paths = [paths[i] for i in sorted(chosen)]
        self.paths = paths[:count]
        self.contract, self.max_pixels = contract, max_pixels
        self.size: tuple[int, int] | None = None

    def __call__(self):
        for indices, images in iterate_images(
            self.paths,
            self.contract,
            batch_size=1,
            max_pixels=self.max_pixels,
            label=None,  # its caller shows progress
        ):
            size = tuple(images.shape[-2:])
            if self.size is not None and size != self.size:
                raise ConfigError(
                    f"{self.paths[indices[0]]}: calibration image is {size[0]}x{size[1]} after resizing, "
                    f"the model is exported at {self.size[0]}x{self.size[1]}; give --size HxW"
                )
            yield images.numpy()

    def batch(self, limit: int | None = None) -> torch.Tensor:
        """The first ``limit`` images (all by default), decoded, as one (N, 3, H, W) tensor."""
        return torch.cat([torch.from_numpy(images) for images in itertools.islice(self(), limit)])
