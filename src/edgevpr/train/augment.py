"""Training-time image augmentation (Berton et al. 2022 section 4.5): colour jitter (brightness,
contrast, saturation), random resized crop keeping at least ``crop_scale`` of the area, and a
horizontal flip decided per triplet by the caller. Every random draw comes from a generator
seeded per image, so a run is reproducible whatever the number of loader workers."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch

from edgevpr.compat import import_torchvision

import_torchvision()  # declares torchvision's operators on a CPU-only torch before its first import
functional = importlib.import_module("torchvision.transforms.v2.functional")


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return float(low + (high - low) * torch.rand((), generator=generator))


@dataclass(frozen=True)
class Augment:
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    crop_scale: float = 1.0

    def __post_init__(self):
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.crop_scale <= 1:
            raise ValueError(f"train.crop_scale must be in (0, 1], got {self.crop_scale}")

    @property
    def active(self) -> bool:
        return bool(self.brightness or self.contrast or self.saturation or self.crop_scale < 1)

    def __call__(self, image: torch.Tensor, generator: torch.Generator, flip: bool = False) -> torch.Tensor:
        """(3, H, W) on [0, 1] -> augmented (3, H, W) on [0, 1], same size."""
        if self.crop_scale < 1:
            image = self._resized_crop(image, generator)
        for amount, adjust in (
            (self.brightness, functional.adjust_brightness),
            (self.contrast, functional.adjust_contrast),
            (self.saturation, functional.adjust_saturation),
        ):
            if amount:
                image = adjust(image, _uniform(generator, max(0.0, 1 - amount), 1 + amount))
        return functional.horizontal_flip(image) if flip else image

    def _resized_crop(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        height, width = image.shape[-2:]
        side = _uniform(generator, self.crop_scale, 1.0) ** 0.5  # area fraction -> side fraction
        crop_h, crop_w = max(1, round(height * side)), max(1, round(width * side))
        top = int(torch.randint(0, height - crop_h + 1, (), generator=generator))
        left = int(torch.randint(0, width - crop_w + 1, (), generator=generator))
        return functional.resized_crop(image, top, left, crop_h, crop_w, [height, width], antialias=True)
