"""Named protocols (counts and fingerprints enforced) and the metrics beyond Recall@N."""

import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgevpr.cli import main
from edgevpr.config import DataConfig
from edgevpr.data.dataset import load_dataset
from edgevpr.data.protocols import find_protocol, registered
from edgevpr.errors import ConfigError, DatasetError
from edgevpr.evaluate.pr import mean_average_precision, metrics_block, top1_precision_recall
from tests.conftest import GARDENS_POINT, needs, write_image


def test_a_perfect_ranking_has_auc_pr_one():
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    correct = np.array([True, True, True, False, False])  # every correct match scores above every wrong one
    block = top1_precision_recall(scores, correct)
    assert block["auc_pr"] == pytest.approx(1.0) and block["recall_at_100_precision"] == 1.0
    assert block["extended_precision"] == pytest.approx(1.0)


def test_a_known_precision_recall_curve():
    """Scores 0.9 (right), 0.8 (wrong), 0.7 (right), 0.6 (wrong): at recall 1/2 precision 1, at
    recall 1 precision 2/3 then 2/4."""
    block = top1_precision_recall(np.array([0.9, 0.8, 0.7, 0.6]), np.array([True, False, True, False]))
    assert block["recall_at_100_precision"] == pytest.approx(0.5)
    assert block["extended_precision"] == pytest.approx((1.0 + 0.5) / 2)
    # sklearn's curve: (recall, precision) = (0, 1), (0.5, 1), (0.5, 0.5)?, (1, 2/3) -> trapezoids
    from sklearn.metrics import auc, precision_recall_curve

    precision, recall, _ = precision_recall_curve([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.6])
    assert block["auc_pr"] == pytest.approx(auc(recall, precision))
    worst = top1_precision_recall(np.array([0.9, 0.1]), np.array([False, True]))
    assert worst["recall_at_100_precision"] == 0.0 and worst["extended_precision"] == 0.0  # the surest match is wrong


def test_map_at_k_on_a_hand_made_ranking():
    predictions = np.array([[3, 1, 2], [0, 1, 2]])
    positives = [np.array([1, 2]), np.array([5])]
    # query 0: hits at ranks 2 and 3 -> (1/2 + 2/3) / 2; query 1: no hit -> 0
    assert mean_average_precision(predictions, positives, 3) == pytest.approx(100 * ((0.5 + 2 / 3) / 2) / 2, abs=1e-4)
    positives[1] = np.array([0])  # now query 1's top-1 is right: AP@3 = 1
    block = metrics_block(np.array([[0.9, 0.5, 0.4], [0.3, 0.2, 0.1]]), predictions, positives, (1, 3))
    assert block["map_at"]["3"] == pytest.approx(100 * ((0.5 + 2 / 3) / 2 + 1) / 2, abs=1e-4)
    assert len(block["pr_curve"]["recall"]) == 201 and block["recall_at_100_precision"] == 0.0


def test_the_registry_lists_the_protocols_and_user_files_add_their_own(tmp_path, monkeypatch):
    names = set(registered())
    assert {
        "gardens_point/day_right-night_right/frames2",
        "gardens_point/day_left-day_right/frames2",
        "ie_tower/clip-disjoint/frames2",
        "nordland/summer-winter/frames1",
        "corridor/vprbench",
    } <= names
    mine = tmp_path / "mine.yaml"
    mine.write_text(
        "toy/frames1:\n  database: toy/db\n  queries: toy/q\n  positives: {tolerance_frames: 1}\n"
        "  num_database: 3\n  num_queries: 3\n"
    )
    monkeypatch.setenv("EDGEVPR_PROTOCOLS", str(mine))
    assert find_protocol("toy/frames1").num_database == 3 and find_protocol(str(mine)).name == "toy/frames1"
    with pytest.raises(ConfigError, match="unknown protocol 'nope'"):
        find_protocol("nope")
    for folder, count in (("db", 3), ("q", 4)):
        for i in range(count):
            write_image(tmp_path / "toy" / folder / f"f{i}.jpg", i)
    with pytest.raises(DatasetError, match="expects 3 queries images, found 4|must hold as many images"):
        load_dataset(DataConfig(protocol="toy/frames1", data_root=str(tmp_path)))
    (tmp_path / "toy" / "q" / "f3.jpg").unlink()
    dataset = load_dataset(DataConfig(protocol="toy/frames1", data_root=str(tmp_path)))
    assert dataset.name == "toy/frames1" and dataset.protocol()["registered_protocol"]["name"] == "toy/frames1"
    with pytest.raises(ConfigError, match="fixes the folders and positives; drop --tolerance-frames"):
        load_dataset(DataConfig(protocol="toy/frames1", data_root=str(tmp_path), tolerance_frames=3))


@needs(GARDENS_POINT)
def test_a_changed_dataset_is_refused_by_its_fingerprint(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(GARDENS_POINT, root / "gardens_point")
    name = "gardens_point/day_right-night_right/frames2"
    assert load_dataset(DataConfig(protocol=name, data_root=str(root))).name == name
    with open(root / "gardens_point" / "night_right" / "Image005.jpg", "ab") as handle:
        handle.write(b"x")
    result = CliRunner().invoke(
        main, ["eval", "--backbone", "squeezenet", "--protocol", name, "--data-root", str(root)]
    )
    assert (
        result.exit_code == 1 and "the images differ from protocol" in result.output and "fingerprint" in result.output
    )
    wrong = CliRunner().invoke(
        main, ["eval", "--backbone", "squeezenet", "--protocol", name, "--data-root", str(tmp_path)]
    )
    assert wrong.exit_code == 1 and "expects it under --data-root" in wrong.output


def _eval_squeezenet(street, out, *extra):
    """``edgevpr eval`` of a SqueezeNet model (default aggregator) on ``street``, writing ``out``."""
    args = ["eval", "--backbone", "squeezenet", "--dataset", str(street), "--latency-runs", "20", "--out", str(out)]
    return CliRunner().invoke(main, [*args, *extra])


def test_eval_writes_metrics_and_a_pr_curve(tmp_path, tiny_street):
    out, png = tmp_path / "r.json", tmp_path / "pr.png"
    result = _eval_squeezenet(tiny_street, out, "--pr-curve", str(png))
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())["metrics"]
    assert 0 <= metrics["auc_pr"] <= 1 and set(metrics["map_at"]) == {"1", "5", "10"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    listing = CliRunner().invoke(main, ["protocols"])
    assert listing.exit_code == 0 and "gardens_point/day_right-night_right/frames2 (v1)" in listing.output


def test_crops_follow_the_test_methods():
    from edgevpr.evaluate.test_time import crops_of

    image = torch.arange(3 * 4 * 6, dtype=torch.float32).reshape(3, 4, 6)
    assert crops_of(image, "single").shape == (1, 3, 4, 6)
    centre = crops_of(image, "central_crop")
    assert centre.shape == (1, 3, 4, 4) and torch.equal(centre[0], image[:, :, 1:5])
    five = crops_of(image, "five_crops")
    assert five.shape == (5, 3, 4, 4) and torch.equal(five[1], image[:, :, 2:]) and torch.equal(five[4], centre[0])


def test_nearest_crop_and_majority_voting_merge_the_crops():
    from edgevpr.evaluate.test_time import search_with_crops
    from edgevpr.search.index import build_index

    database = np.eye(4, dtype=np.float32)
    # one query, five crops: three point at entry 2, two (more strongly) at entry 1
    crops = np.array(
        [[[0, 0.9, 0.1, 0], [0, 0.95, 0, 0.05], [0, 0.2, 0.8, 0], [0, 0.1, 0.85, 0], [0, 0, 0.7, 0.3]]],
        dtype=np.float32,
    )
    crops /= np.linalg.norm(crops, axis=-1, keepdims=True)
    index = build_index(database, "Flat")
    _, nearest = search_with_crops(index, crops, "nearest_crop", 3)
    _, voted = search_with_crops(index, crops, "maj_voting", 3)
    assert nearest[0, 0] == 1 and voted[0, 0] == 2  # best single score against most votes
    assert len(set(nearest[0])) == 3 and len(set(voted[0])) == 3  # each entry once
    _, averaged = search_with_crops(index, crops, "five_crops", 2)
    assert averaged[0, 0] == 2


def test_eval_with_a_test_method_names_it_and_costs_its_crops(tmp_path, tiny_street):
    out = tmp_path / "r.json"
    result = _eval_squeezenet(tiny_street, out, "--test-method", "nearest_crop")
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert saved["protocol"]["resize"].endswith(",test=nearest_crop") and ",test=nearest_crop" in saved["protocol_name"]
    assert saved["cost"]["searches_per_query"] == 5 and saved["cost"]["query_extraction_ms"] > 0
