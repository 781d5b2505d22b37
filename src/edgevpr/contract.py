"""The input contract of a model: how an image must be turned into the tensor it was trained on.

It travels with the weights: checkpoints, ONNX files and maps store it, and evaluation,
quantization and localization read it back from them (``edgevpr.models.resolve`` fills it for
a weight file it knows). Fields:

- ``resize`` (short side, aspect ratio kept, long side ``int(resize * long / short)``) or
  ``size`` = (H, W), then ``factor`` (Berton et al. 2022's resolution study);
- ``interpolation``: PIL's filter for resizing (bilinear is what torchvision's ``Resize``
  applies to a PIL image);
- ``mean`` and ``std`` on [0, 1] RGB;
- ``padding``: the convolution padding convention the weights were trained with, ``symmetric``
  (PyTorch) or ``tf_same`` (TensorFlow 'SAME': 0 before and 1 after on stride-2 layers).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image

from edgevpr.config import IMAGENET_MEAN, IMAGENET_STD
from edgevpr.errors import ConfigError

PADDINGS = ("symmetric", "tf_same")
INTERPOLATIONS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


@dataclass(frozen=True)
class InputContract:
    resize: int | None = None
    size: tuple[int, int] | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    factor: float | None = None  # scale applied after resize/size (Berton et al. 2022's resolution study)
    padding: str = "symmetric"
    interpolation: str = "bilinear"

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
        if not all(np.isfinite(v) for v in (*self.mean, *self.std)):
            raise ConfigError(f"--mean and --std must be finite; got {self.mean}, {self.std}")
        if self.padding not in PADDINGS:
            raise ConfigError(f"unknown padding convention {self.padding!r}; use one of {', '.join(PADDINGS)}")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(f"unknown interpolation {self.interpolation!r}; use one of {', '.join(INTERPOLATIONS)}")

    def rule(self) -> str:
        if self.size is not None:
            rule = f"size={self.size[0]}x{self.size[1]}"
        elif self.resize is not None:
            rule = f"short_side={self.resize}"
        else:
            rule = "none"
        return rule if self.factor is None else f"{rule},factor={self.factor:g}"

    def describe(self) -> str:
        """One line for logs: resize rule, mean, std, padding."""
        values = lambda v: ",".join(f"{x:g}" for x in v)  # noqa: E731
        return f"{self.rule()}, mean {values(self.mean)}, std {values(self.std)}, {self.padding} padding"

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict, where: str) -> InputContract:
        """A stored contract, or a one-line error naming ``where`` it came from."""
        if not isinstance(values, dict) or set(values) - set(cls.__dataclass_fields__):
            raise ConfigError(f"{where}: not an input contract ({values!r:.80})")
        try:
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{where}: bad input contract ({error})") from None

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
        return image if target == image.size else image.resize(target, INTERPOLATIONS[self.interpolation])

    def normalise(self, tensor: torch.Tensor) -> torch.Tensor:
        """(3, H, W) on [0, 1] -> normalised with the model's mean and std."""
        mean = torch.tensor(self.mean, dtype=tensor.dtype).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=tensor.dtype).view(3, 1, 1)
        return (tensor - mean) / std

    def __call__(self, image: Image.Image) -> torch.Tensor:
        array = np.asarray(self.resized(image), dtype=np.float32) / 255.0
        array = (array - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return torch.from_numpy(array.transpose(2, 0, 1).copy())
