"""Images -> descriptors, in batches of equal-sized images, with progress and bad-image policy."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from edgevpr.config import DEFAULT_MAX_PIXELS
from edgevpr.contract import InputContract
from edgevpr.data.images import load_rgb
from edgevpr.errors import ConfigError, ImageError
from edgevpr.progress import Progress


class ImageFiles(Dataset):
    """Items are ``(index, tensor)`` or ``(index, ImageError)``, so a worker never dies on a bad file."""

    def __init__(self, paths: list[Path], preprocess: InputContract, max_pixels: int):
        self.paths, self.preprocess, self.max_pixels = paths, preprocess, max_pixels

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        try:
            return index, self.preprocess(load_rgb(self.paths[index], self.max_pixels))
        except ImageError as error:
            return index, error


def _as_list(batch):
    return batch


@dataclass
class Extraction:
    descriptors: np.ndarray  # (kept, D) float32
    kept: np.ndarray  # indices into the input paths
    skipped: list[str] = field(default_factory=list)  # "path: reason"
    sizes: Counter = field(default_factory=Counter)  # (H, W) -> count of images
    patches: np.ndarray | None = None  # (kept, n_P, D_p) float16, from a model that also gives patches


def iterate_images(
    paths, preprocess, batch_size=16, workers=0, skip_bad=False, max_pixels=DEFAULT_MAX_PIXELS, label="", skipped=None
):
    """Yield ``(indices, stacked tensor)`` for runs of equal-sized images.

    A bad image raises its ``ImageError``; with ``skip_bad`` it is appended to ``skipped`` as
    "path: reason" instead. ``label`` None shows no progress (a caller that shows its own)."""
    loader = DataLoader(
        ImageFiles(paths, preprocess, max_pixels), batch_size=batch_size, num_workers=workers, collate_fn=_as_list
    )
    with Progress(len(paths), label or "images", "img", enabled=label is not None) as progress:
        for batch in loader:
            good = []
            for index, item in batch:
                if isinstance(item, ImageError):
                    if not skip_bad:
                        raise item
                    if skipped is not None:
                        skipped.append(str(item))
                else:
                    good.append((index, item))
            start = 0
            while start < len(good):
                end = start + 1
                while end < len(good) and good[end][1].shape == good[start][1].shape:
                    end += 1
                yield [i for i, _ in good[start:end]], torch.stack([t for _, t in good[start:end]])
                start = end
            progress.update(len(batch))


@torch.inference_mode()
def _forward(model, images: torch.Tensor, first: Path):
    """The model on one batch; a model that cannot take these images (too small for its
    strides, say) is one line naming the image size and the first file."""
    try:
        return model(images)
    except RuntimeError as error:
        detail = str(error).strip().splitlines()[0][:160] if str(error).strip() else error.__class__.__name__
        height, width = images.shape[-2:]
        raise ConfigError(
            f"{first}: the model cannot run on {height}x{width} images ({detail}); check --size/--resize"
        ) from None


def extract(
    model, paths, preprocess, batch_size=16, workers=0, skip_bad=False, max_pixels=DEFAULT_MAX_PIXELS, label=""
):
    """Descriptors of ``paths``; a model returning ``(global, patches)`` (``extraction.patches``)
    gives the patches too, which need one patch count: images of one size after resizing."""
    indices, chunks, patch_chunks, sizes, skipped = [], [], [], Counter(), []
    for batch_indices, images in iterate_images(
        paths, preprocess, batch_size, workers, skip_bad, max_pixels, label, skipped
    ):
        out = _forward(model, images, paths[batch_indices[0]])
        if isinstance(out, tuple):
            out, patches = out
            if patch_chunks and patches.shape[1:] != patch_chunks[0].shape[1:]:
                raise ConfigError(
                    f"{paths[batch_indices[0]]}: gives {patches.shape[1]} patches, earlier images "
                    f"{patch_chunks[0].shape[1]}; patch re-ranking needs one image size: give --size HxW"
                )
            patch_chunks.append(patches.to(torch.float16).numpy())
        chunks.append(out.float().numpy() if torch.is_tensor(out) else np.asarray(out, dtype=np.float32))
        indices.extend(batch_indices)
        sizes[tuple(images.shape[-2:])] += len(batch_indices)
    dim = chunks[0].shape[1] if chunks else 0
    descriptors = np.concatenate(chunks) if chunks else np.zeros((0, dim), dtype=np.float32)
    patches = np.concatenate(patch_chunks) if patch_chunks else None
    return Extraction(descriptors.astype(np.float32), np.asarray(indices, dtype=np.int64), skipped, sizes, patches)


@torch.inference_mode()
def sample_local_features(
    backbone, paths, preprocess, per_image=200, max_images=100, seed=0, max_pixels=DEFAULT_MAX_PIXELS
):
    """Random local feature vectors (positions of the backbone's map) from up to ``max_images`` images."""
    rng = np.random.default_rng(seed)
    chosen = [paths[i] for i in sorted(rng.choice(len(paths), size=min(max_images, len(paths)), replace=False))]
    samples = []
    for _, images in iterate_images(
        chosen, preprocess, batch_size=1, skip_bad=True, max_pixels=max_pixels, label="sampling local features"
    ):
        features = backbone(images)[0].flatten(1).T.numpy()  # (h*w, C)
        take = rng.choice(len(features), size=min(per_image, len(features)), replace=False)
        samples.append(features[take])
    return np.concatenate(samples)
