"""The recipes in configs/ load as typed configs and build their models (those whose weights
are here), so that the README, the benchmarks and the tests can use them instead of flags."""

from pathlib import Path

import pytest
import torch

from edgevpr.config import load_config
from edgevpr.models import build_model
from edgevpr.models.resolve import contract_of
from tests.conftest import RECIPES

RECIPE_FILES = sorted(RECIPES.glob("*.yaml"))


REFERENCE = {  # recipe -> the model it must describe (the papers' architectures)
    "mobilenetv2_gem": ("mobilenetv2", "gem"),
    "efficientnet_lite0_gem": ("efficientnet_lite0", "gem"),
    "ghost_dil_netvlad": ("ghostcnn", "netvlad"),
    "repvgg_lite_netvlad": ("repvgg_lite", "netvlad"),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_every_reference_recipe_describes_the_model_its_name_says(name, monkeypatch):
    monkeypatch.chdir(RECIPES.parent)
    config = load_config(RECIPES / f"{name}.yaml")
    assert (config.model.backbone, config.model.aggregator) == REFERENCE[name]
    text = (RECIPES / f"{name}.yaml").read_text()
    assert text.startswith("#"), f"{name}.yaml: no header saying what it reproduces"


@pytest.mark.parametrize("recipe", RECIPE_FILES, ids=lambda p: p.stem)
def test_recipe_builds_its_model(recipe, monkeypatch):
    monkeypatch.chdir(RECIPES.parent)  # recipes name paths relative to the repository root
    config = load_config(recipe)
    if config.model.weights and not Path(config.model.weights).is_file():
        pytest.skip(f"{config.model.weights} is absent (shared weights not available)")
    contract = contract_of(config)
    model = build_model(config.model)
    size = contract.size or (contract.resize or 224, contract.resize or 224)
    with torch.no_grad():
        out = model(torch.zeros(1, 3, *size))
    assert out.shape == (1, config.model.dim or model.aggregator.out_dim)  # PCA applies once fitted on a database
    assert model.descriptor_dim == (config.model.pca or config.model.dim or model.aggregator.out_dim)
    if config.model.weights:  # the shared files carry TF-SAME / mean = std = 0.5
        assert contract.mean == (0.5, 0.5, 0.5)
