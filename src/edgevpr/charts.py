"""Small PNG charts drawn with Pillow (no plotting library needed): bars per layer, and a
line of points."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from edgevpr.atomic import atomic_path

COLOURS = {4: (148, 103, 189), 8: (214, 39, 40), 16: (44, 160, 44), 32: (31, 119, 180)}


FONT_SIZE = 11  # Pillow's scalable default font; its 10 px default draws spaces 2 px wide


def _wrapped(draw: ImageDraw.ImageDraw, text: str, width: int) -> str:
    """``text`` with line breaks after ':', ',' or ' ' wherever a line would pass ``width`` px."""
    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for piece in re.findall(r"[^:, ]*[:, ]?", paragraph):
            if line and draw.textlength(line + piece) > width:
                lines.append(line.rstrip())
                line = ""
            line += piece
        lines.append(line.rstrip())
    return "\n".join(lines)


def _canvas(width: int, height: int, title: str) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.font = ImageFont.load_default(size=FONT_SIZE)
    draw.multiline_text((10, 4), _wrapped(draw, title, width - 20), fill="black", spacing=2)
    return image, draw


def _save(image: Image.Image, path: str | Path) -> Path:
    with atomic_path(path) as temporary:
        image.save(temporary, format="PNG")
    return Path(path)


def bits_per_layer(bits: list[int], path: str | Path, title: str) -> Path:
    """One bar per layer, its height the layer's bit-width (Grainge et al. 2024 Fig. 7)."""
    width, height, left, bottom, top = max(400, 12 * len(bits) + 80), 260, 50, 30, 30
    image, draw = _canvas(width, height, title)
    step = (width - left - 20) / max(1, len(bits))
    for value in (4, 8, 16):
        y = height - bottom - value / 16 * (height - bottom - top)
        draw.line([(left, y), (width - 20, y)], fill=(220, 220, 220))
        draw.text((10, y - 6), f"{value} b", fill="black")
    for i, b in enumerate(bits):
        x0 = left + i * step
        y = height - bottom - b / 16 * (height - bottom - top)
        draw.rectangle([x0 + 1, y, x0 + max(2, step - 1), height - bottom], fill=COLOURS.get(b, (120, 120, 120)))
    draw.text((left, height - bottom + 8), f"layers 1..{len(bits)} in forward order", fill="black")
    return _save(image, path)


def per_layer_values(series: dict[str, list[float]], path: str | Path, title: str) -> Path:
    """Grouped bars per layer on a log scale (layer sensitivity)."""
    import math

    values = [v for vs in series.values() for v in vs if v > 0]
    low, high = (math.log10(min(values)), math.log10(max(values))) if values else (0.0, 1.0)
    high = high if high > low else low + 1
    count = max(len(vs) for vs in series.values())
    width, height, left, bottom, top = max(400, 14 * count + 80), 280, 60, 30, 40
    image, draw = _canvas(width, height, title + " (log scale)")
    step = (width - left - 20) / max(1, count)
    colours = [(148, 103, 189), (214, 39, 40), (44, 160, 44)]
    for k, (name, vs) in enumerate(series.items()):
        draw.text((left + 120 * k, 22), f"# {name}", fill=colours[k % 3])
        for i, v in enumerate(vs):
            if v <= 0:
                continue
            y = height - bottom - (math.log10(v) - low) / (high - low) * (height - bottom - top)
            x0 = left + i * step + k * step / len(series)
            draw.rectangle([x0, y, x0 + max(1, step / len(series) - 1), height - bottom], fill=colours[k % 3])
    draw.text((5, top), f"{10**high:.1e}", fill="black")
    draw.text((5, height - bottom - 10), f"{10**low:.1e}", fill="black")
    return _save(image, path)


def line(points: list[tuple[float, float]], path: str | Path, title: str, xlabel: str, ylabel: str) -> Path:
    """Points joined by a line, e.g. Recall@1 against the budget B (Grainge et al. 2024 Fig. 8)."""
    width, height, left, bottom, top = 480, 300, 55, 40, 30
    image, draw = _canvas(width, height, title)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys) - 2, max(ys) + 2
    sx = lambda x: left + (x - x0) / (x1 - x0) * (width - left - 20)  # noqa: E731
    sy = lambda y: height - bottom - (y - y0) / (y1 - y0) * (height - bottom - top)  # noqa: E731
    draw.line([(left, top), (left, height - bottom), (width - 20, height - bottom)], fill="black")
    draw.line([(sx(x), sy(y)) for x, y in points], fill=(31, 119, 180), width=2)
    for x, y in points:
        draw.ellipse([sx(x) - 3, sy(y) - 3, sx(x) + 3, sy(y) + 3], fill=(31, 119, 180))
        draw.text((sx(x) - 8, height - bottom + 6), f"{x:g}", fill="black")
        draw.text((sx(x) + 4, sy(y) - 14), f"{y:.1f}", fill="black")
    draw.text((width // 2 - 30, height - 16), xlabel, fill="black")
    draw.text((5, top - 14), ylabel, fill="black")
    return _save(image, path)


def curve(xs: list[float], ys: list[float], path: str | Path, title: str, xlabel: str, ylabel: str) -> Path:
    """A curve on the unit square (a precision-recall curve), with a grid every 0.2."""
    width, height, left, bottom, top, right = 440, 380, 50, 40, 66, 20
    image, draw = _canvas(width, height, title)
    sx = lambda x: left + x * (width - left - right)  # noqa: E731
    sy = lambda y: height - bottom - y * (height - bottom - top)  # noqa: E731
    for tick in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        draw.line([(sx(tick), sy(0)), (sx(tick), sy(1))], fill=(225, 225, 225))
        draw.line([(sx(0), sy(tick)), (sx(1), sy(tick))], fill=(225, 225, 225))
        draw.text((sx(tick) - 8, height - bottom + 6), f"{tick:.1f}", fill="black")
        draw.text((12, sy(tick) - 6), f"{tick:.1f}", fill="black")
    draw.line([(sx(0), sy(1)), (sx(0), sy(0)), (sx(1), sy(0))], fill="black")
    draw.line([(sx(x), sy(y)) for x, y in zip(xs, ys)], fill=(31, 119, 180), width=2)
    draw.text((width // 2 - 20, height - 18), xlabel, fill="black")
    draw.text((4, top - 18), ylabel, fill="black")
    return _save(image, path)
