import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgevpr.config import ModelConfig
from edgevpr.errors import ConfigError
from edgevpr.models import build_model
from edgevpr.models.aggregators.gem import GeM
from edgevpr.models.aggregators.mac import MAC
from edgevpr.models.aggregators.netvlad import NetVLAD
from edgevpr.models.aggregators.rmac import RMAC, rmac_regions
from edgevpr.models.aggregators.spoc import SPoC
from edgevpr.models.params import build_component
from edgevpr.models.registry import BACKBONES
from edgevpr.models.tf_same import Conv2dSame, apply_tf_same_padding, same_padding
from tests.conftest import cluster_params

FEATURES = torch.rand(2, 8, 5, 7)


@pytest.mark.parametrize("aggregator", ["spoc", "mac", "gem", "rmac", "netvlad"])
def test_each_aggregator_shape_and_normalisation(aggregator):
    model = build_model(
        ModelConfig(backbone="squeezenet", aggregator=aggregator, aggregator_params=cluster_params(aggregator, 4))
    )
    out = model(torch.rand(3, 3, 64, 80))
    expected = 512 * 4 if aggregator == "netvlad" else 512
    assert out.shape == (3, expected) == (3, model.descriptor_dim)
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)


def test_projection_to_dim():
    model = build_model(ModelConfig(backbone="resnet18_conv4", aggregator="gem", dim=32))
    out = model(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 32) and torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
    assert model.aggregator.out_dim == 256  # from the backbone's out_channels


def test_pooling_formulas():
    assert torch.allclose(SPoC(8)(FEATURES), FEATURES.mean(dim=(2, 3)))
    assert torch.allclose(MAC(8)(FEATURES), FEATURES.flatten(2).max(dim=2).values)
    gem = GeM(8, p=3.0)(FEATURES)
    assert torch.allclose(gem, FEATURES.pow(3).mean(dim=(2, 3)).pow(1 / 3), atol=1e-6)
    assert torch.allclose(GeM(8, p=1.0)(FEATURES), FEATURES.mean(dim=(2, 3)), atol=1e-6)
    assert GeM(8).p.requires_grad


def test_rmac_regions_and_value():
    regions = rmac_regions(30, 40, levels=3)
    assert regions[0] == (0, 0, 30, 40)
    assert all(top >= 0 and left >= 0 and top + h <= 30 and left + w <= 40 for top, left, h, w in regions)
    assert {h for _, _, h, _ in regions[1:]} == {30, 20, 15}  # 2 * min / (l + 1)
    single = torch.zeros(1, 2, 4, 4)
    single[0, 0, 1, 1] = 1.0
    # Every region containing the peak contributes a unit vector along channel 0.
    out = RMAC(2)(single)
    assert out[0, 1] == 0 and out[0, 0] > 1


def test_netvlad_matches_definition_and_initialises():
    vlad = NetVLAD(8, clusters=4)
    rng = np.random.default_rng(0)
    vlad.init_from_features(rng.random((500, 8)).astype(np.float32))
    assert bool(vlad.initialised)
    x = F.normalize(FEATURES, dim=1).flatten(2)[0]  # (C, N)
    soft = F.softmax(vlad.assign.weight[:, :, 0, 0] @ x + vlad.assign.bias[:, None], dim=0)  # (K, N)
    manual = torch.stack([(soft[k] * (x - vlad.centroids[k][:, None])).sum(dim=1) for k in range(4)])
    manual = F.normalize(manual, dim=1).flatten()
    assert torch.allclose(vlad(FEATURES)[0], manual, atol=1e-5)


def test_unknown_component_lists_the_choices():
    with pytest.raises(ConfigError, match="unknown backbone 'resnet7'.*mobilenetv2"):
        build_model(ModelConfig(backbone="resnet7"))
    with pytest.raises(ConfigError, match="unknown aggregator"):
        build_model(ModelConfig(aggregator="avgpoool"))


@pytest.mark.parametrize(
    "name, channels",
    [
        ("resnet18_conv4", 256),
        ("resnet18_conv5", 512),
        ("resnet50_conv4", 1024),
        ("vgg16", 512),
        ("efficientnet_b0", 1280),
        ("efficientnet_lite0", 1280),
    ],
)
def test_backbones_report_their_channels(name, channels):
    backbone = build_component(BACKBONES, name, {}, "model.backbone.params", ModelConfig(backbone=name)).eval()
    with torch.no_grad():
        assert backbone(torch.rand(1, 3, 64, 64)).shape[1] == backbone.out_channels == channels


def test_tf_same_padding_matches_tensorflow_rule():
    assert same_padding(225, 3, 2) == (1, 1) and same_padding(224, 3, 2) == (0, 1) and same_padding(7, 1, 2) == (0, 0)
    conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
    wrapper = torch.nn.Sequential(conv)
    assert apply_tf_same_padding(wrapper) == 1 and isinstance(conv, Conv2dSame)
    x = torch.rand(1, 3, 10, 9)
    expected = F.conv2d(F.pad(x, (1, 1, 0, 1)), conv.weight, conv.bias, stride=2)
    assert torch.allclose(conv(x), expected)


def test_local_weights_load_strictly_and_errors_are_clear(tmp_path):
    reference = build_model(ModelConfig(backbone="squeezenet"))
    import torchvision

    full = torchvision.models.squeezenet1_1()
    torch.save(full.state_dict(), tmp_path / "sq.pth")
    model = build_model(ModelConfig(backbone="squeezenet", weights=str(tmp_path / "sq.pth")))
    assert torch.equal(model.backbone.body[0].weight, full.features[0].weight)
    assert not torch.equal(model.backbone.body[0].weight, reference.backbone.body[0].weight)
    with pytest.raises(ConfigError, match="weights file not found"):
        build_model(ModelConfig(backbone="squeezenet", weights=str(tmp_path / "none.pth")))
    with pytest.raises(ConfigError, match="do not fit"):
        build_model(ModelConfig(backbone="mobilenetv2", weights=str(tmp_path / "sq.pth")))


@pytest.mark.parametrize("backbone", ["repvgg_lite", "cct"])
def test_pretrained_without_weights_is_refused_in_one_line(backbone):
    with pytest.raises(ConfigError, match=f"--pretrained: {backbone} has no pretrained weights here"):
        build_model(ModelConfig(backbone=backbone, aggregator="gem", pretrained=True))
