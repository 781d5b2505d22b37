"""The built-in demo dataset: a synthetic street, deterministic from a seed, no download.

A panorama of a street (sky, skyline, facades with windows and signs, trees, lamps, road) is
drawn once by day and once as a light map for the night. Database images look at the street
from places every ``spacing_m`` metres along a gently curving route; queries look from
nearby positions with another camera pose (shift, zoom, perspective), another time of day
(day, dusk, night), occluders and sensor noise. Files use the folder format
``@utm_east@utm_north@zone@letter@lat@lon@...@.jpg``, so positives are found by distance.

With ``train_places`` (and ``val_places``) the generator also writes ``train/`` (and ``val/``),
each with ``database/`` and ``queries/``: other streets, drawn from other random streams and
placed 10 km (20 km) away, so their places are disjoint from the test places. Training splits
have a query near every place.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import utm
from PIL import Image, ImageDraw, ImageFilter

MARKER = "edgevpr_synthetic.json"


@dataclass(frozen=True)
class SyntheticSpec:
    seed: int = 0
    num_places: int = 300
    query_every: int = 3  # one query near every third place
    spacing_m: float = 10.0
    width: int = 240
    height: int = 180
    step_px: int = 60  # panorama pixels between neighbouring places
    origin_east: float = 500000.0
    origin_north: float = 4000000.0
    zone: int = 33
    letter: str = "T"
    train_places: int = 0
    val_places: int = 0


PALETTE = [
    (178, 84, 62),
    (196, 170, 120),
    (120, 130, 140),
    (210, 200, 180),
    (90, 110, 90),
    (160, 60, 70),
    (220, 180, 90),
    (100, 90, 130),
    (150, 150, 150),
    (70, 80, 100),
    (200, 120, 80),
    (130, 160, 180),
]


def _colour(rng, jitter=25):
    base = np.array(PALETTE[rng.integers(len(PALETTE))])
    return tuple(int(v) for v in np.clip(base + rng.integers(-jitter, jitter + 1, 3), 0, 255))


def _draw_street(spec: SyntheticSpec, rng: np.random.Generator) -> tuple[Image.Image, Image.Image]:
    """The day panorama and the night light map (where light sources glow after dark)."""
    width = spec.num_places * spec.step_px + spec.width * 2
    height = spec.height
    x = np.arange(width)
    day = np.zeros((height, width, 3), dtype=np.float32)
    sky_top = np.stack([90 + 30 * np.sin(x / 900), 140 + 20 * np.sin(x / 1300 + 1), 215 + 0 * x], axis=1)
    for row in range(int(height * 0.55)):
        day[row] = sky_top + row * 0.6
    day_image = Image.fromarray(np.clip(day, 0, 255).astype(np.uint8))
    lights = Image.new("L", (width, height), 0)
    draw, glow = ImageDraw.Draw(day_image), ImageDraw.Draw(lights)
    horizon = int(height * 0.55)

    # Far skyline silhouettes.
    position = 0
    while position < width:
        w, h = int(rng.integers(30, 90)), int(rng.integers(20, 60))
        shade = int(rng.integers(110, 160))
        draw.rectangle([position, horizon - h, position + w, horizon], fill=(shade, shade + 5, shade + 15))
        position += w
    # Ground: pavement and road with lane marks.
    draw.rectangle([0, horizon, width, height], fill=(105, 105, 110))
    draw.rectangle([0, int(height * 0.82), width, height], fill=(60, 60, 65))
    for lane in range(0, width, 70):
        draw.rectangle([lane, int(height * 0.9), lane + 35, int(height * 0.92)], fill=(230, 230, 210))
    # Facades with windows, doors and signs.
    position = int(rng.integers(0, 40))
    while position < width:
        w, top = int(rng.integers(60, 200)), int(rng.integers(8, horizon - 25))
        bottom = int(height * 0.8)
        wall = _colour(rng)
        draw.rectangle([position, top, position + w, bottom], fill=wall, outline=(40, 40, 40))
        win_w, win_h = int(rng.integers(8, 20)), int(rng.integers(10, 22))
        gap_x, gap_y = int(rng.integers(6, 16)), int(rng.integers(8, 16))
        frame = tuple(int(v * 0.5) for v in wall)
        glass = (int(rng.integers(40, 90)), int(rng.integers(60, 110)), int(rng.integers(90, 150)))
        for wy in range(top + 8, bottom - win_h - 20, win_h + gap_y):
            for wx in range(position + 6, position + w - win_w - 4, win_w + gap_x):
                draw.rectangle([wx, wy, wx + win_w, wy + win_h], fill=glass, outline=frame)
                if rng.random() < 0.35:
                    glow.rectangle([wx + 1, wy + 1, wx + win_w - 1, wy + win_h - 1], fill=int(rng.integers(150, 255)))
        door_x = position + int(rng.integers(5, max(6, w - 25)))
        draw.rectangle([door_x, bottom - 28, door_x + 18, bottom], fill=(50, 35, 30))
        if rng.random() < 0.6:
            sx, sy = position + int(rng.integers(0, max(1, w - 40))), top + int(rng.integers(0, 20))
            colour = _colour(rng, 60)
            shape = rng.integers(3)
            if shape == 0:
                draw.rectangle([sx, sy, sx + 40, sy + 14], fill=colour)
            elif shape == 1:
                draw.ellipse([sx, sy, sx + 22, sy + 22], fill=colour)
            else:
                draw.polygon([(sx, sy + 22), (sx + 12, sy), (sx + 24, sy + 22)], fill=colour)
            if rng.random() < 0.7:
                glow.rectangle([sx, sy, sx + 24, sy + 14], fill=255)
        position += w + int(rng.integers(0, 30))
    # Trees and street lamps in front.
    for tree_x in np.sort(rng.integers(0, width, width // 150)):
        size = int(rng.integers(18, 40))
        base = int(height * 0.82)
        draw.rectangle([tree_x - 3, base - size - 10, tree_x + 3, base], fill=(80, 55, 35))
        green = (int(rng.integers(30, 80)), int(rng.integers(90, 150)), int(rng.integers(30, 70)))
        draw.ellipse([tree_x - size, base - 2 * size - 15, tree_x + size, base - 10], fill=green)
    for lamp_x in range(int(rng.integers(0, 200)), width, int(rng.integers(180, 260))):
        base = int(height * 0.82)
        draw.rectangle([lamp_x, base - 70, lamp_x + 3, base], fill=(45, 45, 50))
        draw.ellipse([lamp_x - 5, base - 78, lamp_x + 8, base - 68], fill=(220, 220, 200))
        glow.ellipse([lamp_x - 25, base - 95, lamp_x + 28, base - 50], fill=160)
        glow.ellipse([lamp_x - 8, base - 80, lamp_x + 11, base - 66], fill=255)
    lights = lights.filter(ImageFilter.GaussianBlur(3))
    return day_image, lights


def _route(spec: SyntheticSpec, positions: np.ndarray) -> np.ndarray:
    """UTM (east, north) of fractional place positions along a gently curving route."""
    fine = np.arange(0, spec.num_places + 2, 0.01)
    heading = 0.6 * np.sin(fine / 40.0)  # radians, never turns back on itself
    east = spec.origin_east + np.concatenate([[0], np.cumsum(np.cos(heading[:-1]) * spec.spacing_m * 0.01)])
    north = spec.origin_north + np.concatenate([[0], np.cumsum(np.sin(heading[:-1]) * spec.spacing_m * 0.01)])
    return np.stack([np.interp(positions, fine, east), np.interp(positions, fine, north)], axis=1)


def _file_name(spec: SyntheticSpec, east: float, north: float, tag: str) -> str:
    lat, lon = utm.to_latlon(east, north, spec.zone, spec.letter)
    return f"@{east:.2f}@{north:.2f}@{spec.zone}@{spec.letter}@{lat:.6f}@{lon:.6f}@{tag}@@@@@@@@.jpg"


def _view(spec, day, lights, centre_px, rng, condition, shift_y=0, zoom=1.0, warp=0.0):
    """Crop the panorama around ``centre_px`` and render it under ``condition``."""
    w, h = spec.width * zoom, spec.height * zoom
    left, top = centre_px - w / 2, (spec.height - h) / 2 + shift_y
    corners = np.array([[left, top], [left, top + h], [left + w, top + h], [left + w, top]])  # PIL's QUAD order
    corners += rng.uniform(-warp, warp, size=(4, 2)) * np.array([w, h])
    quad = tuple(float(v) for v in corners.ravel())
    box = (spec.width, spec.height)
    base = np.asarray(day.transform(box, Image.QUAD, quad, Image.BILINEAR), dtype=np.float32)
    glow = np.asarray(lights.transform(box, Image.QUAD, quad, Image.BILINEAR), dtype=np.float32)[..., None] / 255
    if condition == "day":
        image = base * rng.uniform(0.85, 1.15) + rng.uniform(-10, 10, 3)
    elif condition == "dusk":
        image = base * np.array([0.75, 0.55, 0.45]) * rng.uniform(0.7, 0.9) + glow * np.array([255, 190, 110]) * 0.6
    else:  # night: ambient light almost gone, light sources glow warm
        image = base * np.array([0.10, 0.12, 0.22]) + glow * np.array([255, 210, 140]) * rng.uniform(0.8, 1.0)
    return image


def _occlude_and_noise(image: np.ndarray, rng: np.random.Generator) -> Image.Image:
    picture = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    height, width = image.shape[:2]
    for _ in range(int(rng.integers(0, 3))):
        ow, oh = int(rng.uniform(0.12, 0.3) * width), int(rng.uniform(0.15, 0.45) * height)
        ox, oy = int(rng.integers(0, width - ow)), int(height - oh - rng.integers(0, height // 6))
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        (draw.rounded_rectangle if rng.random() < 0.5 else draw.ellipse)([ox, oy, ox + ow, oy + oh], fill=colour)
    noisy = np.asarray(picture, dtype=np.float32) + rng.normal(0, rng.uniform(3, 12), size=image.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def generate_synthetic(root: str | Path, spec: SyntheticSpec = SyntheticSpec()) -> Path:
    """Write ``root/database`` and ``root/queries`` (and the training splits the spec asks
    for); reuse them when the same spec made them."""
    root = Path(root)
    marker = root / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == asdict(spec):
        return root
    _write_street(root, spec, np.random.default_rng(spec.seed))
    for number, (split, places) in enumerate((("train", spec.train_places), ("val", spec.val_places)), start=1):
        if places:
            split_spec = replace(
                spec, num_places=places, query_every=1, origin_north=spec.origin_north + 10_000.0 * number
            )
            _write_street(root / split, split_spec, np.random.default_rng([spec.seed, number]))
    marker.write_text(json.dumps(asdict(spec), indent=2) + "\n")
    return root


def _write_street(root: Path, spec: SyntheticSpec, rng: np.random.Generator) -> None:
    day, lights = _draw_street(spec, rng)
    margin = spec.width  # the panorama has a margin so every view stays inside it
    database_dir, queries_dir = root / "database", root / "queries"
    for folder in (database_dir, queries_dir):
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.jpg"):
            old.unlink()

    places = np.arange(spec.num_places, dtype=np.float64)
    for place, (east, north) in zip(places, _route(spec, places)):
        centre = margin + place * spec.step_px
        image = _view(spec, day, lights, centre, rng, "day", zoom=1.0, warp=0.01)
        picture = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
        picture.save(database_dir / _file_name(spec, east, north, f"db{int(place):04d}"), quality=90)

    query_places = np.arange(spec.query_every // 2, spec.num_places, spec.query_every, dtype=np.float64)
    query_places = query_places + rng.uniform(-0.3, 0.3, size=len(query_places))
    conditions = rng.choice(["day", "dusk", "night"], size=len(query_places), p=[0.3, 0.3, 0.4])
    for number, (place, condition, (east, north)) in enumerate(
        zip(query_places, conditions, _route(spec, query_places))
    ):
        centre = margin + place * spec.step_px
        image = _view(
            spec,
            day,
            lights,
            centre,
            rng,
            condition,
            shift_y=rng.uniform(-12, 12),
            zoom=rng.uniform(0.75, 1.0),
            warp=0.06,
        )
        picture = _occlude_and_noise(image, rng)
        name = _file_name(spec, east, north, f"q{number:04d}_{condition}")
        picture.save(queries_dir / name, quality=int(rng.integers(60, 90)))
