"""Shared fixtures: small generated datasets and paths to the optional shared data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / "shared"
RECIPES = Path(__file__).resolve().parents[1] / "configs"
GARDENS_POINT = SHARED / "data" / "gardens_point"
REFERENCE = SHARED / "reference" / "gardens_point_mnv2_gem360"
MOBILENET_TFLITE = SHARED / "weights" / "mobilenet_v2_imagenet_tflite.pth"
LITE0_TIMM = SHARED / "weights" / "efficientnet_lite0_imagenet.pth"


def needs(path: Path):
    return pytest.mark.skipif(not path.exists(), reason=f"{path} is absent (shared data not available)")


def int8_layout_params(names=("u8s8", "u8s7")):
    """pytest params for int8 layouts, each id naming what this CPU's kernels promise for it:
    ``exact`` (compare bit for bit) or ``saturating`` (u8 x s8 pairs clip in int16: tolerance)."""
    from edgevpr.runtime.cpu import cpu_kernels
    from edgevpr.runtime.int8_layout import LAYOUTS

    return [
        pytest.param(name, id=f"{name}-{'exact' if LAYOUTS[name].exact_on(cpu_kernels()) else 'saturating'}")
        for name in names
    ]


def int8_exact(layout: str) -> bool:
    from edgevpr.runtime.cpu import cpu_kernels
    from edgevpr.runtime.int8_layout import LAYOUTS

    return LAYOUTS[layout].exact_on(cpu_kernels())


def pytest_terminal_summary(terminalreporter):
    """Say which integer kernels the int8 checks ran against, and which of them were tolerance checks."""
    from edgevpr.runtime.cpu import cpu_kernels
    from edgevpr.runtime.int8_layout import LAYOUTS

    kernels = cpu_kernels()
    saturating = [name for name, layout in LAYOUTS.items() if not layout.exact_on(kernels)]
    line = (
        f"int8 kernels of this CPU: {kernels.family} ({', '.join(kernels.flags) or 'no SIMD flags'}; {kernels.source})"
    )
    if saturating:
        line += (
            f"; {', '.join(saturating)} saturates here, so its bit-exact checks ran as tolerance checks "
            "(they run bit for bit on a CPU with VNNI)"
        )
    else:
        line += "; every layout is summed exactly here, so every int8 check ran bit for bit"
    terminalreporter.write_line(line)


def write_image(path: Path, seed: int, size=(64, 48)) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def utm_name(east: float, north: float, tag: str = "") -> str:
    return f"@{east:.2f}@{north:.2f}@33@T@0@0@{tag}@@@@@@@@.jpg"


@pytest.fixture
def utm_dataset(tmp_path) -> Path:
    """Database every 10 m along a line; queries at 3 m, 52 m and 200 m (no positive)."""
    root = tmp_path / "utm"
    for i in range(10):
        write_image(root / "database" / "sub" / utm_name(500000 + 10 * i, 4000000, f"d{i}"), seed=i)
    for j, east in enumerate([500003, 500052, 500200]):
        write_image(root / "queries" / utm_name(east, 4000000, f"q{j}"), seed=100 + j)
    return root


@pytest.fixture(scope="session")
def tiny_street(tmp_path_factory) -> Path:
    from edgevpr.data.synthetic import SyntheticSpec, generate_synthetic

    root = tmp_path_factory.mktemp("street")
    return generate_synthetic(root, SyntheticSpec(num_places=30, query_every=3, width=96, height=72, step_px=24))


@pytest.fixture(scope="session")
def training_street(tmp_path_factory) -> Path:
    """A small synthetic street with disjoint train and val splits."""
    from edgevpr.data.synthetic import SyntheticSpec, generate_synthetic

    root = tmp_path_factory.mktemp("training_street")
    return generate_synthetic(
        root, SyntheticSpec(num_places=30, width=96, height=72, step_px=24, train_places=24, val_places=12)
    )


@pytest.fixture(scope="session")
def noisy_route(tmp_path_factory):
    """A route of 30 texture frames mapped with a seeded random SqueezeNet, and a held-out
    stream over frames 8..21: each frame 60 % its map frame, 40 % fresh noise. Single frames
    are often wrong; the frames before agree on the route, so sequence matching fixes them."""
    from PIL import Image

    root = tmp_path_factory.mktemp("route")
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (72, 96, 3)).astype(np.float32) for _ in range(30)]
    for i, frame in enumerate(frames):
        write_image_array(root / "route" / f"f{i:03d}.png", frame)
    stream = []
    for t in range(8, 22):
        noisy = 0.6 * frames[t] + 0.4 * rng.integers(0, 255, frames[t].shape)
        stream.append((write_image_array(root / "stream" / f"s{t:03d}.png", noisy), t))
    from edgevpr.config import load_config
    from edgevpr.maps import Map, ModelSource

    # eval.seed seeds the random weights (1: single frames 7 of 14 right, L = 5 12 of 14)
    squeeze = {
        "model": {"backbone": "squeezenet", "aggregator": "gem"},
        "data": {"size": (72, 96)},
        "eval": {"seed": 1},
    }
    built = Map.build(ModelSource(config=load_config(overrides=squeeze)), root / "route", root / "map")
    assert Image.open(stream[0][0]).size == (96, 72)
    return built, stream


def write_image_array(path, array):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)).save(path)
    return path


def write_mixed_config(path: Path) -> str:
    """A mixed-precision file as `search-precision` writes it, for SqueezeNet + GeM: its
    searchable layers alternating int8 and fp16 (calibration minmax on 8 images)."""
    import json

    import torch

    from edgevpr.config import load_config
    from edgevpr.models import build_model
    from edgevpr.quantize.layers import searchable_layers

    config = load_config(overrides={"model": {"backbone": "squeezenet", "aggregator": "gem"}})
    layers = searchable_layers(build_model(config.model).eval(), torch.zeros(1, 3, 72, 96))
    mixed = {
        "format": "edgevpr-mixed-precision-1",
        "calibration": "minmax",
        "calib_count": 8,
        "budget": 12,
        "weighting": "parameters",
        "average_bits": 12.0,
        "fitness": 0.0,
        "layers": [{"name": layer.name, "precision": ("int8", "fp16")[i % 2]} for i, layer in enumerate(layers)],
    }
    path.write_text(json.dumps(mixed))
    return str(path)


def cluster_params(aggregator: str, clusters: int) -> dict:
    """The params block giving a clustering aggregator (NetVLAD, CRN) ``clusters``; other
    aggregators take no cluster count."""
    return {"clusters": clusters} if aggregator in ("netvlad", "crn") else {}
