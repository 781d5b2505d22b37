"""Decode any image file into an 8-bit RGB PIL image, or fail naming the file.

EXIF orientation is applied; grey, grey+alpha, RGBA, CMYK, palette, 16-bit and float images
become RGB. Corrupt, truncated, empty and oversized (decompression-bomb) files raise
``ImageError`` with the path and the reason.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edgevpr.config import DEFAULT_MAX_PIXELS
from edgevpr.errors import DatasetError, ImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _high_depth_to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16-bit or float greyscale into 0..255 by its nominal range."""
    array = np.asarray(image)
    if image.mode.startswith("I;16") or (image.mode == "I" and array.max(initial=0) > 255):
        scaled = array.astype(np.float64) / 257.0
    elif image.mode == "F":
        top = float(array.max(initial=0))
        scaled = array * (255.0 if top <= 1.0 else 1.0)
    else:
        scaled = array
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    if image.mode.startswith("I") or image.mode == "F":
        image = _high_depth_to_8bit(image)
    return image.convert("RGB")


def load_rgb(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    path = Path(path)
    try:
        if path.is_symlink() and not path.exists():
            try:
                path.resolve(strict=True)
            except RuntimeError:  # a loop of links
                raise ImageError(path, "symbolic link loop") from None
            except OSError:
                raise ImageError(path, f"broken symbolic link (to {os.readlink(path)})") from None
        if path.stat().st_size == 0:
            raise ImageError(path, "empty file")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageError(
                        path,
                        f"decompression bomb: {width}x{height} = {width * height} pixels "
                        f"exceeds the limit of {max_pixels}",
                    )
                image = ImageOps.exif_transpose(image)
                image.load()
                return to_rgb(image)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except RuntimeError as error:  # pathlib's "Symlink loop"
        raise ImageError(path, f"symbolic link loop ({error})") from None
    except UnidentifiedImageError:
        raise ImageError(path, "not a readable image (corrupt or unknown format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(path, f"decompression bomb: {error}") from None
    except (OSError, SyntaxError, ValueError) as error:
        reason = "truncated image" if "truncated" in str(error).lower() else f"cannot decode ({error})"
        raise ImageError(path, reason) from None


def natural_key(path: Path):
    """Sort key so that ``img2`` comes before ``img10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(path))]


def _listed(path: Path) -> bool:
    """An image file, or a symbolic link named like one that leads nowhere (listed, so that
    reading it fails in one line or, with --skip-bad-images, it is counted, never dropped)."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return False
    try:
        return path.is_file() or (path.is_symlink() and not path.exists())
    except OSError:  # a loop of links
        return path.is_symlink()


def list_images(folder: str | Path) -> list[Path]:
    """All images below ``folder`` (recursive), in natural order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: image folder not found")
    paths = [p for p in folder.rglob("*") if _listed(p)]
    if not paths:
        raise DatasetError(f"{folder}: no .jpg, .jpeg or .png images found")
    return sorted(paths, key=natural_key)
