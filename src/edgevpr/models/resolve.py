"""Resolve, then run: a run's config with every unset input-contract field filled, as a copy.

The model section's ``mean``, ``std`` and ``tf_same_padding`` are ``None`` until resolved: an
explicit value (flag or YAML) wins; else what the weights carry (``known_weights``); else the
defaults (ImageNet mean and std, symmetric padding). The protocol of a result records which
of these the contract came from."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

from edgevpr.config import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataConfig,
    ModelConfig,
    RunConfig,
)
from edgevpr.contract import InputContract
from edgevpr.errors import ConfigError
from edgevpr.models.known_weights import known_file, pretrained_contract
from edgevpr.models.params import resolved_params
from edgevpr.models.releases import release_of

CONTRACT_FIELDS = ("mean", "std", "tf_same_padding")
DEFAULTS = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "tf_same_padding": False}


def _carried(model: ModelConfig, release) -> dict | None:
    if model.weights:
        if release is not None:
            return {"name": f"{release.name} release {Path(model.weights).name}", **release.contract}
        return known_file(model.weights)
    if model.pretrained:
        return pretrained_contract(model.backbone)
    return None


def resolve_model(model: ModelConfig) -> tuple[ModelConfig, dict]:
    """The model section with its contract fields filled, and where they came from:
    ``{"source": "flags" | "defaults" | "weights NAME (sha256 PREFIX)", "from_flags": [...]}``."""
    release = release_of(model.weights)
    if release is not None:  # the architecture the file holds (models.releases)
        model = dataclasses.replace(
            model, **({"backbone_params": {}, "aggregator_params": {}, "dim": None} | release.model)
        )
    carried = _carried(model, release)
    given = [name for name in CONTRACT_FIELDS if getattr(model, name) is not None]
    values = {name: getattr(model, name) for name in given}
    for name in CONTRACT_FIELDS:
        if name not in values:
            values[name] = carried[name] if carried and name in carried else DEFAULTS[name]
    if carried:
        source = f"weights {carried['name']}" + (f" (sha256 {carried['sha256'][:12]})" if "sha256" in carried else "")
    else:
        source = "flags" if len(given) == len(CONTRACT_FIELDS) else "defaults"
    values["mean"], values["std"] = tuple(values["mean"]), tuple(values["std"])
    values["backbone_params"], values["aggregator_params"] = resolved_params(
        model.backbone, model.backbone_params, model.aggregator, model.aggregator_params
    )
    return dataclasses.replace(model, **values), {"source": source, "from_flags": given}


def resolve_config(config: RunConfig, log=None) -> RunConfig:
    """A resolved copy of ``config`` (the argument is never changed). With ``log``, a weight file
    that carries no contract says which contract it runs under."""
    resolved = copy.deepcopy(config)
    resolved.model, origin = resolve_model(config.model)
    release = release_of(config.model.weights)
    if release is not None and release.contract["size"] and config.data.size is None and config.data.resize is None:
        resolved.data.size = tuple(release.contract["size"])  # the size the authors evaluated at
        resolved.data.interpolation = release.contract["interpolation"]
    if log and config.model.weights and not origin["source"].startswith("weights"):
        log(
            f"{config.model.weights}: not a weight file edgevpr knows; running under "
            f"{contract_of(resolved).describe()} (set --mean/--std/--tf-same-padding to change it)"
        )
    return resolved


def contract_origin(config: RunConfig) -> dict:
    return resolve_model(config.model)[1]


def adopt_stored_contract(config: RunConfig, stored: dict, where: str) -> RunConfig:
    """A copy of ``config`` under the contract an artefact (ONNX file, checkpoint, map) stores:
    its normalisation, padding and interpolation always, its resize rule unless ``config``
    gives one.
    ``stored`` is the artefact's metadata: ``contract``, or a ``config`` of files made before
    contracts were stored."""
    if "contract" in stored:
        contract = InputContract.from_dict(stored["contract"], where)
        mean, std, padding = contract.mean, contract.std, contract.padding == "tf_same"
        resize, size, factor = contract.resize, contract.size, contract.factor
        interpolation = contract.interpolation
    elif stored.get("config"):
        model, data = stored["config"]["model"], stored["config"]["data"]
        mean, std, padding = tuple(model["mean"]), tuple(model["std"]), bool(model.get("tf_same_padding"))
        resize, size, factor = data["resize"], tuple(data["size"]) if data["size"] else None, data.get("resize_factor")
        interpolation = data.get("interpolation", "bilinear")
    else:
        return copy.deepcopy(config)
    adopted = copy.deepcopy(config)
    adopted.model.mean, adopted.model.std, adopted.model.tf_same_padding = mean, std, padding
    adopted.data.interpolation = interpolation  # the model was made under it, like its normalisation
    if config.data.resize is None and config.data.size is None:
        adopted.data.resize, adopted.data.size = resize, size
        if config.data.resize_factor is None:
            adopted.data.resize_factor = factor
    return adopted


def contract_of(config: RunConfig, data: DataConfig | None = None) -> InputContract:
    """The input contract of ``config`` (resolved first); ``data`` (the validation set's
    section, say) may give its own resize rule."""
    model, _ = resolve_model(config.model)
    if data is None or (data.resize is None and data.size is None and data.resize_factor is None):
        data = config.data
    return InputContract(
        data.resize,
        data.size,
        model.mean,
        model.std,
        data.resize_factor,
        "tf_same" if model.tf_same_padding else "symmetric",
        data.interpolation,
    )


def stored_contract(stored: dict, where: str) -> InputContract:
    """The input contract an artefact's metadata holds (``contract``, or the ``config`` of
    files made before contracts were stored), or a one-line error naming ``where``."""
    if "contract" not in stored and not stored.get("config"):
        raise ConfigError(f"{where}: carries no input contract (not made by edgevpr?)")
    return contract_of(adopt_stored_contract(RunConfig(), stored, where))
