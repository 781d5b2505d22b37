"""Published VPR checkpoints loaded by file: ``--weights FILE`` recognises the layout of an
authors' release by its keys, builds the architecture it holds, maps every key onto edgevpr's
modules and brings the input contract the authors evaluated with.

- CosPlace (Berton et al. 2022) and EigenPlaces (Berton et al. 2023), ``torch.hub`` state
  dicts: keys ``backbone.N.*``, ``aggregation.1.p``, ``aggregation.3.weight``; ResNet-18/50/101
  conv5, GeM on L2-normalised cells, FC; ImageNet mean and std, images at their own size.
- MixVPR (Ali-bey et al. 2023), a Lightning checkpoint or its state dict: keys
  ``backbone.model.layerK.*``, ``aggregator.mix.N.mix.*``, ``aggregator.channel_proj.*``;
  ResNet-50 conv4 and MixVPR; 320 x 320 bicubic, ImageNet mean and std.
- BoQ (Ali-bey et al. 2024), the ``torch.hub`` files: keys ``aggregator.boqs.N.*``,
  ``aggregator.proj_c.*`` on ``backbone.net.N.*`` (ResNet-50 conv4; 384 x 384) or
  ``backbone.dino.*`` (DINOv2 without its last norm; 322 x 322); bicubic, ImageNet mean and std.
- SALAD (Izquierdo and Civera 2024): keys ``backbone.model.blocks.N.*`` (DINOv2),
  ``aggregator.dust_bin``, ``aggregator.score.*``; DINOv2 ViT-B/14 (or S/14) and SALAD;
  322 x 322 bilinear, ImageNet mean and std.
- Patch-NetVLAD (Hausler et al. 2021), its ``.pth.tar`` (``state_dict`` inside): keys
  ``encoder.N.*`` (VGG16 ``features[:-2]``: conv5_3 without its ReLU), ``pool.centroids`` and
  ``pool.conv.weight`` (NetVLAD, no assignment bias), ``WPCA.0.*`` (a 1 x 1 convolution from the
  L2-normalised VLAD, read as the FC projection); 480 x 640 bilinear, ImageNet mean and std.

A file whose keys match a layout but not completely (a key missing, an extra one, a shape
that differs) is refused in one line naming the first such key. docs/models.md lists where
users get each release."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch

from edgevpr.config import IMAGENET_MEAN, IMAGENET_STD
from edgevpr.errors import ConfigError
from edgevpr.models.weights import torch_file

RESNET_CHANNELS = {"conv1": 0, "bn1": 1, "layer1": 4, "layer2": 5, "layer3": 6, "layer4": 7}
RESNET_DEPTH = {(2, 2, 2, 2): 18, (3, 4, 6, 3): 50, (3, 4, 23, 3): 101}


@dataclass(frozen=True)
class Release:
    name: str
    model: dict  # ModelConfig fields: backbone, aggregator, backbone_params, aggregator_params, dim
    contract: dict  # mean, std, size (H, W) or None, interpolation
    state: dict = field(repr=False, compare=False)  # edgevpr key -> tensor

    def load_into(self, model: torch.nn.Module, path: str) -> None:
        """Every tensor of the release into ``model``; refused naming the first key that does not fit."""
        own = model.state_dict()
        loaded = {key: value for key, value in own.items() if key.endswith("num_batches_tracked")}
        for key, value in self.state.items():
            if key not in own:
                raise ConfigError(f"{path}: {self.name} key {key!r} has no place in the built model (unexpected)")
            if own[key].shape != value.shape:
                raise ConfigError(
                    f"{path}: {self.name} key {key!r} has shape {tuple(value.shape)}, the model {tuple(own[key].shape)}"
                )
            loaded[key] = value
        missing = [key for key in own if key not in loaded and not key.endswith("initialised")]
        if missing:
            raise ConfigError(f"{path}: {self.name} lacks {missing[0]!r} ({len(missing)} tensors missing)")
        model.load_state_dict(loaded, strict=False)
        for module in model.modules():  # NetVLAD-style clusters come with the weights
            if hasattr(module, "initialised"):
                module.initialised.fill_(True)


def _unwrap(payload) -> dict | None:
    """The flat state dict of a file: a Lightning checkpoint's ``state_dict``, a plain state dict,
    with a ``module.`` or ``model.`` prefix every key shares removed."""
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        payload = payload["state_dict"]
    if not isinstance(payload, dict) or not payload or not all(isinstance(k, str) for k in payload):
        return None
    for prefix in ("module.", "model."):
        if all(key.startswith(prefix) for key in payload):
            payload = {key[len(prefix) :]: value for key, value in payload.items()}
    return {key: value for key, value in payload.items() if isinstance(value, torch.Tensor)}


def _resnet_depth(state: dict, layer_key) -> int:
    """18, 50 or 101, from the number of blocks in layers 1-3 (``layer_key(k)``: their key pattern)."""
    blocks = tuple(
        len({m.group(1) for key in state if (m := re.match(layer_key(k) + r"\.(\d+)\.", key))}) for k in (1, 2, 3)
    )
    for full, depth in RESNET_DEPTH.items():
        if full[:3] == blocks:
            return depth
    raise ConfigError(f"a ResNet of {blocks} blocks in layers 1-3 is not one edgevpr builds (18, 50, 101)")


def _cosplace(state: dict) -> Release | None:
    if not {"aggregation.1.p", "aggregation.3.weight"} <= set(state) or "backbone.0.weight" not in state:
        return None
    model = {"aggregator": "gem", "aggregator_params": {"normalize_input": True}}
    if "backbone.1.running_mean" not in state:  # VGG16 features[:-2]: conv5_3 without its ReLU
        model |= {"backbone": "vgg16", "backbone_params": {"last_relu": False}}
    else:
        depth = _resnet_depth(state, lambda k: "backbone\\." + str(3 + k))  # conv1, bn1, relu, maxpool, layer1-4
        model["backbone"] = f"resnet{depth}_conv5"
    body = [key for key in state if key.startswith("backbone.")]
    mapped = {"backbone.body." + key[len("backbone.") :]: state[key] for key in body}
    mapped["aggregator.p"] = state["aggregation.1.p"].reshape(())
    mapped["projection.weight"], mapped["projection.bias"] = state["aggregation.3.weight"], state["aggregation.3.bias"]
    model["dim"] = int(state["aggregation.3.weight"].shape[0])
    contract = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "size": None, "interpolation": "bilinear"}
    extra = [key for key in state if not key.startswith(("backbone.", "aggregation."))]
    _no_extra(extra, "CosPlace/EigenPlaces")
    return Release("CosPlace/EigenPlaces", model, contract, mapped)


def _torchvision_resnet(state: dict, prefix: str) -> dict:
    """``PREFIXconv1.weight``, ``PREFIXlayer3.1.conv2.weight`` ... -> edgevpr's ``backbone.body.N``."""
    mapped = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        head, _, rest = key[len(prefix) :].partition(".")
        if head not in RESNET_CHANNELS:
            raise ConfigError(f"unexpected key {key!r} in the ResNet")
        mapped[f"backbone.body.{RESNET_CHANNELS[head]}.{rest}"] = value
    return mapped


def _mixvpr(state: dict) -> Release | None:
    if "aggregator.channel_proj.weight" not in state or "aggregator.mix.0.mix.0.weight" not in state:
        return None
    cells = int(state["aggregator.mix.0.mix.0.weight"].shape[0])
    side = int(round(cells**0.5))
    if side * side != cells:
        raise ConfigError(f"MixVPR mixers of {cells} cells: not a square map edgevpr can size")
    depth = len({key.split(".")[2] for key in state if key.startswith("aggregator.mix.")})
    conv5 = any(key.startswith("backbone.model.layer4.") for key in state)
    resnet = _resnet_depth(state, lambda k: f"backbone\\.model\\.layer{k}")
    params = {
        "in_h": side,
        "in_w": side,
        "out_channels": int(state["aggregator.channel_proj.weight"].shape[0]),
        "mix_depth": depth,
        "mlp_ratio": state["aggregator.mix.0.mix.1.weight"].shape[0] / cells,
        "out_rows": int(state["aggregator.row_proj.weight"].shape[0]),
    }
    mapped = _torchvision_resnet(state, "backbone.model.")
    mapped |= {key: value for key, value in state.items() if key.startswith("aggregator.")}
    _no_extra([key for key in state if not key.startswith(("backbone.model.", "aggregator."))], "MixVPR")
    stride = 32 if conv5 else 16
    model = {
        "backbone": f"resnet{resnet}_conv{5 if conv5 else 4}",
        "aggregator": "mixvpr",
        "aggregator_params": params,
    }
    contract = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "size": (side * stride, side * stride)}
    return Release("MixVPR", model, contract | {"interpolation": "bicubic"}, mapped)


def _salad(state: dict) -> Release | None:
    if "aggregator.dust_bin" not in state or "backbone.model.cls_token" not in state:
        return None
    width = int(state["backbone.model.cls_token"].shape[-1])
    names = {384: "dinov2_vits14", 768: "dinov2_vitb14"}
    if width not in names:
        raise ConfigError(f"SALAD on a DINOv2 of width {width}: edgevpr builds ViT-S/14 (384) and ViT-B/14 (768)")
    backbone = names[width] + ("_reg" if "backbone.model.register_tokens" in state else "")
    mapped = {
        "backbone.net." + key[len("backbone.model.") :]: value
        for key, value in state.items()
        if key.startswith("backbone.model.") and key != "backbone.model.mask_token"
    }
    if "backbone.model.register_tokens" in state:
        mapped["backbone.net.reg_token"] = mapped.pop("backbone.net.register_tokens")
    mapped |= {key: value for key, value in state.items() if key.startswith("aggregator.")}
    _no_extra([key for key in state if not key.startswith(("backbone.model.", "aggregator."))], "SALAD")
    params = {
        "clusters": int(state["aggregator.score.3.weight"].shape[0]),
        "cluster_dim": int(state["aggregator.cluster_features.3.weight"].shape[0]),
        "token_dim": int(state["aggregator.token_features.2.weight"].shape[0]),
    }
    model = {"backbone": backbone, "aggregator": "salad", "aggregator_params": params}
    contract = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "size": (322, 322), "interpolation": "bilinear"}
    return Release("SALAD", model, contract, mapped)


def _boq(state: dict) -> Release | None:
    if "aggregator.boqs.0.queries" not in state or "aggregator.proj_c.weight" not in state:
        return None
    if "backbone.dino.cls_token" in state:  # DINOv2 from torch.hub, without its last norm
        width = int(state["backbone.dino.cls_token"].shape[-1])
        backbone = {384: "dinov2_vits14", 768: "dinov2_vitb14"}.get(width)
        if backbone is None:
            raise ConfigError(f"BoQ on a DINOv2 of width {width}: edgevpr builds ViT-S/14 (384) and ViT-B/14 (768)")
        prefix = "backbone.dino."
        mapped = {"backbone.net." + k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        mapped.pop("backbone.net.mask_token", None)
        model = {"backbone": backbone, "backbone_params": {"final_norm": False}}
        size = (322, 322)
    else:  # torchvision ResNet children as backbone.net: conv1, bn1, relu, maxpool, layer1-3
        prefix = "backbone.net."
        depth = _resnet_depth(state, lambda k: "backbone\\.net\\." + str(3 + k))
        mapped = {"backbone.body." + k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        model = {"backbone": f"resnet{depth}_conv4"}
        size = (384, 384)
    _no_extra([key for key in state if not key.startswith((prefix, "aggregator."))], "BoQ")
    mapped |= {key: value for key, value in state.items() if key.startswith("aggregator.")}
    queries = state["aggregator.boqs.0.queries"]
    params = {
        "proj_channels": int(queries.shape[-1]),
        "num_queries": int(queries.shape[1]),
        "num_layers": len({key.split(".")[2] for key in state if key.startswith("aggregator.boqs.")}),
        "row_dim": int(state["aggregator.fc.weight"].shape[0]),
    }
    model |= {"aggregator": "boq", "aggregator_params": params}
    contract = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "size": size, "interpolation": "bicubic"}
    return Release("BoQ", model, contract, mapped)


def _patchnetvlad(state: dict) -> Release | None:
    if "pool.centroids" not in state or "encoder.0.weight" not in state:
        return None
    if "pool.conv.bias" in state:
        raise ConfigError("Patch-NetVLAD with vladv2 (an assignment bias): the released models are vladv1")
    clusters, channels = (int(n) for n in state["pool.centroids"].shape)
    mapped = {
        "backbone.body." + key[len("encoder.") :]: value for key, value in state.items() if key.startswith("encoder.")
    }
    mapped["aggregator.centroids"] = state["pool.centroids"]
    mapped["aggregator.assign.weight"] = state["pool.conv.weight"]
    model = {
        "backbone": "vgg16",
        "backbone_params": {"last_relu": False},
        "aggregator": "netvlad",
        "aggregator_params": {"clusters": clusters, "assign_bias": False, "final_norm": True},
    }
    if "WPCA.0.weight" in state:
        weight = state["WPCA.0.weight"]
        mapped["projection.weight"] = weight.reshape(weight.shape[0], -1)
        if "WPCA.0.bias" not in state:
            raise ConfigError("Patch-NetVLAD layout lacks 'WPCA.0.bias' beside 'WPCA.0.weight'")
        mapped["projection.bias"] = state["WPCA.0.bias"]
        model["dim"] = int(weight.shape[0])
    if channels != 512:
        raise ConfigError(f"Patch-NetVLAD clusters of {channels} channels: its VGG16 encoder gives 512")
    _no_extra([key for key in state if not key.startswith(("encoder.", "pool.", "WPCA."))], "Patch-NetVLAD")
    _no_extra(
        [key for key in state if key.startswith(("pool.", "WPCA.")) and key not in PATCHNETVLAD_HEAD], "Patch-NetVLAD"
    )
    contract = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "size": (480, 640), "interpolation": "bilinear"}
    return Release("Patch-NetVLAD", model, contract, mapped)


PATCHNETVLAD_HEAD = {"pool.centroids", "pool.conv.weight", "WPCA.0.weight", "WPCA.0.bias"}


def _no_extra(keys: list[str], name: str) -> None:
    if keys:
        raise ConfigError(f"{name} layout with an unexpected key {keys[0]!r} ({len(keys)} such keys)")


LAYOUTS = (_mixvpr, _salad, _boq, _patchnetvlad, _cosplace)


@lru_cache(maxsize=8)
def _read(path: str, size: int, mtime: float) -> Release | None:
    state = _unwrap(torch_file(path, "weights file"))
    if state is None:
        return None
    for layout in LAYOUTS:
        try:
            release = layout(state)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None
        if release is not None:
            return release
    return None


def release_of(path: str | Path | None) -> Release | None:
    """The release a weight file holds, or None for a backbone state dict (or no file)."""
    if path is None or not Path(path).is_file():
        return None
    stat = Path(path).stat()
    return _read(str(path), stat.st_size, stat.st_mtime)
