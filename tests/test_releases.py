"""Published checkpoints by file (models.releases): for each authors' layout a state dict is
generated here with the official key names and shapes (random values, the official container:
a Lightning checkpoint's ``state_dict``, a hub-style flat dict), loaded with ``--weights``,
and checked: every tensor landed where it belongs, the output depends on every loaded
parameter, the descriptor size and the input contract are the release's, and a file that
matches a layout only in part is refused naming the first key."""

import pytest
import torch

from edgevpr.compat import torchvision
from edgevpr.config import IMAGENET_MEAN, load_config
from edgevpr.errors import ConfigError
from edgevpr.models import build_model
from edgevpr.models.resolve import contract_of, resolve_config
from edgevpr.models.size import count_params


def _mixvpr_state(side: int = 4, channels: int = 64, rows: int = 2, depth: int = 2) -> dict:
    """MixVPR's VPRModel: torchvision ResNet-50 as ``backbone.model`` without layer4, fc and
    avgpool; the aggregator's FeatureMixerLayer stack, channel_proj and row_proj."""
    resnet = torchvision.models.resnet50().state_dict()
    state = {f"backbone.model.{k}": v for k, v in resnet.items() if not k.startswith(("layer4.", "fc."))}
    cells = side * side
    for i in range(depth):
        state[f"aggregator.mix.{i}.mix.0.weight"] = 1 + 0.1 * torch.randn(cells)
        state[f"aggregator.mix.{i}.mix.0.bias"] = 0.1 * torch.randn(cells)
        for j in (1, 3):
            state[f"aggregator.mix.{i}.mix.{j}.weight"] = 0.05 * torch.randn(cells, cells)
            state[f"aggregator.mix.{i}.mix.{j}.bias"] = 0.05 * torch.randn(cells)
    state["aggregator.channel_proj.weight"] = 0.05 * torch.randn(channels, 1024)
    state["aggregator.channel_proj.bias"] = 0.05 * torch.randn(channels)
    state["aggregator.row_proj.weight"] = 0.05 * torch.randn(rows, cells)
    state["aggregator.row_proj.bias"] = 0.05 * torch.randn(rows)
    return state


def _cosplace_state(dim: int = 32) -> dict:
    """CosPlace's GeoLocalizationNet on ResNet-18: ``backbone`` = the classifier's children
    but the last two, ``aggregation`` = L2Norm, GeM, Flatten, Linear, L2Norm."""
    children = list(torchvision.models.resnet18().children())[:-2]
    state = {f"backbone.{k}": v for k, v in torch.nn.Sequential(*children).state_dict().items()}
    state["aggregation.1.p"] = torch.ones(1) * 3.2
    state["aggregation.3.weight"] = 0.05 * torch.randn(dim, 512)
    state["aggregation.3.bias"] = 0.05 * torch.randn(dim)
    return state


def _vgg16_cut() -> dict:
    """VGG16's ``features[:-2]``: conv5_3 without its ReLU and max-pool, as both releases cut it."""
    return torch.nn.Sequential(*list(torchvision.models.vgg16().features.children())[:-2]).state_dict()


def _cosplace_vgg16_state(dim: int = 32) -> dict:
    """CosPlace on VGG16: ``backbone`` = ``features[:-2]``, the same GeM and FC head."""
    head = {k: v for k, v in _cosplace_state(dim).items() if k.startswith("aggregation.")}
    return {f"backbone.{k}": v for k, v in _vgg16_cut().items()} | head


def _patchnetvlad_state(clusters: int = 8, pcs: int = 64) -> dict:
    """Patch-NetVLAD's model: ``encoder`` (VGG16 ``features[:-2]``), ``pool`` (NetVLAD vladv1:
    centroids and a 1 x 1 assignment convolution without bias) and ``WPCA.0`` (a 1 x 1
    convolution from the K x 512 VLAD to the principal components)."""
    state = {f"encoder.{k}": v for k, v in _vgg16_cut().items()}
    state["pool.centroids"] = torch.rand(clusters, 512)
    state["pool.conv.weight"] = torch.randn(clusters, 512, 1, 1)
    state["WPCA.0.weight"] = 0.05 * torch.randn(pcs, clusters * 512, 1, 1)
    state["WPCA.0.bias"] = 0.05 * torch.randn(pcs)
    return state


def _salad_state(clusters: int = 8, cluster_dim: int = 16, token_dim: int = 32) -> dict:
    """SALAD's VPRModel on DINOv2 ViT-S/14 as torch.hub builds it (``backbone.model``, with
    its mask token), then the aggregator's three MLPs and the dustbin score."""
    import timm

    vit = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0).state_dict()
    state = {f"backbone.model.{k}": v for k, v in vit.items()}
    state["backbone.model.mask_token"] = torch.zeros(1, 384)
    shapes = {
        "token_features.0": (512, 384),
        "token_features.2": (token_dim, 512),
        "cluster_features.0": (512, 384, 1, 1),
        "cluster_features.3": (cluster_dim, 512, 1, 1),
        "score.0": (512, 384, 1, 1),
        "score.3": (clusters, 512, 1, 1),
    }
    for name, shape in shapes.items():
        state[f"aggregator.{name}.weight"] = 0.05 * torch.randn(shape)
        state[f"aggregator.{name}.bias"] = 0.05 * torch.randn(shape[0])
    state["aggregator.dust_bin"] = torch.tensor(0.7)
    return state


def _boq_state(dino: bool = False, dim: int = 64, queries: int = 8, layers: int = 2, rows: int = 4) -> dict:
    """BoQ's hub model: ``backbone.net`` (torchvision ResNet-50 children up to layer3) or
    ``backbone.dino`` (DINOv2 from torch.hub), and the aggregator's projection, blocks (a
    PyTorch TransformerEncoderLayer, learned queries, two MultiheadAttentions, two LayerNorms)
    and the final row projection."""
    if dino:
        import timm

        vit = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0).state_dict()
        state = {f"backbone.dino.{k}": v for k, v in vit.items()} | {"backbone.dino.mask_token": torch.zeros(1, 384)}
        channels = 384
    else:
        body = torch.nn.Sequential(*list(torchvision.models.resnet50().children())[:7])
        state = {f"backbone.net.{k}": v for k, v in body.state_dict().items()}
        channels = 1024
    heads = dim // 64
    proj = torch.nn.Conv2d(channels, dim, 3, padding=1)
    state |= {f"aggregator.proj_c.{k}": v for k, v in proj.state_dict().items()}
    state |= {f"aggregator.norm_input.{k}": v for k, v in torch.nn.LayerNorm(dim).state_dict().items()}
    for i in range(layers):
        parts = {
            "encoder": torch.nn.TransformerEncoderLayer(dim, heads, 4 * dim, batch_first=True, dropout=0.0),
            "self_attn": torch.nn.MultiheadAttention(dim, heads, batch_first=True),
            "norm_q": torch.nn.LayerNorm(dim),
            "cross_attn": torch.nn.MultiheadAttention(dim, heads, batch_first=True),
            "norm_out": torch.nn.LayerNorm(dim),
        }
        for name, module in parts.items():
            state |= {f"aggregator.boqs.{i}.{name}.{k}": v for k, v in module.state_dict().items()}
        state[f"aggregator.boqs.{i}.queries"] = torch.randn(1, queries, dim)
    state |= {f"aggregator.fc.{k}": v for k, v in torch.nn.Linear(layers * queries, rows).state_dict().items()}
    return state


RELEASES = {  # name -> (state, container, descriptor size, input size, architecture)
    "mixvpr": (_mixvpr_state, "lightning", 128, (64, 64), ("resnet50_conv4", "mixvpr")),
    "cosplace": (_cosplace_state, "flat", 32, None, ("resnet18_conv5", "gem")),
    "cosplace_vgg16": (_cosplace_vgg16_state, "flat", 32, None, ("vgg16", "gem")),
    "patchnetvlad": (_patchnetvlad_state, "pth.tar", 64, (480, 640), ("vgg16", "netvlad")),
    "salad": (_salad_state, "flat", 8 * 16 + 32, (322, 322), ("dinov2_vits14", "salad")),
    "boq_resnet": (_boq_state, "flat", 64 * 4, (384, 384), ("resnet50_conv4", "boq")),
    "boq_dinov2": (lambda: _boq_state(dino=True), "flat", 64 * 4, (322, 322), ("dinov2_vits14", "boq")),
}


def _write(tmp_path, name: str) -> tuple:
    make, container, dim, size, architecture = RELEASES[name]
    torch.manual_seed(0)
    state = make()
    payload = {"epoch": 3, "global_step": 100, "state_dict": state} if container == "lightning" else state
    if container == "pth.tar":  # Patch-NetVLAD's training script saves these beside the weights
        payload = {"epoch": 3, "state_dict": state, "recalls": {1: 0.5}, "best_score": 0.5, "not_improved": 0}
    path = tmp_path / f"{name}.{'pth.tar' if container == 'pth.tar' else 'ckpt'}"
    torch.save(payload, path)
    return path, state


@pytest.mark.parametrize("name", list(RELEASES))
def test_a_release_loads_whole_with_its_contract(tmp_path, name):
    path, state = _write(tmp_path, name)
    _, _, dim, size, (backbone, aggregator) = RELEASES[name]
    config = resolve_config(load_config(overrides={"model": {"weights": str(path)}}))
    assert (config.model.backbone, config.model.aggregator) == (backbone, aggregator)
    assert config.data.size == size and config.model.mean == IMAGENET_MEAN
    if name == "mixvpr":
        assert contract_of(config).interpolation == "bicubic"
    model = build_model(config.model).eval()
    assert model.descriptor_dim == dim
    landed = list(model.state_dict().values())
    for key, value in state.items():
        if key.endswith("mask_token"):
            continue  # DINOv2's masked-image-modelling token: no role at inference
        same = (v for v in landed if v.numel() == value.numel() and torch.equal(v.flatten(), value.flatten()))
        assert next(same, None) is not None, f"{key} did not land"
    side = 28 if name in ("salad", "boq_dinov2") else 64
    torch.manual_seed(1)
    (model(torch.rand(2, 3, side, side)) * torch.randn(dim)).sum().backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    if name == "boq_dinov2":  # BoQ reads the ViT's blocks without its last norm, as the release does
        silent = [n for n in silent if not n.startswith("backbone.net.norm.")]
    assert silent == [], f"the output does not depend on {silent[:3]}"


@pytest.mark.parametrize("name", list(RELEASES))
def test_a_partial_release_is_refused_naming_the_key(tmp_path, name):
    make = RELEASES[name][0]
    state = make()
    dropped = next(
        k
        for k in state
        if "layer3.1.conv1" in k or "blocks.3.attn.qkv.weight" in k or k.endswith(("4.1.conv1.weight", "28.weight"))
    )
    missing = {k: v for k, v in state.items() if k != dropped}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(ConfigError, match="lacks '.*(layer|blocks|body)"):
        build_model(resolve_config(load_config(overrides={"model": {"weights": str(tmp_path / "missing.pt")}})).model)
    extra = state | {next(iter(state)).rsplit(".", 1)[0] + ".surplus": torch.zeros(3)}
    torch.save(extra, tmp_path / "extra.pt")
    with pytest.raises(ConfigError, match="surplus"):
        build_model(resolve_config(load_config(overrides={"model": {"weights": str(tmp_path / "extra.pt")}})).model)


@pytest.mark.parametrize(
    "backbone, aggregator, params, dim, millions",
    [
        ("resnet50_conv4", "mixvpr", {}, 4096, 10.88),  # MixVPR's released 4096-D model
        ("dinov2_vitb14", "salad", {}, 8448, 87.99),  # SALAD: 64 x 128 + 256
        ("resnet50_conv4", "boq", {}, 16384, 23.84),  # BoQ: 512 x 32
        ("dinov2_vitb14", "boq", {"proj_channels": 384}, 12288, 95.21),  # BoQ: 384 x 32
    ],
)
def test_full_size_models_have_the_releases_sizes(backbone, aggregator, params, dim, millions):
    """Descriptor sizes as the authors' releases state them; parameter counts as built here
    (docs/models.md)."""
    overrides = {"model": {"backbone": backbone, "aggregator": {"name": aggregator, "params": params}}}
    model = build_model(load_config(overrides=overrides).model)
    assert model.descriptor_dim == dim and round(count_params(model) / 1e6, 2) == millions


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv, dim",
    [
        (
            [
                "--backbone",
                "resnet18_conv4",
                "--aggregator",
                "mixvpr",
                "--aggregator-params",
                "in_h=4,in_w=4,out_channels=32",
            ],
            128,
        ),
        (
            [
                "--backbone",
                "dinov2_vits14",
                "--aggregator",
                "salad",
                "--aggregator-params",
                "{clusters: 8, cluster_dim: 8}",
            ],
            320,
        ),
        (
            [
                "--backbone",
                "resnet18_conv4",
                "--aggregator",
                "boq",
                "--aggregator-params",
                "proj_channels=64,row_dim=4",
            ],
            256,
        ),
    ],
)
def test_new_aggregators_deploy_int8_and_evaluate(tmp_path, tiny_street, argv, dim):
    """Each new aggregator through quantize (int8: convolutions and matrix products in
    integers; LayerNorm, softmax and Sinkhorn's log-sum-exps stay float) and eval of the file."""
    import json

    from click.testing import CliRunner

    from edgevpr.cli import main

    size = ["--size", "70x98"] if "salad" in argv else ["--size", "64x64"]
    out = tmp_path / "m.onnx"
    calib = ["--calib", str(tiny_street / "database"), "--calib-count", "8"]
    quantized = CliRunner().invoke(main, ["quantize", *argv, *size, "--precision", "int8", *calib, "--out", str(out)])
    assert quantized.exit_code == 0, quantized.output
    result = tmp_path / "r.json"
    evaluated = CliRunner().invoke(
        main, ["eval", "--onnx", str(out), "--dataset", str(tiny_street), "--latency-runs", "5", "--out", str(result)]
    )
    assert evaluated.exit_code == 0, evaluated.output
    stored = json.loads(result.read_text())
    assert stored["model"]["descriptor_dim"] == dim and stored["protocol"]["precision"].startswith("int8")
