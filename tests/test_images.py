import numpy as np
import pytest
from PIL import Image

from edgevpr.config import load_config
from edgevpr.data.images import load_rgb
from edgevpr.errors import ImageError
from edgevpr.evaluate.runner import evaluate
from tests.conftest import utm_name, write_image


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image.save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    assert load_rgb(tmp_path / "rotated.jpg").size == (20, 40)


@pytest.mark.parametrize(
    "mode, make",
    [
        ("L", lambda: Image.new("L", (8, 6), 128)),
        ("LA", lambda: Image.new("LA", (8, 6), (128, 255))),
        ("RGBA", lambda: Image.new("RGBA", (8, 6), (10, 20, 30, 255))),
        ("CMYK", lambda: Image.new("CMYK", (8, 6), (0, 255, 255, 0))),
        ("P", lambda: Image.new("RGB", (8, 6), (0, 0, 255)).convert("P")),
        ("I;16", lambda: Image.fromarray(np.full((6, 8), 65535, dtype=np.uint16))),
    ],
)
def test_modes_become_rgb(tmp_path, mode, make):
    source = make()
    suffix = ".jpg" if mode == "CMYK" else ".png"
    source.save(tmp_path / f"image{suffix}")
    image = load_rgb(tmp_path / f"image{suffix}")
    assert image.mode == "RGB" and image.size == (8, 6)
    if mode == "I;16":
        assert np.asarray(image).min() == 255  # full 16-bit range maps to full 8-bit range
    if mode == "P":
        assert tuple(np.asarray(image)[0, 0]) == (0, 0, 255)


def test_transparent_pixels_become_white(tmp_path):
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert tuple(np.asarray(load_rgb(tmp_path / "clear.png"))[0, 0]) == (255, 255, 255)


def _bad_files(tmp_path):
    good = write_image(tmp_path / "good.jpg", 0)
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "corrupt.jpg").write_bytes(b"this is not an image at all" * 10)
    data = good.read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    Image.new("L", (400, 300)).save(tmp_path / "bomb.png")
    return tmp_path


@pytest.mark.parametrize(
    "name, reason",
    [
        ("empty.jpg", "empty file"),
        ("corrupt.jpg", "not a readable image"),
        ("truncated.jpg", "truncated"),
        ("bomb.png", "decompression bomb"),
        ("missing.jpg", "file not found"),
    ],
)
def test_bad_images_name_the_file(tmp_path, name, reason):
    folder = _bad_files(tmp_path)
    with pytest.raises(ImageError, match=reason) as caught:
        load_rgb(folder / name, max_pixels=100_000)
    assert caught.value.path.endswith(name)
    assert str(caught.value).startswith(str(folder / name))


def _dataset_with_bad_image(tmp_path):
    root = tmp_path / "set"
    for i in range(6):
        write_image(root / "database" / utm_name(500000 + 10 * i, 4000000, f"d{i}"), i)
    for j in range(3):
        write_image(root / "queries" / utm_name(500000 + 20 * j, 4000000, f"q{j}"), 10 + j)
    bad = root / "database" / utm_name(500010, 4000000, "d1")
    bad.write_bytes(bad.read_bytes()[:100])
    return root, bad


def _config(root, **data):
    return load_config(
        overrides={
            "model": {"backbone": "squeezenet", "aggregator": "gem"},
            "data": {"dataset": str(root), "size": (48, 64), **data},
            "eval": {"latency_runs": 20},
        }
    )


def test_bad_image_stops_evaluation_by_default(tmp_path):
    root, bad = _dataset_with_bad_image(tmp_path)
    with pytest.raises(ImageError, match="truncated") as caught:
        evaluate(_config(root))
    assert caught.value.path == str(bad)


def test_bad_image_skipped_and_counted_on_request(tmp_path):
    root, bad = _dataset_with_bad_image(tmp_path)
    result = evaluate(_config(root, skip_bad_images=True))
    protocol = result["protocol"]
    assert protocol["num_database"] == 5 and protocol["num_queries"] == 3
    assert len(protocol["skipped_images"]) == 1 and protocol["skipped_images"][0].startswith(str(bad))
    assert result["cost"]["database_bytes"] == 5 * 512 * 4


def test_broken_links_are_listed_and_refused_or_skipped_never_dropped(tmp_path):
    from edgevpr.data.images import list_images, load_rgb
    from edgevpr.errors import ImageError

    write_image(tmp_path / "Image000.jpg", 0)
    (tmp_path / "Image003.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (tmp_path / "loop_a.jpg").symlink_to(tmp_path / "loop_b.jpg")
    (tmp_path / "loop_b.jpg").symlink_to(tmp_path / "loop_a.jpg")
    listed = [p.name for p in list_images(tmp_path)]
    assert listed == ["Image000.jpg", "Image003.jpg", "loop_a.jpg", "loop_b.jpg"]
    with pytest.raises(ImageError, match=r"Image003\.jpg: broken symbolic link"):
        load_rgb(tmp_path / "Image003.jpg")
    with pytest.raises(ImageError, match=r"loop_a\.jpg: symbolic link loop"):
        load_rgb(tmp_path / "loop_a.jpg")
