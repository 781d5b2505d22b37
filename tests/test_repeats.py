"""Repeated runs over seeds (eval --repeat, compare-precisions --repeat): mean and spread."""

import json

import pytest
from click.testing import CliRunner

from edgevpr.cli import main
from edgevpr.contract import InputContract
from edgevpr.evaluate.repeats import spread, summarise_runs
from edgevpr.quantize.calibration_images import CalibrationImages
from tests.conftest import write_image


def test_spread_is_the_mean_and_sample_standard_deviation():
    assert spread([50.0, 52.0, 54.0]) == {"mean": 52.0, "std": 2.0, "values": [50.0, 52.0, 54.0]}
    assert spread([7.0])["std"] == 0.0
    runs = [{"protocol_name": "p", "recall": {"1": v}, "metrics": {"auc_pr": v / 100}} for v in (40.0, 60.0)]
    block = summarise_runs(runs, [0, 1])
    assert block["recall"]["1"]["mean"] == 50.0 and block["metrics"]["auc_pr"]["std"] == pytest.approx(0.1414, 1e-3)
    with pytest.raises(ValueError, match="one protocol"):
        summarise_runs([runs[0], runs[1] | {"protocol_name": "q"}], [0, 1])


def _eval(tiny_street, out, *extra):
    args = ["eval", "--backbone", "squeezenet", "--dataset", str(tiny_street), "--latency-runs", "20"]
    args += ["--out", str(out)]
    result = CliRunner().invoke(main, args + list(extra))
    assert result.exit_code == 0, result.output
    return result.output, json.loads(out.read_text())


def test_eval_repeat_reports_each_seed_and_their_spread(tmp_path, tiny_street):
    output, saved = _eval(tiny_street, tmp_path / "r.json", "--repeat", "3", "--seed", "4")
    block = saved["repeats"]
    assert block["runs"] == 3 and block["seeds"] == [4, 5, 6]
    assert block["recall"]["1"]["values"][0] == saved["recall"]["1"]  # the saved run is the first seed's
    auc = block["metrics"]["auc_pr"]["values"]
    assert len(set(auc)) == 3 and block["metrics"]["auc_pr"]["std"] > 0  # random weights differ by seed
    assert "3 runs, seeds 4,5,6" in output and "R@1" in output
    _, single = _eval(tiny_street, tmp_path / "s.json", "--seed", "5")
    assert single["metrics"]["auc_pr"] == auc[1] and "repeats" not in single  # each repeat is that seed's run


def test_repeat_below_one_is_refused(tmp_path, tiny_street):
    result = CliRunner().invoke(main, ["eval", "--dataset", str(tiny_street), "--repeat", "0"])
    assert result.exit_code != 0 and "repeat" in result.output and ">= 1" in result.output


def test_calibration_images_are_drawn_by_seed(tmp_path):
    for i in range(10):
        write_image(tmp_path / f"{i:02d}.jpg", i, (16, 16))
    contract = InputContract()
    first = CalibrationImages(str(tmp_path), 4, contract, 10**6).paths
    assert [p.name for p in first] == ["00.jpg", "01.jpg", "02.jpg", "03.jpg"]
    drawn = [CalibrationImages(str(tmp_path), 4, contract, 10**6, seed=s).paths for s in (0, 0, 1)]
    assert drawn[0] == drawn[1] and drawn[0] != drawn[2] and drawn[0] == sorted(drawn[0])
    assert len(set(drawn[0])) == 4


def test_compare_precisions_repeats_calibrating_variants(tmp_path, tiny_street):
    from edgevpr.config import load_config
    from edgevpr.evaluate.precisions import compare_precisions, format_rows, format_spreads

    config = load_config(
        overrides={
            "model": {"backbone": "squeezenet"},
            "data": {"dataset": str(tiny_street), "size": [72, 96]},
            "eval": {"latency_runs": 20},
        }
    )
    calib = tiny_street / "database"
    variants = [("fp16", None, None), ("int8", "cpu", "minmax")]
    rows = compare_precisions(config, str(calib), 3, variants=variants, log=lambda m: None, repeat=2)
    assert "repeats" not in rows[1]  # fp16 does not calibrate
    block = rows[2]["repeats"]
    assert block["seeds"] == [0, 1] and block["recall"]["1"]["values"][0] == rows[2]["recall"]["1"]
    assert "over 2 calibration draws" in format_spreads(rows)
    # fidelity over every database and query image: fp32 is itself, a deployment is below it
    assert rows[0]["cosine_min_to_fp32"] == pytest.approx(1.0, abs=1e-6)
    for row in rows[1:]:
        assert row["cosine_min_to_fp32"] <= row["cosine_p5_to_fp32"] <= row["mean_cosine_to_fp32"] <= 1.0 + 1e-6
    assert rows[2]["cosine_min_to_fp32"] < 1.0 - 1e-6  # int8 changes every image's descriptor somewhat
    assert "cos fp32 mean/p5/min" in format_rows(rows)
