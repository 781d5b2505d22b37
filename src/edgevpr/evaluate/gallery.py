"""A picture of retrieval: for a few queries, the query and its top-k database images, each
framed green when it is a positive and red when it is not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from edgevpr.atomic import atomic_path
from edgevpr.data.images import load_rgb

THUMB = (160, 120)
BORDER = 6
GREEN, RED, GREY = (40, 170, 60), (210, 40, 40), (90, 90, 90)


def _thumbnail(path: Path, colour) -> Image.Image:
    image = load_rgb(path)
    image.thumbnail(THUMB)
    tile = Image.new("RGB", (THUMB[0] + 2 * BORDER, THUMB[1] + 2 * BORDER), colour)
    tile.paste(image, (BORDER + (THUMB[0] - image.width) // 2, BORDER + (THUMB[1] - image.height) // 2))
    return tile


def save_gallery(path, query_paths, database_paths, predictions, positives, rows: int = 6, top_k: int = 5) -> None:
    chosen = np.linspace(0, len(query_paths) - 1, num=min(rows, len(query_paths))).round().astype(int)
    top_k = min(top_k, predictions.shape[1])
    tile_w, tile_h = THUMB[0] + 2 * BORDER, THUMB[1] + 2 * BORDER
    header = 18
    sheet = Image.new("RGB", ((top_k + 1) * tile_w, len(chosen) * (tile_h + header)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for row, q in enumerate(chosen):
        y = row * (tile_h + header)
        caption = f"query {q}: {Path(query_paths[q]).name}"
        draw.text((4, y + 3), caption[: tile_w // 6 - 1], fill=(0, 0, 0))
        sheet.paste(_thumbnail(query_paths[q], GREY), (0, y + header))
        for rank, d in enumerate(predictions[q, :top_k], start=1):
            correct = d in set(positives[q].tolist())
            sheet.paste(_thumbnail(database_paths[d], GREEN if correct else RED), (rank * tile_w, y + header))
            draw.text((rank * tile_w + 4, y + 3), f"#{rank} {'ok' if correct else 'wrong'}", fill=(0, 0, 0))
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
