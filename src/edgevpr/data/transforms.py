"""Image -> normalised tensor, with the resize rule named for the protocol block.

Resizing uses PIL bilinear (what torchvision's ``Resize`` does to a PIL image), short side to
``resize`` with the long side ``int(resize * long / short)``, or exactly to ``size`` = (H, W).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from edgevpr.errors import ConfigError


@dataclass(frozen=True)
class Preprocess:
    resize: int | None = None
    size: tuple[int, int] | None = None
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    factor: float | None = None  # scale applied after resize/size (Berton et al. 2022's resolution study)

    def __post_init__(self):
        if self.resize is not None and self.size is not None:
            raise ConfigError("give either --resize SHORT_SIDE or --size HxW, not both")
        if self.resize is not None and self.resize <= 0:
            raise ConfigError(f"--resize must be positive, got {self.resize}")
        if self.size is not None and (len(self.size) != 2 or min(self.size) <= 0):
            raise ConfigError(f"--size must be HxW with positive sides, got {self.size}")
        if self.factor is not None and not 0 < self.factor <= 4:
            raise ConfigError(f"--resize-factor must be in (0, 4], got {self.factor}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"--mean and --std need three values each, std positive; got {self.mean}, {self.std}")

    def rule(self) -> str:
        if self.size is not None:
            rule = f"size={self.size[0]}x{self.size[1]}"
        elif self.resize is not None:
            rule = f"short_side={self.resize}"
        else:
            rule = "none"
        return rule if self.factor is None else f"{rule},factor={self.factor:g}"

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after resizing."""
        if self.size is not None:
            width, height = self.size[1], self.size[0]
        elif self.resize is not None:
            if width <= height:
                width, height = self.resize, int(self.resize * height / width)
            else:
                width, height = int(self.resize * width / height), self.resize
        if self.factor is not None:
            width, height = max(1, round(width * self.factor)), max(1, round(height * self.factor))
        return width, height

    def resized(self, image: Image.Image) -> Image.Image:
        target = self.output_size(*image.size)
        return image if target == image.size else image.resize(target, Image.BILINEAR)

    def normalise(self, tensor: torch.Tensor) -> torch.Tensor:
        """(3, H, W) on [0, 1] -> normalised with the model's mean and std."""
        mean = torch.tensor(self.mean, dtype=tensor.dtype).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=tensor.dtype).view(3, 1, 1)
        return (tensor - mean) / std

    def __call__(self, image: Image.Image) -> torch.Tensor:
        array = np.asarray(self.resized(image), dtype=np.float32) / 255.0
        array = (array - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return torch.from_numpy(array.transpose(2, 0, 1).copy())
