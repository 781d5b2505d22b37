"""Loading training images: resized as at test time, augmented, normalised, stacked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from edgevpr.config import DEFAULT_MAX_PIXELS
from edgevpr.contract import InputContract
from edgevpr.data.images import load_rgb
from edgevpr.errors import DatasetError
from edgevpr.train.augment import Augment

Item = tuple[Path, bool, int]  # (image path, flip it, augmentation seed)


def load_item(item: Item, preprocess: InputContract, augment: Augment, max_pixels: int) -> torch.Tensor:
    path, flip, seed = item
    image = preprocess.resized(load_rgb(path, max_pixels))
    tensor = torch.from_numpy(np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0)
    tensor = augment(tensor, torch.Generator().manual_seed(int(seed)), flip)
    return preprocess.normalise(tensor)


class Batches(Dataset):
    """Each item is a whole training batch: a list of ``Item`` -> (len, 3, H, W)."""

    def __init__(self, batches: list[list[Item]], preprocess: InputContract, augment: Augment, max_pixels: int):
        self.batches, self.preprocess, self.augment, self.max_pixels = batches, preprocess, augment, max_pixels

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        items = self.batches[index]
        tensors = [load_item(item, self.preprocess, self.augment, self.max_pixels) for item in items]
        shapes = {tuple(t.shape) for t in tensors}
        if len(shapes) > 1:
            sizes = ", ".join(sorted(f"{s[1]}x{s[2]}" for s in shapes))
            raise DatasetError(
                f"{items[0][0]}: training images of one batch differ in size after resizing "
                f"({sizes}); give --size HxW so that they agree"
            )
        return torch.stack(tensors)


def batch_loader(
    batches: list[list[Item]],
    preprocess: InputContract,
    augment: Augment,
    workers: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> DataLoader:
    """Batches in order, decoded ahead by ``workers`` processes."""
    return DataLoader(
        Batches(batches, preprocess, augment, max_pixels),
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        persistent_workers=False,
    )
