"""Patch descriptors from the deployed file (``quantize --patches``): a second ONNX output that
equals PyTorch's patches (fp32 within 1e-4; fp16 and int8 by cosine), taken in the same pass as
the descriptors by eval, ``map build`` and ``localize``, so that a map with a second stage runs
the int8 file and extracts each image once."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from edgevpr.cli import main
from edgevpr.config import load_config
from edgevpr.errors import ConfigError
from edgevpr.extraction.extract import extract
from edgevpr.extraction.patches import PatchModel, PatchSpec, patch_extractor
from edgevpr.maps import Map, ModelSource
from edgevpr.models import build_model
from edgevpr.models.describer import Describer
from edgevpr.models.resolve import contract_of
from edgevpr.rerank import make_reranker
from edgevpr.runtime.onnx_model import OnnxModel

SIZE = (72, 96)
MODELS = {
    "gem": ["--backbone", "resnet18_conv4", "--aggregator", "gem"],
    "netvlad": ["--backbone", "resnet18_conv4", "--aggregator", "netvlad", "--aggregator-params", "clusters=4"],
}


def _quantize(tmp_path, street, model: str, precision: str) -> str:
    out = str(tmp_path / f"{model}_{precision}.onnx")
    argv = [*MODELS[model], "--size", "72x96", "--precision", precision, "--patches", "--patch-size", "2", "--out", out]
    calib = ["--calib", str(street / "database"), "--calib-count", "8"]
    result = CliRunner().invoke(main, ["quantize", *argv, *calib])
    assert result.exit_code == 0, result.output
    return out


def _torch_patches(images: torch.Tensor):
    """ResNet-18 + GeM as the file holds it, built from the same flags and seed, as a PyTorch
    patch model: (descriptors, patches)."""
    overrides = {"model": {"backbone": "resnet18_conv4", "aggregator": "gem"}, "data": {"size": SIZE}}
    config = load_config(overrides=overrides)
    patcher = PatchModel(build_model(config.model, seed=config.eval.seed), PatchSpec((2,), (1,))).eval()
    with torch.inference_mode():
        return patcher(images)


def _street_images(street, count: int = 12) -> torch.Tensor:
    config = load_config(overrides={"data": {"size": SIZE}})
    contract = contract_of(config)
    return torch.stack([contract(Image.open(p).convert("RGB")) for p in sorted((street / "queries").iterdir())[:count]])


@pytest.mark.parametrize("precision, tolerance", [("fp32", None), ("fp16", 0.999), ("int8", 0.99)])
def test_the_files_patch_output_equals_pytorchs(tmp_path, tiny_street, precision, tolerance):
    """fp32: every value within 1e-4; fp16 and int8: the mean cosine of each patch to
    PyTorch's (measured here: fp16 1.0000, int8 0.9996 on ResNet-18 + GeM; the int8 file's
    patch pooling stays float, its backbone runs in integers)."""
    images = _street_images(tiny_street)
    descriptors, patches = _torch_patches(images)
    session = OnnxModel(_quantize(tmp_path, tiny_street, "gem", precision))
    assert session.has_patches and session.metadata["patch_spec"] == {"sizes": [2], "strides": [1]}
    onnx_patches = patch_extractor(session, PatchSpec((5,), (1,)))  # a file's patches are its own
    found_descriptors, found = onnx_patches(images)
    assert found.shape == patches.shape and onnx_patches.map_size == (5, 6)
    expected = PatchModel(build_model(load_config().model), PatchSpec((2,), (1,)))
    expected.map_size = onnx_patches.map_size
    assert np.array_equal(onnx_patches.centres(), expected.centres())
    if tolerance is None:
        assert torch.allclose(found, patches, atol=1e-4) and torch.allclose(found_descriptors, descriptors, atol=1e-4)
    else:
        cosines = (found * patches).sum(-1)
        assert cosines.mean() >= tolerance and (found_descriptors * descriptors).sum(-1).mean() >= tolerance


def test_an_int8_netvlad_files_patches_follow_its_clusters(tmp_path, tiny_street):
    """NetVLAD's patches (soft-assignment and residual sums per window) from the int8 file
    against the fp32 file of the same model: cosine >= 0.98 on average."""
    images = _street_images(tiny_street)
    fp32 = patch_extractor(OnnxModel(_quantize(tmp_path, tiny_street, "netvlad", "fp32")), None)
    int8 = patch_extractor(OnnxModel(_quantize(tmp_path, tiny_street, "netvlad", "int8")), None)
    (_, float_patches), (_, int8_patches) = fp32(images), int8(images)
    assert float_patches.shape[-1] == 4 * 256
    assert (float_patches * int8_patches).sum(-1).mean() >= 0.98


def test_eval_of_the_fp32_file_reranks_query_for_query_as_pytorch(tmp_path, tiny_street):
    onnx = _quantize(tmp_path, tiny_street, "gem", "fp32")
    common = ["--dataset", str(tiny_street), "--rerank", "rapid", "--rerank-k", "10", "--latency-runs", "5"]
    runs = {
        "file": ["eval", "--onnx", onnx, *common],
        "torch": ["eval", *MODELS["gem"], "--size", "72x96", "--patch-size", "2", *common],
    }
    ranks = {}
    for name, argv in runs.items():
        result = CliRunner().invoke(main, [*argv, "--out", str(tmp_path / f"{name}.json")])
        assert result.exit_code == 0, result.output
        stored = json.loads((tmp_path / f"{name}.json").read_text())
        ranks[name] = stored["per_query"]["first_positive_rank"]
        assert stored["cost"]["patch_bytes"] > 0
    assert ranks["file"] == ranks["torch"]
    plain = str(tmp_path / "plain.onnx")
    assert (
        CliRunner()
        .invoke(main, ["quantize", *MODELS["gem"], "--size", "72x96", "--precision", "fp32", "--out", plain])
        .exit_code
        == 0
    )
    refused = CliRunner().invoke(main, ["eval", "--onnx", plain, *common])
    assert refused.exit_code == 1 and "no patch output" in refused.output and "--patches" in refused.output


def test_a_map_of_the_int8_file_extracts_once_and_reranks_held_out_queries(tmp_path, tiny_street, monkeypatch):
    onnx = _quantize(tmp_path, tiny_street, "gem", "int8")
    calls = []
    run_all = OnnxModel.run_all
    monkeypatch.setattr(OnnxModel, "run_all", lambda self, *a, **k: calls.append(1) or run_all(self, *a, **k))
    database = sorted((tiny_street / "database").iterdir())
    built = Map.build(
        ModelSource(onnx, None, None),
        tiny_street / "database",
        tmp_path / "map",
        batch_size=8,
        patches=PatchSpec((2,), (1,)),
    )
    assert len(calls) == -(-len(database) // 8)  # one pass per batch gives descriptors and patches
    assert built.manifest["model"]["precision"].startswith("int8") and built.patches.array.shape[1] == 20
    describer = Describer.onnx(onnx)
    alone = extract(describer, database, describer.contract, batch_size=8).descriptors
    assert np.allclose(np.asarray(built.descriptors), alone, atol=1e-6)
    loaded = Map.load(tmp_path / "map")
    query = sorted((tiny_street / "queries").iterdir())[4]  # held out: a query, not a map image
    first = loaded.localize(query, top_k=10)
    answer = loaded.localize(query, top_k=10, reranker=make_reranker("ransac"), rerank_k=10)
    assert sorted(m["name"] for m in answer["matches"]) == sorted(m["name"] for m in first["matches"])
    assert answer["ms"]["rerank"] > 0 and [m["name"] for m in answer["matches"]] != [
        m["name"] for m in first["matches"]
    ]
    with pytest.raises(ConfigError, match="no patch output"):
        plain = tmp_path / "plain.onnx"
        CliRunner().invoke(
            main, ["quantize", *MODELS["gem"], "--size", "72x96", "--precision", "fp32", "--out", str(plain)]
        )
        Map.build(
            ModelSource(str(plain), None, None), tiny_street / "database", tmp_path / "plain", patches=PatchSpec()
        )
