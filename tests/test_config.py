import pytest

from edgevpr.atomic import atomic_path, write_json
from edgevpr.config import load_config
from edgevpr.errors import ConfigError


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  backbone: vgg16\n  dim: 128\n  mean: [0.5, 0.5, 0.5]\ndata:\n  size: [240, 320]\n")
    config = load_config(path, {"model": {"dim": 64}, "data": {"resize": None}})
    assert config.model.backbone == "vgg16" and config.model.dim == 64
    assert config.model.mean == (0.5, 0.5, 0.5) and config.data.size == (240, 320)
    assert config.to_dict()["model"]["dim"] == 64


def test_comma_lists_from_the_command_line():
    config = load_config(overrides={"model": {"mean": "0.5,0.4,0.3"}})
    assert config.model.mean == (0.5, 0.4, 0.3)


@pytest.mark.parametrize(
    "text, message",
    [
        ("model:\n  backbon: vgg16\n", "unknown key 'backbon'"),
        ("modle:\n  backbone: vgg16\n", "unknown section 'modle'"),
        ("model:\n  dim: lots\n", "model.dim: expected int"),
        ("data:\n  skip_bad_images: 3\n", "expected true or false"),
        ("model: [1, 2\n", "not valid YAML"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(path)
    assert "\n" not in str(caught.value) and "bad.yaml" in str(caught.value)


def test_interrupted_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "results.json"
    write_json(target, {"good": 1})
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert target.read_text().strip() == '{\n  "good": 1\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
