import numpy as np
import pytest
import torch

from edgevpr.config import ModelConfig, load_config
from edgevpr.errors import ConfigError
from edgevpr.evaluate.runner import evaluate
from edgevpr.models import build_model
from edgevpr.models.backbones.repvgg import RepVGGBlock, RepVGGLite
from edgevpr.models.pca import PCAProjection
from tests.conftest import cluster_params


def _random_bn(net, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_((torch.rand(n, generator=generator, dtype=module.running_mean.dtype) - 0.5) * 0.4)
            module.running_var.copy_(torch.rand(n, generator=generator, dtype=module.running_var.dtype) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator, dtype=module.weight.dtype) + 0.5)
            module.bias.data.copy_((torch.rand(n, generator=generator, dtype=module.bias.dtype) - 0.5) * 0.4)


def test_repvgg_lite_shape_and_reparameterization_equivalence():
    net = RepVGGLite().double()
    _random_bn(net)
    net.eval()
    x = torch.rand(1, 3, 64, 96, dtype=torch.float64)
    with torch.no_grad():
        training_form = net(x)
        net.reparameterize()
        deployed = net(x)
    assert training_form.shape == (1, 192, 4, 6)  # stride 16
    assert (training_form - deployed).abs().max() <= 1e-5
    assert all(isinstance(b.fused, torch.nn.Conv2d) and b.identity is None for b in net.blocks)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


def test_repvgg_block_identity_branch_only_where_shapes_allow():
    assert RepVGGBlock(8, 8, 1).identity is not None
    assert RepVGGBlock(8, 16, 1).identity is None and RepVGGBlock(8, 8, 2).identity is None


def test_repvgg_deploy_flag_builds_the_fused_form():
    model = build_model(ModelConfig(backbone="repvgg_lite", aggregator="gem", backbone_params={"deploy": True}))
    assert model.backbone.out_channels == 192 and model(torch.rand(1, 3, 64, 64)).shape == (1, 192)
    assert all(block.fused is not None for block in model.backbone.body.blocks)


def test_pca_whitening_gives_identity_covariance():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(500, 32)) @ rng.normal(size=(32, 32)) + 3.0
    pca = PCAProjection(32, 8, whiten=True)
    pca.fit(data)
    projected = pca(torch.from_numpy(data.astype(np.float32))).numpy().astype(np.float64)
    assert np.allclose(projected.mean(axis=0), 0, atol=1e-4)
    assert np.allclose(np.cov(projected, rowvar=False), np.eye(8), atol=1e-4)
    plain = PCAProjection(32, 8)
    plain.fit(data)
    variances = np.var(plain(torch.from_numpy(data.astype(np.float32))).numpy(), axis=0, ddof=1)
    assert (np.diff(variances) <= 1e-3).all()  # decreasing: the leading components


def test_pca_options_are_checked():
    with pytest.raises(ConfigError, match="--whiten needs --pca"):
        build_model(ModelConfig(backbone="squeezenet", whiten=True))
    with pytest.raises(ConfigError, match="exceeds the descriptor size 512"):
        build_model(ModelConfig(backbone="squeezenet", pca=600))


def test_pca_whitening_through_eval_is_saved_in_the_model(tiny_street):
    config = load_config(
        overrides={
            "model": {"backbone": "squeezenet", "aggregator": "gem", "pca": 16, "whiten": True},
            "data": {"dataset": str(tiny_street), "size": (72, 96)},
            "eval": {"latency_runs": 20},
        }
    )
    model = build_model(config.model)
    result = evaluate(config, model=model)
    assert result["model"]["descriptor_dim"] == 16 and result["cost"]["database_bytes"] == 30 * 16 * 4
    assert bool(model.pca.fitted) and "pca.matrix" in model.state_dict()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 72, 96)).shape == (2, 16)


@pytest.mark.parametrize(
    "backbone, aggregator, dim", [("repvgg_lite", "gem", 192), ("ghostcnn", "gem", 960), ("repvgg_lite", "rrm", 192)]
)
@pytest.mark.slow
def test_new_components_run_through_eval(tiny_street, backbone, aggregator, dim):
    config = load_config(
        overrides={
            "model": {"backbone": backbone, "aggregator": aggregator}
            | ({"backbone_params": {"deploy": True}} if backbone == "repvgg_lite" else {}),
            "data": {"dataset": str(tiny_street), "size": (72, 96)},
            "eval": {"latency_runs": 20},
        }
    )
    result = evaluate(config)
    assert result["model"]["descriptor_dim"] == dim and 0 <= result["recall"]["1"] <= 100


def test_ghostcnn_equals_timm_ghostnet_trunk_without_dilation(tmp_path):
    import timm

    reference = timm.create_model("ghostnet_100", pretrained=False)
    _random_bn(reference)
    reference.eval()
    torch.save(reference.state_dict(), tmp_path / "ghostnet_100.pth")  # classifier included, as timm ships it
    model = build_model(
        ModelConfig(
            backbone="ghostcnn",
            aggregator="gem",
            backbone_params={"dilation": (1, 1)},
            weights=str(tmp_path / "ghostnet_100.pth"),
        )
    ).eval()
    x = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        assert torch.equal(model.backbone(x), reference.forward_features(x))
        assert model.backbone(x).shape == (1, 960, 3, 4)  # stride 32


def test_ghostcnn_dilation_widens_the_receptive_field_without_new_weights():
    from edgevpr.models.backbones.ghostcnn import GhostCNN, GhostModule

    plain, dilated = GhostCNN(dilation=(1, 1)), GhostCNN(dilation=(5, 2))
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in dilated.parameters())
    rates = [m.cheap_operation[0].dilation for m in dilated.modules() if isinstance(m, GhostModule)]
    assert rates[0] == (5, 5) and rates[-1] == (2, 2) and rates.count((2, 2)) == 10  # 5 stage-5 bottlenecks x 2 modules
    module = GhostModule(8, 16, relu=True, dilation=3, primary_kernel=3)
    assert module.primary_conv[0].dilation == (3, 3) and module.cheap_operation[0].dilation == (1, 1)
    assert module(torch.rand(1, 8, 12, 12)).shape == (1, 16, 12, 12)
    plain.load_state_dict(dilated.state_dict())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(plain.eval()(x), dilated.eval()(x))
    with pytest.raises(ConfigError, match="dilation needs two rates"):
        build_model(ModelConfig(backbone="ghostcnn", backbone_params={"dilation": (5,)}))


@pytest.mark.parametrize(
    "model",
    [
        {"backbone": {"name": "repvgg_lite", "params": {"deploy": True}}},
        {"backbone": "ghostcnn"},
        {"backbone": "repvgg_lite", "aggregator": "rrm"},
        {"backbone": "repvgg_lite", "deploy": False},
        {"backbone": "squeezenet", "pca": 16, "whiten": True},
    ],
)
@pytest.mark.slow
def test_new_components_export_to_int8(tmp_path, model):
    from edgevpr.config import QuantizeConfig
    from edgevpr.quantize.pipeline import quantize_model
    from edgevpr.runtime.onnx_model import OnnxModel
    from tests.conftest import write_image

    for i in range(20):
        write_image(tmp_path / "calib" / f"{i}.jpg", i, size=(96, 64))
    config = load_config(overrides={"model": {"aggregator": "gem"} | model, "data": {"size": (64, 96)}})
    out = tmp_path / "m.onnx"
    quantize_model(config, QuantizeConfig(precision="int8", calib=str(tmp_path / "calib"), calib_count=20), str(out))
    descriptors = OnnxModel(out)(np.random.rand(2, 3, 64, 96).astype(np.float32))
    assert descriptors.shape == (2, 16 if "pca" in model else 960 if model["backbone"] == "ghostcnn" else 192)
    assert np.allclose(np.linalg.norm(descriptors, axis=1), 1, atol=1e-3)


@pytest.mark.parametrize(
    "backbone, aggregator, dim",
    [
        ("vit", "cls", 384),
        ("vit", "gem", 384),
        ("cct", "seqpool", 384),
        ("cct", "netvlad", 384 * 4),
        ("squeezenet", "seqpool", 512),
        ("vit", "rrm", 384),
        ("squeezenet", "rrm", 512),
    ],
)
def test_transformer_backbones_and_token_aggregators(backbone, aggregator, dim):
    model = build_model(
        ModelConfig(backbone=backbone, aggregator=aggregator, aggregator_params=cluster_params(aggregator, 4))
    )
    out = model(torch.rand(2, 3, 64, 96))
    assert out.shape == (2, dim) and torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)


def test_rrm_is_a_residual_mlp_over_the_normalised_mean():
    from edgevpr.models.aggregators.rrm import ResidualRetrievalModule

    rrm = ResidualRetrievalModule(8)
    features = torch.rand(3, 8, 4, 5)
    pooled = torch.nn.functional.layer_norm(features.mean(dim=(2, 3)), (8,))
    torch.nn.init.zeros_(rrm.fc2.weight)
    torch.nn.init.zeros_(rrm.fc2.bias)  # the MLP branch adds nothing: f = LN(LN(mean))
    assert torch.allclose(rrm(features), torch.nn.functional.layer_norm(pooled, (8,)), atol=1e-5)
    torch.nn.init.normal_(rrm.fc2.weight)
    assert not torch.allclose(rrm(features), torch.nn.functional.layer_norm(pooled, (8,)), atol=1e-3)
    assert sum(p.numel() for p in rrm.parameters()) == 2 * (8 * 8 + 8) + 2 * 2 * 8


def test_seqpool_is_a_softmax_weighted_mean_and_cls_needs_a_class_token():
    from edgevpr.models.aggregators.seqpool import SeqPool

    pool = SeqPool(4)
    torch.nn.init.zeros_(pool.score.weight)
    torch.nn.init.zeros_(pool.score.bias)
    tokens = torch.rand(2, 4, 1, 5)
    assert torch.allclose(pool(tokens), tokens.mean(dim=(2, 3)), atol=1e-6)  # equal scores: the mean
    with pytest.raises(ConfigError, match="class token"):
        build_model(ModelConfig(backbone="cct", aggregator="cls"))


@pytest.mark.parametrize(
    "model", [{"backbone": "cct", "aggregator": "seqpool"}, {"backbone": "vit", "aggregator": "cls"}]
)
@pytest.mark.slow
def test_transformers_export_to_int8_and_eval(tmp_path, tiny_street, model):
    from edgevpr.config import QuantizeConfig
    from edgevpr.quantize.pipeline import quantize_model
    from tests.conftest import write_image

    for i in range(8):
        write_image(tmp_path / "calib" / f"{i}.jpg", i, size=(96, 64))
    config = load_config(overrides={"model": model, "data": {"size": (64, 96)}})
    out = tmp_path / "m.onnx"
    quantize_model(config, QuantizeConfig(precision="int8", calib=str(tmp_path / "calib"), calib_count=8), str(out))
    result = evaluate(
        load_config(
            overrides={"model": {"onnx": str(out)}, "data": {"dataset": str(tiny_street)}, "eval": {"latency_runs": 20}}
        )
    )
    assert result["protocol"]["precision"] == "int8-cpu" and result["model"]["descriptor_dim"] == 384


def test_crn_starts_as_netvlad_and_reweights_once_trained():
    from edgevpr.models.aggregators.crn import CRN
    from edgevpr.models.aggregators.netvlad import NetVLAD

    torch.manual_seed(0)
    features = torch.rand(2, 16, 6, 8)
    crn, vlad = CRN(16, clusters=4), NetVLAD(16, clusters=4)
    vlad.load_state_dict({k: v for k, v in crn.state_dict().items() if not k.startswith("context.")})
    assert torch.allclose(crn(features), vlad(features), atol=1e-6)
    with torch.no_grad():
        crn.context.combine.weight.normal_()
    assert not torch.allclose(crn(features), vlad(features), atol=1e-3)
    model = build_model(ModelConfig(backbone="squeezenet", aggregator="crn", aggregator_params={"clusters": 4}))
    assert model(torch.rand(1, 3, 64, 96)).shape == (1, 512 * 4)


def test_pca_refuses_to_fit_on_too_few_descriptors():
    with pytest.raises(ConfigError, match="PCA to 16 dimensions needs more than 16 descriptors to fit, got 10"):
        PCAProjection(32, 16).fit(np.random.default_rng(0).normal(size=(10, 32)))


def test_seqslam_pixels_descriptor_is_patch_normalised_grey_levels():
    """pixels + patchnorm (Milford and Wyeth 2012): the image downsampled to rows x cols, each
    patch at zero mean and unit variance; a colour-only change of equal luma leaves it as it is."""
    config = ModelConfig(
        backbone="pixels", aggregator="patchnorm", aggregator_params={"rows": 8, "cols": 16, "patch": 4}
    )
    model = build_model(config)
    images = torch.rand(2, 3, 48, 96)
    with torch.no_grad():
        raw = model.aggregator(model.backbone(images)).reshape(2, 2, 4, 4, 4)
        descriptors = model(images)
    blocks = raw.permute(0, 1, 3, 2, 4).reshape(2, 8, 16)
    assert descriptors.shape == (2, 128) == (2, model.descriptor_dim)
    assert torch.allclose(blocks.mean(-1), torch.zeros(2, 8), atol=1e-5)
    assert torch.allclose(blocks.std(-1, unbiased=False), torch.ones(2, 8), atol=1e-3)
    with pytest.raises(ConfigError, match="multiples of patch 8"):
        build_model(ModelConfig(backbone="pixels", aggregator="patchnorm", aggregator_params={"rows": 12}))
    with pytest.raises(ConfigError, match="'pixels' has no weights"):
        build_model(ModelConfig(backbone="pixels", aggregator="patchnorm", pretrained=True))
