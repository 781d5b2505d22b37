"""The input contract: one type, resolved from flags, known weight files or defaults, stored
with ONNX files and checkpoints and read back; evaluation never changes the config it is given."""

import copy
import json

import pytest
import torch

from edgevpr.config import load_config
from edgevpr.contract import InputContract
from edgevpr.errors import ConfigError
from edgevpr.models import known_weights
from edgevpr.models.resolve import (
    adopt_stored_contract,
    contract_of,
    resolve_config,
    resolve_model,
)
from tests.conftest import MOBILENET_TFLITE, needs


@pytest.fixture
def known_file(tmp_path, monkeypatch):
    """A file registered as known weights that want mean = std = 0.5 and TF-SAME (only its
    SHA-256 matters to the contract)."""
    path = tmp_path / "squeeze.pth"
    torch.save({"weight": torch.arange(10.0)}, path)
    sha = known_weights.file_sha256(path)
    monkeypatch.setitem(
        known_weights.KNOWN_FILES,
        sha,
        {
            "name": "test_squeeze",
            "backbone": "squeezenet",
            "mean": (0.5, 0.5, 0.5),
            "std": (0.5, 0.5, 0.5),
            "tf_same_padding": True,
        },
    )
    return path


def test_a_known_file_brings_its_contract_and_flags_override_it(known_file):
    config = load_config(
        overrides={"model": {"backbone": "squeezenet", "weights": str(known_file)}, "data": {"resize": 120}}
    )
    contract = contract_of(config)
    assert contract.mean == (0.5, 0.5, 0.5) and contract.padding == "tf_same" and contract.resize == 120
    model, origin = resolve_model(config.model)
    assert origin["source"].startswith("weights test_squeeze (sha256 ") and origin["from_flags"] == []
    explicit = load_config(
        overrides={"model": {"backbone": "squeezenet", "weights": str(known_file), "mean": "0.4,0.4,0.4"}}
    )
    contract = contract_of(explicit)
    assert contract.mean == (0.4, 0.4, 0.4) and contract.std == (0.5, 0.5, 0.5)
    assert resolve_model(explicit.model)[1]["from_flags"] == ["mean"]


def test_an_unknown_file_keeps_the_defaults_and_says_so(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({}, path)
    config = load_config(overrides={"model": {"weights": str(path)}})
    said = []
    resolved = resolve_config(config, log=said.append)
    assert resolved.model.mean == (0.485, 0.456, 0.406) and resolved.model.tf_same_padding is False
    assert len(said) == 1 and "not a weight file edgevpr knows" in said[0] and "symmetric padding" in said[0]
    assert config.model.mean is None  # resolving copies


def test_the_contract_round_trips_and_bad_ones_are_one_line():
    contract = InputContract(resize=360, mean=(0.5,) * 3, std=(0.5,) * 3, padding="tf_same")
    assert InputContract.from_dict(json.loads(json.dumps(contract.to_dict())), "x") == contract
    with pytest.raises(ConfigError, match="m.onnx: not an input contract"):
        InputContract.from_dict({"mean": [1, 2, 3], "colour": "red"}, "m.onnx")
    with pytest.raises(ConfigError, match="unknown padding convention 'valid'"):
        InputContract(padding="valid")


def test_an_artefact_contract_wins_over_defaults_but_not_over_a_given_resize():
    stored = {"contract": InputContract(resize=200, mean=(0.5,) * 3, std=(0.5,) * 3, padding="tf_same").to_dict()}
    adopted = adopt_stored_contract(load_config(), stored, "m.onnx")
    assert adopted.data.resize == 200 and adopted.model.tf_same_padding is True
    given = adopt_stored_contract(load_config(overrides={"data": {"size": "64,96"}}), stored, "m.onnx")
    assert given.data.resize is None and tuple(given.data.size) == (64, 96) and given.model.mean == (0.5,) * 3


def test_quantized_files_store_the_contract_and_eval_reads_it(tmp_path, tiny_street):
    from edgevpr.evaluate.runner import evaluate
    from edgevpr.quantize.onnx_export import get_metadata
    from edgevpr.quantize.pipeline import quantize_model

    config = load_config(
        overrides={
            "model": {"backbone": "squeezenet", "mean": "0.5,0.5,0.5", "std": "0.25,0.25,0.25"},
            "data": {"size": "72,96"},
            "quantize": {"precision": "fp32"},
        }
    )
    out = tmp_path / "m.onnx"
    quantize_model(config, None, str(out))
    import onnx

    stored = get_metadata(onnx.load(str(out)))["contract"]
    assert stored["std"] == [0.25] * 3 and stored["size"] == [72, 96]
    run = load_config(
        overrides={"model": {"onnx": str(out)}, "data": {"dataset": str(tiny_street)}, "eval": {"latency_runs": 20}}
    )
    before = copy.deepcopy(run)
    result = evaluate(run)
    assert run == before  # resolve, then run: the argument is untouched
    assert result["protocol"]["contract"]["std"] == [0.25] * 3
    assert result["protocol"]["contract_source"]["source"] == f"stored in {out}"


def test_evaluate_leaves_its_config_alone(tiny_street):
    from edgevpr.evaluate.runner import evaluate

    config = load_config(
        overrides={
            "model": {"backbone": "squeezenet"},
            "data": {"dataset": str(tiny_street)},
            "eval": {"latency_runs": 20},
        }
    )
    before = copy.deepcopy(config)
    result = evaluate(config)
    assert config == before
    assert tuple(result["config"]["model"]["mean"]) == (0.485, 0.456, 0.406)  # the resolved copy is saved
    assert result["protocol"]["contract_source"]["source"] == "defaults"


@needs(MOBILENET_TFLITE)
def test_the_shared_mobilenet_file_is_known():
    config = load_config(overrides={"model": {"backbone": "mobilenetv2", "weights": str(MOBILENET_TFLITE)}})
    contract = contract_of(config)
    assert contract.mean == (0.5,) * 3 and contract.std == (0.5,) * 3 and contract.padding == "tf_same"


def test_the_public_api_is_declared_once_and_complete():
    import edgevpr
    import edgevpr.api

    assert sorted(edgevpr.__all__) == sorted(edgevpr.api.__all__)
    assert all(callable(getattr(edgevpr, name)) for name in edgevpr.__all__)


@pytest.mark.parametrize(
    "data", [{"resize": 80, "resize_factor": 0.75}, {"size": "72,96", "resize_factor": 1.5}], ids=["resize", "size"]
)
def test_every_contract_field_off_its_default_survives_checkpoint_onnx_map_and_recipe(tmp_path, tiny_street, data):
    """Bicubic included: an artefact built under a contract gives back that contract, field by
    field, through a checkpoint, an ONNX file, a map (built from each) and a stored recipe."""
    import yaml

    from edgevpr.explore.recommend import recipe_of
    from edgevpr.maps import Map, ModelSource
    from edgevpr.maps.model_file import save_torch_model
    from edgevpr.models import build_model
    from edgevpr.models.checkpoint import read_checkpoint
    from edgevpr.models.resolve import stored_contract
    from edgevpr.quantize.pipeline import quantize_model
    from edgevpr.runtime.onnx_model import OnnxModel

    model = {"backbone": "squeezenet", "mean": "0.4,0.45,0.5", "std": "0.2,0.25,0.3", "tf_same_padding": True}
    config = load_config(
        overrides={"model": model, "data": data | {"interpolation": "bicubic"}, "quantize": {"precision": "fp32"}}
    )
    expected = contract_of(config)
    defaults = InputContract()
    changed = [
        f for f in ("mean", "std", "factor", "padding", "interpolation") if getattr(expected, f) != getattr(defaults, f)
    ]
    assert len(changed) == 5 and (expected.resize or expected.size)

    checkpoint = tmp_path / "m.pt"
    save_torch_model(build_model(config.model), resolve_config(config).to_dict(), expected, checkpoint)
    onnx_file = tmp_path / "m.onnx"
    quantize_model(config, None, str(onnx_file)) if "size" in data else None
    found = {"checkpoint": stored_contract(read_checkpoint(checkpoint), "m.pt")}
    if onnx_file.exists():
        found["onnx"] = stored_contract(OnnxModel(onnx_file).metadata, "m.onnx")
    found["map"] = Map.build(ModelSource(config=config), tiny_street / "database", tmp_path / "map").model.contract
    found["map of the checkpoint"] = Map.build(
        ModelSource(checkpoint=str(checkpoint)), tiny_street / "database", tmp_path / "map2"
    ).model.contract
    found["map, loaded"] = Map.load(tmp_path / "map").model.contract
    row = {"key": "k", "config_json": json.dumps(resolve_config(config).to_dict()), "cell_json": "{}"}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe_of(row)))
    found["recipe"] = contract_of(load_config(tmp_path / "recipe.yaml"))
    for where, contract in found.items():
        for field in ("resize", "size", "mean", "std", "factor", "padding", "interpolation"):
            got, want = getattr(contract, field), getattr(expected, field)
            got = tuple(got) if isinstance(got, list) else got
            assert got == want, f"{where}: {field} {got!r}, expected {want!r}"
